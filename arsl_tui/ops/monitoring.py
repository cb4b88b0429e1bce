"""Alarm use cases: set the rules up, list them with their states, history, acknowledge, silence, watch.

The rules come from `[alarms]` and the backend (`configured_rules`): on the local backend they watch
the gateway's series that the sampling monitor measures each round; on the huawei backend they are
Cloud Eye rules on SYS.ModelArts, SYS.APIC and arsl's custom namespace. Acknowledgements and silences are kept in the
local state file on both backends (Cloud Eye has no acknowledgement); they are logged with who and when.

For the canary controller:
- in the same process, the local monitor's `subscribe(callback)` gets every `AlarmEvent` of the rounds that
  monitor runs (`watch` runs them on a schedule);
- across processes, `AlarmFeed(settings).poll()` returns the state changes recorded since its last
  poll (a cursor over the history on the local backend, a comparison of states on Cloud Eye), and
  `active_alarms(settings)` the rules in alarm now;
- `record_canary_rollback` puts a point on the `canary_rollbacks` metric, which the
  `arsl-canary-rollback` rule turns into an alarm.
Nothing here prints; errors are `MonitorError` / `AlarmRuleError` with a message fit to show.
"""

from __future__ import annotations

import dataclasses
import getpass
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from arsl_tui.backends import backend_for
from arsl_tui.domain.alarms import (
    CANARY_ROLLBACK,
    INPUT_DRIFT_METRIC,
    AlarmEvent,
    AlarmRule,
    AlarmRuleError,
    AlarmState,
    AlarmThresholds,
    DataPoint,
    HistoryEntry,
    HistoryKind,
    MonitorError,
    MonitorUnavailable,
    RuleNotFound,
    RuleView,
    Sample,
    Sampler,
    SetupReport,
    SkippedRule,
    drift_samples,
    gateway_samples,
)
from arsl_tui.domain.ports import Monitor, ServingPlatformError

if TYPE_CHECKING:
    from arsl_tui.config import Settings

STATS_MAX_SAMPLES = 20_000


@runtime_checkable
class SamplingMonitor(Monitor, Protocol):
    """A monitor that measures and judges its rules itself, one round at a time (the one of a backend
    that runs here), and keeps the operator's marks with its rules."""

    def now(self) -> float: ...

    def run_once(self, now: float | None = None) -> list[AlarmEvent]: ...

    def history(
        self, rule: str | None = None, since: float | None = None, limit: int = 100, after_seq: int = 0
    ) -> list[HistoryEntry]: ...

    def close(self) -> None: ...


class OperatorLog(Protocol):
    """Acknowledgements and silences with who and when, for a monitor that does not keep them."""

    def apply(self, view: RuleView) -> RuleView: ...

    def acknowledge(self, view: RuleView, user: str, note: str, now: float) -> None: ...

    def silence(self, view: RuleView, seconds: float, user: str, note: str, now: float) -> None: ...

    def entries(self, rule: str | None = None, since: float | None = None, limit: int = 100) -> list[HistoryEntry]: ...

    def close(self) -> None: ...


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def thresholds(settings: Settings) -> AlarmThresholds:
    alarms = settings.alarms
    return AlarmThresholds(
        period_s=alarms.evaluation_period_s,
        count=alarms.count,
        suppress_s=alarms.suppress_s,
        max_error_rate=alarms.max_error_rate,
        max_p95_latency_ms=alarms.max_p95_latency_ms,
        min_requests=alarms.min_requests,
        max_requests=alarms.max_requests,
        min_online_accuracy=alarms.min_online_accuracy,
        custom_namespace=alarms.custom_namespace,
        max_input_drift=settings.drift.threshold,
        drift_periods=settings.drift.periods,
    )


def configured_rules(settings: Settings) -> tuple[list[AlarmRule], list[SkippedRule]]:
    """The rules `[alarms]` asks for on the configured backend, and those skipped for a missing resource."""
    return backend_for(settings).alarm_rules(thresholds(settings))


@dataclass(frozen=True)
class ServiceTarget:
    """The settings the alarm use cases work with, and where their service id came from."""

    settings: Settings
    note: str = ""
    """`alarms.service_id = svc-… (the ModelArts service arsl-canary)`, or why none was found; '' when
    configured or not needed."""


