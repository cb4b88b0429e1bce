"""The gateway's live input profile: per version, the features of recent inputs and the answers' confidence.

Each answered image adds one event to its version's ring: (time, intensity mean, contrast, edge
density, top-1 confidence, predicted class), measured with the trainer's own `image_features` on the
64×64 pixels the request handler has already decoded (O(pixels), no second decode). Every image is
measured, none sampled, but not one at a time: the pixels wait (with their time and answer) until
FEATURE_BATCH of them have come, or a report is asked for, and are measured together, which costs a
third of measuring each on its own (numpy's per-call cost dominates one 64×64 image). `report` bins a
window's events with the edges of each version's reference profile (`input_profile.json` in its
package, read when first asked for) and answers `GET /admin/drift`; the drift arithmetic itself
(PSI, score, verdict) is the domain's (`domain/drift.py`), done by whoever reads the report.

Only the images a client's answer came from are recorded (the predict handlers call `observe`), so
shadow copies sent to a challenger do not count as its live traffic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from arsl_tui.serving.rings import EventRing
from trainer.input_profile import BINS, FEATURES, bin_counts, image_features, read_profile

log = logging.getLogger("arsl.gateway")

DRIFT_EVENTS = 20_000
"""Images kept per version (25 bytes each: 0.5 MB when full). At high traffic the window is the newest
20,000 images, still a large sample for ten bins."""
DEFAULT_EDGES = tuple(round(index / BINS, 6) for index in range(1, BINS))
"""Bins for a version whose package has no reference profile: its live histograms are still shown."""
MAX_WINDOW_S = 7 * 86400
FEATURE_BATCH = 16
"""Images measured together (bench: 85 µs an image alone, 30 µs in eights and sixteens, 57 µs in 32s,
whose int16 temporaries leave the cache); at most this many images per version wait (64 KB)."""


class Answering(Protocol):
    """What `observe` needs of a loaded model: its version, its package folder and its classes."""

    @property
    def version(self) -> str: ...

    @property
    def model_dir(self) -> Path: ...

    @property
    def classes(self) -> tuple[str, ...]: ...


class _Pending:
    """Images of one version answered but not yet measured, with the rest of their events."""

    __slots__ = ("confidences", "pixels", "predicted", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.pixels: list[np.ndarray] = []
        self.confidences: list[float] = []
        self.predicted: list[int] = []

    def add(self, at: float, pixels: np.ndarray, confidence: float, predicted: int) -> None:
        self.times.append(at)
        self.pixels.append(pixels)
        self.confidences.append(confidence)
        self.predicted.append(predicted)


class LiveInputs:
    """Per-version rings of recent inputs' features and answers. Event-loop only, like the metrics."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, capacity: int = DRIFT_EVENTS) -> None:
        self._clock = clock
        self._capacity = capacity
        self.rings: dict[str, EventRing] = {}
        self._packages: dict[str, tuple[Path, int]] = {}
        self._references: dict[str, dict[str, Any] | None] = {}
        self._model_dirs: dict[str, object] = {}
        """Per version, the model_dir object `_packages` was made from."""
        self._pending: dict[str, _Pending] = {}
        """Per version, images answered but not measured yet (fewer than FEATURE_BATCH)."""

    def observe(
        self, model: Answering, pixels: Sequence[np.ndarray], scores: Sequence[Sequence[tuple[int, float]]]
    ) -> None:
        """Record the images of one request and the answers given for them."""
        if not pixels:
            return
        version = model.version
        if self._model_dirs.get(version) is not model.model_dir:  # first seen, or reloaded: Path() once, not per call
            self._packages[version] = (Path(model.model_dir), len(model.classes))
            self._model_dirs[version] = model.model_dir
        pending = self._pending.setdefault(version, _Pending())
        now = self._clock()
        for image, answer in zip(pixels, scores, strict=True):
            predicted, confidence = answer[0]
            pending.add(now, image, confidence, predicted)
        if len(pending.pixels) >= FEATURE_BATCH:
            self._measure(version)

    def _measure(self, version: str) -> None:
        """Measure the version's waiting images and add their events to its ring, oldest first."""
        pending = self._pending.pop(version, None)
        if pending is None or not pending.pixels:
            return
        ring = self.rings.get(version)
        if ring is None:
            ring = self.rings[version] = EventRing(self._capacity, ("f8", "f4", "f4", "f4", "f4", "u1"))
        features = image_features(np.stack(pending.pixels))
        ring.extend(pending.times, *(features[name] for name in FEATURES), pending.confidences, pending.predicted)

    def _measure_all(self) -> None:
        for version in list(self._pending):
            try:
                self._measure(version)
            except Exception:  # a report shows what could be measured; a drift measurement never fails a call
                log.exception("measuring the live inputs of %s failed", version)

    def forget_other_than(self, keep: Iterable[str]) -> None:
        """Drop the rings of versions not in `keep` (the gateway keeps a bounded set of retired versions)."""
        kept = set(keep)
        for version in [version for version in self.rings if version not in kept]:
            del self.rings[version]
        for version in [version for version in self._packages if version not in kept]:
            self._pending.pop(version, None)
            self._packages.pop(version, None)
            self._model_dirs.pop(version, None)
            self._references.pop(version, None)

    def reference(self, version: str) -> dict[str, Any] | None:
        """The version's reference profile document (read once), None when its package has none."""
        if version not in self._references:
            package = self._packages.get(version)
            self._references[version] = read_profile(package[0]) if package else None
        return self._references[version]

    def report(self, window_s: float, low_confidence: float) -> dict[str, Any]:
        """Every observed version's reference and its live profile over the last `window_s` seconds."""
        self._measure_all()
        since = self._clock() - window_s
        versions: dict[str, Any] = {}
        for version, ring in self.rings.items():
            reference = self.reference(version)
            _at, mean, contrast, edges, confidence, predicted = ring.since(since)
            columns = dict(zip(FEATURES, (mean, contrast, edges), strict=True))

            def binned(values: np.ndarray, where: dict[str, Any] | None) -> dict[str, Any]:
                bins = list(where["edges"]) if where is not None else list(DEFAULT_EDGES)
                return {"edges": bins, "counts": bin_counts(values, bins)}

            classes = self._packages[version][1]
            versions[version] = {
                "reference": reference,
                "live": {
                    "version": version,
                    "window_s": window_s,
                    "images": int(mean.size),
                    "features": {
                        name: binned(columns[name], reference["features"][name] if reference else None)
                        for name in FEATURES
                    },
                    "confidence": binned(confidence, reference["confidence"] if reference else None),
                    "class_counts": [int(count) for count in np.bincount(predicted, minlength=classes)[:classes]],
                    "low_confidence": int(np.count_nonzero(confidence < low_confidence)),
                },
            }
        return {"window_s": window_s, "low_confidence": low_confidence, "versions": versions}


def parse_report_query(window: str | None, cutoff: str | None) -> tuple[float, float]:
    """`?window_s=300&low_confidence=0.5` → numbers; ValueError with the message a 422 shows."""
    try:
        window_s = float(window) if window is not None else 300.0
        low_confidence = float(cutoff) if cutoff is not None else 0.5
    except ValueError:
        raise ValueError("window_s and low_confidence must be numbers") from None
    if not 0 < window_s <= MAX_WINDOW_S or not 0.0 <= low_confidence <= 1.0:
        raise ValueError(f"window_s must be in (0, {MAX_WINDOW_S}] and low_confidence in [0, 1]")
    return window_s, low_confidence


def observe_safely(inputs: LiveInputs, model: Answering, pixels: Sequence[np.ndarray], scores: Sequence[Any]) -> None:
    """`inputs.observe`, logged instead of raised: a drift measurement never fails a client's request."""
    try:
        inputs.observe(model, pixels, scores)
    except Exception:
        log.exception("recording the live input profile of %s failed", model.version)


__all__ = ["DEFAULT_EDGES", "DRIFT_EVENTS", "Answering", "LiveInputs", "observe_safely", "parse_report_query"]
