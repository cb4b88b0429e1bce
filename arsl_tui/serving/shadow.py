"""Shadow traffic: copies of answered requests sent to a challenger that answers no client.

`ShadowMirror.offer` is called once the champion's answer is built, just before the handler returns
it: it only appends the decoded pixels to a bounded queue (never awaits, never raises), so a client's
request is neither delayed nor failed by the shadow. When the queue is full the copy is dropped and
counted. One task (`run`) feeds the copies to the inference worker one at a time, and only while no
client image waits there, so a copy never sits in front of a client's image; a copy that waits too
long for an idle moment is dropped too (counted), not kept: copies are evidence, not work owed.

The share is a smooth credit (`share` percent of offered answers, evenly spread), not a random draw,
so a window's count of copies is what the share says. Each compared copy records whether the
challenger gave the champion's label, both forward-pass latencies, and — when feedback for that
request arrives — whether each version was right, so the accuracy of both is on the same requests.
Copies are not client requests: they never appear in the per-version request counts.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from arsl_tui.domain.judge import ShadowStats
from arsl_tui.serving.batching import InferenceWorker, LoadedModel, Overloaded

EVENTS_KEPT = 200_000
"""Window events remembered (each a few numbers): a 300 s window at several hundred requests a second."""
PENDING_FEEDBACK = 50_000
"""Compared copies remembered for their feedback; the oldest are forgotten first."""
MAX_IDLE_WAIT_S = 5.0
"""How long a copy waits for the worker to be free of client images before it is dropped."""
IDLE_CHECK_S = 0.005
"""How often a waiting copy looks at the worker's queue again (a few loop turns a batch, not hundreds)."""
COPIES_PER_PASS = 8
"""Copies sent to the worker together (one forward pass): fewer passes than one by one, and short enough
that a client image arriving meanwhile waits for at most one small batch."""

# Window event kinds.
_OFFERED, _DROPPED, _COMPARED, _ERROR, _FEEDBACK = range(5)


@dataclass(slots=True)
class _Copy:
    request_id: str
    pixels: np.ndarray
    champion_label: str
    champion_ms: float
    queued_at: float


