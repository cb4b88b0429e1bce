"""Progress events that `ops` emit and both the CLI and the console consume."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """Base of every event; `kind` names it in `--json` output."""

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class UploadStarted(Event):
    run_id: str
    manifest_id: str
    mode: str
    destination: str
    files_total: int
    bytes_total: int
    objects_total: int
    objects_already_confirmed: int


@dataclass(frozen=True)
class UploadProgressed(Event):
    """Cumulative progress; emitted after each confirmed object (consumers coalesce)."""

    run_id: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    objects_done: int
    objects_total: int
    bytes_per_s: float
    eta_s: float | None
    retries: int
    errors: int


@dataclass(frozen=True)
class UploadRetried(Event):
    run_id: str
    key: str
    attempt: int
    error: str
    delay_s: float


@dataclass(frozen=True)
class UploadPhaseChanged(Event):
    """The engine moved between packing, sending, verifying and finishing."""

    run_id: str
    phase: str
    detail: str = ""


@dataclass(frozen=True)
class UploadFinished(Event):
    """The run ended; `status` is done, paused, cancelled or failed."""

    run_id: str
    status: str
    manifest_id: str
    destination: str
    objects_sent: int
    objects_skipped: int
    bytes_sent: int
    elapsed_s: float
    error: str = ""


EventSink = Callable[[Event], None]


def ignore_events(event: Event) -> None:
    """An EventSink that drops everything."""
