"""The canary judge: one observation window, canary against the stable version on the same window.

Two kinds of evidence, as Kayenta-style canary judges use them:

- **Absolute thresholds** (Flagger): the canary's error rate, p95 latency and online accuracy
  against the `[canary]` limits, whatever the baseline does.
- **Comparison with the baseline** (Kayenta): a Mann-Whitney U test (normal approximation, tie
  correction, continuity correction) of the canary's samples against the stable version's on the
  same window, two-sided at the configured confidence. A metric is classified **High** or **Low**
  only when the difference is significant *and* larger than an allowed effect size (so a tiny
  but significant drift at high traffic does not count), **Pass** otherwise, **NoData** when
  either side has too few samples to compare.

Error indicators and feedback correctness are 0/1 samples: their U statistic is computed from the
counts directly (two tie groups), which equals the rank computation on the expanded samples.

Each metric fails when its threshold is broken or it moved in its bad direction. The score is the
weighted share of metrics with data that did not fail (0–100); a failed *critical* metric forces
it to 0. Outcome: too few canary requests → **inconclusive** (the controller holds, never
promotes); score ≥ `pass_score` → **pass**; ≥ `marginal_score` → **marginal** (hold);
below, or a critical failure → **fail** (automatic rollback).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from arsl_tui.domain.serving import VersionStats


class Classification(StrEnum):
    PASS = "Pass"  # noqa: S105 (a verdict, not a password)
    HIGH = "High"
    LOW = "Low"
    NODATA = "NoData"


class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    MARGINAL = "marginal"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class MannWhitney:
    """U of the canary sample, its z score and the two-sided p-value (normal approximation)."""

    u: float
    z: float
    p_value: float
    n_canary: int
    n_baseline: int


def _normal_approximation(u: float, n1: int, n2: int, tie_term: float) -> MannWhitney:
    """z and p for U with tie-corrected variance; `tie_term` = Σ(t³ − t) over tie groups."""
    total = n1 + n2
    mean = n1 * n2 / 2.0
    variance = n1 * n2 / 12.0 * ((total + 1) - tie_term / (total * (total - 1)))
    if variance <= 0:
        return MannWhitney(u=u, z=0.0, p_value=1.0, n_canary=n1, n_baseline=n2)
    delta = u - mean
    corrected = max(abs(delta) - 0.5, 0.0)  # continuity correction toward the mean
    z = math.copysign(corrected, delta) / math.sqrt(variance)
    return MannWhitney(u=u, z=z, p_value=min(1.0, math.erfc(abs(z) / math.sqrt(2.0))), n_canary=n1, n_baseline=n2)


def mann_whitney_u(canary: Sequence[float], baseline: Sequence[float]) -> MannWhitney:
    """The U test of `canary` against `baseline`; z > 0 means canary values tend to be larger."""
    n1, n2 = len(canary), len(baseline)
    if n1 == 0 or n2 == 0:
        raise ValueError("the Mann-Whitney test needs at least one value on each side")
    labelled = sorted([(float(value), 0) for value in canary] + [(float(value), 1) for value in baseline])
    rank_sum = 0.0
    tie_term = 0.0
    index = 0
    while index < len(labelled):
        end = index
        while end + 1 < len(labelled) and labelled[end + 1][0] == labelled[index][0]:
            end += 1
        group = end - index + 1
        average_rank = (index + 1 + end + 1) / 2.0
        rank_sum += average_rank * sum(1 for _value, side in labelled[index : end + 1] if side == 0)
        tie_term += group**3 - group
        index = end + 1
    u = rank_sum - n1 * (n1 + 1) / 2.0
    return _normal_approximation(u, n1, n2, tie_term)


def mann_whitney_binary(canary_ones: int, canary_n: int, baseline_ones: int, baseline_n: int) -> MannWhitney:
    """The U test of two 0/1 samples given as counts of ones among n."""
    if canary_n <= 0 or baseline_n <= 0:
        raise ValueError("the Mann-Whitney test needs at least one value on each side")
    if not (0 <= canary_ones <= canary_n and 0 <= baseline_ones <= baseline_n):
        raise ValueError("counts of ones must lie between 0 and the sample size")
    zeros = (canary_n - canary_ones) + (baseline_n - baseline_ones)
    ones = canary_ones + baseline_ones
    zero_rank = (zeros + 1) / 2.0
    one_rank = zeros + (ones + 1) / 2.0
    rank_sum = canary_ones * one_rank + (canary_n - canary_ones) * zero_rank
    u = rank_sum - canary_n * (canary_n + 1) / 2.0
    tie_term = float(zeros**3 - zeros + ones**3 - ones)
    return _normal_approximation(u, canary_n, baseline_n, tie_term)


@dataclass(frozen=True)
class JudgeConfig:
    """Limits and statistics settings (from `[canary]`)."""

    min_samples: int = 100
    """Canary requests a window needs before it is judged at all (fewer → inconclusive)."""
    max_error_rate: float = 0.02
    max_p95_latency_ms: float = 250.0
    min_online_accuracy: float = 0.9
    min_feedback: int = 20
    """Feedback labels a version needs in the window for its online accuracy to count."""
    require_feedback: bool = False
    """Hold (inconclusive) a window whose canary has fewer labels than that, rather than judge it without the
    critical online accuracy (Kayenta's `mustHaveData`)."""
    confidence: float = 0.98
    max_error_increase: float = 1.0
    """Relative: High when the canary's error rate exceeds the baseline's × (1 + this), significantly."""
    max_latency_increase: float = 0.5
    """Relative: High when the canary's median latency exceeds the baseline's × (1 + this), significantly."""
    min_latency_increase_ms: float = 5.0
    """…and by at least this many milliseconds (differences of a few ms are noise on a busy box)."""
    max_accuracy_drop: float = 0.02
    """Absolute: Low when the canary's online accuracy is this much below the baseline's, significantly."""
    pass_score: float = 95.0
    marginal_score: float = 75.0

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence {self.confidence} must be in [0.5, 1)")
        if not 0 <= self.marginal_score <= self.pass_score <= 100:
            raise ValueError(
                f"scores must satisfy 0 <= marginal ({self.marginal_score}) <= pass ({self.pass_score}) <= 100"
            )
        if self.min_samples < 1 or self.min_feedback < 1:
            raise ValueError("min_samples and min_feedback must be at least 1")

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence


@dataclass(frozen=True)
class MetricResult:
    name: str
    classification: Classification
    failed: bool
    critical: bool
    canary: float | None
    baseline: float | None
    threshold: float | None
    reason: str
    p_value: float | None = None
    canary_n: int = 0
    baseline_n: int = 0
    weight: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "classification": self.classification.value,
            "failed": self.failed,
            "critical": self.critical,
            "canary": self.canary,
            "baseline": self.baseline,
            "threshold": self.threshold,
            "reason": self.reason,
            "p_value": self.p_value,
            "canary_n": self.canary_n,
            "baseline_n": self.baseline_n,
            "weight": self.weight,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricResult:
        def number(name: str) -> float | None:
            value = data.get(name)
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

        return cls(
            name=str(data["name"]),
            classification=Classification(data["classification"]),
            failed=bool(data["failed"]),
            critical=bool(data["critical"]),
            canary=number("canary"),
            baseline=number("baseline"),
            threshold=number("threshold"),
            reason=str(data.get("reason", "")),
            p_value=number("p_value"),
            canary_n=int(data.get("canary_n", 0)),
            baseline_n=int(data.get("baseline_n", 0)),
            weight=float(data.get("weight", 1.0)),
        )


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    score: float | None
    metrics: tuple[MetricResult, ...]
    reason: str
    canary_requests: int
    baseline_requests: int

    @property
    def failed_metrics(self) -> tuple[MetricResult, ...]:
        return tuple(metric for metric in self.metrics if metric.failed)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "score": self.score,
            "reason": self.reason,
            "canary_requests": self.canary_requests,
            "baseline_requests": self.baseline_requests,
            "metrics": [metric.to_json() for metric in self.metrics],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Judgement:
        score = data.get("score")
        return cls(
            outcome=Outcome(data["outcome"]),
            score=float(score) if score is not None else None,
            metrics=tuple(MetricResult.from_json(item) for item in data.get("metrics", ())),
            reason=str(data.get("reason", "")),
            canary_requests=int(data.get("canary_requests", 0)),
            baseline_requests=int(data.get("baseline_requests", 0)),
        )


def _percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


def _error_rate(canary: VersionStats, baseline: VersionStats | None, config: JudgeConfig) -> MetricResult:
    name, threshold = "error_rate", config.max_error_rate
    if canary.requests == 0:
        return MetricResult(name, Classification.NODATA, False, True, None, None, threshold, "no canary requests")
    rate = canary.error_rate
    base_rate = baseline.error_rate if baseline is not None and baseline.requests else None
    common = {"canary_n": canary.requests, "baseline_n": baseline.requests if baseline else 0}
    if rate > threshold:
        return MetricResult(
            name,
            Classification.HIGH,
            True,
            True,
            rate,
            base_rate,
            threshold,
            f"error rate {_percent(rate)} is over the limit {_percent(threshold)}",
            **common,
        )
    if baseline is None or baseline.requests < config.min_samples:
        return MetricResult(
            name,
            Classification.PASS,
            False,
            True,
            rate,
            base_rate,
            threshold,
            f"error rate {_percent(rate)} within {_percent(threshold)} (too little baseline traffic to compare)",
            **common,
        )
    test = mann_whitney_binary(canary.errors, canary.requests, baseline.errors, baseline.requests)
    assert base_rate is not None
    significant = test.p_value < config.alpha
    if significant and test.z > 0 and rate > base_rate * (1.0 + config.max_error_increase):
        return MetricResult(
            name,
            Classification.HIGH,
            True,
            True,
            rate,
            base_rate,
            threshold,
            f"error rate {_percent(rate)} vs {_percent(base_rate)} on the stable version (p = {test.p_value:.2g})",
            p_value=test.p_value,
            **common,
        )
    if significant and test.z < 0:
        return MetricResult(
            name,
            Classification.LOW,
            False,
            True,
            rate,
            base_rate,
            threshold,
            f"error rate {_percent(rate)}, lower than the stable version's {_percent(base_rate)}",
            p_value=test.p_value,
            **common,
        )
    return MetricResult(
        name,
        Classification.PASS,
        False,
        True,
        rate,
        base_rate,
        threshold,
        f"error rate {_percent(rate)} vs {_percent(base_rate)}",
        p_value=test.p_value,
        **common,
    )


def _latency(canary: VersionStats, baseline: VersionStats | None, config: JudgeConfig) -> MetricResult:
    name = "latency"
    samples, base = list(canary.latency_ms), list(baseline.latency_ms) if baseline is not None else []
    if not samples:
        return MetricResult(name, Classification.NODATA, False, False, None, None, None, "no latency samples")
    median = _median(samples)
    if len(samples) < min(config.min_samples, 20) or len(base) < min(config.min_samples, 20):
        return MetricResult(
            name,
            Classification.NODATA,
            False,
            False,
            median,
            _median(base) if base else None,
            None,
            "too few latency samples to compare with the stable version",
            canary_n=len(samples),
            baseline_n=len(base),
        )
    base_median = _median(base)
    test = mann_whitney_u(samples, base)
    significant = test.p_value < config.alpha
    shown = f"median {median:.1f} ms vs {base_median:.1f} ms"
    if (
        significant
        and test.z > 0
        and median > base_median * (1.0 + config.max_latency_increase)
        and median - base_median > config.min_latency_increase_ms
    ):
        classification, failed, reason = (
            Classification.HIGH,
            True,
            f"slower than the stable version: {shown} (p = {test.p_value:.2g})",
        )
    elif significant and test.z < 0 and median < base_median:
        classification, failed, reason = Classification.LOW, False, f"faster than the stable version: {shown}"
    else:
        classification, failed, reason = Classification.PASS, False, shown
    return MetricResult(
        name,
        classification,
        failed,
        False,
        median,
        base_median,
        None,
        reason,
        p_value=test.p_value,
        canary_n=len(samples),
        baseline_n=len(base),
    )


def _p95(canary: VersionStats, baseline: VersionStats | None, config: JudgeConfig) -> MetricResult:
    name, threshold = "p95_latency", config.max_p95_latency_ms
    value = canary.percentile_ms(95)
    base_value = baseline.percentile_ms(95) if baseline is not None else None
    if value is None:
        return MetricResult(
            name, Classification.NODATA, False, False, None, base_value, threshold, "no latency samples"
        )
    common = {"canary_n": len(canary.latency_ms), "baseline_n": len(baseline.latency_ms) if baseline else 0}
    if value > threshold:
        return MetricResult(
            name,
            Classification.HIGH,
            True,
            False,
            value,
            base_value,
            threshold,
            f"p95 {value:.1f} ms is over the limit {threshold:.0f} ms",
            **common,
        )
    return MetricResult(
        name,
        Classification.PASS,
        False,
        False,
        value,
        base_value,
        threshold,
        f"p95 {value:.1f} ms within {threshold:.0f} ms",
        **common,
    )


def _accuracy(canary: VersionStats, baseline: VersionStats | None, config: JudgeConfig) -> MetricResult:
    name, threshold = "online_accuracy", config.min_online_accuracy
    base_ok = baseline is not None and baseline.feedback >= config.min_feedback
    base_accuracy = baseline.online_accuracy if baseline is not None else None
    common = {"canary_n": canary.feedback, "baseline_n": baseline.feedback if baseline else 0}
    if canary.feedback < config.min_feedback:
        return MetricResult(
            name,
            Classification.NODATA,
            False,
            True,
            canary.online_accuracy,
            base_accuracy,
            threshold,
            f"{canary.feedback} feedback labels, fewer than {config.min_feedback}",
            **common,
        )
    accuracy = canary.correct / canary.feedback
    if accuracy < threshold:
        return MetricResult(
            name,
            Classification.LOW,
            True,
            True,
            accuracy,
            base_accuracy,
            threshold,
            f"online accuracy {_percent(accuracy)} is under the limit {_percent(threshold)}",
            **common,
        )
    if not base_ok or baseline is None:
        return MetricResult(
            name,
            Classification.PASS,
            False,
            True,
            accuracy,
            base_accuracy,
            threshold,
            f"online accuracy {_percent(accuracy)} (too little baseline feedback to compare)",
            **common,
        )
    base = baseline.correct / baseline.feedback
    test = mann_whitney_binary(canary.correct, canary.feedback, baseline.correct, baseline.feedback)
    significant = test.p_value < config.alpha
    if significant and test.z < 0 and accuracy < base - config.max_accuracy_drop:
        return MetricResult(
            name,
            Classification.LOW,
            True,
            True,
            accuracy,
            base,
            threshold,
            f"online accuracy {_percent(accuracy)} vs {_percent(base)} on the stable version (p = {test.p_value:.2g})",
            p_value=test.p_value,
            **common,
        )
    if significant and test.z > 0:
        return MetricResult(
            name,
            Classification.HIGH,
            False,
            True,
            accuracy,
            base,
            threshold,
            f"online accuracy {_percent(accuracy)}, better than {_percent(base)}",
            p_value=test.p_value,
            **common,
        )
    return MetricResult(
        name,
        Classification.PASS,
        False,
        True,
        accuracy,
        base,
        threshold,
        f"online accuracy {_percent(accuracy)} vs {_percent(base)}",
        p_value=test.p_value,
        **common,
    )


def judge(canary: VersionStats, baseline: VersionStats | None, config: JudgeConfig) -> Judgement:
    """The verdict on one window. `baseline` is the stable version on the same window (None if it has none)."""
    accuracy = _accuracy(canary, baseline, config)
    metrics = (
        _error_rate(canary, baseline, config),
        _latency(canary, baseline, config),
        _p95(canary, baseline, config),
        accuracy,
    )
    baseline_requests = baseline.requests if baseline is not None else 0
    counted = [metric for metric in metrics if metric.classification is not Classification.NODATA]
    weight = sum(metric.weight for metric in counted)
    score = 100.0 * sum(metric.weight for metric in counted if not metric.failed) / weight if weight else None
    failed = [metric for metric in metrics if metric.failed]
    critical = [metric for metric in failed if metric.critical]
    if critical:
        score = 0.0
    if canary.requests < config.min_samples:
        reason = f"{canary.requests} canary requests in the window, fewer than {config.min_samples}: holding"
        return Judgement(Outcome.INCONCLUSIVE, score, metrics, reason, canary.requests, baseline_requests)
    if score is None:
        return Judgement(
            Outcome.INCONCLUSIVE, None, metrics, "no metric had data: holding", canary.requests, baseline_requests
        )
    if config.require_feedback and not critical and accuracy.classification is Classification.NODATA:
        reason = f"online accuracy not measured ({accuracy.reason}) and feedback is required: holding"
        return Judgement(Outcome.INCONCLUSIVE, score, metrics, reason, canary.requests, baseline_requests)
    problems = "; ".join(metric.reason for metric in failed)
    if critical or score < config.marginal_score:
        kind = "critical metric failed" if critical else f"score {score:.0f} below {config.marginal_score:.0f}"
        return Judgement(Outcome.FAIL, score, metrics, f"{kind}: {problems}", canary.requests, baseline_requests)
    if score < config.pass_score:
        return Judgement(
            Outcome.MARGINAL,
            score,
            metrics,
            f"marginal score {score:.0f} (pass needs {config.pass_score:.0f}): {problems}; holding",
            canary.requests,
            baseline_requests,
        )
    unjudged = [metric for metric in metrics if metric.classification is Classification.NODATA]
    passed = (
        "every metric passed"
        if not unjudged
        else (f"every metric with data passed; not judged: {'; '.join(f'{m.name} ({m.reason})' for m in unjudged)}")
    )
    return Judgement(Outcome.PASS, score, metrics, f"score {score:.0f}: {passed}", canary.requests, baseline_requests)


# --- the shadow verdict -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShadowStats:
    """One shadow window: copies of answered requests sent to the challenger, compared with the champion.

    Every number is about the same requests on both sides: `agreed` counts copies on which the
    challenger gave the champion's label, the latency samples are each version's forward pass on
    the copied images, and the feedback counts are labels that arrived for copied requests.
    """

    version: str
    window_s: float
    share: int = 0
    offered: int = 0
    """Answered requests the share selected for copying."""
    sent: int = 0
    dropped: int = 0
    """Copies not sent because the queue was full or the gateway busy (counted, never waited for)."""
    compared: int = 0
    agreed: int = 0
    errors: int = 0
    champion_latency_ms: tuple[float, ...] = ()
    challenger_latency_ms: tuple[float, ...] = ()
    feedback: int = 0
    champion_correct: int = 0
    challenger_correct: int = 0

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def error_rate(self) -> float | None:
        answered = self.compared + self.errors
        return self.errors / answered if answered else None

    def accuracy(self, side: str) -> float | None:
        correct = self.champion_correct if side == "champion" else self.challenger_correct
        return correct / self.feedback if self.feedback else None

    def to_json(self, *, samples: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version,
            "window_s": self.window_s,
            "share": self.share,
            "offered": self.offered,
            "sent": self.sent,
            "dropped": self.dropped,
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement": self.agreement,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "champion_p50_ms": _percentile(self.champion_latency_ms, 50),
            "challenger_p50_ms": _percentile(self.challenger_latency_ms, 50),
            "champion_p95_ms": _percentile(self.champion_latency_ms, 95),
            "challenger_p95_ms": _percentile(self.challenger_latency_ms, 95),
            "feedback": self.feedback,
            "champion_correct": self.champion_correct,
            "challenger_correct": self.challenger_correct,
        }
        if samples:
            data["champion_latency_ms"] = list(self.champion_latency_ms)
            data["challenger_latency_ms"] = list(self.challenger_latency_ms)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShadowStats:
        def count(name: str) -> int:
            value = data.get(name, 0)
            return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

        def samples(name: str) -> tuple[float, ...]:
            values = data.get(name) or ()
            return tuple(float(value) for value in values if isinstance(value, int | float))

        return cls(
            version=str(data.get("version") or ""),
            window_s=float(data.get("window_s") or 0.0),
            share=count("share"),
            offered=count("offered"),
            sent=count("sent"),
            dropped=count("dropped"),
            compared=count("compared"),
            agreed=count("agreed"),
            errors=count("errors"),
            champion_latency_ms=samples("champion_latency_ms"),
            challenger_latency_ms=samples("challenger_latency_ms"),
            feedback=count("feedback"),
            champion_correct=count("champion_correct"),
            challenger_correct=count("challenger_correct"),
        )


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100.0 * len(ordered)) - 1))]


