"""The gateway's metrics: Prometheus text at `/metrics`, and per-version windows for the canary judge.

Everything is labelled by the model version that answered (`version="none"` for requests refused
before a version was chosen: bad key, rate limit, bad body). Families:

    arsl_gateway_requests_total{endpoint,version,code}        every answered request
    arsl_gateway_errors_total{endpoint,version,reason}        every error answer, by cause
    arsl_gateway_request_duration_seconds{endpoint,version}   latency histogram (arrival → answer)
    arsl_gateway_batch_size{version}                          images per forward pass (histogram)
    arsl_gateway_inference_seconds{version}                   forward-pass time per batch (histogram)
    arsl_gateway_images_total{version}                        images classified
    arsl_gateway_feedback_total{version} / _correct_total     labels received for answered requests
    arsl_gateway_online_accuracy{version}                     correct / feedback
    arsl_gateway_route_weight{version}                        current traffic percentage
    arsl_gateway_queue_depth                                  images waiting for the inference thread
    arsl_gateway_answer_confidence{version}                   top-1 confidence of each answer (histogram)

Per version, the live input profile (`drift.LiveInputs`) keeps recent inputs' features for `/admin/drift`.

A small exposition writer is used instead of prometheus_client: the families are few and fixed.
Not thread-safe: only the event loop updates them (the inference thread hands its figures over).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from arsl_tui.domain.serving import VersionStats
from arsl_tui.serving.drift import Answering, LiveInputs, observe_safely
from arsl_tui.serving.rings import EventRing

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
INFERENCE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
WINDOW_EVENTS = 200_000
"""Request events kept per version for windowed stats (minutes of traffic at a few hundred per second);
2.6 MB per version when full (see EventRing)."""
NO_VERSION = "none"

Labels = tuple[str, ...]
Scores = Sequence[tuple[int, float]]
"""Top-k (class index, probability) of one answer, most probable first (`batching.Scores`)."""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Labels, extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Family:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, help_text, labelnames)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, labels: Labels) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.labelnames, labels)} {_number(value)}"
            for labels, value in sorted(self.values.items())
        ]


class Gauge(Counter):
    kind = "gauge"

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = value

    def remove_other_than(self, keep: Iterable[Labels]) -> None:
        kept = set(keep)
        for labels in [labels for labels in self.values if labels not in kept]:
            del self.values[labels]


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(buckets)
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = {}

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.buckets) + 1)
            self.sums[labels] = 0.0
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] += value

    def count(self, labels: Labels) -> int:
        return sum(self.counts.get(labels, ()))

    def render(self) -> list[str]:
        lines = []
        for labels in sorted(self.counts):
            cumulative = 0
            for bound, count in zip((*self.buckets, math.inf), self.counts[labels], strict=True):
                cumulative += count
                extra = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, labels, extra)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, labels)} {_number(self.sums[labels])}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, labels)} {cumulative}")
        return lines


# Request outcomes in a version's window.
OK, SERVER_ERROR, CLIENT_ERROR = 0, 1, 2
RETIRED_WINDOWS_KEPT = 4
"""Windows kept for versions no longer served (the newest first), so a long-lived gateway that served
many canaries keeps a bounded number of them."""


class VersionWindow:
    """Recent requests and feedback of one version, for stats over the last N seconds."""

    def __init__(self, capacity: int = WINDOW_EVENTS) -> None:
        self.requests = EventRing(capacity, ("f8", "f4", "u1"))
        """(monotonic time, latency ms, outcome) of each predict request routed to this version."""
        self.feedback = EventRing(capacity, ("f8", "u1"))
        """(monotonic time, correct) of each feedback label."""

    def add_request(self, at: float, latency_ms: float, outcome: int) -> None:
        self.requests.append(at, latency_ms, outcome)

    def add_feedback(self, at: float, correct: bool) -> None:
        self.feedback.append(at, 1.0 if correct else 0.0)

    @property
    def last_event(self) -> float:
        return max(self.requests.newest or 0.0, self.feedback.newest or 0.0)

    def stats(
        self, version: str, window_s: float, now: float, max_samples: int, rng: np.random.Generator
    ) -> VersionStats:
        since = now - window_s
        _at, latency, outcome = self.requests.since(since)
        ok = latency[outcome == OK]
        total = int(ok.size)
        if total > max_samples:
            ok = ok[np.sort(rng.choice(total, size=max_samples, replace=False))]
        _when, correct = self.feedback.since(since)
        return VersionStats(
            version=version,
            window_s=window_s,
            requests=int(outcome.size),
            errors=int(np.count_nonzero(outcome == SERVER_ERROR)),
            client_errors=int(np.count_nonzero(outcome == CLIENT_ERROR)),
            latency_ms=tuple(round(float(value), 3) for value in ok),
            latency_samples_total=total,
            feedback=int(correct.size),
            correct=int(np.count_nonzero(correct)),
        )


class GatewayMetrics:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rng = np.random.default_rng(0)
        self.requests = Counter(
            "arsl_gateway_requests_total",
            "Requests answered, by endpoint, model version and HTTP status.",
            ("endpoint", "version", "code"),
        )
        self.errors = Counter(
            "arsl_gateway_errors_total",
            "Error answers, by endpoint, model version and cause.",
            ("endpoint", "version", "reason"),
        )
        self.latency = Histogram(
            "arsl_gateway_request_duration_seconds",
            "Time from a request's arrival to its answer.",
            ("endpoint", "version"),
            LATENCY_BUCKETS_S,
        )
        self.batch_size = Histogram("arsl_gateway_batch_size", "Images per forward pass.", ("version",), BATCH_BUCKETS)
        self.inference = Histogram(
            "arsl_gateway_inference_seconds", "Forward-pass time per batch.", ("version",), INFERENCE_BUCKETS_S
        )
        self.images = Counter("arsl_gateway_images_total", "Images classified.", ("version",))
        self.feedback = Counter(
            "arsl_gateway_feedback_total", "True labels received for answered requests.", ("version",)
        )
        self.feedback_correct = Counter(
            "arsl_gateway_feedback_correct_total", "Feedback labels that matched the prediction.", ("version",)
        )
        self.online_accuracy = Gauge(
            "arsl_gateway_online_accuracy", "Correct predictions among those with feedback.", ("version",)
        )
        self.weights = Gauge("arsl_gateway_route_weight", "Percentage of traffic routed to each version.", ("version",))
        self.queue_depth = Gauge("arsl_gateway_queue_depth", "Images waiting for the inference thread.", ())
        self.confidence = Histogram(
            "arsl_gateway_answer_confidence", "Top-1 confidence of each answer.", ("version",), CONFIDENCE_BUCKETS
        )
        self.drift = LiveInputs(clock)
        self.families: tuple[_Family, ...] = (
            self.requests,
            self.errors,
            self.latency,
            self.batch_size,
            self.inference,
            self.images,
            self.feedback,
            self.feedback_correct,
            self.online_accuracy,
            self.weights,
            self.queue_depth,
            self.confidence,
        )
        self.windows: dict[str, VersionWindow] = {}

    def _window(self, version: str) -> VersionWindow:
        window = self.windows.get(version)
        if window is None:
            window = self.windows[version] = VersionWindow()
        return window

    def record_request(
        self, endpoint: str, version: str, status: int, seconds: float, reason: str | None = None
    ) -> None:
        self.requests.inc((endpoint, version, str(status)))
        self.latency.observe((endpoint, version), seconds)
        if reason is not None:
            self.errors.inc((endpoint, version, reason))
        if version != NO_VERSION and endpoint in ("predict", "predict_batch"):
            outcome = OK if status < 400 else SERVER_ERROR if status >= 500 else CLIENT_ERROR
            self._window(version).add_request(self._clock(), seconds * 1000.0, outcome)

    def record_batch(self, version: str, size: int, seconds: float) -> None:
        self.batch_size.observe((version,), size)
        self.inference.observe((version,), seconds)
        self.images.inc((version,), size)

    def record_inputs(self, model: Answering, pixels: Sequence[np.ndarray], scores: Sequence[Scores]) -> None:
        """The images a client's answers came from, and those answers (the live input profile)."""
        for answer in scores:
            self.confidence.observe((model.version,), answer[0][1])
        observe_safely(self.drift, model, pixels, scores)

    def record_feedback(self, version: str, correct: bool) -> None:
        self.feedback.inc((version,))
        if correct:
            self.feedback_correct.inc((version,))
        total = self.feedback.get((version,))
        self.online_accuracy.set((version,), self.feedback_correct.get((version,)) / total)
        self._window(version).add_feedback(self._clock(), correct)

    def set_weights(self, weights: dict[str, int]) -> None:
        for version, weight in weights.items():
            self.weights.set((version,), weight)
        self.weights.remove_other_than((version,) for version in weights)
        retired = sorted(
            (version for version in self.windows if version not in weights),
            key=lambda version: self.windows[version].last_event,
            reverse=True,
        )
        for version in retired[RETIRED_WINDOWS_KEPT:]:
            del self.windows[version]
        self.drift.forget_other_than([*weights, *self.windows])

    def stats(self, versions: Iterable[str], window_s: float, max_samples: int) -> dict[str, VersionStats]:
        now = self._clock()
        return {
            version: self._window(version).stats(version, window_s, now, max_samples, self._rng) for version in versions
        }

    def render(self) -> str:
        lines: list[str] = []
        for family in self.families:
            lines.extend(family.header())
            lines.extend(family.render())
        return "\n".join(lines) + "\n"


__all__ = ["NO_VERSION", "Counter", "EventRing", "GatewayMetrics", "Gauge", "Histogram", "VersionWindow"]
