"""Clock and timing faults: windows without traffic, and metric sources that stop answering mid-canary.

Local backend: one real gateway process for the module (`load_support.GatewayProcess`, two real
model packages), the real canary controller (`ops.deployment.open_controller`, real SQLite state,
real local registry) on an injected clock, so a 60 s window passes in no time; the gateway itself
is made to hang (SIGSTOP) or die (SIGKILL). The alarm monitor (`ops.monitoring`, the real sampler
over the gateway's admin API) runs its rounds on an injected clock too.

Huawei backend: the real huaweicloudsdk clients against the contract server on 127.0.0.1 (Cloud Eye
rules and data, ModelArts new-version services and AOM's metric query), which stops answering; and
against a server that trickles its answer a byte at a time, each byte inside the read timeout (the
SDK's timeouts are per read).

The rule every test checks: the canary is never promoted on no evidence or on evidence it could not
read — it holds the step, says why in the run's reason or error, and carries on when the source
answers again; an alarm rule with no data becomes insufficient_data (after `count` periods, as
Cloud Eye does), never ok; and every wait on a source that does not answer ends within a stated bound.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("torch")

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.alarms import ERROR_RATE, P95_LATENCY, SERVICE_DOWN, AlarmState, MonitorError
from arsl_tui.domain.canary import CanaryRun, Command, Phase
from arsl_tui.domain.ports import ModelSlot, ServingPlatformError
from arsl_tui.domain.serving import Deployment
from arsl_tui.ops import monitoring, serving
from arsl_tui.ops.canary import CanaryController
from arsl_tui.ops.canary_wiring import open_controller
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.huawei.ces import CloudEyeMonitor, build_clients
from arsl_tui.providers.huawei.deployment_services import ModelArtsDeploymentServing
from arsl_tui.providers.huawei.sdk_clients import call_deadline_s
from arsl_tui.providers.local.serving_platform import SERVICE as LOCAL_SERVICE
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.serving.auth import HEADER
from arsl_tui.state.canary_store import CanaryStore
from tests.fixtures.aom_fake import AomPromFake
from tests.fixtures.ces_contract import CloudEyeFake, ces_server
from tests.fixtures.huawei_contract import ContractServer
from tests.fixtures.huawei_serving_fakes import SERVICES, InferServiceFake
from tests.fixtures.model_packages import gate_json, metrics_json, write_package
from tests.providers.conftest import FAKE_CREDENTIALS
from tests.reliability.conftest import reliability_runs
from tests.reliability.load_support import (
    CHALLENGER,
    CHAMPION,
    GatewayProcess,
    PacedClient,
    Recorder,
    request_counters,
    wait_until,
)
from tests.serving.packages import export_random_package

WINDOW_S = 60
MIN_SAMPLES = 20
CANARY_CONFIG = f"""
[canary]
steps = [50, 100]
window_s = {WINDOW_S}
min_samples = {MIN_SAMPLES}
max_p95_latency_ms = 10000.0
min_latency_increase_ms = 1000.0
shadow = false
"""
"""50 % first, so a few seconds of traffic fill a window; latency limits far above what a shared
2-core machine can do to a healthy version, so only missing evidence can hold these canaries. No shadow
window before the first step: these tests are about the traffic steps' windows."""

STATS_TIMEOUT_S = 5.0
"""The bound proposed for the local platform's admin reads (see test_a_hung_gateway_…)."""
SLACK_S = 3.0
"""Scheduling slack on top of a timeout on a loaded 2-core machine."""


# --- the local stage ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The champion serving alone, v1 and v2 registered (v1 champion, v2 challenger)."""
    root = tmp_path_factory.mktemp("canary-timing")
    packages = {
        CHAMPION: export_random_package(root / "p1", seed=1),
        CHALLENGER: export_random_package(root / "p2", seed=2),
    }
    process = GatewayProcess.start(
        root,
        packages,
        Deployment(stable=CHAMPION, weights={CHAMPION: 100}),
        gateway={"app_call_limit": 1_000_000},
        extra_config=CANARY_CONFIG,
    )
    registry = ModelRegistry.from_settings(process.settings())
    for version, package in packages.items():
        registry.register(
            package,
            job_id=f"job-{version}",
            manifest_id="m-timing",
            source=str(package),
            gate=gate_json(),
            metrics=metrics_json(),
            user="tests",
        )
    assert registry.aliases() == {"champion": CHAMPION, "challenger": CHALLENGER}
    try:
        yield process
    finally:
        process.stop()
        assert not process.alive(), f"the gateway (pid {process.pid}) is still running"


