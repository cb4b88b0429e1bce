"""The Huawei path end to end, through the composition root: import → real-time service at 100 % → canary at
10 % → promote, and → rollback, in both serving modes, with every request checked against the docs.

Nothing here builds an adapter by hand: the controller comes from `ops.canary_wiring.open_controller`, which
asks `backend_for(settings).serving_platform(registry)` for the platform; the registry is
`ModelRegistry.from_settings` on OBS (moto), with real registered versions; the SDK clients read the fake
credentials from the environment. In realtime mode the platform's model ids come from
`ops.model_import.model_id_function` over the ModelArts importer, so the first deploy of a version imports it
(CreateModel from the layout written to OBS) and fails transiently until ModelArts has published it.

The contract server (`tests.fixtures.huawei_chain`) records every call that breaks the documented request;
each test ends by asserting there were none. Models and services move only when the test moves them, and the
controller's clock is the test's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from arsl_tui.backends import backend_for
from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.canary import CanaryRun, Command, Phase
from arsl_tui.domain.ports import ModelSlot, ServingPlatform, ServingPlatformError
from arsl_tui.ops import monitoring, status
from arsl_tui.ops.canary_wiring import open_controller
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.ops.status import PhaseState, PhaseStatus
from arsl_tui.providers.huawei.models import obs_url
from tests.fixtures.huawei_chain import (
    POOL,
    PROJECT,
    SERVICE,
    WINDOW_S,
    Cloud,
    DeploymentsCloud,
    RealtimeCloud,
    contract_server,
    credentials_in_environment,
    package_address,
)
from tests.fixtures.huawei_contract import ContractServer
from tests.fixtures.model_packages import gate_json, metrics_json, write_package
from trainer.modelarts import layout

REGION = "af-north-1"
MODEL_OPERATIONS = ("CreateModel", "ListModels", "ShowModel", "ShowModelEngineAndRuntime")


@pytest.fixture
def contract(monkeypatch: pytest.MonkeyPatch) -> Iterator[ContractServer]:
    credentials_in_environment(monkeypatch)
    server = contract_server()
    with server:
        yield server
    assert server.violations == [], "calls broke the documented contract"


@pytest.fixture
def realtime(contract: ContractServer) -> RealtimeCloud:
    return RealtimeCloud(contract)


@pytest.fixture
def deployments(contract: ContractServer) -> DeploymentsCloud:
    return DeploymentsCloud(contract)


@pytest.fixture(params=["realtime", "deployments"])
def cloud(request: pytest.FixtureRequest) -> Cloud:
    return cast(Cloud, request.getfixturevalue(request.param))


def chain_settings(
    tmp_path: Path, contract: ContractServer, cloud: Cloud, obs: str, bucket: str, **overrides: Any
) -> Settings:
    return load_settings(
        None,
        environ={},
        cwd=tmp_path,
        cli_overrides={
            "backend": "huawei",
            "home": str(tmp_path / "home"),
            "storage.bucket": bucket,
            "huawei.region": REGION,
            "huawei.obs_endpoint": obs,
            "huawei.modelarts_endpoint": contract.endpoint,
            "huawei.timeout_s": 5.0,
            "huawei.service_name": SERVICE,
            "canary.steps": "10,100",
            "canary.window_s": WINDOW_S,
            "canary.min_samples": 50,
            "canary.min_feedback": 10,
            **cloud.settings_overrides(),
            **overrides,
        },
    )


class Chain:
    """v1 (champion) and v2 registered on OBS, and the controller the CLI would build for these settings."""

    def __init__(self, tmp_path: Path, settings: Settings, cloud: Cloud) -> None:
        self.settings, self.cloud = settings, cloud
        self.now = [time.time()]
        self.registry = ModelRegistry.from_settings(settings)
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
        self.controller = open_controller(settings, clock=lambda: self.now[0], user="ops")
        # The labelled probes post images to the service's public address, which the fakes name under
        # `.example`: the canary is judged here on the platform's own counts (Cloud Eye or AOM).
        self.controller.probe = None
        # The platform times its metric queries by the same clock the controller judges windows by.
        assert hasattr(self.platform, "_clock"), "the platform no longer reads time through `_clock`"
        cast(Any, self.platform)._clock = lambda: self.now[0]

    @property
    def platform(self) -> ServingPlatform:
        return self.controller.platform

    def serve_champion(self) -> str:
        """v1 alone at 100 %, running: the service before any canary. Its id."""
        if isinstance(self.cloud, RealtimeCloud):
            # The first deploy imports v1 and does not wait for ModelArts to publish it.
            with pytest.raises(ServingPlatformError) as publishing:
                self.platform.deploy(SERVICE, [ModelSlot("v1", 100)], "first release")
            assert publishing.value.transient and "still publishing" in str(publishing.value)
            self.cloud.ready("v1")
        status = self.platform.deploy(SERVICE, [ModelSlot("v1", 100)], "first release")
        assert status.phase == "deploying" and status.weights == {"v1": 100}
        service_id = self.cloud.running()
        assert self.platform.status(SERVICE).running and self.cloud.weights() == {"v1": 100}
        return service_id

    def start_canary(self) -> CanaryRun:
        """v2 at 10 % beside v1, deployed and running: the first window is open."""
        run = self.controller.start("v2")
        assert run.phase is Phase.DEPLOYING
        self.cloud.ready("v2")
        run = self.tick()
        assert run.phase is Phase.DEPLOYING and not run.busy, run.error
        assert self.cloud.weights() == {"v1": 90, "v2": 10}
        self.cloud.running()
        run = self.tick()
        assert run.phase is Phase.OBSERVING and run.step == 0
        return run

    def tick(self) -> CanaryRun:
        run = self.controller.tick()
        assert run is not None
        return run

    def end_window(self) -> None:
        run = self.controller.current()
        assert run is not None and run.next_judgement_at is not None
        self.now[0] = run.next_judgement_at + 1

    def champion(self) -> str:
        return ModelRegistry.from_settings(self.settings).aliases()["champion"]


@pytest.fixture
def chain(
    tmp_path: Path, contract: ContractServer, cloud: Cloud, moto_endpoint: str, moto_bucket: str
) -> Iterator[Chain]:
    built = Chain(tmp_path, chain_settings(tmp_path, contract, cloud, moto_endpoint, moto_bucket), cloud)
    yield built
    built.controller.close()


# --- the chain, in both serving modes ---------------------------------------------------------------


def test_import_serve_canary_at_10_percent_and_promote(chain: Chain, cloud: Cloud, contract: ContractServer) -> None:
    chain.serve_champion()
    chain.start_canary()

    chain.end_window()
    cloud.counts(chain.now[0], {"v1": (900, 2), "v2": (100, 0)})
    run = chain.tick()
    assert run.phase is Phase.OBSERVING and run.step == 1, (run.phase, run.error)
    assert cloud.weights() == {"v1": 0, "v2": 100}
    chain.end_window()
    cloud.counts(chain.now[0], {"v2": (1000, 1)})  # at 100 % only the limits judge
    run = chain.tick()
    assert run.phase is Phase.PROMOTED, (run.phase, run.reason, run.error)
    assert cloud.weights() == {"v2": 100}  # v1 no longer served
    assert chain.champion() == "v2"
    if isinstance(cloud, RealtimeCloud):
        # One UpdateService per change, each the whole config with weights summing to 100.
        assert cloud.weights_sent() == [{"v1": 90, "v2": 10}, {"v1": 0, "v2": 100}, {"v2": 100}]
    else:
        # v2's deployment created at 10 (its own weight), then each deployment updated one at a time, and
        # v1's deployment deleted on promotion.
        assert [call.body["weight"] for call in cloud.created()] == [10]
        assert cloud.weights_sent() == [90, 100, 0]
        assert len(contract.calls_to("delete_infer_deployment")) == 1


def test_import_serve_canary_at_10_percent_and_roll_back_on_errors(chain: Chain, cloud: Cloud) -> None:
    chain.serve_champion()
    chain.start_canary()
    chain.end_window()
    cloud.counts(chain.now[0], {"v1": (900, 2), "v2": (100, 20)})
    run = chain.tick()
    assert run.phase is Phase.ROLLED_BACK and "error rate 20.00%" in run.alarm
    assert cloud.weights() == {"v1": 100, "v2": 0}
    assert chain.champion() == "v1"


def test_alarms_watch_the_service_the_canary_created_when_no_service_id_is_configured(chain: Chain) -> None:
    assert chain.settings.alarms.service_id == ""
    before = monitoring.with_service_id(chain.settings)
    assert before.settings is chain.settings
    assert before.note == f"alarms.service_id is empty and there is no service {SERVICE!r} yet"
    _rules, skipped = monitoring.configured_rules(before.settings)
    assert any("alarms.service_id is empty" in item.reason for item in skipped)

    service_id = chain.serve_champion()
    after = monitoring.with_service_id(chain.settings)
    assert after.settings.alarms.service_id == service_id
    assert after.note == f"alarms.service_id = {service_id} (the ModelArts service {SERVICE!r})"
    rules, skipped = monitoring.configured_rules(after.settings)
    assert not any("service_id" in item.reason for item in skipped), skipped
    watched = {value for rule in rules for name, value in rule.dimensions if name == "service_id"}
    assert watched == {service_id}
    # A configured id wins, and costs no call to the platform.
    configured = replace(chain.settings, alarms=replace(chain.settings.alarms, service_id="svc-configured"))
    assert monitoring.with_service_id(configured).settings is configured


def test_status_reads_the_service_and_a_second_home_sees_the_release(chain: Chain, tmp_path: Path) -> None:
    def row(settings: Settings, name: str) -> PhaseStatus:
        return dict(status.PHASES)[name](settings)  # the one row: this server plays no training or Cloud Eye

    absent = row(chain.settings, "service")
    assert (absent.state, absent.summary) == (PhaseState.NONE, f"no ModelArts service {SERVICE} yet"), absent
    service_id = chain.serve_champion()
    chain.start_canary()
    served = row(chain.settings, "service")
    assert served.state is PhaseState.RUNNING, served
    assert served.summary == f"ModelArts service {SERVICE} serving v1 90%, v2 10%"
    assert served.details["service_id"] == service_id and served.details["endpoint"]
    # Another operator's home, with no state file of its own: the release is in the bucket, so it is seen.
    elsewhere = replace(chain.settings, home=tmp_path / "another-home")
    canary = row(elsewhere, "canary")
    assert canary.state is PhaseState.RUNNING, canary
    assert canary.summary == "v2 vs v1: observing, step 1/2 at 10%"


def test_an_operator_rollback_restores_the_champion(chain: Chain, cloud: Cloud) -> None:
    chain.serve_champion()
    chain.start_canary()
    run = chain.controller.command(Command.ROLLBACK, reason="bad reviews")
    assert run.phase is Phase.ROLLED_BACK, (run.phase, run.error)
    assert cloud.weights() == {"v1": 100, "v2": 0}
    assert chain.champion() == "v1"


# --- what the composition root wires, per mode --------------------------------------------------------


@pytest.fixture
def realtime_chain(
    tmp_path: Path, contract: ContractServer, realtime: RealtimeCloud, moto_endpoint: str, moto_bucket: str
) -> Iterator[Chain]:
    built = Chain(tmp_path, chain_settings(tmp_path, contract, realtime, moto_endpoint, moto_bucket), realtime)
    yield built
    built.controller.close()


def test_realtime_imports_each_version_from_its_obs_layout_once(
    realtime_chain: Chain, realtime: RealtimeCloud, contract: ContractServer, moto_bucket: str
) -> None:
    realtime_chain.serve_champion()
    registry = realtime_chain.registry
    record = registry.get("v1")
    folder = registry.import_folder(record.lineage.package_id, "modelarts")
    [create] = contract.calls_to("CreateModel")
    assert create.body["source_location"] == obs_url(moto_bucket, REGION, folder)
    assert create.body["model_type"] == "PyTorch" and create.body["model_version"] == "1.0.1"
    # The layout ModelArts imports is on OBS where source_location points.
    assert registry.store.get_bytes(folder + "model/customize_service.py") == layout.inference_code()
    assert json.loads(registry.store.get_bytes(folder + "model/config.json"))["model_type"] == "PyTorch"
    imported = ModelRegistry.from_settings(realtime_chain.settings).imported("v1", "modelarts")
    assert imported is not None and imported.model_id == realtime.model_id("v1")
    [service_create] = contract.calls_to("create_service")
    assert [entry["model_id"] for entry in service_create.body["config"]] == [realtime.model_id("v1")]
    assert len(contract.calls_to("CreateModel")) == 1  # the second deploy found v1's AI application


def test_realtime_a_version_still_publishing_fails_the_tick_transiently_then_proceeds(
    realtime_chain: Chain, realtime: RealtimeCloud, contract: ContractServer
) -> None:
    realtime_chain.serve_champion()
    run = realtime_chain.controller.start("v2")
    assert run.phase is Phase.DEPLOYING and run.busy
    assert "still publishing" in run.error and "retrying" in run.error
    assert realtime.weights() == {"v1": 100}  # nothing changed on the service
    assert len(realtime.publishing()) == 1  # v2's AI application is being published

    before = len(contract.calls)
    run = realtime_chain.tick()  # ModelArts still publishing: the tick retries and returns
    assert run.phase is Phase.DEPLOYING and run.busy and "still publishing" in run.error
    # Nothing waited: the tick looked the AI application up once and left; a waiting import would poll
    # ShowModel again after each `poll_s`.
    asked = [call.operation for call in contract.calls[before:] if call.operation in MODEL_OPERATIONS]
    assert asked == ["ListModels", "ShowModel"]
    assert len(contract.calls_to("CreateModel")) == 2  # v1, then v2 once: never imported twice
    assert contract.calls_to("update_service") == []

    realtime.ready("v2")
    run = realtime_chain.tick()
    assert run.phase is Phase.DEPLOYING and not run.busy and run.error == ""
    assert realtime.weights() == {"v1": 90, "v2": 10}
    realtime.running()
    assert realtime_chain.tick().phase is Phase.OBSERVING


@pytest.fixture
def deployments_chain(
    tmp_path: Path, contract: ContractServer, deployments: DeploymentsCloud, moto_endpoint: str, moto_bucket: str
) -> Iterator[Chain]:
    built = Chain(tmp_path, chain_settings(tmp_path, contract, deployments, moto_endpoint, moto_bucket), deployments)
    yield built
    built.controller.close()


def test_deployments_mount_each_registered_package_from_obs_on_the_pool(
    deployments_chain: Chain, deployments: DeploymentsCloud, contract: ContractServer, moto_bucket: str
) -> None:
    deployments_chain.serve_champion()
    deployments_chain.start_canary()
    registry = deployments_chain.registry
    [service_create] = contract.calls_to("create_infer_service")
    assert service_create.path == f"/v2/{PROJECT}/services"
    [group] = service_create.body["group_configs"]
    [v2_create] = deployments.created()
    for version, body in (("v1", group), ("v2", v2_create.body)):
        assert body["pool_id"] == POOL and body["name"] == f"arsl-{version}"
        [model] = body["unit_configs"][0]["models"]
        assert model["source"] == "OBS" and model["address"] == package_address(moto_bucket, registry, version)
    assert contract.calls_to("CreateModel") == []  # nothing is imported: the package is mounted as registered


def test_deployments_without_a_pool_stop_naming_the_key(
    tmp_path: Path, contract: ContractServer, deployments: DeploymentsCloud, moto_endpoint: str, moto_bucket: str
) -> None:
    settings = chain_settings(tmp_path, contract, deployments, moto_endpoint, moto_bucket, **{"huawei.pool_id": ""})
    platform = backend_for(settings).serving_platform(lambda: ModelRegistry.from_settings(settings))
    with pytest.raises(ServingPlatformError, match=r"\[huawei\] pool_id is empty") as refused:
        platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    assert not refused.value.transient
    assert contract.calls_to("create_infer_service") == []

    chain = Chain(tmp_path, settings, deployments)
    try:
        run = chain.controller.start("v2")
        assert run.phase is Phase.FAILED and "[huawei] pool_id is empty" in run.reason
    finally:
        chain.controller.close()
    assert contract.calls_to("create_infer_service") == [] and contract.calls_to("create_infer_deployment") == []
