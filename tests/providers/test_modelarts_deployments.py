"""ModelArts new-version services and their deployments, and AOM call counts: the real SDK clients against the
contract server (`[huawei] serving = "deployments"`).

The server checks every call's method and path (routes declared from the API reference), signature and
body, and refuses what the docs forbid. The service is played through DEPLOYING → RUNNING by the test;
errors (429, 500, a PUT that times out, a refused connection, a 400) must leave the canary in a safe,
explicit state and never apply a change twice. The contract rules themselves are tested last: one test per
rule, each sending through the real SDK client the body the real service would refuse.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import huaweicloudsdkmodelarts.v1 as ma
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.canary import CanaryRun, Command, Phase
from arsl_tui.domain.ports import ModelSlot, ServingPlatformError
from arsl_tui.ops.canary import CanaryController
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.huawei.deployment_services import ModelArtsDeploymentServing, build_clients, shares
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.canary_store import CanaryStore
from tests.fixtures.aom_fake import AomPromFake
from tests.fixtures.huawei_contract import ContractServer, closed_port_endpoint
from tests.fixtures.huawei_serving_fakes import SERVICES, InferServiceFake
from tests.fixtures.model_packages import gate_json, metrics_json, write_package
from tests.providers.conftest import FAKE_CREDENTIALS

PROJECT = "p-serving-0001"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)
SERVICE = "arsl-signs"
IMAGE = "swr.af-north-1.example/arsl/serve:1"
POOL = "pool-dedicated-01"
FLAVOR = "modelarts.vm.cpu.2u"
CALLS = "infer_requests_total"
FAILURES = "infer_requests_failed_total"


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
def aom(contract: ContractServer) -> AomPromFake:
    return AomPromFake(contract)


def make_settings(tmp_path: Path, endpoint: str, timeout_s: float = 5.0, **overrides: Any) -> Settings:
    return load_settings(
        None,
        environ={},
        cwd=tmp_path,
        cli_overrides={
            "backend": "huawei",
            "home": str(tmp_path / "home"),
            "huawei.modelarts_endpoint": endpoint,
            "huawei.aom_endpoint": endpoint,
            "huawei.timeout_s": timeout_s,
            "huawei.service_name": SERVICE,
            "huawei.service_image": IMAGE,
            "huawei.service_flavor": FLAVOR,
            "huawei.pool_id": POOL,
            "canary.steps": "10,100",
            "canary.window_s": 60,
            "canary.min_samples": 50,
            "canary.min_feedback": 10,
            **overrides,
        },
    )


def address(version: str) -> str:
    return f"obs://arsl-ml/models/packages/pkg-{version}/"


def make_platform(settings: Settings, clock: list[float] | None = None) -> ModelArtsDeploymentServing:
    built = ModelArtsDeploymentServing.from_settings(settings, package_address=address, credentials=CREDENTIALS)
    if clock is not None:
        built._clock = lambda: clock[0]
    return built


@pytest.fixture
def settings(tmp_path: Path, contract: ContractServer) -> Settings:
    return make_settings(tmp_path, contract.endpoint)


@pytest.fixture
def platform(settings: Settings, services: InferServiceFake, aom: AomPromFake) -> ModelArtsDeploymentServing:
    return make_platform(settings)


def bodies(contract: ContractServer, operation: str) -> list[Any]:
    return [call.body for call in contract.calls_to(operation) if call.status == 200]


# --- the platform on its own ----------------------------------------------------------------------


def test_deploy_at_100_creates_a_service_with_one_deployment_on_the_pool_and_plays_it_to_running(
    platform: ModelArtsDeploymentServing, contract: ContractServer, services: InferServiceFake
) -> None:
    assert platform.status(SERVICE).phase == "absent"
    status = platform.deploy(SERVICE, [ModelSlot("v1", 100)], "first release")
    assert status.phase == "deploying" and status.weights == {"v1": 100} and status.ready == {"v1": False}

    [flavors] = contract.calls_to("list_infer_cluster_flavors")
    assert flavors.path == f"/v2/{PROJECT}/services/flavors"
    [create] = contract.calls_to("create_infer_service")
    assert create.method == "POST" and create.path == f"/v2/{PROJECT}/services"
    body = create.body
    assert (body["name"], body["type"]) == (SERVICE, "REAL_TIME")
    [group] = body["group_configs"]
    assert (group["name"], group["pool_id"], group["weight"], group["priority"]) == ("arsl-v1", POOL, 100, 1)
    unit = group["unit_configs"][0]
    assert unit["image"] == {"source": "SWR", "swr_path": IMAGE}
    assert unit["models"] == [{"source": "OBS", "address": address("v1"), "mount_path": "/home/mind/model"}]
    assert (unit["role"], unit["flavor"], unit["count"]) == ("COMMON", FLAVOR, 1)

    service = services.only_service()
    services.advance(service.id, "RUNNING")
    running = platform.status(SERVICE)
    assert running.running and running.ready == {"v1": True}
    assert running.endpoint == f"https://infer.af-north-1.example/v1/infers/{service.id}"
    assert running.platform_id == service.id
    # The address alone is one read of the service, not its status with every deployment.
    shows, lists = len(contract.calls_to("show_infer_service")), len(contract.calls_to("list_infer_deployments"))
    assert platform.endpoint(SERVICE) == running.endpoint
    assert len(contract.calls_to("show_infer_service")) == shows + 1
    assert len(contract.calls_to("list_infer_deployments")) == lists


def test_a_second_version_is_a_deployment_of_its_own_and_weights_move_one_deployment_at_a_time(
    platform: ModelArtsDeploymentServing, contract: ContractServer, services: InferServiceFake
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    service = services.only_service()
    services.advance(service.id, "RUNNING")

    status = platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)], "canary v2")
    assert status.phase == "deploying" and status.ready == {"v1": True, "v2": False}
    [added] = contract.calls_to("create_infer_deployment")
    assert added.path == f"/v2/{PROJECT}/services/{service.id}/deployments"
    assert (added.body["name"], added.body["pool_id"], added.body["weight"]) == ("arsl-v2", POOL, 10)
    assert services.weights(service.id) == {"arsl-v1": 90, "arsl-v2": 10}
    services.advance(service.id, "RUNNING")

    ids = services.deployment_ids(service.id)
    status = platform.set_weights(SERVICE, {"v1": 50, "v2": 50})
    assert status.running and status.weights == {"v1": 50, "v2": 50}
    updates = contract.calls_to("update_infer_deployment")
    # The raise goes first, then the cut: v2 never has more than the 50 % it is moving to.
    assert [(call.path.rsplit("/", 1)[1], call.body) for call in updates[-2:]] == [
        (ids["arsl-v2"], {"weight": 50, "priority": 1}),
        (ids["arsl-v1"], {"weight": 50, "priority": 1}),
    ]
    with pytest.raises(ServingPlatformError, match="must sum to 100"):
        platform.set_weights(SERVICE, {"v1": 70, "v2": 20})
    with pytest.raises(ServingPlatformError, match="must name exactly"):
        platform.set_weights(SERVICE, {"v1": 100})
    assert len(contract.calls_to("update_infer_deployment")) == 3  # refused before any call


def test_promotion_deletes_the_old_versions_deployment(
    platform: ModelArtsDeploymentServing, contract: ContractServer, services: InferServiceFake
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 80), ModelSlot("v2", 20)])
    service = services.only_service()
    services.advance(service.id, "RUNNING")
    v1 = services.deployment_ids(service.id)["arsl-v1"]
    final = platform.deploy(SERVICE, [ModelSlot("v2", 100)])
    assert final.weights == {"v2": 100} and final.running
    [deleted] = contract.calls_to("delete_infer_deployment")
    assert deleted.method == "DELETE" and deleted.path == f"/v2/{PROJECT}/services/{service.id}/deployments/{v1}"
    assert services.weights(service.id) == {"arsl-v2": 100}


def test_a_version_whose_deployment_failed_is_deployed_afresh(
    platform: ModelArtsDeploymentServing, contract: ContractServer, services: InferServiceFake
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    service = services.only_service()
    services.advance(service.id, "RUNNING")
    platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)])
    services.advance(service.id, "FAILED", "image pull failed")
    services.advance(service.id, "RUNNING")  # the service recovers; the failed deployment does not
    failed = platform.status(SERVICE)
    assert failed.phase == "failed" and failed.ready == {"v1": True, "v2": False}
    rolled_back = platform.set_weights(SERVICE, {"v1": 100, "v2": 0})
    assert rolled_back.running and rolled_back.detail == "deployment arsl-v2 failed (it has no traffic)"
    old = services.deployment_ids(service.id)["arsl-v2"]
    again = platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)])  # a second canary of v2
    assert again.phase == "deploying" and services.deployment_ids(service.id)["arsl-v2"] != old
    [deleted] = contract.calls_to("delete_infer_deployment")
    assert deleted.path.endswith(f"/deployments/{old}")
    assert len(contract.calls_to("create_infer_deployment")) == 2


def test_weights_set_in_the_console_read_as_shares() -> None:
    assert shares({"v1": 60, "v2": 60}, ["v1", "v2"]) == {"v1": 50, "v2": 50}
    assert shares({"v1": 0, "v2": 0}, ["v1", "v2"]) == {"v1": 50, "v2": 50}  # all zero: an even split
    assert shares({"v1": 0, "v2": 0}, ["v2"]) == {"v1": 0, "v2": 100}  # … over the running ones
    assert shares({"v1": 1, "v2": 1, "v3": 1}, ["v1", "v2", "v3"]) == {"v1": 34, "v2": 33, "v3": 33}


def test_stats_are_aom_counter_increases_per_deployment(
    platform: ModelArtsDeploymentServing, contract: ContractServer, services: InferServiceFake, aom: AomPromFake
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 80), ModelSlot("v2", 20)])
    service = services.only_service()
    services.advance(service.id, "RUNNING")
    ids = services.deployment_ids(service.id)
    now = int(time.time())
    for name, calls, failures in (("arsl-v1", (1000, 1780), (5, 6)), ("arsl-v2", (10, 200), (0, 21))):
        labels = {"service_id": service.id, "deployment_id": ids[name]}
        aom.set_counter(CALLS, labels, [(now - 110, calls[0]), (now - 5, calls[1])])
        aom.set_counter(FAILURES, labels, [(now - 110, failures[0]), (now - 5, failures[1])])
    aom.set_counter(CALLS, {"service_id": "another", "deployment_id": ids["arsl-v1"]}, [(now - 60, 0), (now, 9999)])
    stats = platform.stats(SERVICE, ["v1", "v2"], window_s=120)
    assert (stats["v1"].requests, stats["v1"].errors) == (780, 1)
    assert (stats["v2"].requests, stats["v2"].errors) == (190, 21)
    assert stats["v2"].latency_ms == () and stats["v2"].feedback == 0  # not published per version
    queries = contract.calls_to("list_instant_query_aom_prom_get")
    assert [call.path for call in queries] == [f"/v1/{PROJECT}/aom/api/v1/query"] * 2
    asked = dict(queries[0].query)
    assert asked["query"] == (f'sum by (deployment_id) (increase({CALLS}{{service_id="{service.id}"}}[120s]))')
    assert abs(int(asked["time"]) - now) <= 5


def test_errors_become_explicit_and_say_whether_to_retry(
    platform: ModelArtsDeploymentServing, contract: ContractServer, services: InferServiceFake, tmp_path: Path
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)])
    services.advance(services.only_service().id, "RUNNING")
    contract.inject("update_infer_deployment", status=429, error_code="ModelArts.0010", error_msg="Too many requests")
    with pytest.raises(ServingPlatformError) as throttled:
        platform.set_weights(SERVICE, {"v1": 50, "v2": 50})
    assert throttled.value.transient and throttled.value.status == 429 and "throttled" in str(throttled.value)
    contract.inject("show_infer_service", status=500, error_msg="internal")
    with pytest.raises(ServingPlatformError) as internal:
        platform.status(SERVICE)
    assert internal.value.transient and internal.value.status == 500
    contract.inject("update_infer_deployment", status=400, error_code="ModelArts.3551", error_msg="bad deployment")
    with pytest.raises(ServingPlatformError) as refused:
        platform.set_weights(SERVICE, {"v1": 50, "v2": 50})
    assert not refused.value.transient and "ModelArts.3551" in str(refused.value)
    contract.inject("list_instant_query_aom_prom_get", status=503, error_msg="unavailable")
    with pytest.raises(ServingPlatformError) as metrics_down:
        platform.stats(SERVICE, ["v1", "v2"], window_s=60)
    assert metrics_down.value.transient and "AOM" in str(metrics_down.value)
    nowhere = make_platform(make_settings(tmp_path / "x", closed_port_endpoint()))
    with pytest.raises(ServingPlatformError) as unreachable:
        nowhere.status(SERVICE)
    assert unreachable.value.transient
    assert CREDENTIALS.secret_key not in str(unreachable.value) + str(refused.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"huawei.pool_id": ""}, r"\[huawei\] pool_id is empty"),
        ({"huawei.service_image": ""}, r"service_image is empty"),
        ({"huawei.service_flavor": "modelarts.vm.cpu.free"}, r"not an inference flavor.*modelarts\.vm\.cpu\.2u"),
    ],
)
def test_missing_pool_image_or_unknown_flavor_is_refused_before_anything_is_created(
    tmp_path: Path,
    contract: ContractServer,
    services: InferServiceFake,
    override: dict[str, str],
    message: str,
) -> None:
    settings = make_settings(tmp_path, contract.endpoint, **override)
    with pytest.raises(ServingPlatformError, match=message):
        make_platform(settings).deploy(SERVICE, [ModelSlot("v1", 100)])
    assert contract.calls_to("create_infer_service") == []


# --- the canary controller on new-version services ------------------------------------------------


class Rig:
    """A controller on the contract server, a registry with v1 (champion) and v2, and a clock the test moves."""

    def __init__(self, tmp_path: Path, settings: Settings, services: InferServiceFake, aom: AomPromFake) -> None:
        self.settings, self.services, self.aom = settings, services, aom
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
        self._counted: dict[str, tuple[int, int]] = {}

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
        """AOM's counters grow by `traffic[version] = (calls, failures)` over the window just before now."""
        ids = self.services.deployment_ids(service_id)
        end = int(self.now[0]) - 1
        start = end - int(self.settings.canary.window_s) + 2
        for version, (calls, failures) in traffic.items():
            labels = {"service_id": service_id, "deployment_id": ids[f"arsl-{version}"]}
            self.aom.set_counter(CALLS, labels, [(start, 0), (end, calls)])
            self.aom.set_counter(FAILURES, labels, [(start, 0), (end, failures)])

    def tick(self) -> CanaryRun:
        run = self.controller.tick()
        assert run is not None
        return run

    def end_window(self) -> None:
        run = self.controller.current()
        assert run is not None and run.next_judgement_at is not None
        self.now[0] = run.next_judgement_at + 1


