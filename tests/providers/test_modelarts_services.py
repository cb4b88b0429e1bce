"""ModelArts real-time services and Cloud Eye call counts: the real SDK clients against the contract server.

The server checks every call's method, path, signature and body (a test fails on any violation). The
service is played through DEPLOYING → RUNNING by the test; errors (429, 500, a PUT that times out,
a refused connection, a 400) must leave the canary in a safe, explicit state and never apply a
change twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.canary import CanaryRun, Command, Phase
from arsl_tui.domain.ports import ModelSlot, ServingPlatformError
from arsl_tui.ops.canary import CanaryController
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.huawei.services import CALLS_METRIC, CES_NAMESPACE, FAILURES_METRIC, ModelArtsServingPlatform
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.canary_store import CanaryStore
from tests.fixtures.ces_metrics_fake import CloudEyeMetricsFake
from tests.fixtures.huawei_contract import ContractServer, closed_port_endpoint
from tests.fixtures.huawei_serving_fakes import SERVICES, InferServiceFake
from tests.fixtures.model_packages import gate_json, metrics_json, write_package
from tests.providers.conftest import FAKE_CREDENTIALS

PROJECT = "p-serving-0001"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)
SERVICE = "arsl-signs"
IMAGE = "swr.af-north-1.example/arsl/serve:1"


@pytest.fixture
def contract() -> Iterator[ContractServer]:
    server = ContractServer(
        services=SERVICES, credentials={CREDENTIALS.access_key: CREDENTIALS.secret_key}, project_id=PROJECT
    )
    with server:
        yield server
    assert server.violations == [], "calls broke the documented contract"


@pytest.fixture
def services(contract: ContractServer) -> InferServiceFake:
    return InferServiceFake(contract)


@pytest.fixture
def cloud_eye(contract: ContractServer) -> CloudEyeMetricsFake:
    return CloudEyeMetricsFake(contract)


def make_settings(tmp_path: Path, endpoint: str, timeout_s: float = 5.0) -> Settings:
    return load_settings(
        None,
        environ={},
        cwd=tmp_path,
        cli_overrides={
            "backend": "huawei",
            "home": str(tmp_path / "home"),
            "huawei.modelarts_endpoint": endpoint,
            "huawei.ces_endpoint": endpoint,
            "huawei.timeout_s": timeout_s,
            "huawei.service_name": SERVICE,
            "huawei.service_image": IMAGE,
            "huawei.service_flavor": "modelarts.vm.cpu.2u",
            "canary.steps": "20,100",
            "canary.window_s": 60,
            "canary.min_samples": 50,
            "canary.min_feedback": 10,
        },
    )


def address(version: str) -> str:
    return f"obs://arsl-ml/models/packages/pkg-{version}/"


def make_platform(settings: Settings, clock: list[float] | None = None) -> ModelArtsServingPlatform:
    built = ModelArtsServingPlatform.from_settings(settings, package_address=address, credentials=CREDENTIALS)
    if clock is not None:
        built._clock = lambda: clock[0]
    return built


@pytest.fixture
def settings(tmp_path: Path, contract: ContractServer) -> Settings:
    return make_settings(tmp_path, contract.endpoint)


@pytest.fixture
def platform(
    settings: Settings, services: InferServiceFake, cloud_eye: CloudEyeMetricsFake
) -> ModelArtsServingPlatform:
    return make_platform(settings)


# --- the platform on its own ----------------------------------------------------------------------


def test_deploy_creates_a_service_with_a_group_per_version_and_plays_it_to_running(
    platform: ModelArtsServingPlatform, contract: ContractServer, services: InferServiceFake
) -> None:
    assert platform.status(SERVICE).phase == "absent"
    status = platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)], "canary v2")
    assert status.phase == "deploying" and status.weights == {"v1": 90, "v2": 10}
    assert status.ready == {"v1": False, "v2": False}

    [create] = contract.calls_to("create_infer_service")
    assert create.method == "POST" and create.path == f"/v2/{PROJECT}/services"
    body = create.body
    assert (body["name"], body["type"]) == (SERVICE, "REAL_TIME")
    groups = {group["name"]: group for group in body["group_configs"]}
    assert {name: group["weight"] for name, group in groups.items()} == {"arsl-v1": 90, "arsl-v2": 10}
    unit = groups["arsl-v2"]["unit_configs"][0]
    assert unit["image"] == {"source": "SWR", "swr_path": IMAGE}
    assert unit["models"] == [{"source": "OBS", "address": address("v2"), "mount_path": "/home/mind/model"}]
    assert (unit["role"], unit["flavor"], unit["count"]) == ("COMMON", "modelarts.vm.cpu.2u", 1)

    service = services.only_service()
    services.advance(service.id, "RUNNING")
    running = platform.status(SERVICE)
    assert running.running and running.ready == {"v1": True, "v2": True}
    assert running.endpoint == f"https://infer.af-north-1.example/v1/infers/{service.id}"


def test_weights_are_one_update_naming_every_group_by_id(
    platform: ModelArtsServingPlatform, contract: ContractServer, services: InferServiceFake
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)])
    service = services.only_service()
    services.advance(service.id, "RUNNING")
    status = platform.set_weights(SERVICE, {"v1": 75, "v2": 25})
    assert status.weights == {"v1": 75, "v2": 25} and status.running
    [update] = contract.calls_to("update_infer_service")
    assert update.method == "PUT" and update.path == f"/v2/{PROJECT}/services/{service.id}"
    ids = {group.name: group.id for group in service.groups}
    assert update.body == {
        "group_configs": [
            {"id": ids["arsl-v1"], "name": "arsl-v1", "weight": 75},
            {"id": ids["arsl-v2"], "name": "arsl-v2", "weight": 25},
        ]
    }
    with pytest.raises(ServingPlatformError, match="must sum to 100"):
        platform.set_weights(SERVICE, {"v1": 70, "v2": 20})
    with pytest.raises(ServingPlatformError, match="must name exactly"):
        platform.set_weights(SERVICE, {"v1": 100})
    assert len(contract.calls_to("update_infer_service")) == 1  # refused before any call


def test_deploying_a_new_set_adds_and_drops_groups(
    platform: ModelArtsServingPlatform, contract: ContractServer, services: InferServiceFake
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    service = services.only_service()
    services.advance(service.id, "RUNNING")
    v1_id = service.groups[0].id
    status = platform.deploy(SERVICE, [ModelSlot("v1", 80), ModelSlot("v2", 20)])
    assert status.phase == "deploying"  # the new group starts
    added = contract.calls_to("update_infer_service")[-1].body["group_configs"]
    assert added[0] == {"id": v1_id, "name": "arsl-v1", "weight": 80}
    assert added[1]["name"] == "arsl-v2" and "id" not in added[1] and added[1]["unit_configs"]
    services.advance(service.id, "RUNNING")
    final = platform.deploy(SERVICE, [ModelSlot("v2", 100)])
    assert final.weights == {"v2": 100}
    assert [group.name for group in service.groups] == ["arsl-v2"]


def test_stats_sum_cloud_eye_call_counts_per_version(
    platform: ModelArtsServingPlatform,
    contract: ContractServer,
    services: InferServiceFake,
    cloud_eye: CloudEyeMetricsFake,
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 80), ModelSlot("v2", 20)])
    service = services.only_service()
    services.advance(service.id, "RUNNING")
    ids = {group.name: group.id for group in service.groups}
    now_ms = int(time.time() * 1000)
    for name, calls, failures in (("arsl-v1", [400, 380], [1, 0]), ("arsl-v2", [100, 90], [9, 12])):
        dims = {"service_id": service.id, "model_id": ids[name]}
        cloud_eye.set_points(
            CES_NAMESPACE, CALLS_METRIC, dims, [(now_ms - 90_000, calls[0]), (now_ms - 30_000, calls[1])]
        )
        cloud_eye.set_points(
            CES_NAMESPACE, FAILURES_METRIC, dims, [(now_ms - 90_000, failures[0]), (now_ms - 30_000, failures[1])]
        )
        cloud_eye.set_points(CES_NAMESPACE, CALLS_METRIC, dims | {"model_id": "other"}, [(now_ms - 1, 10_000)])
    stats = platform.stats(SERVICE, ["v1", "v2"], window_s=120)
    assert (stats["v1"].requests, stats["v1"].errors) == (780, 1)
    assert (stats["v2"].requests, stats["v2"].errors) == (190, 21)
    assert stats["v2"].latency_ms == () and stats["v2"].feedback == 0  # not published per version by ModelArts
    [query] = contract.calls_to("batch_list_metric_data")
    assert query.path == f"/V1.0/{PROJECT}/batch-query-metric-data"
    body = query.body
    assert (body["period"], body["filter"]) == ("1", "sum") and body["to"] - body["from"] == 120_000
    asked = {
        (metric["metric_name"], tuple((item["name"], item["value"]) for item in metric["dimensions"]))
        for metric in body["metrics"]
    }
    assert (FAILURES_METRIC, (("service_id", service.id), ("model_id", ids["arsl-v2"]))) in asked
    assert len(asked) == 4


def test_errors_become_explicit_and_say_whether_to_retry(
    platform: ModelArtsServingPlatform, contract: ContractServer, services: InferServiceFake, tmp_path: Path
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)])
    services.advance(services.only_service().id, "RUNNING")
    contract.inject("update_infer_service", status=429, error_code="ModelArts.0010", error_msg="Too many requests")
    with pytest.raises(ServingPlatformError) as throttled:
        platform.set_weights(SERVICE, {"v1": 50, "v2": 50})
    assert throttled.value.transient and throttled.value.status == 429 and "throttled" in str(throttled.value)
    contract.inject("show_infer_service", status=500, error_msg="internal")
    with pytest.raises(ServingPlatformError) as internal:
        platform.status(SERVICE)
    assert internal.value.transient and internal.value.status == 500
    contract.inject("update_infer_service", status=400, error_code="ModelArts.3551", error_msg="bad group")
    with pytest.raises(ServingPlatformError) as refused:
        platform.set_weights(SERVICE, {"v1": 50, "v2": 50})
    assert not refused.value.transient and "ModelArts.3551" in str(refused.value)
    nowhere = make_platform(make_settings(tmp_path / "x", closed_port_endpoint()))
    with pytest.raises(ServingPlatformError) as unreachable:
        nowhere.status(SERVICE)
    assert unreachable.value.transient
    assert CREDENTIALS.secret_key not in str(unreachable.value) + str(refused.value)


def test_missing_image_is_refused_before_any_call(
    tmp_path: Path, contract: ContractServer, services: InferServiceFake
) -> None:
    settings = load_settings(
        None,
        environ={},
        cwd=tmp_path,
        cli_overrides={
            "backend": "huawei",
            "home": str(tmp_path / "home"),
            "huawei.modelarts_endpoint": contract.endpoint,
            "huawei.ces_endpoint": contract.endpoint,
            "huawei.service_name": SERVICE,
        },
    )
    with pytest.raises(ServingPlatformError, match="service_image is empty"):
        make_platform(settings).deploy(SERVICE, [ModelSlot("v1", 100)])
    assert contract.calls_to("create_infer_service") == []


# --- the canary controller on ModelArts -----------------------------------------------------------


class Rig:
    """A controller on the contract server, a registry with v1 (champion) and v2, and a clock the test moves."""

    def __init__(
        self, tmp_path: Path, settings: Settings, services: InferServiceFake, cloud_eye: CloudEyeMetricsFake
    ) -> None:
        self.settings, self.services, self.cloud_eye = settings, services, cloud_eye
        self.now = [time.time()]
        self.registry = ModelRegistry(LocalObjectStore(tmp_path / "store"), "models/")
        for number in (1, 2):
            package = write_package(tmp_path / f"pkg{number}", seed=number, job_id=f"job-{number}")
            self.registry.register(
                package,
                job_id=f"job-{number}",
                manifest_id="m",
                source=str(package),
                gate=gate_json(),
                metrics=metrics_json(),
                user="tests",
            )
        self.platform = make_platform(settings, self.now)
        self.controller = self.new_controller()

    def new_controller(self) -> CanaryController:
        return CanaryController(
            self.settings,
            platform=self.platform,
            registry=self.registry,
            store=CanaryStore.open(self.settings.home_dir),
            service=SERVICE,
            user="ops",
            clock=lambda: self.now[0],
        )

    def serve_champion(self) -> str:
        """v1 alone, running (the service before any canary)."""
        self.platform.deploy(SERVICE, [ModelSlot("v1", 100)])
        service = self.services.only_service()
        self.services.advance(service.id, "RUNNING")
        return service.id

    def counts(self, service_id: str, traffic: dict[str, tuple[int, int]]) -> None:
        """Cloud Eye reports `traffic[version] = (calls, failures)` for the minute just before now."""
        groups = {group.name: group.id for group in self.services.services[service_id].groups}
        at = int(self.now[0] * 1000) - 1_000
        for version, (calls, failures) in traffic.items():
            dims = {"service_id": service_id, "model_id": groups[f"arsl-{version}"]}
            self.cloud_eye.set_points(CES_NAMESPACE, CALLS_METRIC, dims, [(at, calls)])
            self.cloud_eye.set_points(CES_NAMESPACE, FAILURES_METRIC, dims, [(at, failures)])

    def tick(self) -> CanaryRun:
        run = self.controller.tick()
        assert run is not None
        return run

    def end_window(self) -> None:
        run = self.controller.current()
        assert run is not None and run.next_judgement_at is not None
        self.now[0] = run.next_judgement_at + 1


@pytest.fixture
def rig(
    tmp_path: Path, settings: Settings, services: InferServiceFake, cloud_eye: CloudEyeMetricsFake
) -> Iterator[Rig]:
    built = Rig(tmp_path, settings, services, cloud_eye)
    yield built
    built.controller.close()


def test_a_canary_on_modelarts_is_deployed_stepped_and_promoted(rig: Rig, contract: ContractServer) -> None:
    service_id = rig.serve_champion()
    run = rig.controller.start("v2")
    assert run.phase is Phase.DEPLOYING  # the new group is still starting on ModelArts
    assert rig.services.weights(service_id) == {"arsl-v1": 80, "arsl-v2": 20}
    assert rig.tick().phase is Phase.DEPLOYING
    rig.services.advance(service_id, "RUNNING")
    run = rig.tick()
    assert run is not None and run.phase is Phase.OBSERVING and run.step == 0

    rig.end_window()
    rig.counts(service_id, {"v1": (800, 2), "v2": (200, 0)})
    run = rig.tick()
    assert run is not None and run.step == 1 and rig.services.weights(service_id) == {"arsl-v1": 0, "arsl-v2": 100}
    rig.end_window()
    rig.counts(service_id, {"v2": (1000, 1)})  # at 100 % only the limits judge
    run = rig.tick()
    assert run is not None and run.phase is Phase.PROMOTED
    assert rig.services.weights(service_id) == {"arsl-v2": 100}  # v1's group removed
    assert rig.registry.aliases()["champion"] == "v2"
    updates = [call.body["group_configs"] for call in contract.calls_to("update_infer_service")]
    assert [[group["weight"] for group in configs] for configs in updates] == [[80, 20], [0, 100], [100]]


def test_a_failing_canary_on_modelarts_is_rolled_back_automatically(rig: Rig) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.services.advance(service_id, "RUNNING")
    rig.tick()
    rig.end_window()
    rig.counts(service_id, {"v1": (800, 2), "v2": (200, 40)})
    run = rig.tick()
    assert run is not None and run.phase is Phase.ROLLED_BACK
    assert "error rate 20.00%" in run.alarm
    assert rig.services.weights(service_id) == {"arsl-v1": 100, "arsl-v2": 0}
    assert rig.controller.store.alarms()[0]["reason"] == run.alarm


def test_a_deployment_that_fails_on_modelarts_fails_the_canary_and_restores_the_champion(rig: Rig) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.services.advance(service_id, "FAILED", "image pull failed: swr.af-north-1.example/arsl/serve:1")
    run = rig.tick()
    assert run is not None and run.phase is Phase.FAILED and "image pull failed" in run.reason
    assert rig.services.weights(service_id) == {"arsl-v1": 100, "arsl-v2": 0}


def test_throttling_and_server_errors_leave_the_step_pending_and_retry_once(rig: Rig, contract: ContractServer) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.services.advance(service_id, "RUNNING")
    rig.tick()
    rig.end_window()
    rig.counts(service_id, {"v1": (800, 0), "v2": (200, 0)})
    contract.inject("update_infer_service", status=429, error_code="APIGW.0308", error_msg="throttled")
    run = rig.tick()
    assert run is not None and run.phase is Phase.OBSERVING and run.step == 1 and run.busy
    assert "429" in run.error and "retrying" in run.error
    assert rig.services.weights(service_id) == {"arsl-v1": 80, "arsl-v2": 20}  # unchanged: safe
    contract.inject("show_infer_service", status=500, error_msg="internal error")
    run = rig.tick()
    assert run is not None and run.busy and "500" in run.error
    run = rig.tick()
    assert run is not None and not run.busy and run.error == ""
    assert rig.services.weights(service_id) == {"arsl-v1": 0, "arsl-v2": 100}
    applied = [call for call in contract.calls_to("update_infer_service") if call.status == 200]
    assert [[group["weight"] for group in call.body["group_configs"]] for call in applied] == [[80, 20], [0, 100]]


def test_a_rollback_whose_put_times_out_is_checked_not_repeated(
    tmp_path: Path, contract: ContractServer, services: InferServiceFake, cloud_eye: CloudEyeMetricsFake
) -> None:
    rig = Rig(tmp_path, make_settings(tmp_path, contract.endpoint, timeout_s=0.5), services, cloud_eye)
    try:
        service_id = rig.serve_champion()
        rig.controller.start("v2")
        rig.services.advance(service_id, "RUNNING")
        rig.tick()
        contract.inject("update_infer_service", delay_s=1.5)  # answered after the client gave up
        run = rig.controller.command(Command.ROLLBACK, reason="bad reviews")
        assert run.phase is Phase.ROLLING_BACK and "no answer within 0.5 s" in run.error
        deadline = time.monotonic() + 10
        while contract.calls_to("update_infer_service")[-1].status == 0:  # the server applies it late
            assert time.monotonic() < deadline, "the delayed update was never applied"
            time.sleep(0.01)  # waiting on the fake server's own thread, which has no event to wait on
        run = rig.tick()
        assert run is not None and run.phase is Phase.ROLLED_BACK
        rollbacks = [
            call
            for call in contract.calls_to("update_infer_service")
            if [group["weight"] for group in call.body["group_configs"]] == [100, 0]
        ]
        assert len(rollbacks) == 1  # checked and found applied: never sent twice
    finally:
        rig.controller.close()


def test_a_refused_step_fails_the_canary_saying_where_traffic_is(rig: Rig, contract: ContractServer) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.services.advance(service_id, "RUNNING")
    rig.tick()
    run = rig.controller.current()
    assert run is not None
    contract.inject("update_infer_service", status=403, error_code="ModelArts.0203", error_msg="no permission")
    run = rig.controller.command(Command.PROMOTE)
    assert run.phase is Phase.FAILED
    assert "set_weights v1 0% / v2 100%" in run.reason and "ModelArts.0203" in run.reason
    assert rig.services.weights(service_id) == {"arsl-v1": 80, "arsl-v2": 20}
    run = rig.controller.command(Command.ROLLBACK)  # the operator restores the champion
    assert run.phase is Phase.ROLLED_BACK and rig.services.weights(service_id) == {"arsl-v1": 100, "arsl-v2": 0}


def test_a_restarted_controller_resumes_a_deployment_in_progress(rig: Rig) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.controller.close()
    rig.services.advance(service_id, "RUNNING")
    rig.controller = rig.new_controller()  # a new process: same state file, same service
    run = rig.tick()
    assert run is not None and run.phase is Phase.OBSERVING
    assert len(rig.services.services[service_id].groups) == 2  # deployed once