@dataclass
class Stage:
    gateway: GatewayProcess
    controller: CanaryController
    now: list[float]

    def tick(self) -> CanaryRun:
        run = self.controller.tick()
        assert run is not None
        return run

    def end_window(self) -> None:
        run = self.controller.current()
        assert run is not None and run.next_judgement_at is not None
        self.now[0] = run.next_judgement_at + 0.5

    def weights(self) -> dict[str, int]:
        return dict(self.gateway.platform().status(LOCAL_SERVICE).weights)

    def champion(self) -> str | None:
        return self.controller.registry.aliases().get("champion")


@pytest.fixture
def stage(gateway: GatewayProcess) -> Iterator[Stage]:
    now = [time.time()]
    controller = open_controller(gateway.settings(), clock=lambda: now[0], user="tests")
    built = Stage(gateway, controller, now)
    try:
        yield built
    finally:
        if gateway.alive():
            gateway.signal(signal.SIGCONT)
        run = controller.current()
        if run is not None and run.phase.active and run.phase not in (Phase.PROMOTING, Phase.ROLLING_BACK):
            controller.command(Command.ROLLBACK, reason="test cleanup")
        controller.close()


def start_canary(stage: Stage) -> CanaryRun:
    run = stage.controller.start(CHALLENGER)
    assert run.phase is Phase.OBSERVING and run.step == 0, (run.phase, run.error)
    assert stage.weights() == {CHAMPION: 50, CHALLENGER: 50}
    return run


@dataclass
class Traffic:
    recorder: Recorder
    stop: threading.Event
    clients: list[PacedClient]

    def challenger_answers(self) -> int:
        return sum(1 for item in self.recorder.snapshot() if item.status == 200 and item.version == CHALLENGER)

    def close(self) -> None:
        self.stop.set()
        for client in self.clients:
            client.join(20)


@pytest.fixture
def traffic_factory(gateway: GatewayProcess) -> Iterator[Callable[[], Traffic]]:
    made: list[Traffic] = []
    images = [data for data, _label in serving.synthetic_images(8)]

    def make() -> Traffic:
        recorder, stop = Recorder(), threading.Event()
        name = f"timing-{len(made)}-{time.monotonic_ns()}"
        key = gateway.create_key(name)
        key_id = recorder.key_created(name, time.monotonic())
        clients = [PacedClient(f"c{number}", gateway.url, images, recorder, 20.0, stop) for number in range(2)]
        for client in clients:
            client.hold(name, key, key_id)
            client.start()
        traffic = Traffic(recorder, stop, clients)
        made.append(traffic)
        return traffic

    yield make
    for traffic in made:
        traffic.close()


def judged_outcomes(run: CanaryRun) -> list[str]:
    return [item["judgement"]["outcome"] for item in run.judgements]


# --- (1) no traffic -------------------------------------------------------------------------------


def test_windows_without_traffic_hold_the_step_extend_the_window_and_never_promote(stage: Stage) -> None:
    # The module's first canary: the gateway has answered no prediction yet, so every window is empty.
    assert not [key for key in request_counters(stage.gateway.url) if key[0] == "predict"]
    run = start_canary(stage)
    started = run.window_started_at
    assert started is not None
    windows = reliability_runs(3)
    for number in range(1, windows + 1):
        stage.end_window()
        run = stage.tick()
        assert (run.phase, run.step, run.holds) == (Phase.OBSERVING, 0, number), run.reason
        judgement = run.judgements[-1]["judgement"]
        assert judgement["outcome"] == "inconclusive" and judgement["canary_requests"] == 0
        assert f"0 canary requests in the window, fewer than {MIN_SAMPLES}: holding" in judgement["reason"]
        assert run.reason.startswith(f"holding at 50% after window {number}: 0 canary requests")
        # Held windows are judged again on everything since the step began: the window extends.
        assert run.judgements[-1]["window_s"] == pytest.approx(stage.now[0] - started)
        assert run.next_judgement_at == pytest.approx(stage.now[0] + WINDOW_S)
        assert not run.pending and run.error == ""
    assert judged_outcomes(run) == ["inconclusive"] * windows
    assert stage.weights() == {CHAMPION: 50, CHALLENGER: 50}  # no step was taken
    assert stage.champion() == CHAMPION
    status = stage.controller.status()
    shown = json.loads(json.dumps(status.to_json()))  # the CLI's --json and the console render this
    assert shown["holds"] == windows and shown["phase"] == "observing" and shown["problems"] == []
    assert [entry["event"] for entry in shown["journal"]] == ["start", "deployed", *["hold"] * windows]
    logged = [entry.reason.split(":", 1)[0] for entry in stage.controller.registry.log() if entry.action == "canary"]
    assert logged[-2:] == ["start", "deployed"], logged  # a hold is no transition: nothing else is logged