@pytest.fixture
def rig(tmp_path: Path, settings: Settings, services: InferServiceFake, aom: AomPromFake) -> Iterator[Rig]:
    built = Rig(tmp_path, settings, services, aom)
    yield built
    built.controller.close()


def test_a_canary_on_deployments_is_deployed_stepped_and_promoted(rig: Rig, contract: ContractServer) -> None:
    service_id = rig.serve_champion()
    run = rig.controller.start("v2")
    assert run.phase is Phase.DEPLOYING  # the new deployment is still starting on ModelArts
    assert rig.services.weights(service_id) == {"arsl-v1": 90, "arsl-v2": 10}
    assert rig.tick().phase is Phase.DEPLOYING
    rig.services.advance(service_id, "RUNNING")
    run = rig.tick()
    assert run.phase is Phase.OBSERVING and run.step == 0

    rig.end_window()
    rig.counts(service_id, {"v1": (900, 2), "v2": (100, 0)})
    run = rig.tick()
    assert run.step == 1 and rig.services.weights(service_id) == {"arsl-v1": 0, "arsl-v2": 100}
    rig.end_window()
    rig.counts(service_id, {"v2": (1000, 1)})  # at 100 % only the limits judge
    run = rig.tick()
    assert run.phase is Phase.PROMOTED
    assert rig.services.weights(service_id) == {"arsl-v2": 100}  # v1's deployment deleted
    assert rig.registry.aliases()["champion"] == "v2"
    assert [body["weight"] for body in bodies(contract, "update_infer_deployment")] == [90, 100, 0]
    assert len(contract.calls_to("delete_infer_deployment")) == 1


