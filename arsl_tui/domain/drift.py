"""Input drift: how far live inputs have moved from the model's reference profile, in pure arithmetic.

The reference profile is written by the trainer at export (`input_profile.json` in the package): per
image feature a histogram over the validation split's deciles, the top-1 confidence the same way, and
the predicted classes. The gateway bins live inputs with the reference's edges, per version and window
(`LiveProfile`). Per feature the population stability index compares the two:

    PSI = Σ (live_i − ref_i) · ln(live_i / ref_i)      shares per bin, each at least EPSILON

(0 for identical shares; the usual reading: < 0.1 stable, 0.1–0.25 a moderate shift, > 0.25 a shift
that matters). The drift score is the largest PSI over the image features: one feature that moved is
enough to make the model's answers suspect, and it names what moved. Confidence and predicted-class
PSI, and the share of answers under the low-confidence cutoff, are reported beside it: they move
with the model's behaviour, not only with the inputs, so they inform but do not set the score.

A window with fewer than `min_images` live images is judged "too few images": PSI over a handful of
images is noise (its expected value grows like bins / images even with no shift at all).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

FEATURES = ("intensity_mean", "contrast", "edge_density")
"""The image features of the profile, in display order (the trainer's `trainer/input_profile.py`)."""
PROFILE_FORMAT = "arsl-input-profile/1"
EPSILON = 1e-4
"""Floor of a bin's share in PSI, so an empty bin on one side gives a large but finite term."""
SPARK = "▁▂▃▄▅▆▇█"


class DriftError(ValueError):
    """A profile document that cannot be read; the message names where and what is wrong."""


class Verdict(StrEnum):
    STABLE = "stable"
    SHIFTING = "shifting"
    """Above half the threshold: worth a look, not an alarm."""
    DRIFTING = "drifting"
    TOO_FEW = "too few images"
    NO_REFERENCE = "no reference profile"


@dataclass(frozen=True)
class DriftThresholds:
    """The `[drift]` settings a report is judged by."""

    threshold: float = 0.25
    """Drift score (largest feature PSI) above which a window counts as drifting."""
    periods: int = 3
    """Consecutive drifting periods before the `arsl-input-drift` rule alarms."""
    window_s: int = 300
    """How much recent traffic each measurement covers."""
    low_confidence: float = 0.5
    """A top-1 confidence under this counts as a low-confidence answer."""
    min_images: int = 200
    """Live images a window needs before its score counts."""


@dataclass(frozen=True)
class Histogram:
    """Counts over bins: bin i holds edges[i-1] <= value < edges[i]; the outer bins are open."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.edges) + 1:
            raise DriftError(f"a histogram with {len(self.edges)} edges needs {len(self.edges) + 1} counts")

    @property
    def total(self) -> int:
        return sum(self.counts)

    @classmethod
    def of_values(cls, values: Sequence[float], edges: Sequence[float]) -> Histogram:
        counts = [0] * (len(edges) + 1)
        for value in values:
            counts[bisect.bisect_right(edges, value)] += 1
        return cls(tuple(edges), tuple(counts))

    @classmethod
    def from_json(cls, data: Any, where: str) -> Histogram:
        try:
            edges = tuple(float(edge) for edge in data["edges"])
            counts = tuple(int(count) for count in data["counts"])
        except (KeyError, TypeError, ValueError) as error:
            raise DriftError(f"{where}: expected {{'edges': [...], 'counts': [...]}} ({error})") from None
        if any(count < 0 for count in counts) or list(edges) != sorted(edges):
            raise DriftError(f"{where}: edges must rise and counts must not be negative")
        return cls(edges, counts)

    def to_json(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "counts": list(self.counts)}


def shares(counts: Sequence[int], epsilon: float = EPSILON) -> list[float]:
    """Each bin's share of the total, at least `epsilon` (all `1 / bins` when there are no counts)."""
    total = sum(counts)
    if total <= 0:
        return [1.0 / len(counts)] * len(counts) if counts else []
    return [max(count / total, epsilon) for count in counts]


def psi(reference: Sequence[int], live: Sequence[int], epsilon: float = EPSILON) -> float:
    """Population stability index of `live` against `reference` (counts over the same bins)."""
    if len(reference) != len(live):
        raise DriftError(f"PSI needs the same bins: {len(reference)} reference vs {len(live)} live")
    expected, actual = shares(reference, epsilon), shares(live, epsilon)
    return math.fsum((a - e) * math.log(a / e) for e, a in zip(expected, actual, strict=True))


def sparkline(counts: Sequence[int]) -> str:
    """One character per bin, height by share of the largest bin (`▁` for empty bins)."""
    top = max(counts, default=0)
    if top <= 0:
        return SPARK[0] * len(counts)
    return "".join(SPARK[min(len(SPARK) - 1, round(count / top * (len(SPARK) - 1)))] for count in counts)


@dataclass(frozen=True)
class ReferenceProfile:
    """The package's `input_profile.json`."""

    samples: int
    features: Mapping[str, Histogram]
    confidence: Histogram
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]

    @classmethod
    def from_json(cls, document: Any, where: str = "input_profile.json") -> ReferenceProfile:
        if not isinstance(document, dict) or document.get("format") != PROFILE_FORMAT:
            found = document.get("format") if isinstance(document, dict) else None
            raise DriftError(f"{where}: format is {found!r}, expected {PROFILE_FORMAT!r}")
        features = document.get("features")
        if not isinstance(features, dict) or any(name not in features for name in FEATURES):
            raise DriftError(f"{where}: features must hold {', '.join(FEATURES)}")
        predicted = document.get("predicted_class")
        if not isinstance(predicted, dict):
            raise DriftError(f"{where}: predicted_class is missing")
        try:
            classes = tuple(str(name) for name in predicted["classes"])
            class_counts = tuple(int(count) for count in predicted["counts"])
            samples = int(document["samples"])
        except (KeyError, TypeError, ValueError) as error:
            raise DriftError(f"{where}: malformed samples or predicted_class ({error})") from None
        if len(classes) != len(class_counts):
            raise DriftError(f"{where}: predicted_class has {len(classes)} classes and {len(class_counts)} counts")
        return cls(
            samples=samples,
            features={name: Histogram.from_json(features[name], f"{where}: {name}") for name in FEATURES},
            confidence=Histogram.from_json(document.get("confidence"), f"{where}: confidence"),
            classes=classes,
            class_counts=class_counts,
        )