# --- (2) the metric source stops answering --------------------------------------------------------


def tick_within(stage: Stage, bound_s: float) -> tuple[CanaryRun | None, float, BaseException | None]:
    """Run one tick on a thread; (run, seconds, error), run None if it was still blocked after `bound_s`."""
    result: list[CanaryRun | None] = []
    failure: list[BaseException] = []
    finished = threading.Event()

    def run() -> None:
        try:
            result.append(stage.controller.tick())
        except BaseException as error:
            failure.append(error)
        finally:
            finished.set()

    started = time.monotonic()
    worker = threading.Thread(target=run, name="canary-tick", daemon=True)
    worker.start()
    if not finished.wait(bound_s):
        # Let the hung call complete so the thread and the canary lock are released before failing.
        stage.gateway.signal(signal.SIGCONT)
        worker.join(150)
        return None, time.monotonic() - started, None
    return (result[0] if result else None), time.monotonic() - started, (failure[0] if failure else None)


def test_a_dead_gateway_mid_canary_holds_with_the_error_and_resumes_once_it_is_back(
    stage: Stage, traffic_factory: Callable[[], Traffic]
) -> None:
    start_canary(stage)
    traffic = traffic_factory()
    wait_until(lambda: traffic.challenger_answers() >= MIN_SAMPLES, 60, "challenger answers")
    traffic.close()
    stage.gateway.signal(signal.SIGKILL)
    wait_until(lambda: not stage.gateway.alive(), 10, "the killed gateway is gone")
    stage.end_window()
    for attempt in range(3):
        run, _took, error = tick_within(stage, SLACK_S)
        assert error is None and run is not None, f"attempt {attempt}: the tick failed or blocked ({error})"
        assert (run.phase, run.step, run.holds) == (Phase.OBSERVING, 0, 0)
        assert "cannot read the window's stats" in run.error and "not running" in run.error, run.error
        assert run.judgements == () and run.due(stage.now[0]), "the window must be judged once it can be read"
        stage.now[0] += 1.0
    assert stage.champion() == CHAMPION
    status = stage.controller.status()
    assert json.dumps(status.to_json()) and status.run is not None and status.run.phase is Phase.OBSERVING
    assert any("stats" in problem for problem in status.problems), status.problems

    # `arsl service start`: the gateway comes back with the weights it had, and the window is judged.
    serving.start(stage.gateway.settings())
    control = stage.gateway.control()
    try:
        record = control.running()
    finally:
        control.close()
    assert record is not None
    stage.gateway.record = record
    assert stage.weights() == {CHAMPION: 50, CHALLENGER: 50}
    run = stage.tick()
    # The restarted gateway has no stats from before its restart: nothing to judge on, so it holds.
    assert judged_outcomes(run) == ["inconclusive"] and run.step == 0 and run.phase is Phase.OBSERVING
    assert stage.champion() == CHAMPION