def with_service_id(settings: Settings) -> ServiceTarget:
    """`settings` with `[alarms] service_id` filled in from the serving platform where it is empty.

    The rules on the service and the metrics arsl pushes about it need the platform's own id of the service the
    canary drives (`[huawei] service_name`); that id exists only once the canary has created the service, so a
    first release would otherwise end with its alarms skipped. A configured id wins; a backend that runs here
    needs none; a service not created yet (or a platform that does not answer) leaves the id empty, and the
    note says why.
    """
    if settings.alarms.service_id.strip():
        return ServiceTarget(settings)
    backend = backend_for(settings)
    if backend.runs_here:
        return ServiceTarget(settings)
    from arsl_tui.ops.canary_wiring import service_status

    service = backend.service_name()
    try:
        status = service_status(settings)
    except ServingPlatformError as error:
        return ServiceTarget(settings, f"alarms.service_id is empty and service {service!r} could not be read: {error}")
    if not status.platform_id:
        return ServiceTarget(settings, f"alarms.service_id is empty and there is no service {service!r} yet")
    alarms = dataclasses.replace(settings.alarms, service_id=status.platform_id)
    return ServiceTarget(
        dataclasses.replace(settings, alarms=alarms),
        f"alarms.service_id = {status.platform_id} (the {backend.service_platform} service {service!r})",
    )


# --- opening a monitor ------------------------------------------------------------------------------


def gateway_sampler(settings: Settings, timeout_s: float | None = None) -> Sampler:
    """Reads the local gateway's per-version stats over the last window (the gateway's admin API).

    A gateway that does not answer within `timeout_s` (default `ops.serving.STATS_TIMEOUT_S`) counts as
    down for the round (service_up 0, no other points: its other rules see missing data), so a hung
    gateway delays a round by that much at most. Input drift is measured over `[drift] window_s`, not the
    round's window: a period of traffic is often too few images for a stable histogram.
    """

    def sample(now: float, window_s: float) -> list[Sample]:
        from arsl_tui.ops import drift, serving

        try:
            deployed, running = serving.gateway_presence(settings)
        except serving.ServingError:
            deployed, running = True, False
        stats = None
        if deployed and running:
            try:
                stats = serving.version_stats(
                    settings,
                    window_s=window_s,
                    max_samples=STATS_MAX_SAMPLES,
                    timeout_s=serving.STATS_TIMEOUT_S if timeout_s is None else timeout_s,
                )
            except serving.ServingError:
                stats = None  # it does not answer: service_up 0
        samples = gateway_samples(stats, deployed=deployed, min_feedback=settings.alarms.min_feedback)
        if stats is not None:
            try:
                reports = drift.gateway_reports(
                    settings, timeout_s=serving.STATS_TIMEOUT_S if timeout_s is None else timeout_s
                )
            except serving.ServingError:
                reports = []  # no drift points this round: the drift rule sees missing data, not a healthy 0
            samples.extend(drift_samples(reports))
        return samples

    return sample


def open_local_monitor(
    settings: Settings, *, sampler: Sampler | None = None, clock: Callable[[], float] = time.time
) -> SamplingMonitor:
    """The monitor over the state file, sampling the local gateway unless given another `sampler`."""
    return backend_for(settings).sampling_monitor(sampler or gateway_sampler(settings), clock=clock)


def open_monitor(settings: Settings) -> Monitor:
    """The configured backend's monitor (the CES SDK is imported only for huawei)."""
    return backend_for(settings).monitor(gateway_sampler(settings))


def _operator_log(settings: Settings) -> OperatorLog:
    return backend_for(settings).operator_log()


def _close(monitor: Any) -> None:
    close = getattr(monitor, "close", None)
    if close is not None:
        close()


# --- use cases --------------------------------------------------------------------------------------


def setup(settings: Settings, monitor: Monitor | None = None) -> SetupReport:
    """Create the configured rules that are missing, update those that differ; twice creates nothing twice.

    On a cloud backend without `[alarms] service_id` the rules watch the service the canary drives
    (`with_service_id`); the report's notes say which.
    """
    target = with_service_id(settings)
    settings = target.settings
    rules, skipped = configured_rules(settings)
    own = monitor is None
    monitor = monitor or open_monitor(settings)
    try:
        report = monitor.ensure_rules(rules)
    finally:
        if own:
            _close(monitor)
    return SetupReport(
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        skipped=tuple(skipped),
        notes=(target.note, *report.notes) if target.note else report.notes,
    )


def list_rules(settings: Settings, monitor: Monitor | None = None) -> list[RuleView]:
    """Every arsl rule with its state, value, acknowledgement and silence."""
    own = monitor is None
    monitor = monitor or open_monitor(settings)
    try:
        views = monitor.rules()
    finally:
        if own:
            _close(monitor)
    if backend_for(settings).runs_here:
        return views  # the monitor here applies its marks itself
    log = _operator_log(settings)
    try:
        return [log.apply(view) for view in views]
    finally:
        log.close()


def active_alarms(settings: Settings, monitor: Monitor | None = None) -> list[RuleView]:
    return [view for view in list_rules(settings, monitor) if view.state is AlarmState.ALARM]