@dataclass(frozen=True)
class ShadowConfig:
    """Limits of the shadow verdict (from `[canary]`)."""

    min_samples: int = 100
    min_agreement: float = 0.9
    max_error_rate: float = 0.02
    min_online_accuracy: float = 0.9
    min_feedback: int = 20
    max_accuracy_drop: float = 0.02
    max_latency_increase: float = 0.5
    min_latency_increase_ms: float = 5.0
    confidence: float = 0.98

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence {self.confidence} must be in [0.5, 1)")
        if self.min_samples < 1 or self.min_feedback < 1:
            raise ValueError("shadow_min_samples and min_feedback must be at least 1")

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence


def _shadow_agreement(stats: ShadowStats, config: ShadowConfig) -> MetricResult:
    name, threshold = "agreement", config.min_agreement
    agreement = stats.agreement
    if agreement is None:
        return MetricResult(name, Classification.NODATA, False, True, None, None, threshold, "no copies compared")
    shown = f"agrees with the champion on {_percent(agreement)} of {stats.compared} copies"
    if agreement < threshold:
        return MetricResult(
            name,
            Classification.LOW,
            True,
            True,
            agreement,
            None,
            threshold,
            f"{shown}, under the limit {_percent(threshold)}",
            canary_n=stats.compared,
        )
    return MetricResult(
        name, Classification.PASS, False, True, agreement, None, threshold, shown, canary_n=stats.compared
    )


