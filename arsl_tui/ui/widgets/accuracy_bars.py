"""Per-class test accuracy as vertical bars, one column per class; classes below the floor marked `✗`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.widget import Widget

_EIGHTHS = " ▁▂▃▄▅▆▇█"
_AXIS_WIDTH = 7


def scale_floor(values: Sequence[float]) -> float:
    """The bottom of the y axis: the worst class rounded down to 0.05, less 0.05, at least 0.

    Accuracies cluster near 1, so a 0-based axis would hide the differences that matter.
    """
    finite = [value for value in values if math.isfinite(value)]
    lowest = min(finite) if finite else 0.0
    return max(0.0, math.floor(lowest * 20) / 20 - 0.05)


class AccuracyBars(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"accuracy-bars--bar", "accuracy-bars--axis", "accuracy-bars--below"}
    DEFAULT_CSS = """
    AccuracyBars {
        height: 1fr; min-height: 5; text-wrap: nowrap; text-overflow: clip;
        & > .accuracy-bars--bar { color: $primary; }
        & > .accuracy-bars--axis { color: $text-muted; }
        & > .accuracy-bars--below { color: $error; text-style: bold; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.values: list[tuple[str, float]] = []
        self.floor = 0.0

    def set_values(self, values: Sequence[tuple[str, float]], floor: float) -> None:
        self.values = list(values)
        self.floor = floor
        self.refresh()

    def render(self) -> Text:
        if not self.values:
            return Text(
                "No per-class accuracy: the job's final record has none.",
                style=self.get_component_rich_style("accuracy-bars--axis"),
            )
        bar_style = self.get_component_rich_style("accuracy-bars--bar")
        axis_style = self.get_component_rich_style("accuracy-bars--axis")
        below_style = self.get_component_rich_style("accuracy-bars--below")
        height = max(1, self.size.height - 2)
        low = scale_floor([value for _, value in self.values])
        span = 1.0 - low or 1.0
        lines: list[Text] = []
        for row in range(height):
            level_from_bottom = height - row - 1
            label = f"{1.0:>{_AXIS_WIDTH - 2}.2f} ┤" if row == 0 else " " * (_AXIS_WIDTH - 1) + "│"
            line = Text(label, style=axis_style)
            cells = []
            for _, value in self.values:
                fraction = (value - low) / span if math.isfinite(value) else 0.0
                filled = round(max(0.0, fraction) * height * 8) - level_from_bottom * 8
                cells.append(_EIGHTHS[max(0, min(8, filled))])
            line.append("".join(cells), style=bar_style)
            lines.append(line)
        axis = Text(f"{low:>{_AXIS_WIDTH - 2}.2f} └", style=axis_style)
        for _, value in self.values:
            below = not math.isfinite(value) or value < self.floor
            axis.append("✗", style=below_style) if below else axis.append("─", style=axis_style)
        lines.append(axis)
        finite = [(name, value) for name, value in self.values if math.isfinite(value)]
        worst = min(finite, key=lambda item: item[1]) if finite else None
        below_count = sum(1 for _, value in self.values if not math.isfinite(value) or value < self.floor)
        caption = Text(" ")
        if worst is not None:
            caption.append(
                f"worst {worst[0]} {worst[1]:.3f} · {below_count} under {self.floor:.2f} (✗)",
                style="bold" if below_count else "",
            )
        lines.append(caption)
        return Text("\n", no_wrap=True, overflow="crop").join(lines)
