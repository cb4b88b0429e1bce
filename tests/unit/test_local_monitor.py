"""The local monitor on a real SQLite state file, with a scripted sampler and clock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.alarms import (
    CANARY_ROLLBACK,
    ERROR_RATE,
    LOCAL_NAMESPACE,
    SERVICE_DOWN,
    AlarmActionRefused,
    AlarmEvent,
    AlarmRuleError,
    AlarmState,
    HistoryKind,
    NoticeKind,
    RuleNotFound,
    Sample,
    dimensions_of,
    gateway_samples,
)
from arsl_tui.domain.serving import VersionStats
from arsl_tui.ops import monitoring
from arsl_tui.providers.local.monitor import LocalMonitor
from arsl_tui.state.db import open_state

T0 = 1_800_000_000.0  # a multiple of 60
SERVICE = (("service_id", "local"),)


class Script:
    """A clock and a sampler the test moves: each sample reports the error rate set last."""

    def __init__(self) -> None:
        self.now = T0
        self.error_rate: float | None = 0.0
        self.up = True

    def clock(self) -> float:
        return self.now

    def sample(self, now: float, window_s: float) -> Sequence[Sample]:
        samples = [Sample("service_up", SERVICE, 1.0 if self.up else 0.0)]
        if self.error_rate is not None:
            samples.append(Sample("error_rate", SERVICE, self.error_rate))
        return samples


def make_settings(home: Path, **overrides: object) -> Settings:
    return load_settings(
        None,
        environ={},
        cwd=home,
        cli_overrides={
            "home": str(home),
            "alarms.evaluation_period_s": 60,
            "alarms.count": 2,
            "alarms.suppress_s": 120,
            "alarms.max_error_rate": 0.1,
            **overrides,
        },
    )


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "home")


@pytest.fixture
def monitor(settings: Settings, script: Script) -> Iterator[LocalMonitor]:
    built = monitoring.open_local_monitor(settings, sampler=script.sample, clock=script.clock)
    monitoring.setup(settings, built)
    yield built
    built.close()


def minutes(script: Script, monitor: LocalMonitor, count: int, *, per_minute: int = 2) -> list[AlarmEvent]:
    """Run the monitor `per_minute` rounds a minute for `count` minutes of the script's clock."""
    events = []
    for _ in range(count * per_minute):
        script.now += 60 / per_minute
        events += monitor.run_once()
    return events


def test_setup_is_idempotent_and_a_changed_rule_is_updated_in_place(
    settings: Settings, monitor: LocalMonitor, tmp_path: Path
) -> None:
    again = monitoring.setup(settings, monitor)
    assert again.created == () and again.updated == () and len(again.unchanged) == 7
    stricter = make_settings(tmp_path / "home", **{"alarms.max_error_rate": 0.01, "alarms.max_requests": 0})
    report = monitoring.setup(stricter, monitor)
    assert report.updated == (ERROR_RATE,) and report.created == ()
    assert report.notes == ("rule 'arsl-traffic-high' is stored but no longer configured; it is kept",)
    assert monitor.rule(ERROR_RATE).rule.threshold == 0.01


def test_errors_raise_an_alarm_that_clears_and_history_and_subscribers_see_both(
    script: Script, monitor: LocalMonitor
) -> None:
    heard: list[AlarmEvent] = []
    monitor.subscribe(heard.append)
    minutes(script, monitor, 2)
    assert monitor.rule(ERROR_RATE).state is AlarmState.OK
    script.error_rate = 0.5
    fired_at = script.now
    events = minutes(script, monitor, 3)
    alarm = [event for event in events if event.rule == ERROR_RATE and event.state is AlarmState.ALARM]
    assert len(alarm) == 1 and alarm[0].notice is NoticeKind.ALARM and alarm[0].value == 0.5
    assert alarm[0].time - fired_at <= 3 * 60  # two breaching periods and the one the change fell in
    script.error_rate = 0.0
    minutes(script, monitor, 2)
    assert monitor.rule(ERROR_RATE).state is AlarmState.OK
    kinds = [
        (event.state, event.notice)
        for event in heard
        if event.rule == ERROR_RATE and event.notice is not NoticeKind.REPEAT
    ]
    assert kinds == [(AlarmState.OK, None), (AlarmState.ALARM, NoticeKind.ALARM), (AlarmState.OK, NoticeKind.RECOVERED)]
    history = [(entry.old, entry.new) for entry in monitor.history(rule=ERROR_RATE)]
    assert history == [
        (AlarmState.INSUFFICIENT_DATA, AlarmState.OK),
        (AlarmState.OK, AlarmState.ALARM),
        (AlarmState.ALARM, AlarmState.OK),
    ]