def test_a_hung_gateway_mid_canary_times_out_within_the_bound_and_holds(
    stage: Stage, traffic_factory: Callable[[], Traffic]
) -> None:
    start_canary(stage)
    traffic = traffic_factory()
    wait_until(lambda: traffic.challenger_answers() >= MIN_SAMPLES, 60, "challenger answers")
    traffic.close()
    stage.end_window()
    stage.gateway.signal(signal.SIGSTOP)  # alive, connections accepted by the kernel, nothing answered
    try:
        run, took, error = tick_within(stage, STATS_TIMEOUT_S + SLACK_S)
    finally:
        stage.gateway.signal(signal.SIGCONT)
    assert run is not None, f"the canary tick was still waiting on the hung gateway after {took:.1f} s"
    assert error is None
    assert (run.phase, run.step) == (Phase.OBSERVING, 0) and run.judgements == ()
    assert "cannot read the window's stats" in run.error
    assert stage.champion() == CHAMPION
    run = stage.tick()  # it answers again: the window is judged on its traffic
    assert judged_outcomes(run) == ["pass"] and run.step == 1 and stage.champion() == CHAMPION


# --- the alarm monitor on a hung gateway ----------------------------------------------------------


def test_alarm_rules_see_a_hung_gateway_as_down_and_its_metrics_as_missing_never_ok(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    settings = gateway.settings(
        **{
            "alarms.evaluation_period_s": 60,
            "alarms.count": 2,
            "alarms.suppress_s": 0,
            "alarms.max_p95_latency_ms": 60_000.0,
        }
    )
    now = [(time.time() // 60) * 60 + 1]
    timeout_s = 1.0
    monitor = monitoring.open_local_monitor(
        settings, sampler=monitoring.gateway_sampler(settings, timeout_s), clock=lambda: now[0]
    )
    key = gateway.create_key(f"alarms-{time.monotonic_ns()}")
    image = serving.synthetic_images(1)[0][0]
    try:
        monitoring.setup(settings, monitor)

        def predict(count: int) -> None:
            with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30) as client:
                for _ in range(count):
                    answer = client.post(
                        "/v1/predict", content=image, headers={HEADER: key, "Content-Type": "image/jpeg"}
                    )
                    assert answer.status_code == 200

        def round_(traffic: int) -> tuple[dict[str, AlarmState], float]:
            if traffic:
                predict(traffic)
            now[0] += 60
            started = time.monotonic()
            monitoring.run_round(settings, monitor)
            states = {view.rule.name: view.state for view in monitor.rules()}
            return states, time.monotonic() - started

        round_(5)
        states, _ = round_(5)
        assert states[ERROR_RATE] is AlarmState.OK and states[SERVICE_DOWN] is AlarmState.OK
        gateway.signal(signal.SIGSTOP)
        try:
            hung = [round_(0) for _ in range(3)]
        finally:
            gateway.signal(signal.SIGCONT)
        for states, took in hung:
            assert took < timeout_s + SLACK_S, f"a round waited {took:.1f} s on the hung gateway"
            assert states[ERROR_RATE] is not AlarmState.ALARM
        # Round by round (each judges the period the previous round sampled): the healthy period, then
        # service_up 0 alarms at once (count 1) while error rate and p95 have no data for 1, then 2 periods.
        assert [states[SERVICE_DOWN] for states, _ in hung] == [AlarmState.OK, AlarmState.ALARM, AlarmState.ALARM]
        assert [states[ERROR_RATE] for states, _ in hung] == [
            AlarmState.OK,
            AlarmState.OK,
            AlarmState.INSUFFICIENT_DATA,
        ]
        assert hung[-1][0][P95_LATENCY] is AlarmState.INSUFFICIENT_DATA
        missing = [entry for entry in monitor.history(rule=ERROR_RATE) if entry.new is AlarmState.INSUFFICIENT_DATA]
        assert missing and missing[-1].detail == "no data for 2 period(s) of 60 s" and missing[-1].value is None
        # Answering again: up, and the error rate is judged on data again.
        round_(5)
        states, _ = round_(5)
        assert states[SERVICE_DOWN] is AlarmState.OK and states[ERROR_RATE] is AlarmState.OK
    finally:
        monitor.close()


# --- huawei: Cloud Eye stops answering ------------------------------------------------------------


PROJECT = "p-timing-0001"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)
HUAWEI_TIMEOUT_S = 1.0


def huawei_settings(tmp_path: Path, endpoint: str, **overrides: Any) -> Settings:
    return load_settings(
        None,
        environ={},
        cwd=tmp_path,
        cli_overrides={
            "backend": "huawei",
            "home": str(tmp_path / "home"),
            "huawei.ces_endpoint": endpoint,
            "huawei.modelarts_endpoint": endpoint,
            "huawei.aom_endpoint": endpoint,
            "huawei.timeout_s": HUAWEI_TIMEOUT_S,
            "huawei.apig_instance_id": "inst-1",
            "alarms.service_id": "svc-1",
            "alarms.api_id": "api-1",
            **overrides,
        },
    )


def timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        call()
    except Exception as error:
        return error, time.monotonic() - started
    return None, time.monotonic() - started


def test_cloud_eye_without_data_is_insufficient_and_when_it_stops_answering_every_call_times_out(
    tmp_path: Path,
) -> None:
    contract = ces_server({CREDENTIALS.access_key: CREDENTIALS.secret_key}, PROJECT)
    with contract:
        fake = CloudEyeFake(contract)
        settings = huawei_settings(tmp_path, contract.endpoint)
        monitor = CloudEyeMonitor.from_settings(settings, credentials=CREDENTIALS)
        monitoring.setup(settings, monitor)
        # No record and no data point: insufficient data, not ok.
        assert {view.state for view in monitor.rules()} == {AlarmState.INSUFFICIENT_DATA}
        fake.add_point("ARSL.Serving", "error_rate", {"service_id": "svc-1"}, time.time() - 30, 0.0)
        states = {view.rule.name: view.state for view in monitor.rules()}
        assert states[ERROR_RATE] is AlarmState.OK and states[SERVICE_DOWN] is AlarmState.INSUFFICIENT_DATA

        contract.inject(None, delay_s=60.0, times=1000)  # every call from now on: accepted, never answered
        bound = HUAWEI_TIMEOUT_S + SLACK_S
        for what, call in (
            ("rules", monitor.rules),
            ("a round", lambda: monitoring.run_round(settings, monitor)),
            ("put_metric", lambda: monitor.put_metric("ARSL.Serving", "service_up", 1.0, {"service_id": "svc-1"})),
        ):
            error, took = timed(call)
            assert isinstance(error, MonitorError) and error.transient, f"{what}: {error!r}"
            assert "no answer from Cloud Eye" in str(error) and took < bound, f"{what}: {took:.1f} s, {error}"
        failures: list[MonitorError] = []
        stop = threading.Event()

        def failed(error: MonitorError) -> None:
            failures.append(error)
            stop.set()

        watcher = threading.Thread(
            target=monitoring.watch,
            args=(settings, stop, lambda _round: None),
            kwargs={"monitor": monitor, "interval_s": 0.1, "on_error": failed},
            daemon=True,
        )
        watcher.start()
        watcher.join(bound + 5)
        assert not watcher.is_alive() and len(failures) == 1, "the watch loop must report a round it cannot run"


class TricklingServer:
    """Answers every request with a 200 whose body arrives one byte every `gap_s` (each read within the timeout)."""

    def __init__(self, gap_s: float = 0.2, body_bytes: int = 10_000) -> None:
        self.gap_s, self.body_bytes = gap_s, body_bytes
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, name="trickling-server", daemon=True)

    def __enter__(self) -> TricklingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(1 << 16)
            try:
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {self.body_bytes}\r\n\r\n".encode()
                )
                for _ in range(self.body_bytes):
                    if self.stop.wait(self.gap_s):  # the trickle's pace
                        return
                    connection.sendall(b" ")
            except OSError:
                return