def test_a_failing_canary_on_deployments_is_rolled_back_automatically(rig: Rig) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.services.advance(service_id, "RUNNING")
    rig.tick()
    rig.end_window()
    rig.counts(service_id, {"v1": (900, 2), "v2": (100, 20)})
    run = rig.tick()
    assert run.phase is Phase.ROLLED_BACK
    assert "error rate 20.00%" in run.alarm
    assert rig.services.weights(service_id) == {"arsl-v1": 100, "arsl-v2": 0}
    assert rig.controller.store.alarms()[0]["reason"] == run.alarm


def test_a_deployment_that_fails_fails_the_canary_and_restores_the_champion(rig: Rig) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.services.advance(service_id, "FAILED", "image pull failed: swr.af-north-1.example/arsl/serve:1")
    run = rig.tick()
    assert run.phase is Phase.FAILED and "image pull failed" in run.reason
    assert rig.services.weights(service_id) == {"arsl-v1": 100, "arsl-v2": 0}


def test_throttling_and_server_errors_leave_the_step_pending_and_retry_once(rig: Rig, contract: ContractServer) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.services.advance(service_id, "RUNNING")
    rig.tick()
    rig.end_window()
    rig.counts(service_id, {"v1": (900, 0), "v2": (100, 0)})
    contract.inject("update_infer_deployment", status=429, error_code="APIGW.0308", error_msg="throttled")
    run = rig.tick()
    assert run.phase is Phase.OBSERVING and run.step == 1 and run.busy
    assert "HTTP 429" in run.error and "retrying" in run.error
    assert rig.services.weights(service_id) == {"arsl-v1": 90, "arsl-v2": 10}  # unchanged: safe
    contract.inject("show_infer_service", status=500, error_msg="internal error")
    run = rig.tick()
    assert run.busy and "HTTP 500" in run.error
    run = rig.tick()
    assert not run.busy and run.error == ""
    assert rig.services.weights(service_id) == {"arsl-v1": 0, "arsl-v2": 100}
    assert [body["weight"] for body in bodies(contract, "update_infer_deployment")] == [90, 100, 0]