def _shadow_errors(stats: ShadowStats, config: ShadowConfig) -> MetricResult:
    name, threshold = "error_rate", config.max_error_rate
    rate = stats.error_rate
    if rate is None:
        return MetricResult(name, Classification.NODATA, False, True, None, None, threshold, "no copies answered")
    answered = stats.compared + stats.errors
    if rate > threshold:
        return MetricResult(
            name,
            Classification.HIGH,
            True,
            True,
            rate,
            0.0,
            threshold,
            f"the challenger failed {_percent(rate)} of the copies, over the limit {_percent(threshold)}",
            canary_n=answered,
        )
    return MetricResult(
        name,
        Classification.PASS,
        False,
        True,
        rate,
        0.0,
        threshold,
        f"error rate {_percent(rate)} within {_percent(threshold)}",
        canary_n=answered,
    )


def _shadow_latency(stats: ShadowStats, config: ShadowConfig) -> MetricResult:
    """Mann-Whitney of the challenger's forward passes against the champion's, on the same copied images."""
    settings = JudgeConfig(
        min_samples=config.min_samples,
        confidence=config.confidence,
        max_latency_increase=config.max_latency_increase,
        min_latency_increase_ms=config.min_latency_increase_ms,
    )

    def side(version: str, samples: Sequence[float]) -> VersionStats:
        return VersionStats(
            version=version, window_s=stats.window_s, requests=len(samples), errors=0, latency_ms=tuple(samples)
        )

    return _latency(
        side(stats.version, stats.challenger_latency_ms), side("champion", stats.champion_latency_ms), settings
    )


