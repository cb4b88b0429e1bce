"""Input drift end to end: the real gateway profiles live images, the local monitor alarms on shifted ones.

The gateway (uvicorn on 127.0.0.1, in this process) serves a package whose reference profile the
exporter wrote from synthetic "validation" images. Normal traffic (more images of the same signers)
over several periods leaves the `arsl-input-drift` rule ok; the same images inverted — what
`arsl api-test --drift` sends — make it alarm at the end of the configured number of periods. The
monitor and the gateway's live profile share a clock the test moves one period per round, so the
rounds are judged exactly as the monitor would judge them an hour apart (no sleeps).
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.alarms import INPUT_DRIFT, AlarmState, HistoryKind
from arsl_tui.domain.serving import Deployment
from arsl_tui.ops import monitoring
from arsl_tui.ops.drift import shift_image
from arsl_tui.providers.local.serving_control import ProcessRecord, process_start_ticks
from arsl_tui.serving.drift import LiveInputs

pytest.importorskip("torch")

from tests.serving.conftest import LiveGateway, start_gateway
from tests.serving.drift_packages import export_profiled_package, jpegs

T0 = 1_800_000_000.0  # a multiple of the period
PERIOD_S = 60
PERIODS = 2
PER_PERIOD = 256  # above [drift] min_images (200): every round's window is scored
SIGNERS_SEED = 9


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway(tmp_path: Path, clock: Clock) -> Iterator[LiveGateway]:
    package = export_profiled_package(tmp_path / "package", 1, jpegs(SIGNERS_SEED, 640))
    live = start_gateway(tmp_path / "home", {"v1": package}, Deployment(stable="v1", weights={"v1": 100}))
    live.gateway.metrics.drift = LiveInputs(clock=clock)
    host, port = live.url.removeprefix("http://").split(":")
    # The gateway serves from this process: record it as the running gateway, as `arsl deploy` would.
    ticks = process_start_ticks(os.getpid())
    assert ticks is not None
    live.state.record_process(ProcessRecord(os.getpid(), ticks, host, int(port), time.time()))
    yield live
    live.close()


DRIFT_SETTINGS = {
    "alarms.evaluation_period_s": PERIOD_S,
    "alarms.suppress_s": 0,
    "alarms.max_p95_latency_ms": 60_000.0,
    "drift.periods": PERIODS,
    "drift.window_s": PERIOD_S,
}


def drift_settings(home: Path) -> Settings:
    return load_settings(None, environ={}, cwd=home, cli_overrides={"home": str(home), **DRIFT_SETTINGS})


def send(client: httpx.Client, images: list[bytes]) -> None:
    for start in range(0, len(images), 64):
        chunk = [base64.b64encode(data).decode() for data in images[start : start + 64]]
        answered = client.post("/v1/predict/batch", json={"images": chunk})
        assert answered.status_code == 200, answered.text


def test_shifted_images_raise_the_drift_alarm_within_the_periods_and_normal_ones_do_not(
    gateway: LiveGateway, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = drift_settings(gateway.home)
    monitor = monitoring.open_local_monitor(settings, clock=clock)
    assert INPUT_DRIFT in monitoring.setup(settings, monitor).created
    normal_rounds = PERIODS + 2
    traffic = jpegs(SIGNERS_SEED, PER_PERIOD * (normal_rounds + PERIODS + 1), start=640)
    states: list[AlarmState] = []

    def period(index: int, images: list[bytes]) -> None:
        """Traffic early in period `index`, then the monitor's round later in the same period."""
        clock.now = T0 + index * PERIOD_S + 10
        send(client, images)
        clock.now = T0 + index * PERIOD_S + 50
        monitor.run_once()
        states.append(monitor.rule(INPUT_DRIFT).state)

    with gateway.client(headers=gateway.headers) as client:
        for index in range(normal_rounds):
            period(index, traffic[index * PER_PERIOD : (index + 1) * PER_PERIOD])
        # Each round judges the periods before it: the first has nothing to judge yet.
        assert states[1:] == [AlarmState.OK] * (normal_rounds - 1), states
        normal_values = [
            point.value
            for point in monitor.points("ARSL.Gateway", "input_drift", {"service_id": "local"}, T0, clock.now + 1)
        ]
        assert len(normal_values) == normal_rounds and max(normal_values) < settings.drift.threshold

        shifted_from = T0 + normal_rounds * PERIOD_S
        for index in range(normal_rounds, normal_rounds + PERIODS + 1):
            chunk = traffic[index * PER_PERIOD : (index + 1) * PER_PERIOD]
            period(index, [shift_image(data, "invert") for data in chunk])

    # Periods normal_rounds … normal_rounds + PERIODS − 1 breach; the round after the last of them alarms.
    assert states[normal_rounds:] == [AlarmState.OK] * PERIODS + [AlarmState.ALARM], states
    [fired] = [
        entry
        for entry in monitoring.history(settings, rule=INPUT_DRIFT, monitor=monitor)
        if entry.kind is HistoryKind.TRANSITION and entry.new is AlarmState.ALARM
    ]
    assert fired.time == shifted_from + PERIODS * PERIOD_S, "at the end of the configured periods, not later"
    assert fired.value is not None and fired.value > 1.0

    # `arsl drift status --json` reads the same gateway and rule.
    from arsl_tui.cli import build_parser
    from arsl_tui.cli.common import CommandContext, run_command

    config = tmp_path / "drift.toml"
    config.write_text(
        f'home = "{gateway.home}"\n[alarms]\nevaluation_period_s = {PERIOD_S}\n'
        f"[drift]\nperiods = {PERIODS}\nwindow_s = {PERIOD_S}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ARSL_CONFIG", str(config))
    for name in [name for name in os.environ if name.startswith("ARSL_") and name != "ARSL_CONFIG"]:
        monkeypatch.delenv(name)
    namespace = build_parser().parse_args(["--json", "drift", "status"])
    out, err = io.StringIO(), io.StringIO()
    context = CommandContext(config_path=None, backend=None, json_output=True, stdout=out, stderr=err)
    code = run_command(namespace.handler, context, namespace)
    status: dict[str, Any] = json.loads(out.getvalue().splitlines()[-1])
    assert code == 1, err.getvalue()
    assert status["drifting"] is True and status["drifting_since"] == fired.time
    assert status["rule"]["name"] == INPUT_DRIFT and status["rule"]["state"] == "alarm"
    assert (status["threshold"], status["periods"], status["window_s"]) == (0.25, PERIODS, PERIOD_S)
    version = status["versions"]["v1"]
    assert version["verdict"] == "drifting" and version["images"] == PER_PERIOD
    assert version["moved_most"] == "intensity_mean" and version["score"] > status["threshold"]
    feature = version["features"]["intensity_mean"]
    assert set(feature) == {"psi", "reference", "live", "reference_spark", "live_spark"}
    assert len(feature["live_spark"]) == len(feature["reference"]) == len(feature["live"])
    monitor.close()