def test_a_rollback_whose_put_times_out_is_checked_not_repeated(
    tmp_path: Path, contract: ContractServer, services: InferServiceFake, aom: AomPromFake
) -> None:
    rig = Rig(tmp_path, make_settings(tmp_path, contract.endpoint, timeout_s=0.5), services, aom)
    try:
        service_id = rig.serve_champion()
        rig.controller.start("v2")
        rig.services.advance(service_id, "RUNNING")
        rig.tick()
        ids = services.deployment_ids(service_id)
        contract.inject("update_infer_deployment", delay_s=1.5)  # answered after the client gave up
        run = rig.controller.command(Command.ROLLBACK, reason="bad reviews")
        assert run.phase is Phase.ROLLING_BACK and "no answer within 0.5 s" in run.error
        deadline = time.monotonic() + 10
        while contract.calls_to("update_infer_deployment")[-1].status == 0:  # the server applies it late
            assert time.monotonic() < deadline, "the delayed update was never applied"
            time.sleep(0.01)  # waiting on the fake server's own thread, which has no event to wait on
        run = rig.tick()
        assert run.phase is Phase.ROLLED_BACK
        assert services.weights(service_id) == {"arsl-v1": 100, "arsl-v2": 0}
        sent = [
            (call.path.rsplit("/", 1)[1], call.body["weight"]) for call in contract.calls_to("update_infer_deployment")
        ]
        # v1 back to 100 (timed out, applied late), then v2 to 0: each deployment's change sent once.
        assert sent[-2:] == [(ids["arsl-v1"], 100), (ids["arsl-v2"], 0)]
        assert sent.count((ids["arsl-v1"], 100)) == 1
    finally:
        rig.controller.close()