def _shadow_accuracy(stats: ShadowStats, config: ShadowConfig) -> MetricResult:
    name, threshold = "online_accuracy", config.min_online_accuracy
    if stats.feedback < config.min_feedback:
        return MetricResult(
            name,
            Classification.NODATA,
            False,
            True,
            stats.accuracy("challenger"),
            stats.accuracy("champion"),
            threshold,
            f"{stats.feedback} feedback labels on copied requests, fewer than {config.min_feedback}",
            canary_n=stats.feedback,
            baseline_n=stats.feedback,
        )
    mine, theirs = stats.challenger_correct / stats.feedback, stats.champion_correct / stats.feedback
    common = {"canary_n": stats.feedback, "baseline_n": stats.feedback}
    shown = f"online accuracy {_percent(mine)} vs {_percent(theirs)} for the champion on the same requests"
    if mine < threshold:
        return MetricResult(
            name, Classification.LOW, True, True, mine, theirs, threshold, f"{shown}: under the limit", **common
        )
    test = mann_whitney_binary(stats.challenger_correct, stats.feedback, stats.champion_correct, stats.feedback)
    if test.p_value < config.alpha and test.z < 0 and mine < theirs - config.max_accuracy_drop:
        return MetricResult(
            name,
            Classification.LOW,
            True,
            True,
            mine,
            theirs,
            threshold,
            f"{shown} (p = {test.p_value:.2g})",
            p_value=test.p_value,
            **common,
        )
    return MetricResult(
        name, Classification.PASS, False, True, mine, theirs, threshold, shown, p_value=test.p_value, **common
    )


