"""Alarm rules with Cloud Eye's semantics, and their pure evaluation over metric series.

A rule watches one metric series (namespace, metric name, dimensions). Raw data points are cut into
periods aligned to multiples of `period_s`; each period's points are reduced by the rule's filter
(average, max, min, sum) to one value, which is compared with the threshold. A rule alarms after
`count` consecutive breaching periods, returns to ok at the first period that does not breach, and
has insufficient data after `missing_periods` consecutive periods without any point (a gap also
breaks a run of breaches: breaches on both sides of a gap are not consecutive).

Only completed periods are judged, each once: a point that arrives after its period was judged is
not re-judged (Cloud Eye does the same), and a clock that goes backwards judges nothing until it
passes the last judged period again. While a rule stays in alarm, its notification repeats at most
every `suppress_s` seconds (Cloud Eye's `suppress_duration`; 0 notifies once).

The local gateway's series (`gateway_samples`: what one sampling round measures) and the default
rules on them (`local_rules`) are built here too; Cloud Eye's default rules, on its own namespaces,
are the Huawei provider's (`providers/huawei/alarm_rules.py`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from arsl_tui.domain.errors import BackendCallError

if TYPE_CHECKING:
    from arsl_tui.domain.drift import DriftReport
    from arsl_tui.domain.serving import VersionStats


class AlarmRuleError(ValueError):
    """A rule value is out of range; the message names the rule, the field and the value."""


class MonitorError(BackendCallError):
    """A monitoring backend call failed; the message says what, where, and the service's own words."""


class MonitorUnavailable(MonitorError):
    """The monitor cannot be used as configured (credentials, a missing setting); nothing was called."""


class RuleNotFound(MonitorError):
    """No rule has this name."""


class AlarmActionRefused(MonitorError):
    """An operator action does not apply (acknowledging a rule that is not in alarm)."""


class Comparison(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "="
    NE = "!="

    def holds(self, value: float, threshold: float) -> bool:
        if math.isnan(value):
            return False
        if self is Comparison.GT:
            return value > threshold
        if self is Comparison.GE:
            return value >= threshold
        if self is Comparison.LT:
            return value < threshold
        if self is Comparison.LE:
            return value <= threshold
        if self is Comparison.EQ:
            return value == threshold
        return value != threshold


class Filter(StrEnum):
    """How a period's points become one value (Cloud Eye's `filter`)."""

    AVERAGE = "average"
    MAX = "max"
    MIN = "min"
    SUM = "sum"

    def reduce(self, values: Sequence[float]) -> float:
        if not values:
            raise ValueError("no values to reduce")
        if self is Filter.AVERAGE:
            return math.fsum(values) / len(values)
        if self is Filter.MAX:
            return max(values)
        if self is Filter.MIN:
            return min(values)
        return math.fsum(values)


class AlarmState(StrEnum):
    OK = "ok"
    ALARM = "alarm"
    INSUFFICIENT_DATA = "insufficient_data"


RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
NAMESPACE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}\.[A-Za-z][A-Za-z0-9_]{0,31}$")
METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
RESERVED_NAMESPACE_PREFIXES = ("SYS", "AGT", "SRE")
LEVELS = {1: "critical", 2: "major", 3: "minor", 4: "info"}

Dimensions = tuple[tuple[str, str], ...]


def dimensions_of(mapping: Mapping[str, str] | Iterable[tuple[str, str]]) -> Dimensions:
    """Dimensions in a canonical order (by name), so equal sets compare and store equal."""
    pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
    return tuple(sorted((str(name), str(value)) for name, value in pairs))


def format_dimensions(dimensions: Dimensions) -> str:
    return ",".join(f"{name}={value}" for name, value in dimensions)