def test_a_refused_step_fails_the_canary_saying_where_traffic_is(rig: Rig, contract: ContractServer) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.services.advance(service_id, "RUNNING")
    rig.tick()
    contract.inject("update_infer_deployment", status=403, error_code="ModelArts.0203", error_msg="no permission")
    run = rig.controller.command(Command.PROMOTE)
    assert run.phase is Phase.FAILED
    assert "set_weights v1 0% / v2 100%" in run.reason and "ModelArts.0203" in run.reason
    assert rig.services.weights(service_id) == {"arsl-v1": 90, "arsl-v2": 10}
    run = rig.controller.command(Command.ROLLBACK)  # the operator restores the champion
    assert run.phase is Phase.ROLLED_BACK and rig.services.weights(service_id) == {"arsl-v1": 100, "arsl-v2": 0}


def test_a_restarted_controller_resumes_a_deployment_in_progress(rig: Rig, contract: ContractServer) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.controller.close()
    rig.services.advance(service_id, "RUNNING")
    rig.controller = rig.new_controller()  # a new process: same state file, same service
    run = rig.tick()
    assert run.phase is Phase.OBSERVING
    assert len(contract.calls_to("create_infer_deployment")) == 1  # deployed once


# --- the contract: bodies the real service refuses ------------------------------------------------