def test_cloud_eye_that_trickles_its_answer_is_cut_off_at_the_total_deadline() -> None:
    with TricklingServer() as server:
        v1, v2 = build_clients(server.endpoint, CREDENTIALS, HUAWEI_TIMEOUT_S)
        monitor = CloudEyeMonitor(v1_client=v1, v2_client=v2, endpoint=server.endpoint, timeout_s=HUAWEI_TIMEOUT_S)
        deadline = call_deadline_s(HUAWEI_TIMEOUT_S)
        error, took = timed(monitor.rules)
    assert isinstance(error, MonitorError) and error.transient, repr(error)
    assert f"had not finished answering after {deadline:g} s" in str(error)
    assert deadline - 0.1 <= took < deadline + SLACK_S, f"{took:.2f} s (deadline {deadline} s)"


def test_modelarts_deployments_that_trickle_their_answer_are_cut_off_at_the_total_deadline(tmp_path: Path) -> None:
    with TricklingServer() as server:
        settings = huawei_settings(tmp_path, server.endpoint, **{"huawei.service_name": "arsl-signs"})
        platform = ModelArtsDeploymentServing.from_settings(
            settings,
            package_address=lambda version: f"obs://arsl-ml/models/packages/pkg-{version}/",
            credentials=CREDENTIALS,
        )
        deadline = call_deadline_s(HUAWEI_TIMEOUT_S)
        error, took = timed(lambda: platform.status("arsl-signs"))
    assert isinstance(error, ServingPlatformError) and error.transient, repr(error)
    assert f"had not finished answering after {deadline:g} s" in str(error)
    assert deadline - 0.1 <= took < deadline + SLACK_S, f"{took:.2f} s (deadline {deadline} s)"