def check_custom_namespace(namespace: str, where: str = "namespace") -> str:
    """A namespace arsl may push data to: `Service.Item`, not starting with SYS, AGT or SRE."""
    if not NAMESPACE.match(namespace):
        raise AlarmRuleError(
            f"{where} {namespace!r}: expected 'Service.Item' (letters, digits, '_'; each part "
            "starts with a letter, at most 32 characters)"
        )
    if namespace.upper().startswith(RESERVED_NAMESPACE_PREFIXES):
        raise AlarmRuleError(
            f"{where} {namespace!r}: custom namespaces must not start with SYS, AGT or SRE (Cloud Eye reserves them)"
        )
    return namespace


@dataclass(frozen=True)
class AlarmRule:
    """One alarm rule: a condition on one metric series, judged per period."""

    name: str
    namespace: str
    metric: str
    dimensions: Dimensions
    period_s: int
    filter: Filter
    comparison: Comparison
    threshold: float
    count: int = 3
    """Consecutive breaching periods before the rule alarms."""
    suppress_s: int = 0
    """While in alarm, repeat the notification at most this often (0: notify once)."""
    level: int = 2
    unit: str = ""
    description: str = ""
    missing_periods: int = 0
    """Consecutive periods without data before the state becomes insufficient_data (0: `count`)."""

    def __post_init__(self) -> None:
        where = f"alarm rule {self.name!r}"
        if not RULE_NAME.match(self.name):
            raise AlarmRuleError(f"alarm rule name {self.name!r}: 1-128 letters, digits, '-' or '_'")
        if not NAMESPACE.match(self.namespace):
            raise AlarmRuleError(f"{where}: namespace {self.namespace!r} is not 'Service.Item'")
        if not METRIC_NAME.match(self.metric):
            raise AlarmRuleError(f"{where}: metric {self.metric!r} is not a metric name")
        if not 1 <= len(self.dimensions) <= 4:
            raise AlarmRuleError(f"{where}: needs 1 to 4 dimensions, got {len(self.dimensions)}")
        if any(not name or not value for name, value in self.dimensions):
            raise AlarmRuleError(
                f"{where}: a dimension has an empty name or value: {format_dimensions(self.dimensions)!r}"
            )
        if dimensions_of(self.dimensions) != self.dimensions:
            object.__setattr__(self, "dimensions", dimensions_of(self.dimensions))
        object.__setattr__(self, "filter", Filter(self.filter))
        object.__setattr__(self, "comparison", Comparison(self.comparison))
        for name, low in (("period_s", 1), ("count", 1), ("suppress_s", 0), ("missing_periods", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise AlarmRuleError(f"{where}: {name} = {value!r}: expected an integer >= {low}")
        if self.level not in LEVELS:
            raise AlarmRuleError(f"{where}: level = {self.level!r}: expected 1 (critical) to 4 (info)")
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int | float)
            or not math.isfinite(self.threshold)
        ):
            raise AlarmRuleError(f"{where}: threshold = {self.threshold!r}: expected a finite number")
        object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def insufficient_after(self) -> int:
        return self.missing_periods or self.count

    @property
    def condition(self) -> str:
        """`error_rate average > 0.05 for 3 × 60 s`."""
        return (
            f"{self.metric} {self.filter.value} {self.comparison.value} {self.threshold:g} "
            f"for {self.count} × {self.period_s} s"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "metric": self.metric,
            "dimensions": [{"name": name, "value": value} for name, value in self.dimensions],
            "period_s": self.period_s,
            "filter": self.filter.value,
            "comparison": self.comparison.value,
            "threshold": self.threshold,
            "count": self.count,
            "suppress_s": self.suppress_s,
            "level": self.level,
            "unit": self.unit,
            "description": self.description,
            "missing_periods": self.missing_periods,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "alarm rule") -> AlarmRule:
        try:
            dimensions = dimensions_of((str(item["name"]), str(item["value"])) for item in data["dimensions"])
            return cls(
                name=str(data["name"]),
                namespace=str(data["namespace"]),
                metric=str(data["metric"]),
                dimensions=dimensions,
                period_s=int(data["period_s"]),
                filter=Filter(data["filter"]),
                comparison=Comparison(data["comparison"]),
                threshold=float(data["threshold"]),
                count=int(data.get("count", 1)),
                suppress_s=int(data.get("suppress_s", 0)),
                level=int(data.get("level", 2)),
                unit=str(data.get("unit", "")),
                description=str(data.get("description", "")),
                missing_periods=int(data.get("missing_periods", 0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, AlarmRuleError):
                raise
            raise AlarmRuleError(f"{where}: malformed rule ({type(error).__name__}: {error})") from None


@dataclass(frozen=True)
class DataPoint:
    time: float
    """Seconds since the epoch."""
    value: float


@dataclass(frozen=True)
class RuleStatus:
    """Where a rule's evaluation stands; evaluation resumes from `next_period`."""

    rule: str
    state: AlarmState
    since: float
    """When the rule entered `state`."""
    next_period: int
    """Index (time // period_s) of the first period not judged yet."""
    breach_run: int = 0
    missing_run: int = 0
    value: float | None = None
    """The last judged period's value (None when it had no data)."""
    last_notified: float | None = None

    @classmethod
    def new(cls, rule: AlarmRule, now: float) -> RuleStatus:
        """A rule created at `now`: insufficient data, judging from the period that holds `now`."""
        return cls(rule=rule.name, state=AlarmState.INSUFFICIENT_DATA, since=now, next_period=int(now // rule.period_s))

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "state": self.state.value,
            "since": self.since,
            "next_period": self.next_period,
            "breach_run": self.breach_run,
            "missing_run": self.missing_run,
            "value": self.value,
            "last_notified": self.last_notified,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuleStatus:
        value = data.get("value")
        notified = data.get("last_notified")
        return cls(
            rule=str(data["rule"]),
            state=AlarmState(data["state"]),
            since=float(data["since"]),
            next_period=int(data["next_period"]),
            breach_run=int(data.get("breach_run", 0)),
            missing_run=int(data.get("missing_run", 0)),
            value=None if value is None else float(value),
            last_notified=None if notified is None else float(notified),
        )


class NoticeKind(StrEnum):
    ALARM = "alarm"
    """The rule entered alarm."""
    REPEAT = "repeat"
    """Still in alarm, `suppress_s` after the last notice."""
    RECOVERED = "recovered"
    """Back to ok from alarm."""


@dataclass(frozen=True)
class Transition:
    rule: str
    time: float
    """The end of the period that caused it."""
    old: AlarmState
    new: AlarmState
    value: float | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "time": self.time,
            "old": self.old.value,
            "new": self.new.value,
            "value": self.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Notice:
    """A notification due to people and subscribers (SMN's alarm/ok actions, locally a callback)."""

    rule: str
    time: float
    kind: NoticeKind
    value: float | None
    reason: str


@dataclass(frozen=True)
class Evaluation:
    status: RuleStatus
    transitions: tuple[Transition, ...] = ()
    notices: tuple[Notice, ...] = ()


def period_values(rule: AlarmRule, points: Iterable[DataPoint], first: int, last: int) -> dict[int, float]:
    """Period index → the filter's value over that period's points, for periods first..last (inclusive)."""
    buckets: dict[int, list[float]] = {}
    for point in points:
        if not math.isfinite(point.value):
            continue
        index = int(point.time // rule.period_s)
        if first <= index <= last:
            buckets.setdefault(index, []).append(point.value)
    return {index: rule.filter.reduce(values) for index, values in buckets.items()}


def _describe(rule: AlarmRule, value: float) -> str:
    return f"{rule.metric} {rule.filter.value} {value:.6g} {rule.comparison.value} {rule.threshold:g}"


def evaluate(rule: AlarmRule, status: RuleStatus, points: Iterable[DataPoint], now: float) -> Evaluation:
    """Judge every completed period from `status.next_period` up to `now`; pure."""
    last_complete = int(now // rule.period_s) - 1
    first = status.next_period
    if last_complete < first:
        return Evaluation(status)
    values = period_values(rule, points, first, last_complete)
    state, since = status.state, status.since
    breach_run, missing_run, value = status.breach_run, status.missing_run, status.value
    last_notified = status.last_notified
    transitions: list[Transition] = []
    notices: list[Notice] = []

    def move(to: AlarmState, at: float, current: float | None, reason: str) -> None:
        nonlocal state, since, last_notified
        transitions.append(Transition(rule.name, at, state, to, current, reason))
        if to is AlarmState.ALARM:
            notices.append(Notice(rule.name, at, NoticeKind.ALARM, current, reason))
            last_notified = at
        elif state is AlarmState.ALARM and to is AlarmState.OK:
            notices.append(Notice(rule.name, at, NoticeKind.RECOVERED, current, reason))
        state, since = to, at

    def gap(periods: int, gap_first: int) -> None:
        """`periods` periods without data, starting at index `gap_first`."""
        nonlocal breach_run, missing_run, value
        if periods <= 0:
            return
        before = missing_run
        missing_run += periods
        breach_run = 0
        value = None
        if state is not AlarmState.INSUFFICIENT_DATA and missing_run >= rule.insufficient_after:
            reached = gap_first + (rule.insufficient_after - before) - 1
            move(
                AlarmState.INSUFFICIENT_DATA,
                (reached + 1) * rule.period_s,
                None,
                f"no data for {rule.insufficient_after} period(s) of {rule.period_s} s",
            )

    cursor = first
    for index in sorted(values):
        gap(index - cursor, cursor)
        current = values[index]
        end = (index + 1) * rule.period_s
        missing_run, value = 0, current
        if rule.comparison.holds(current, rule.threshold):
            breach_run += 1
            if state is not AlarmState.ALARM and breach_run >= rule.count:
                move(
                    AlarmState.ALARM, end, current, f"{_describe(rule, current)} for {breach_run} consecutive period(s)"
                )
            elif (
                state is AlarmState.ALARM
                and rule.suppress_s > 0
                and (last_notified is None or end - last_notified >= rule.suppress_s)
            ):
                notices.append(Notice(rule.name, end, NoticeKind.REPEAT, current, f"still {_describe(rule, current)}"))
                last_notified = end
        else:
            breach_run = 0
            if state is not AlarmState.OK:
                reason = (
                    f"{rule.metric} {rule.filter.value} {current:.6g}, no longer {rule.comparison.value} "
                    f"{rule.threshold:g}"
                )
                move(AlarmState.OK, end, current, reason)
        cursor = index + 1
    gap(last_complete + 1 - cursor, cursor)
    updated = replace(
        status,
        state=state,
        since=since,
        next_period=last_complete + 1,
        breach_run=breach_run,
        missing_run=missing_run,
        value=value,
        last_notified=last_notified,
    )
    return Evaluation(updated, tuple(transitions), tuple(notices))


# --- durations ------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `2h`, `1d` (a bare number is seconds) → seconds; ValueError naming the text."""
    found = _DURATION.match(text)
    if not found:
        raise ValueError(f"duration {text!r}: expected a number with s, m, h or d (e.g. 30m, 2h)")
    return float(found.group(1)) * _UNIT_SECONDS[(found.group(2) or "s").lower()]


# --- default rules --------------------------------------------------------------------------------

LOCAL_NAMESPACE = "ARSL.Gateway"
LOCAL_SERVICE = "local"
SERVICE_DIMENSION = "service_id"
MODEL_DIMENSION = "model_id"

ERROR_RATE = "arsl-error-rate"
P95_LATENCY = "arsl-p95-latency"
TRAFFIC_LOW = "arsl-traffic-low"
TRAFFIC_HIGH = "arsl-traffic-high"
ONLINE_ACCURACY = "arsl-online-accuracy"
CANARY_ROLLBACK = "arsl-canary-rollback"
SERVICE_DOWN = "arsl-service-down"
INPUT_DRIFT = "arsl-input-drift"
INPUT_DRIFT_METRIC = "input_drift"
LOW_CONFIDENCE_METRIC = "low_confidence_share"
RULE_PREFIX = "arsl-"


@dataclass(frozen=True)
class AlarmThresholds:
    """The `[alarms]` settings the default rules are made of."""

    period_s: int = 60
    count: int = 3
    suppress_s: int = 300
    max_error_rate: float = 0.05
    max_p95_latency_ms: float = 500.0
    min_requests: int = 0
    """Fewer requests than this in a period is a traffic anomaly (0: no such rule)."""
    max_requests: int = 6000
    """More requests than this in a period is a traffic anomaly (0: no such rule)."""
    min_online_accuracy: float = 0.9
    custom_namespace: str = "ARSL.Serving"
    max_input_drift: float = 0.25
    """Drift score ([drift] threshold) above which a period counts toward the input-drift alarm."""
    drift_periods: int = 3
    """Consecutive drifting periods ([drift] periods) before the input-drift rule alarms."""


def local_rules(thresholds: AlarmThresholds) -> list[AlarmRule]:
    """The default rules on the local gateway's series (namespace ARSL.Gateway, service_id=local)."""
    t = thresholds
    service = ((SERVICE_DIMENSION, LOCAL_SERVICE),)

    def rule(
        name: str,
        metric: str,
        flt: Filter,
        comparison: Comparison,
        threshold: float,
        description: str,
        *,
        count: int | None = None,
        level: int = 2,
        unit: str = "",
    ) -> AlarmRule:
        return AlarmRule(
            name=name,
            namespace=LOCAL_NAMESPACE,
            metric=metric,
            dimensions=service,
            period_s=t.period_s,
            filter=flt,
            comparison=comparison,
            threshold=threshold,
            count=t.count if count is None else count,
            suppress_s=t.suppress_s,
            level=level,
            unit=unit,
            description=description,
        )

    rules = [
        rule(
            ERROR_RATE,
            "error_rate",
            Filter.AVERAGE,
            Comparison.GT,
            t.max_error_rate,
            "server errors (5xx) among predict requests",
            level=1,
        ),
        rule(
            P95_LATENCY,
            "p95_latency_ms",
            Filter.MAX,
            Comparison.GT,
            t.max_p95_latency_ms,
            "95th percentile latency of successful predict requests",
            unit="ms",
        ),
    ]
    if t.min_requests > 0:
        rules.append(
            rule(
                TRAFFIC_LOW,
                "requests",
                Filter.SUM,
                Comparison.LT,
                t.min_requests,
                "traffic anomaly: too few predict requests in a period",
                level=3,
                unit="count",
            )
        )
    if t.max_requests > 0:
        rules.append(
            rule(
                TRAFFIC_HIGH,
                "requests",
                Filter.SUM,
                Comparison.GT,
                t.max_requests,
                "traffic anomaly: more predict requests in a period than expected",
                level=3,
                unit="count",
            )
        )
    rules += [
        rule(
            ONLINE_ACCURACY,
            "online_accuracy",
            Filter.AVERAGE,
            Comparison.LT,
            t.min_online_accuracy,
            "accuracy of predictions that received a feedback label",
        ),
        rule(
            CANARY_ROLLBACK,
            "canary_rollbacks",
            Filter.SUM,
            Comparison.GT,
            0,
            "the canary controller rolled a version back",
            count=1,
            level=2,
            unit="count",
        ),
        rule(
            SERVICE_DOWN,
            "service_up",
            Filter.MIN,
            Comparison.LT,
            1,
            "the deployed service does not answer",
            count=1,
            level=1,
        ),
        rule(
            INPUT_DRIFT,
            INPUT_DRIFT_METRIC,
            Filter.AVERAGE,
            Comparison.GT,
            t.max_input_drift,
            "input drift: live images differ from the model's validation images (largest feature PSI)",
            count=t.drift_periods,
            level=3,
        ),
    ]
    return rules


def drift_samples(reports: Sequence[DriftReport]) -> list[Sample]:
    """The drift points of one sampling round, from each served version's drift report over the window.

    A version's `input_drift` exists only when its window holds enough images against a reference (an idle
    or profile-less version reports no data, never a reassuring 0); the service-wide point is the largest
    version score, as the rule alarms when any version's inputs have moved.
    """
    service = ((SERVICE_DIMENSION, LOCAL_SERVICE),)
    samples: list[Sample] = []
    scores: list[float] = []
    low: list[tuple[float, int]] = []
    for report in sorted(reports, key=lambda item: item.version):
        dims = dimensions_of({SERVICE_DIMENSION: LOCAL_SERVICE, MODEL_DIMENSION: report.version})
        if report.score is not None:
            samples.append(Sample(INPUT_DRIFT_METRIC, dims, report.score))
            scores.append(report.score)
        if report.low_confidence_share is not None:
            samples.append(Sample(LOW_CONFIDENCE_METRIC, dims, report.low_confidence_share))
            low.append((report.low_confidence_share, report.images))
    if scores:
        samples.append(Sample(INPUT_DRIFT_METRIC, service, max(scores)))
    images = sum(count for _, count in low)
    if images:
        samples.append(
            Sample(LOW_CONFIDENCE_METRIC, service, math.fsum(share * count for share, count in low) / images)
        )
    return samples


def gateway_samples(stats: Mapping[str, VersionStats] | None, *, deployed: bool, min_feedback: int) -> list[Sample]:
    """The points of one sampling round from the gateway's per-version stats (None: it does not answer).

    Service-wide points carry `service_id=local`; per-version ones add `model_id=<version>`. Error rate and
    p95 exist only for periods with requests, online accuracy only with at least `min_feedback` labels: a
    period without them has no data (Cloud Eye's behaviour for a metric nobody reported).
    """
    if not deployed:
        return []
    service = ((SERVICE_DIMENSION, LOCAL_SERVICE),)
    if stats is None:
        return [Sample("service_up", service, 0.0)]
    samples = [Sample("service_up", service, 1.0)]

    def measure(
        dims: Dimensions, requests: int, errors: int, latencies: Sequence[float], feedback: int, correct: int
    ) -> None:
        samples.append(Sample("requests", dims, float(requests), "count"))
        samples.append(Sample("errors", dims, float(errors), "count"))
        if requests:
            samples.append(Sample("error_rate", dims, errors / requests))
        if latencies:
            ordered = sorted(latencies)
            rank = max(1, math.ceil(0.95 * len(ordered)))
            samples.append(Sample("p95_latency_ms", dims, ordered[rank - 1], "ms"))
        if feedback >= min_feedback:
            samples.append(Sample("online_accuracy", dims, correct / feedback))

    every: list[float] = []
    for version, item in sorted(stats.items()):
        dims = dimensions_of({SERVICE_DIMENSION: LOCAL_SERVICE, MODEL_DIMENSION: version})
        measure(dims, item.requests, item.errors, item.latency_ms, item.feedback, item.correct)
        every.extend(item.latency_ms)
    measure(
        service,
        sum(item.requests for item in stats.values()),
        sum(item.errors for item in stats.values()),
        every,
        sum(item.feedback for item in stats.values()),
        sum(item.correct for item in stats.values()),
    )
    return samples


@dataclass(frozen=True)
class SkippedRule:
    name: str
    reason: str


# --- what the monitor reports ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One data point the sampler measured, in the local namespace."""

    metric: str
    dimensions: Dimensions
    value: float
    unit: str = ""


Sampler = Callable[[float, float], Sequence[Sample]]
"""(now, window_s) → the points measured over the last window_s seconds."""


@dataclass(frozen=True)
class AlarmEvent:
    """What subscribers (the canary controller, the console) hear after a round."""

    rule: str
    time: float
    state: AlarmState
    """The rule's state after the event."""
    notice: NoticeKind | None
    """Set when people would be notified: entering alarm, a repeat, recovery from alarm."""
    value: float | None
    reason: str
    silenced: bool
    seq: int
    """The history line's sequence number (0 for a repeat, which is no state change)."""
    old: AlarmState | None = None


@dataclass(frozen=True)
class RuleView:
    """A rule with its state, for lists and the console."""

    rule: AlarmRule
    state: AlarmState
    since: float | None
    value: float | None = None
    rule_id: str = ""
    """The backend's id of the rule (Cloud Eye's alarm_id; the name locally)."""
    enabled: bool = True
    acknowledged_at: float | None = None
    acknowledged_by: str = ""
    silenced_until: float | None = None

    def silenced(self, now: float) -> bool:
        return self.silenced_until is not None and self.silenced_until > now

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "name": self.rule.name,
            "rule_id": self.rule_id or self.rule.name,
            "state": self.state.value,
            "since": self.since,
            "value": self.value,
            "condition": self.rule.condition,
            "enabled": self.enabled,
            "acknowledged": self.acknowledged_at is not None,
            "acknowledged_at": self.acknowledged_at,
            "acknowledged_by": self.acknowledged_by or None,
            "silenced": self.silenced(now),
            "silenced_until": self.silenced_until if self.silenced(now) else None,
            **{key: value for key, value in self.rule.to_json().items() if key != "name"},
        }


class HistoryKind(StrEnum):
    TRANSITION = "transition"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a rule's history: a state change, or an operator's acknowledgement or silence."""

    seq: int
    rule: str
    time: float
    kind: HistoryKind
    old: AlarmState | None = None
    new: AlarmState | None = None
    value: float | None = None
    detail: str = ""
    user: str = ""
    record_id: str = ""
    """Cloud Eye's record id (empty locally)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "rule": self.rule,
            "time": self.time,
            "kind": self.kind.value,
            "old": self.old.value if self.old else None,
            "new": self.new.value if self.new else None,
            "value": self.value,
            "detail": self.detail,
            "user": self.user or None,
            "record_id": self.record_id or None,
        }


@dataclass(frozen=True)
class SetupReport:
    """What `ensure_rules` did, per rule name."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    skipped: tuple[SkippedRule, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "created": list(self.created),
            "updated": list(self.updated),
            "unchanged": list(self.unchanged),
            "skipped": [{"name": item.name, "reason": item.reason} for item in self.skipped],
            "notes": list(self.notes),
        }


__all__ = [
    "CANARY_ROLLBACK",
    "ERROR_RATE",
    "INPUT_DRIFT",
    "INPUT_DRIFT_METRIC",
    "LEVELS",
    "LOCAL_NAMESPACE",
    "LOCAL_SERVICE",
    "LOW_CONFIDENCE_METRIC",
    "MODEL_DIMENSION",
    "ONLINE_ACCURACY",
    "P95_LATENCY",
    "RULE_PREFIX",
    "SERVICE_DIMENSION",
    "SERVICE_DOWN",
    "TRAFFIC_HIGH",
    "TRAFFIC_LOW",
    "AlarmActionRefused",
    "AlarmEvent",
    "AlarmRule",
    "AlarmRuleError",
    "AlarmState",
    "AlarmThresholds",
    "Comparison",
    "DataPoint",
    "Dimensions",
    "Evaluation",
    "Filter",
    "HistoryEntry",
    "HistoryKind",
    "MonitorError",
    "MonitorUnavailable",
    "Notice",
    "NoticeKind",
    "RuleNotFound",
    "RuleStatus",
    "RuleView",
    "Sample",
    "Sampler",
    "SetupReport",
    "SkippedRule",
    "Transition",
    "check_custom_namespace",
    "dimensions_of",
    "drift_samples",
    "evaluate",
    "format_dimensions",
    "gateway_samples",
    "local_rules",
    "parse_duration",
    "period_values",
]