def test_a_lasting_alarm_repeats_after_the_suppression_and_silence_mutes_without_hiding(
    script: Script, monitor: LocalMonitor
) -> None:
    script.error_rate = 0.9
    events = minutes(script, monitor, 8)
    notices = [event.notice for event in events if event.rule == ERROR_RATE and event.notice]
    assert notices == [NoticeKind.ALARM, NoticeKind.REPEAT, NoticeKind.REPEAT, NoticeKind.REPEAT]
    monitor.silence(ERROR_RATE, 3600, "oncall", "known incident")
    more = minutes(script, monitor, 3)
    repeats = [event for event in more if event.rule == ERROR_RATE]
    assert repeats and all(event.silenced for event in repeats)
    view = monitor.rule(ERROR_RATE)
    assert view.silenced(script.now) and view.state is AlarmState.ALARM
    monitor.silence(ERROR_RATE, 0, "oncall")
    assert not monitor.rule(ERROR_RATE).silenced(script.now)
    logged = [
        (entry.kind, entry.user, entry.detail)
        for entry in monitor.history(rule=ERROR_RATE)
        if entry.kind is HistoryKind.SILENCED
    ]
    assert logged == [
        (HistoryKind.SILENCED, "oncall", "known incident"),
        (HistoryKind.SILENCED, "oncall", "silence ended"),
    ]
    with pytest.raises(AlarmRuleError, match="expected 0 to 30 days"):
        monitor.silence(ERROR_RATE, 31 * 86400, "oncall")


def test_acknowledging_needs_an_alarm_and_lasts_until_it_ends(script: Script, monitor: LocalMonitor) -> None:
    with pytest.raises(AlarmActionRefused, match="insufficient_data, not in alarm"):
        monitor.acknowledge(ERROR_RATE, "oncall")
    with pytest.raises(RuleNotFound, match="no alarm rule named 'arsl-nope'"):
        monitor.acknowledge("arsl-nope", "oncall")
    script.error_rate = 0.9
    minutes(script, monitor, 3)
    assert monitor.acknowledge(ERROR_RATE, "oncall").acknowledged_by == "oncall"
    script.error_rate = 0.0
    minutes(script, monitor, 1)  # the period of the change still averages above the threshold
    assert monitor.rule(ERROR_RATE).acknowledged_by == "oncall"
    minutes(script, monitor, 1)
    assert monitor.rule(ERROR_RATE).state is AlarmState.OK
    assert monitor.rule(ERROR_RATE).acknowledged_at is None
    script.error_rate = 0.9
    minutes(script, monitor, 3)
    assert monitor.rule(ERROR_RATE).state is AlarmState.ALARM and monitor.rule(ERROR_RATE).acknowledged_at is None


def test_missing_data_and_a_stopped_service(script: Script, monitor: LocalMonitor) -> None:
    minutes(script, monitor, 2)
    script.error_rate = None  # no requests: no error-rate data
    script.up = False
    minutes(script, monitor, 3)
    assert monitor.rule(ERROR_RATE).state is AlarmState.INSUFFICIENT_DATA
    assert monitor.rule(SERVICE_DOWN).state is AlarmState.ALARM


def test_a_canary_rollback_raises_its_alarm(settings: Settings, script: Script, monitor: LocalMonitor) -> None:
    minutes(script, monitor, 1)
    monitoring.record_canary_rollback(settings, "v2", "error rate", monitor=monitor, at=script.now)
    events = minutes(script, monitor, 1)
    assert [(event.rule, event.state) for event in events if event.rule == CANARY_ROLLBACK] == [
        (CANARY_ROLLBACK, AlarmState.ALARM)
    ]
    minutes(script, monitor, 1)
    assert monitor.rule(CANARY_ROLLBACK).state is AlarmState.INSUFFICIENT_DATA  # one point, then no data


def test_retention_deletes_old_points_and_history_but_keeps_each_rules_last_lines(
    settings: Settings, script: Script, tmp_path: Path
) -> None:
    short = make_settings(tmp_path / "home", **{"alarms.retention_days": 1, "alarms.count": 1})
    monitor = monitoring.open_local_monitor(short, sampler=script.sample, clock=script.clock)
    monitoring.setup(short, monitor)
    for hour in range(30):  # flapping every half hour for 30 hours
        script.error_rate = 0.9 if hour % 2 else 0.0
        minutes(script, monitor, 60, per_minute=1)
    connection = monitor.db.connection()
    oldest = connection.execute("SELECT MIN(time) FROM alarm_points").fetchone()[0]
    assert oldest >= script.now - 86400
    rows = connection.execute("SELECT COUNT(*) FROM alarm_history WHERE rule = ?", (ERROR_RATE,)).fetchone()[0]
    assert 20 <= rows <= 26  # a day of flapping (24 changes), never below the 20 kept per rule
    monitor.close()