def history(
    settings: Settings,
    rule: str | None = None,
    since: float | None = None,
    limit: int = 100,
    monitor: Monitor | None = None,
) -> list[HistoryEntry]:
    """State changes (and operator actions), oldest first."""
    own = monitor is None
    monitor = monitor or open_monitor(settings)
    try:
        entries = monitor.history(rule=rule, since=since, limit=limit)
    finally:
        if own:
            _close(monitor)
    if backend_for(settings).runs_here:
        return entries
    log = _operator_log(settings)
    try:
        merged = sorted([*entries, *log.entries(rule=rule, since=since, limit=limit)], key=lambda entry: entry.time)
    finally:
        log.close()
    return merged[-limit:]


def _find(views: Sequence[RuleView], name: str) -> RuleView:
    for view in views:
        if view.rule.name == name:
            return view
    known = ", ".join(view.rule.name for view in views) or "none; run `arsl alarms setup`"
    raise RuleNotFound(f"no alarm rule named {name!r} (rules: {known})")


def acknowledge(
    settings: Settings, rule: str, *, user: str | None = None, note: str = "", monitor: Monitor | None = None
) -> RuleView:
    """Mark a rule's alarm as seen (until it leaves alarm); logged with who and when."""
    view = _find(list_rules(settings, monitor), rule)
    log = _operator_log(settings)
    try:
        log.acknowledge(view, user or current_user(), note, time.time())
    finally:
        log.close()
    return _find(list_rules(settings, monitor), rule)


def silence(
    settings: Settings,
    rule: str,
    seconds: float,
    *,
    user: str | None = None,
    note: str = "",
    monitor: Monitor | None = None,
) -> RuleView:
    """Mute a rule's notifications for `seconds` (0 ends a silence); it still changes state. Logged."""
    view = _find(list_rules(settings, monitor), rule)
    log = _operator_log(settings)
    try:
        log.silence(view, seconds, user or current_user(), note, time.time())
    finally:
        log.close()
    return _find(list_rules(settings, monitor), rule)


def series(
    settings: Settings, view: RuleView, *, periods: int = 30, monitor: Monitor | None = None, now: float | None = None
) -> list[DataPoint]:
    """The last `periods` periods of a rule's metric, one value per period (for a sparkline)."""
    now = time.time() if now is None else now
    rule = view.rule
    own = monitor is None
    monitor = monitor or open_monitor(settings)
    try:
        return monitor.series(
            rule.namespace,
            rule.metric,
            dict(rule.dimensions),
            since=now - periods * rule.period_s,
            until=now,
            period_s=rule.period_s,
            filter=rule.filter,
        )
    finally:
        if own:
            _close(monitor)


def record_canary_rollback(
    settings: Settings, version: str, reason: str = "", *, monitor: Monitor | None = None, at: float | None = None
) -> None:
    """A rollback happened: one point on `canary_rollbacks`, which `arsl-canary-rollback` alarms on."""
    settings = with_service_id(settings).settings
    backend = backend_for(settings)
    series = backend.custom_metric_series()
    if series is None:
        raise MonitorUnavailable(
            f"{settings.source}: alarms.service_id is empty, so the rollback of {version} "
            f"cannot be reported to {backend.monitor_label}"
        )
    namespace, dims = series
    own = monitor is None
    monitor = monitor or open_monitor(settings)
    try:
        monitor.put_metric(namespace, "canary_rollbacks", 1.0, dims, unit="count", at=at)
    finally:
        if own:
            _close(monitor)


def publish_online_accuracy(
    settings: Settings, accuracy: float, *, monitor: Monitor | None = None, at: float | None = None
) -> None:
    """Push online accuracy (from feedback labels) to Cloud Eye's custom namespace (huawei backend)."""
    settings = with_service_id(settings).settings
    backend = backend_for(settings)
    if backend.runs_here:
        raise MonitorUnavailable(f"{backend.monitor_label} measures online accuracy from the gateway by itself")
    series = backend.custom_metric_series()
    if series is None:
        raise MonitorUnavailable(f"{settings.source}: alarms.service_id is empty: set it to the ModelArts service id")
    if not 0.0 <= accuracy <= 1.0:
        raise AlarmRuleError(f"online accuracy {accuracy!r}: expected a fraction between 0 and 1")
    namespace, dims = series
    own = monitor is None
    monitor = monitor or open_monitor(settings)
    try:
        monitor.put_metric(namespace, "online_accuracy", accuracy, dims, at=at)
    finally:
        if own:
            _close(monitor)


