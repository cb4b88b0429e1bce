"""Carry upload events from the engine's worker threads to the console without flooding it.

The engine emits an `UploadProgressed` after every confirmed object (108,098 for the full data
set). The feed keeps only the latest progress, queues the other events in order, and wakes the
console at most once until the console drains it, so the UI's message queue never grows with the
number of objects. An engine in its own process hands over progress it already coalesced, with the
number of events it stands for (`add_progress`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from arsl_tui.domain.events import Event, UploadProgressed


@dataclass(frozen=True)
class FeedBatch:
    """What arrived since the last drain: other events in order, then the newest progress."""

    events: tuple[Event, ...]
    progress: UploadProgressed | None
    progress_events_seen: int
    """How many progress events the batch's `progress` stands for."""


class UploadFeed:
    """A thread-safe EventSink; `wake` is called (from any thread) when the feed goes from empty to not."""

    def __init__(self, wake: Callable[[], object]) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._progress: UploadProgressed | None = None
        self._progress_seen = 0
        self._awake = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, UploadProgressed):
            self.add_progress(event, 1)
            return
        with self._lock:
            self._events.append(event)
            if self._awake:
                return
            self._awake = True
        self._wake()

    def add_progress(self, event: UploadProgressed, count: int) -> None:
        """The newest progress, standing for `count` progress events of the engine."""
        with self._lock:
            self._progress = event
            self._progress_seen += count
            if self._awake:
                return
            self._awake = True
        self._wake()

    @property
    def only_progress_pending(self) -> bool:
        with self._lock:
            return not self._events

    def drain(self) -> FeedBatch:
        with self._lock:
            batch = FeedBatch(tuple(self._events), self._progress, self._progress_seen)
            self._events = []
            self._progress = None
            self._progress_seen = 0
            self._awake = False
        return batch
