"""Images per class and split, with a totals row; the cursor row drives the bar chart's marker."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import DataTable

SPLIT_NAMES = ("train", "val", "test")


class ClassCountTable(DataTable[str | Text]):
    """One row per class: train / val / test / total counts."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id=id)

    def on_mount(self) -> None:
        self.add_column("class", key="class")
        for split in SPLIT_NAMES:
            self.add_column(split, key=split)
        self.add_column("total", key="total")

    def set_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        self.clear()
        totals = dict.fromkeys(SPLIT_NAMES, 0)
        for name, per_split in counts.items():
            values = [per_split.get(split, 0) for split in SPLIT_NAMES]
            for split, value in zip(SPLIT_NAMES, values, strict=True):
                totals[split] += value
            total = sum(values)
            shown_name = name if total else f"{name} ✗"
            self.add_row(shown_name, *(_number(value) for value in values), _number(total), key=name)
        self.add_row(
            "all", *(_number(totals[split]) for split in SPLIT_NAMES), _number(sum(totals.values())), key="__all__"
        )


def _number(value: int) -> Text:
    return Text(f"{value:,}", justify="right")
