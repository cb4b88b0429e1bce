"""Local end to end: the real gateway (uvicorn on 127.0.0.1) fails → the alarm fires → it recovers.

The gateway runs in this process (as in the serving tests) with a process record pointing at this
process, so the monitor reaches it the production way: the state file, the admin token, the admin
API's per-version stats. Errors are driven by making the served model's forward pass fail (the
gateway answers 500 `inference_failed`). Periods are 1 s; the monitor's rounds are driven by the
test, which polls with a bound (never a fixed sleep as synchronisation).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.alarms import ERROR_RATE, SERVICE_DOWN, AlarmEvent, AlarmState, HistoryKind, NoticeKind
from arsl_tui.domain.serving import Deployment
from arsl_tui.ops import monitoring
from arsl_tui.providers.local.monitor import LocalMonitor
from arsl_tui.providers.local.serving_control import ProcessRecord, process_start_ticks

pytest.importorskip("torch")

from tests.serving.conftest import LiveGateway, image_bytes, start_gateway
from tests.serving.packages import export_random_package

PERIOD_S = 1
COUNT = 2
POLL_S = 0.05
BOUND_S = 20.0


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_random_package(tmp_path_factory.mktemp("package") / "v1", seed=1)


@pytest.fixture
def gateway(tmp_path: Path, package: Path) -> Iterator[LiveGateway]:
    live = start_gateway(tmp_path / "home", {"v1": package}, Deployment(stable="v1", weights={"v1": 100}))
    host, port = live.url.removeprefix("http://").split(":")
    # The gateway serves from this process: record it as the running gateway, as `arsl deploy` would.
    ticks = process_start_ticks(os.getpid())
    assert ticks is not None
    live.state.record_process(ProcessRecord(os.getpid(), ticks, host, int(port), time.time()))
    yield live
    if live.thread.is_alive():
        live.close()


def monitor_settings(home: Path) -> Settings:
    return load_settings(
        None,
        environ={},
        cwd=home,
        cli_overrides={
            "home": str(home),
            "alarms.evaluation_period_s": PERIOD_S,
            "alarms.count": COUNT,
            "alarms.suppress_s": 0,
            "alarms.max_error_rate": 0.2,
            "alarms.max_p95_latency_ms": 60_000.0,
            "alarms.min_feedback": 1,
        },
    )


def until(condition: Callable[[], bool], step: Callable[[], object], what: str) -> float:
    """Run `step` until `condition` holds, at most BOUND_S; returns the seconds it took."""
    started = time.monotonic()
    pause = threading.Event()
    while not condition():
        if time.monotonic() - started > BOUND_S:
            raise AssertionError(f"{what}: not within {BOUND_S} s")
        step()
        pause.wait(POLL_S)  # pacing of a bounded poll, not synchronisation
    return time.monotonic() - started


def predict(client: httpx.Client, count: int) -> list[int]:
    return [
        client.post("/v1/predict", content=image_bytes(seed), headers={"Content-Type": "image/jpeg"}).status_code
        for seed in range(count)
    ]


def state_of(monitor: LocalMonitor, rule: str) -> AlarmState:
    return monitor.rule(rule).state


def test_errors_fire_the_alarm_within_the_periods_and_recovery_clears_it(
    gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = monitor_settings(gateway.home)
    report = monitoring.setup(settings)
    assert ERROR_RATE in report.created and monitoring.setup(settings).created == ()
    monitor = monitoring.open_local_monitor(settings)
    heard: list[AlarmEvent] = []
    unsubscribe = monitor.subscribe(heard.append)
    feed = monitoring.AlarmFeed(settings)  # another process's view: it polls the history
    model: Any = gateway.gateway.router.table.models["v1"]

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("injected: the model's forward pass fails")

    with gateway.client(headers=gateway.headers) as client:
        # Healthy first: error rate below the threshold, the rule leaves insufficient_data for ok.
        until(
            lambda: state_of(monitor, ERROR_RATE) is AlarmState.OK,
            lambda: (predict(client, 3), monitor.run_once()),
            "healthy traffic → ok",
        )

        monkeypatch.setattr(model, "probabilities", broken)
        failing_since = time.time()
        assert set(predict(client, 3)) == {500}
        until(
            lambda: state_of(monitor, ERROR_RATE) is AlarmState.ALARM,
            lambda: (predict(client, 3), monitor.run_once()),
            "errors → alarm",
        )
        [fired] = [event for event in heard if event.rule == ERROR_RATE and event.state is AlarmState.ALARM]
        assert fired.notice is NoticeKind.ALARM and fired.value is not None and fired.value > 0.2
        # It fires at the end of the COUNT-th fully failing period: the one the first error fell in may
        # still average below the threshold, so at most COUNT + 1 periods after the errors began.
        assert failing_since < fired.time <= failing_since + (COUNT + 1) * PERIOD_S and not fired.silenced
        assert [view.rule.name for view in monitoring.active_alarms(settings)] == [ERROR_RATE]

        viewed = monitoring.acknowledge(settings, ERROR_RATE, user="oncall", note="looking")
        assert viewed.acknowledged_by == "oncall"

        monkeypatch.undo()
        assert set(predict(client, 3)) == {200}
        until(
            lambda: state_of(monitor, ERROR_RATE) is AlarmState.OK,
            lambda: (predict(client, 3), monitor.run_once()),
            "recovery → ok",
        )

    recovered = [event for event in heard if event.rule == ERROR_RATE and event.notice is NoticeKind.RECOVERED]
    assert len(recovered) == 1 and recovered[0].old is AlarmState.ALARM
    assert monitor.rule(ERROR_RATE).acknowledged_at is None  # an acknowledgement ends with its alarm
    lines = [(entry.kind, entry.old, entry.new) for entry in monitoring.history(settings, rule=ERROR_RATE)]
    assert lines == [
        (HistoryKind.TRANSITION, AlarmState.INSUFFICIENT_DATA, AlarmState.OK),
        (HistoryKind.TRANSITION, AlarmState.OK, AlarmState.ALARM),
        (HistoryKind.ACKNOWLEDGED, AlarmState.ALARM, AlarmState.ALARM),
        (HistoryKind.TRANSITION, AlarmState.ALARM, AlarmState.OK),
    ]
    polled = [(entry.rule, entry.new) for entry in feed.poll() if entry.rule == ERROR_RATE]
    assert polled == [(ERROR_RATE, AlarmState.OK), (ERROR_RATE, AlarmState.ALARM), (ERROR_RATE, AlarmState.OK)]
    assert feed.poll() == []

    # The series behind the rule (what a sparkline shows) has the spike.
    values = [
        point.value for point in monitoring.series(settings, monitor.rule(ERROR_RATE), periods=60, monitor=monitor)
    ]
    assert max(values) > 0.2 and values[-1] == 0.0

    # The gateway goes away: the service-down rule alarms at the next completed period.
    gateway.close()
    until(lambda: state_of(monitor, SERVICE_DOWN) is AlarmState.ALARM, monitor.run_once, "gateway gone → alarm")
    assert any(event.rule == SERVICE_DOWN and event.notice is NoticeKind.ALARM for event in heard)
    unsubscribe()
    monitor.close()


def test_cli_list_history_and_status_on_the_local_backend(
    gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import io
    import json

    from arsl_tui.cli import build_parser
    from arsl_tui.cli.common import CommandContext, run_command

    config = tmp_path / "alarms.toml"
    config.write_text(
        f'home = "{gateway.home}"\n[alarms]\nevaluation_period_s = {PERIOD_S}\ncount = 1\n'
        "suppress_s = 0\nmax_error_rate = 0.2\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ARSL_CONFIG", str(config))
    for name in [name for name in os.environ if name.startswith("ARSL_") and name != "ARSL_CONFIG"]:
        monkeypatch.delenv(name)

    def run_cli(*arguments: str) -> tuple[int, Any]:
        namespace = build_parser().parse_args(list(arguments))
        out, err = io.StringIO(), io.StringIO()
        context = CommandContext(config_path=None, backend=None, json_output=True, stdout=out, stderr=err)
        code = run_command(namespace.handler, context, namespace)
        return code, json.loads(out.getvalue().splitlines()[-1])

    code, created = run_cli("--json", "alarms", "setup", "--yes")
    assert code == 0 and "arsl-error-rate" in created["created"]
    code, round_result = run_cli("--json", "alarms", "watch", "--once")
    assert code == 0 and round_result["events"] == []  # nothing completed yet in a fresh period
    code, listed = run_cli("--json", "alarms", "list", "--state", "insufficient_data")
    assert code == 0 and {item["name"] for item in listed["alarms"]} >= {"arsl-error-rate", "arsl-service-down"}
    code, refused = run_cli("--json", "alarms", "ack", "arsl-error-rate")
    assert code == 1 and "not in alarm" in refused["error"]
    code, unknown = run_cli("--json", "alarms", "silence", "arsl-nope", "--for", "1h")
    assert code == 2 and "no alarm rule named 'arsl-nope'" in unknown["error"]
    code, bad = run_cli("--json", "alarms", "silence", "arsl-error-rate", "--for", "soon")
    assert code == 2 and "--for" in bad["error"]
    code, silenced = run_cli("--json", "alarms", "silence", "arsl-error-rate", "--for", "30m", "--note", "deploy")
    assert code == 0 and silenced["silenced"] is True and silenced["silenced_until"] > time.time() + 1700
    code, history = run_cli("--json", "alarms", "history", "arsl-error-rate")
    assert code == 0 and [(item["kind"], item["detail"]) for item in history["history"]] == [("silenced", "deploy")]

    code, status = run_cli("--json", "status")
    phases = {item["phase"]: item for item in status["phases"]}
    assert code == 0 and list(phases) == ["data", "training", "models", "service", "canary", "alarms"]
    assert phases["data"]["state"] == "none" and phases["data"]["next"] == "arsl upload DIR"
    assert phases["service"]["state"] == "running" and phases["service"]["details"]["weights"] == {"v1": 100}
    assert phases["alarms"]["details"]["rules"] == len(created["created"])
    assert status["next"] == "arsl upload DIR"