def test_a_canary_on_deployments_holds_while_aom_does_not_answer_and_judges_when_it_does(tmp_path: Path) -> None:
    contract = ContractServer(
        services=SERVICES, credentials={CREDENTIALS.access_key: CREDENTIALS.secret_key}, project_id=PROJECT
    )
    with contract:
        services, aom = InferServiceFake(contract), AomPromFake(contract)
        settings = huawei_settings(
            tmp_path,
            contract.endpoint,
            **{
                "huawei.service_name": "arsl-signs",
                "huawei.service_image": "swr.af-north-1.example/arsl/serve:1",
                "huawei.service_flavor": "modelarts.vm.cpu.2u",
                "huawei.pool_id": "pool-dedicated-01",
                "canary.steps": "20,100",
                "canary.window_s": 60,
                "canary.min_samples": 50,
            },
        )
        now = [time.time()]
        registry = ModelRegistry(LocalObjectStore(tmp_path / "store"), "models/")
        for number in (1, 2):
            package = write_package(tmp_path / f"pkg{number}", seed=number, job_id=f"job-{number}")
            registry.register(
                package,
                job_id=f"job-{number}",
                manifest_id="m",
                source=str(package),
                gate=gate_json(),
                metrics=metrics_json(),
                user="tests",
            )
        platform = ModelArtsDeploymentServing.from_settings(
            settings,
            package_address=lambda version: f"obs://arsl-ml/models/packages/pkg-{version}/",
            credentials=CREDENTIALS,
        )
        platform._clock = lambda: now[0]  # the window's AOM query follows the injected clock
        controller = CanaryController(
            settings,
            platform=platform,
            registry=registry,
            store=CanaryStore.open(settings.home_dir),
            service="arsl-signs",
            user="ops",
            clock=lambda: now[0],
        )
        try:
            platform.deploy("arsl-signs", [ModelSlot("v1", 100)])
            service = services.only_service()
            services.advance(service.id, "RUNNING")
            controller.start("v2")
            services.advance(service.id, "RUNNING")
            run = controller.tick()
            assert run is not None and run.phase is Phase.OBSERVING
            assert run.next_judgement_at is not None
            now[0] = run.next_judgement_at + 1
            ids = services.deployment_ids(service.id)
            end = int(now[0]) - 1
            for version, calls in (("v1", 800), ("v2", 200)):
                labels = {"service_id": service.id, "deployment_id": ids[f"arsl-{version}"]}
                aom.set_counter(settings.huawei.aom_requests_metric, labels, [(end - 50, 0), (end, calls)])
                aom.set_counter(settings.huawei.aom_failures_metric, labels, [(end - 50, 0), (end, 0)])

            contract.inject("list_instant_query_aom_prom_get", delay_s=30.0, times=2)
            for _ in range(2):
                started = time.monotonic()
                run = controller.tick()
                took = time.monotonic() - started
                assert run is not None and took < HUAWEI_TIMEOUT_S + SLACK_S, f"the tick took {took:.1f} s"
                assert (run.phase, run.step, run.judgements) == (Phase.OBSERVING, 0, ())
                assert "cannot read the window's stats" in run.error and "no answer within" in run.error, run.error
                assert services.weights(service.id) == {"arsl-v1": 80, "arsl-v2": 20}
            run = controller.tick()  # AOM answers again: the window is judged on its data
            assert run is not None and judged_outcomes(run) == ["pass"] and run.step == 1
            assert registry.aliases()["champion"] == "v1"
        finally:
            controller.close()