@pytest.fixture
def sdk(contract: ContractServer, services: InferServiceFake) -> Any:
    """The real ModelArts SDK client, for sending bodies the adapter never would."""
    client, _aom = build_clients(contract.endpoint, contract.endpoint, CREDENTIALS, 5.0)
    return client


def group(name: str = "arsl-v1", **changes: Any) -> Any:
    unit = ma.UnitConfig(
        role="COMMON",
        flavor=changes.pop("flavor", FLAVOR),
        image=ma.ImageInfo(source="SWR", swr_path=IMAGE),
        models=[ma.ModelResource(source="OBS", address=address("v1"), mount_path="/home/mind/model")],
        count=1,
    )
    fields: dict[str, Any] = {"name": name, "pool_id": POOL, "weight": 100, "priority": 1, "count": 1}
    fields.update(changes)
    return ma.GroupConfig(unit_configs=[unit], **{key: value for key, value in fields.items() if value is not None})


def refused(contract: ContractServer, call: Any, rule: str) -> None:
    """`call()` is answered 400 naming `rule`; the violation it records is the expected one, then cleared."""
    with pytest.raises(ClientRequestException) as caught:
        call()
    assert caught.value.status_code == 400 and rule in str(caught.value.error_msg)
    assert contract.violations and all(rule in text for text in contract.violations)
    contract.violations.clear()


def running_service(sdk: Any, services: InferServiceFake) -> tuple[str, str]:
    created = sdk.create_infer_service(
        ma.CreateInferServiceRequest(
            body=ma.ServiceCreateRequest(name=SERVICE, type="REAL_TIME", group_configs=[group()])
        )
    )
    services.advance(created.id, "RUNNING")
    return created.id, services.deployment_ids(created.id)["arsl-v1"]