def test_two_monitors_on_one_file_never_judge_a_period_twice(
    settings: Settings, script: Script, monitor: LocalMonitor
) -> None:
    other = LocalMonitor(open_state(settings.home_dir), clock=script.clock)
    script.error_rate = 0.9
    for _ in range(6):
        script.now += 30
        monitor.sample()
        first, second = monitor.evaluate(), other.evaluate()
        assert not (first and second), "both monitors reported the same change"
    transitions = [entry for entry in monitor.history(rule=ERROR_RATE) if entry.new is AlarmState.ALARM]
    assert len(transitions) == 1
    other.close()


def test_the_feed_returns_each_change_once(settings: Settings, script: Script, monitor: LocalMonitor) -> None:
    feed = monitoring.AlarmFeed(settings, monitor=monitor)
    script.error_rate = 0.9
    minutes(script, monitor, 3)
    assert [(entry.rule, entry.new) for entry in feed.poll() if entry.rule == ERROR_RATE] == [
        (ERROR_RATE, AlarmState.ALARM)
    ]
    assert feed.poll() == []


def test_gateway_samples_per_version_and_service() -> None:
    stats = {
        "v1": VersionStats(
            "v1", 60, requests=90, errors=9, latency_ms=tuple(float(n) for n in range(1, 82)), feedback=20, correct=18
        ),
        "v2": VersionStats("v2", 60, requests=10, errors=0, latency_ms=(500.0,) * 10, feedback=3, correct=1),
    }
    samples = {
        (sample.metric, sample.dimensions): sample.value
        for sample in gateway_samples(stats, deployed=True, min_feedback=10)
    }
    service, v2 = SERVICE, dimensions_of({"service_id": "local", "model_id": "v2"})
    assert samples[("service_up", service)] == 1.0
    assert samples[("requests", service)] == 100 and samples[("error_rate", service)] == 0.09
    assert samples[("p95_latency_ms", service)] == 500.0  # 91 samples: rank 87 is one of v2's
    assert samples[("online_accuracy", service)] == pytest.approx(19 / 23)
    assert ("online_accuracy", v2) not in samples  # 3 labels < min_feedback
    assert samples[("error_rate", v2)] == 0.0
    idle = gateway_samples({"v1": VersionStats("v1", 60, requests=0, errors=0)}, deployed=True, min_feedback=1)
    assert {sample.metric for sample in idle if sample.dimensions == SERVICE} == {"service_up", "requests", "errors"}
    assert gateway_samples(None, deployed=True, min_feedback=1) == [Sample("service_up", SERVICE, 0.0)]
    assert gateway_samples(None, deployed=False, min_feedback=1) == []


def test_series_reduces_points_per_period(script: Script, monitor: LocalMonitor) -> None:
    for offset, value in ((1, 0.1), (20, 0.3), (61, 0.5)):
        monitor.put_metric(LOCAL_NAMESPACE, "error_rate", value, dict(SERVICE), at=T0 + offset)
    points = monitor.series(
        LOCAL_NAMESPACE,
        "error_rate",
        dict(SERVICE),
        since=T0,
        until=T0 + 120,
        period_s=60,
        filter=monitor.rule(ERROR_RATE).rule.filter,
    )
    assert [(point.time - T0, point.value) for point in points] == [(0, pytest.approx(0.2)), (60, 0.5)]
    with pytest.raises(AlarmRuleError, match="must not start with SYS"):
        monitor.put_metric("SYS.ModelArts", "x", 1.0, dict(SERVICE))


def test_watch_runs_rounds_until_stopped_and_reports_a_failing_round(settings: Settings, script: Script) -> None:
    import threading

    from arsl_tui.domain.alarms import MonitorError

    calls = {"n": 0}

    def flaky(now: float, window_s: float) -> Sequence[Sample]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise MonitorError("the gateway's admin API is restarting")
        return script.sample(now, window_s)

    monitor = monitoring.open_local_monitor(settings, sampler=flaky, clock=script.clock)
    monitoring.setup(settings, monitor)
    stop = threading.Event()
    rounds: list[monitoring.RoundResult] = []
    errors: list[str] = []

    def on_round(result: monitoring.RoundResult) -> None:
        rounds.append(result)
        script.now += 60
        if len(rounds) == 3:
            stop.set()

    monitoring.watch(
        settings, stop, on_round, monitor=monitor, interval_s=0.0, on_error=lambda e: errors.append(str(e))
    )
    assert len(rounds) == 3 and errors == ["the gateway's admin API is restarting"]
    assert monitor.rule(ERROR_RATE).state is AlarmState.OK
    monitor.close()