@dataclass(frozen=True)
class LiveProfile:
    """One version's live inputs over a window, binned with its reference's edges."""

    version: str
    window_s: float
    images: int
    features: Mapping[str, Histogram]
    confidence: Histogram
    class_counts: tuple[int, ...]
    low_confidence: int
    """Answers whose top-1 confidence was under the cutoff the gateway was asked for."""

    @classmethod
    def from_json(cls, data: Any, where: str) -> LiveProfile:
        try:
            return cls(
                version=str(data["version"]),
                window_s=float(data["window_s"]),
                images=int(data["images"]),
                features={name: Histogram.from_json(data["features"][name], f"{where}: {name}") for name in FEATURES},
                confidence=Histogram.from_json(data["confidence"], f"{where}: confidence"),
                class_counts=tuple(int(count) for count in data["class_counts"]),
                low_confidence=int(data["low_confidence"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, DriftError):
                raise
            raise DriftError(f"{where}: malformed live profile ({type(error).__name__}: {error})") from None


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    reference: tuple[int, ...]
    live: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "psi": round(self.psi, 6),
            "reference": list(self.reference),
            "live": list(self.live),
            "reference_spark": sparkline(self.reference),
            "live_spark": sparkline(self.live),
        }


@dataclass(frozen=True)
class DriftReport:
    """One version's drift over one window."""

    version: str
    window_s: float
    images: int
    verdict: Verdict
    score: float | None
    """Largest feature PSI; None without a reference or with too few images."""
    features: tuple[FeatureDrift, ...] = ()
    confidence_psi: float | None = None
    class_psi: float | None = None
    low_confidence_share: float | None = None

    @property
    def counts(self) -> bool:
        """The window holds enough images against a reference for its score to be a measurement."""
        return self.score is not None

    @property
    def moved_most(self) -> str | None:
        return max(self.features, key=lambda item: item.psi).name if self.features else None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "window_s": self.window_s,
            "images": self.images,
            "verdict": self.verdict.value,
            "score": None if self.score is None else round(self.score, 6),
            "moved_most": self.moved_most,
            "features": {item.name: item.to_json() for item in self.features},
            "confidence_psi": None if self.confidence_psi is None else round(self.confidence_psi, 6),
            "class_psi": None if self.class_psi is None else round(self.class_psi, 6),
            "low_confidence_share": self.low_confidence_share,
        }


def judge(score: float | None, images: int, thresholds: DriftThresholds) -> Verdict:
    if score is None:
        return Verdict.TOO_FEW if images < thresholds.min_images else Verdict.NO_REFERENCE
    if score > thresholds.threshold:
        return Verdict.DRIFTING
    if score > thresholds.threshold / 2:
        return Verdict.SHIFTING
    return Verdict.STABLE


def compare(reference: ReferenceProfile | None, live: LiveProfile, thresholds: DriftThresholds) -> DriftReport:
    """The drift report of `live` against `reference` (None: the version's package has no profile)."""
    low_share = live.low_confidence / live.images if live.images else None
    if reference is None:
        return DriftReport(
            live.version, live.window_s, live.images, Verdict.NO_REFERENCE, None, low_confidence_share=low_share
        )
    features = tuple(
        FeatureDrift(
            name,
            psi(reference.features[name].counts, live.features[name].counts),
            reference.features[name].counts,
            live.features[name].counts,
        )
        for name in FEATURES
    )
    enough = live.images >= thresholds.min_images
    score = max(item.psi for item in features) if enough else None
    class_psi = (
        psi(reference.class_counts, live.class_counts)
        if len(reference.class_counts) == len(live.class_counts)
        else None
    )
    return DriftReport(
        version=live.version,
        window_s=live.window_s,
        images=live.images,
        verdict=judge(score, live.images, thresholds),
        score=score,
        features=features,
        confidence_psi=psi(reference.confidence.counts, live.confidence.counts) if enough else None,
        class_psi=class_psi if enough else None,
        low_confidence_share=low_share,
    )


__all__ = [
    "EPSILON",
    "FEATURES",
    "PROFILE_FORMAT",
    "DriftError",
    "DriftReport",
    "DriftThresholds",
    "FeatureDrift",
    "Histogram",
    "LiveProfile",
    "ReferenceProfile",
    "Verdict",
    "compare",
    "judge",
    "psi",
    "shares",
    "sparkline",
]
