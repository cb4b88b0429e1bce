"""A vertical bar chart of images per class, one column per class in class-index order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

_EIGHTHS = " ▁▂▃▄▅▆▇█"
_AXIS_WIDTH = 7


class ClassCountChart(Widget):
    """Bars scale from zero, so balance (or its lack) reads at a glance; an empty class shows `✗`."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"class-chart--bar", "class-chart--axis", "class-chart--empty"}
    DEFAULT_CSS = """
    ClassCountChart {
        height: 1fr; min-height: 5; text-wrap: nowrap; text-overflow: clip;
        & > .class-chart--bar { color: $primary; }
        & > .class-chart--axis { color: $text-muted; }
        & > .class-chart--empty { color: $error; text-style: bold; }
    }
    """

    selected: reactive[int] = reactive(0)
    """Index of the class the counts table's cursor is on; marked under the axis."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._counts: list[tuple[str, int]] = []

    def set_counts(self, counts: Mapping[str, int]) -> None:
        self._counts = list(counts.items())
        self.selected = min(self.selected, max(0, len(self._counts) - 1))
        self.refresh()

    def clear(self) -> None:
        self._counts = []
        self.refresh()

    def render(self) -> Text:
        if not self._counts:
            return Text(
                "Images per class appear here as bars.", style=self.get_component_rich_style("class-chart--axis")
            )
        bar_style = self.get_component_rich_style("class-chart--bar")
        axis_style = self.get_component_rich_style("class-chart--axis")
        empty_style = self.get_component_rich_style("class-chart--empty")
        height = max(1, self.size.height - 2)
        top = max(value for _, value in self._counts) or 1
        lines: list[Text] = []
        for row in range(height):
            level_from_bottom = height - row - 1
            label = f"{top:>{_AXIS_WIDTH - 2},} ┤" if row == 0 else " " * (_AXIS_WIDTH - 1) + "│"
            line = Text(label, style=axis_style)
            cells = []
            for _, value in self._counts:
                eighths = round(value / top * height * 8)
                filled = eighths - level_from_bottom * 8
                cells.append(_EIGHTHS[max(0, min(8, filled))])
            line.append("".join(cells), style=bar_style)
            lines.append(line)
        axis = Text(" " * (_AXIS_WIDTH - 3) + "0 └", style=axis_style)
        for _, value in self._counts:
            axis.append("✗", style=empty_style) if value == 0 else axis.append("─", style=axis_style)
        lines.append(axis)
        name, value = self._counts[self.selected] if self._counts else ("", 0)
        marker = Text(" " * (_AXIS_WIDTH + self.selected) + "▲ ")
        marker.append(f"{name} {value:,}", style="bold")
        lines.append(marker)
        return Text("\n", no_wrap=True, overflow="crop").join(lines)
