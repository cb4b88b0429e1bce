"""Learning-curve data for the plots: series with a cap on their points, fed incrementally.

Pure (no Textual, no plotext), so the Training and Gate tabs build series without loading the
plotting library, and tests check the cap and the x axis directly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from arsl_tui.domain.gate import EpochMetrics
from arsl_tui.domain.jobs import MetricRecord

MAX_POINTS = 240
"""Points kept per series: a plot 40 columns wide cannot show more, and redraw cost stays flat."""


@dataclass(frozen=True)
class Series:
    """One line of a plot: its legend label, points and marker (so lines differ without colour)."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    marker: str = "braille"

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None


@dataclass(frozen=True)
class Chart:
    """What one plot shows."""

    title: str
    x_label: str
    series: tuple[Series, ...]

    @property
    def empty(self) -> bool:
        return not any(item.xs for item in self.series)

    def summary(self) -> str:
        """The last value of each line, the text shown until (or instead of) the plot."""
        parts = [f"{item.label} {item.last:.4f}" for item in self.series if item.last is not None]
        return f"{self.title}: " + (" · ".join(parts) if parts else "no points yet")


class CappedSeries:
    """x/y points appended over time; only the newest `cap` are kept."""

    def __init__(self, cap: int = MAX_POINTS) -> None:
        self._points: deque[tuple[float, float]] = deque(maxlen=cap)

    def add(self, x: float, y: float | None) -> None:
        if y is not None and math.isfinite(y):
            self._points.append((x, y))

    def series(self, label: str, marker: str) -> Series:
        return Series(label, tuple(x for x, _ in self._points), tuple(y for _, y in self._points), marker)

    def __len__(self) -> int:
        return len(self._points)


TRAIN_MARKER = "braille"
VAL_MARKER = "x"


class TrainingCurves:
    """Train and validation loss and accuracy of one job, from its metric records as they arrive.

    Train curves take every step record (live within an epoch) and the epoch records' averages;
    validation curves take the epoch records. The x axis is the global step when the trainer
    reports it, else the epoch number.
    """

    def __init__(self, cap: int = MAX_POINTS) -> None:
        self.train_loss = CappedSeries(cap)
        self.train_acc = CappedSeries(cap)
        self.val_loss = CappedSeries(cap)
        self.val_acc = CappedSeries(cap)
        self.records_seen = 0
        self.uses_steps: bool | None = None

    def add(self, records: Iterable[MetricRecord]) -> bool:
        """Take new records; True if any point was added."""
        added = False
        for record in records:
            self.records_seen += 1
            if record.type not in ("step", "epoch"):
                continue
            if self.uses_steps is None:
                self.uses_steps = record.step is not None
            x_value = record.step if self.uses_steps else record.epoch
            if x_value is None:
                continue
            x = float(x_value)
            before = len(self.train_loss) + len(self.val_loss)
            self.train_loss.add(x, record.train_loss)
            self.train_acc.add(x, record.train_acc)
            if record.type == "epoch":
                self.val_loss.add(x, record.val_loss)
                self.val_acc.add(x, record.val_acc)
            added = added or len(self.train_loss) + len(self.val_loss) != before or record.type == "epoch"
        return added

    @property
    def x_label(self) -> str:
        return "step" if self.uses_steps else "epoch"

    def loss_chart(self) -> Chart:
        return Chart(
            "loss",
            self.x_label,
            (self.train_loss.series("train", TRAIN_MARKER), self.val_loss.series("val", VAL_MARKER)),
        )

    def accuracy_chart(self) -> Chart:
        return Chart(
            "accuracy",
            self.x_label,
            (self.train_acc.series("train", TRAIN_MARKER), self.val_acc.series("val", VAL_MARKER)),
        )


def epoch_charts(epochs: Iterable[EpochMetrics]) -> tuple[Chart, Chart]:
    """Loss and accuracy per epoch (train vs validation): the history the gate's stability and
    overfitting rules read."""
    curves = TrainingCurves()
    curves.uses_steps = False
    curves.add(
        MetricRecord(
            type="epoch",
            epoch=epoch.epoch,
            train_loss=epoch.train_loss,
            train_acc=epoch.train_acc,
            val_loss=epoch.val_loss,
            val_acc=epoch.val_acc,
        )
        for epoch in epochs
    )
    return curves.loss_chart(), curves.accuracy_chart()