def publish_input_drift(
    settings: Settings, score: float, *, monitor: Monitor | None = None, at: float | None = None
) -> None:
    """Push a drift score (domain/drift.py) to Cloud Eye's custom namespace, where `arsl-input-drift` judges it."""
    settings = with_service_id(settings).settings
    backend = backend_for(settings)
    if backend.runs_here:
        raise MonitorUnavailable(f"{backend.monitor_label} measures input drift from the gateway by itself")
    series = backend.custom_metric_series()
    if series is None:
        raise MonitorUnavailable(f"{settings.source}: alarms.service_id is empty: set it to the ModelArts service id")
    if not 0.0 <= score < float("inf"):
        raise AlarmRuleError(f"drift score {score!r}: expected a finite number >= 0")
    namespace, dims = series
    own = monitor is None
    monitor = monitor or open_monitor(settings)
    try:
        monitor.put_metric(namespace, INPUT_DRIFT_METRIC, score, dims, at=at)
    finally:
        if own:
            _close(monitor)


# --- rounds -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundResult:
    time: float
    events: tuple[AlarmEvent, ...] = ()
    published: tuple[str, ...] = ()
    """Metrics pushed to Cloud Eye this round (huawei)."""


def run_round(settings: Settings, monitor: Monitor, now: float | None = None) -> RoundResult:
    """One scheduled round: locally sample + judge + prune; on Cloud Eye push the error rate arsl derives."""
    if isinstance(monitor, SamplingMonitor):
        at = monitor.now() if now is None else now
        return RoundResult(at, tuple(monitor.run_once(at)))
    now = time.time() if now is None else now
    published: list[str] = []
    service_id = with_service_id(settings).settings.alarms.service_id.strip()
    publish = getattr(monitor, "publish_error_rate", None)
    if service_id and publish is not None:
        rate = publish(
            service_id, settings.alarms.custom_namespace, float(max(settings.alarms.evaluation_period_s, 60)), now
        )
        if rate is not None:
            published.append(f"error_rate={rate:.4f}")
    return RoundResult(now, (), tuple(published))


def watch(
    settings: Settings,
    stop: threading.Event,
    on_round: Callable[[RoundResult], None],
    *,
    monitor: Monitor | None = None,
    interval_s: float | None = None,
    on_error: Callable[[MonitorError], None] | None = None,
) -> None:
    """Run a round every `interval_s` (default: the rules' period) until `stop` is set.

    A failing round (the gateway's admin API, Cloud Eye) is reported to `on_error` and retried next time.
    """
    interval = float(interval_s if interval_s is not None else settings.alarms.evaluation_period_s)
    own = monitor is None
    monitor = monitor or open_monitor(settings)
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                on_round(run_round(settings, monitor))
            except MonitorError as error:
                if on_error is None:
                    raise
                on_error(error)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if own:
            _close(monitor)


class AlarmFeed:
    """State changes since the last poll, across processes (for the canary controller)."""

    def __init__(self, settings: Settings, *, monitor: Monitor | None = None, start_at_end: bool = True) -> None:
        self._settings = settings
        self._monitor = monitor
        self._cursor = 0
        self._states: dict[str, AlarmState] = {}
        if start_at_end:
            self.poll()

    def poll(self) -> list[HistoryEntry]:
        """Transitions recorded since the previous poll (the first poll with `start_at_end` only sets the cursor)."""
        if backend_for(self._settings).runs_here:
            monitor = (
                self._monitor if isinstance(self._monitor, SamplingMonitor) else open_local_monitor(self._settings)
            )
            try:
                lines = monitor.history(after_seq=self._cursor, limit=10_000)
            finally:
                if monitor is not self._monitor:
                    monitor.close()
            self._cursor = max([self._cursor, *(entry.seq for entry in lines)])
            return [entry for entry in lines if entry.kind is HistoryKind.TRANSITION]
        now = time.time()
        changes = []
        for view in list_rules(self._settings, self._monitor):
            before = self._states.get(view.rule.name)
            self._states[view.rule.name] = view.state
            if before is not None and before is not view.state:
                changes.append(
                    HistoryEntry(
                        seq=0,
                        rule=view.rule.name,
                        time=view.since or now,
                        kind=HistoryKind.TRANSITION,
                        old=before,
                        new=view.state,
                        value=view.value,
                    )
                )
        return changes


__all__ = [
    "CANARY_ROLLBACK",
    "AlarmFeed",
    "OperatorLog",
    "RoundResult",
    "SamplingMonitor",
    "acknowledge",
    "active_alarms",
    "configured_rules",
    "current_user",
    "gateway_sampler",
    "history",
    "list_rules",
    "open_local_monitor",
    "open_monitor",
    "publish_input_drift",
    "publish_online_accuracy",
    "record_canary_rollback",
    "run_round",
    "series",
    "setup",
    "silence",
    "thresholds",
    "watch",
]