def judge_shadow(stats: ShadowStats, config: ShadowConfig) -> Judgement:
    """The verdict on a shadow window: agreement and accuracy against thresholds, Mann-Whitney on latency.

    No client saw the challenger's answers, so there is no marginal hold on a score: a critical metric
    that failed ends the release (fail), fewer than `min_samples` compared copies hold the window
    (inconclusive), anything else passes to the first traffic step.
    """
    metrics = (
        _shadow_agreement(stats, config),
        _shadow_errors(stats, config),
        _shadow_latency(stats, config),
        _shadow_accuracy(stats, config),
    )
    counted = [metric for metric in metrics if metric.classification is not Classification.NODATA]
    weight = sum(metric.weight for metric in counted)
    score = 100.0 * sum(metric.weight for metric in counted if not metric.failed) / weight if weight else None
    failed = [metric for metric in metrics if metric.failed]
    critical = [metric for metric in failed if metric.critical]
    if critical:
        score = 0.0
    answered = stats.compared + stats.errors
    if answered < config.min_samples:
        reason = f"{answered} shadow copies answered in the window, fewer than {config.min_samples}: holding"
        if stats.dropped:
            reason += f" ({stats.dropped} copies dropped: the gateway was busy)"
        return Judgement(Outcome.INCONCLUSIVE, score, metrics, reason, answered, stats.compared)
    problems = "; ".join(metric.reason for metric in failed)
    if critical:
        return Judgement(Outcome.FAIL, score, metrics, f"shadow failed: {problems}", answered, stats.compared)
    passed = "; ".join(metric.reason for metric in metrics if metric.classification is not Classification.NODATA)
    slower = f" (not blocking: {problems})" if problems else ""
    return Judgement(Outcome.PASS, score, metrics, f"shadow passed: {passed}{slower}", answered, stats.compared)


__all__ = [
    "Classification",
    "JudgeConfig",
    "Judgement",
    "MannWhitney",
    "MetricResult",
    "Outcome",
    "ShadowConfig",
    "ShadowStats",
    "judge",
    "judge_shadow",
    "mann_whitney_binary",
    "mann_whitney_u",
]