class ShadowMirror:
    """The gateway's shadow: which version gets copies, the bounded queue, and the window's comparisons."""

    def __init__(self, *, capacity: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self._clock = clock
        self.version: str | None = None
        self.share = 0
        self._credit = 0
        self._queue: deque[_Copy] = deque()
        self._ready = asyncio.Event()
        self._events: deque[tuple[float, int, float, float, float]] = deque(maxlen=EVENTS_KEPT)
        """(at, kind, a, b, c): a compared copy is (agreed, champion_ms, challenger_ms), a feedback label
        (champion right, challenger right, 0); the other kinds carry zeros."""
        self._answers: OrderedDict[str, tuple[str, str]] = OrderedDict()
        """request id → (champion's label, challenger's label) of compared copies awaiting feedback."""

    # --- configuration (admin API) ----------------------------------------------------------------

    def configure(self, version: str | None, share: int) -> None:
        """Send `share` % of answered requests to `version`; None or 0 stops and forgets queued copies."""
        if not version or share <= 0:
            self.version, self.share = None, 0
            self._queue.clear()
            return
        if self.version != version:
            self._events.clear()
            self._answers.clear()
        self.version, self.share, self._credit = version, min(int(share), 100), 0

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "share": self.share, "queued": len(self._queue), "capacity": self.capacity}

    # --- the request path (never awaits) ---------------------------------------------------------

    def offer(self, request_id: str, answered_by: str, pixels: np.ndarray, label: str, champion_ms: float) -> None:
        """An answer was built by `answered_by`: queue a copy for the shadow version when the share says so."""
        if self.version is None or answered_by == self.version:
            return
        self._credit += self.share
        if self._credit < 100:
            return
        self._credit -= 100
        now = self._clock()
        self._events.append((now, _OFFERED, 0.0, 0.0, 0.0))
        if len(self._queue) >= self.capacity:
            self._events.append((now, _DROPPED, 0.0, 0.0, 0.0))
            return
        self._queue.append(_Copy(request_id, pixels, label, champion_ms, now))
        self._ready.set()

    def feedback(self, request_id: str, label: str) -> None:
        """The true label of a request: scored for both versions when the request was copied."""
        answers = self._answers.pop(request_id, None)
        if answers is None:
            return
        champion, challenger = answers
        self._events.append((self._clock(), _FEEDBACK, float(champion == label), float(challenger == label), 0.0))

    # --- the copy task ----------------------------------------------------------------------------

    async def run(self, worker: InferenceWorker, models: Callable[[str], LoadedModel | None]) -> None:
        """Feed queued copies to `worker` a few at a time, only when no client image waits; until cancelled."""
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            version = self.version
            model = models(version) if version is not None else None
            if model is None:
                self._queue.clear()  # stopped, or the version was unloaded: the copies are moot
                continue
            if not await self._idle(worker, self._queue[0]):
                self._queue.popleft()
                self._events.append((self._clock(), _DROPPED, 0.0, 0.0, 0.0))
                continue
            copies = [self._queue.popleft() for _ in range(min(COPIES_PER_PASS, len(self._queue)))]
            started = time.perf_counter()
            try:
                results = await asyncio.gather(*worker.submit_many(model, [copy.pixels for copy in copies]))
            except Overloaded:
                for _copy in copies:
                    self._events.append((self._clock(), _DROPPED, 0.0, 0.0, 0.0))
                continue
            except Exception:  # a failing challenger is what the shadow is there to see
                for _copy in copies:
                    self._events.append((self._clock(), _ERROR, 0.0, 0.0, 0.0))
                continue
            # Submit to answer, as the champion's side is measured (its queue wait and forward pass).
            challenger_ms = (time.perf_counter() - started) * 1000.0
            for copy, scores in zip(copies, results, strict=True):
                self._compared(copy, model.classes[scores[0][0]], challenger_ms)

    def _compared(self, copy: _Copy, label: str, challenger_ms: float) -> None:
        agreed = float(label == copy.champion_label)
        self._events.append((self._clock(), _COMPARED, agreed, copy.champion_ms, challenger_ms))
        self._answers[copy.request_id] = (copy.champion_label, label)
        if len(self._answers) > PENDING_FEEDBACK:
            self._answers.popitem(last=False)

    async def _idle(self, worker: InferenceWorker, copy: _Copy) -> bool:
        """Wait until no client image waits in `worker` (checked each loop turn); False past the copy's deadline."""
        while worker.depth > 0:
            if self._clock() - copy.queued_at > MAX_IDLE_WAIT_S:
                return False
            await asyncio.sleep(IDLE_CHECK_S)
        return True

    # --- the window -------------------------------------------------------------------------------

    def stats(self, window_s: float, max_samples: int = 5000) -> ShadowStats:
        cutoff = self._clock() - window_s
        counts = [0] * 5
        agreed = champion_correct = challenger_correct = 0
        champion_ms: list[float] = []
        challenger_ms: list[float] = []
        for at, kind, a, b, c in self._events:
            if at < cutoff:
                continue
            counts[kind] += 1
            if kind == _COMPARED:
                agreed += int(a)
                champion_ms.append(b)
                challenger_ms.append(c)
            elif kind == _FEEDBACK:
                champion_correct += int(a)
                challenger_correct += int(b)
        if max_samples <= 0:
            champion_ms, challenger_ms = [], []
        elif len(champion_ms) > max_samples:
            # A uniform subsample keeps the pairs together and the test's cost bounded.
            step = len(champion_ms) / max_samples
            picks = [int(index * step) for index in range(max_samples)]
            champion_ms = [champion_ms[index] for index in picks]
            challenger_ms = [challenger_ms[index] for index in picks]
        dropped = counts[_DROPPED]
        return ShadowStats(
            version=self.version or "",
            window_s=window_s,
            share=self.share,
            offered=counts[_OFFERED],
            sent=counts[_COMPARED] + counts[_ERROR],
            dropped=dropped,
            compared=counts[_COMPARED],
            agreed=agreed,
            errors=counts[_ERROR],
            champion_latency_ms=tuple(champion_ms),
            challenger_latency_ms=tuple(challenger_ms),
            feedback=counts[_FEEDBACK],
            champion_correct=champion_correct,
            challenger_correct=challenger_correct,
        )


__all__ = ["ShadowMirror"]