def test_rule_a_new_service_holds_at_most_one_group(sdk: Any, contract: ContractServer) -> None:
    # ServiceCreateRequest.group_configs: "group_configs的最大元素数量为1" (CreateInferService).
    body = ma.ServiceCreateRequest(name=SERVICE, type="REAL_TIME", group_configs=[group(), group("arsl-v2", weight=0)])
    refused(contract, lambda: sdk.create_infer_service(ma.CreateInferServiceRequest(body=body)), "at most 1 element")


def test_rule_a_deployment_needs_a_dedicated_pool(sdk: Any, contract: ContractServer) -> None:
    # New-version services run only on dedicated resource pools (inference2.0-modelarts-0080).
    body = ma.ServiceCreateRequest(name=SERVICE, type="REAL_TIME", group_configs=[group(pool_id=None)])
    refused(contract, lambda: sdk.create_infer_service(ma.CreateInferServiceRequest(body=body)), "pool_id is required")


def test_rule_an_unknown_flavor_is_refused(sdk: Any, contract: ContractServer) -> None:
    # Flavors come from the documented list (ListV2ClusterFlavors, GET /v2/{project_id}/services/flavors).
    body = ma.ServiceCreateRequest(
        name=SERVICE, type="REAL_TIME", group_configs=[group(flavor="modelarts.vm.cpu.free")]
    )
    refused(contract, lambda: sdk.create_infer_service(ma.CreateInferServiceRequest(body=body)), "not a listed")


def test_rule_a_weight_above_100_is_refused(sdk: Any, contract: ContractServer, services: InferServiceFake) -> None:
    # A deployment's weight is an integer not above 100 (Traffic Policies, inference2.0-modelarts-0089).
    service_id, _v1 = running_service(sdk, services)
    request = ma.CreateInferDeploymentRequest(service_id=service_id, body=group("arsl-v2", weight=120))
    refused(contract, lambda: sdk.create_infer_deployment(request), "weight must be an integer 0..100")


def test_rule_an_update_of_a_running_service_needs_its_priority(
    sdk: Any, contract: ContractServer, services: InferServiceFake
) -> None:
    # GroupConfigUpdateRequest.priority: required while the service runs, and equal to the deployment's own.
    service_id, v1 = running_service(sdk, services)
    without = ma.UpdateInferDeploymentRequest(
        service_id=service_id, deployment_id=v1, body=ma.GroupConfigUpdateRequest(weight=50)
    )
    refused(contract, lambda: sdk.update_infer_deployment(without), "priority is required")
    changed = ma.UpdateInferDeploymentRequest(
        service_id=service_id, deployment_id=v1, body=ma.GroupConfigUpdateRequest(weight=50, priority=2)
    )
    refused(contract, lambda: sdk.update_infer_deployment(changed), "priority must stay 1")


def test_rule_relative_weights_need_not_sum_to_100(
    sdk: Any, contract: ContractServer, services: InferServiceFake, settings: Settings
) -> None:
    # Weights are relative (inference2.0-modelarts-0089): 60 + 60 is accepted, and splits evenly.
    service_id, v1 = running_service(sdk, services)
    sdk.create_infer_deployment(
        ma.CreateInferDeploymentRequest(service_id=service_id, body=group("arsl-v2", weight=60))
    )
    services.advance(service_id, "RUNNING")
    sdk.update_infer_deployment(
        ma.UpdateInferDeploymentRequest(
            service_id=service_id, deployment_id=v1, body=ma.GroupConfigUpdateRequest(weight=60, priority=1)
        )
    )
    assert services.weights(service_id) == {"arsl-v1": 60, "arsl-v2": 60}
    assert make_platform(settings).status(SERVICE).weights == {"v1": 50, "v2": 50}
