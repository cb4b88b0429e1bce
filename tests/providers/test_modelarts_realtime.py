"""ModelArts real-time services (v1 API, `[huawei] serving = "realtime"`): the real SDK client's signing and
transport against the contract server, whose v1 routes and body rules come from Huawei's API reference.

The server checks every call's method, path, signature, query and body (a test fails on any violation
left over). The test registers the AI applications and apps that exist and plays the service from
deploying to running or failed. The last part drives the canary controller with this platform.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from arsl_tui.config import ConfigError, Settings, load_settings
from arsl_tui.domain.canary import CanaryRun, Command, Phase
from arsl_tui.domain.ports import ModelImportError, ModelSlot, ServingPlatformError
from arsl_tui.ops.canary import CanaryController
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.huawei.realtime_services import (
    CALLS_METRIC,
    CES_NAMESPACE,
    FAILURES_METRIC,
    VERSION_ENV,
    RealtimeServingPlatform,
    build_clients,
    description_from,
)
from arsl_tui.providers.huawei.rest import rest_json
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.canary_store import CanaryStore
from tests.fixtures.ces_metrics_fake import CloudEyeMetricsFake
from tests.fixtures.huawei_contract import ContractServer, closed_port_endpoint
from tests.fixtures.huawei_serving_fakes import CES_V1, MODELARTS
from tests.fixtures.model_packages import gate_json, metrics_json, write_package
from tests.fixtures.modelarts_realtime_fake import RealtimeServicesFake
from tests.providers.conftest import FAKE_CREDENTIALS

PROJECT = "p-realtime-0001"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)
SERVICE = "arsl-signs"
SPECIFICATION = "modelarts.vm.cpu.2u"


@pytest.fixture
def contract() -> Iterator[ContractServer]:
    server = ContractServer(
        services=(MODELARTS, CES_V1), credentials={CREDENTIALS.access_key: CREDENTIALS.secret_key}, project_id=PROJECT
    )
    with server:
        yield server
    assert server.violations == [], "calls broke the documented contract"


@pytest.fixture
def fake(contract: ContractServer) -> RealtimeServicesFake:
    return RealtimeServicesFake(contract)


@pytest.fixture
def cloud_eye(contract: ContractServer) -> CloudEyeMetricsFake:
    return CloudEyeMetricsFake(contract)


@pytest.fixture
def models(fake: RealtimeServicesFake) -> dict[str, str]:
    """version → model id of the AI applications the importer would have created."""
    return {version: fake.add_model("arsl-sign-classifier", f"{version[1:]}.0.0") for version in ("v1", "v2", "v3")}


@pytest.fixture
def app_id(fake: RealtimeServicesFake) -> str:
    return fake.add_app()


def make_settings(
    tmp_path: Path, endpoint: str, overrides: Mapping[str, Any] | None = None, *, timeout_s: float = 5.0
) -> Settings:
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
            "huawei.service_specification": SPECIFICATION,
            "canary.steps": "10,100",
            "canary.window_s": 60,
            "canary.min_samples": 50,
            "canary.min_feedback": 10,
            **(overrides or {}),
        },
    )


def lookup(models: dict[str, str]) -> Callable[[str], str]:
    def model_id(version: str) -> str:
        if version not in models:
            raise LookupError(f"{version} was never imported")
        return models[version]

    return model_id


def make_platform(
    settings: Settings, models: dict[str, str], clock: list[float] | None = None
) -> RealtimeServingPlatform:
    built = RealtimeServingPlatform.from_settings(settings, model_id=lookup(models), credentials=CREDENTIALS)
    if clock is not None:
        built._clock = lambda: clock[0]
    return built


@pytest.fixture
def settings(tmp_path: Path, contract: ContractServer, app_id: str) -> Settings:
    return make_settings(tmp_path, contract.endpoint, {"huawei.service_app_id": app_id})


@pytest.fixture
def platform(
    settings: Settings, fake: RealtimeServicesFake, cloud_eye: CloudEyeMetricsFake, models: dict[str, str]
) -> RealtimeServingPlatform:
    return make_platform(settings, models)


def config_weights(call_body: dict[str, Any]) -> dict[str, int]:
    return {entry["envs"][VERSION_ENV]: entry["weight"] for entry in call_body["config"]}


# --- the platform on its own ----------------------------------------------------------------------


def test_deploy_at_100_creates_a_real_time_service_from_the_imported_model(
    platform: RealtimeServingPlatform,
    contract: ContractServer,
    fake: RealtimeServicesFake,
    models: dict[str, str],
    app_id: str,
) -> None:
    assert platform.status(SERVICE).phase == "absent"
    status = platform.deploy(SERVICE, [ModelSlot("v1", 100)], "first release: v1 <all traffic>")
    assert status.phase == "deploying" and status.weights == {"v1": 100} and status.ready == {"v1": False}

    [spec_query] = contract.calls_to("show_service_specifications")
    assert spec_query.path == f"/v1/{PROJECT}/services/specifications"
    assert spec_query.query == [("infer_type", "real-time")]
    [create] = contract.calls_to("create_service")
    assert create.method == "POST" and create.path == f"/v1/{PROJECT}/services"
    assert create.body == {
        "service_name": SERVICE,
        "description": "first release: v1 all traffic",  # the documented forbidden characters stripped
        "infer_type": "real-time",
        "config": [
            {
                "model_id": models["v1"],
                "weight": 100,
                "specification": SPECIFICATION,
                "instance_count": 1,
                "envs": {VERSION_ENV: "v1"},
            }
        ],
    }
    service = fake.only_service()
    fake.advance(service.id, "running")
    running = platform.status(SERVICE)
    assert running.running and running.weights == {"v1": 100} and running.ready == {"v1": True}
    # App authentication (the default): the app-auth API is registered for the configured app, and its
    # address is the endpoint clients call with X-Apig-AppCode.
    [register] = contract.calls_to("create_and_auth_app_auth_api")
    assert register.path == f"/v1/{PROJECT}/services/{service.id}/app-auth-api"
    assert register.body == {"apps": [{"app_id": app_id}]}
    assert running.endpoint == fake.app_auth_address(service.id) == platform.endpoint(SERVICE)
    assert service.app_auth_api is not None and service.app_auth_api.apps == [app_id]


def test_a_canary_is_one_put_of_the_whole_config_and_promotion_drops_the_old_version(
    platform: RealtimeServingPlatform, contract: ContractServer, fake: RealtimeServicesFake, models: dict[str, str]
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    service = fake.only_service()
    fake.advance(service.id, "running")

    status = platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)], "canary v2")
    assert status.phase == "deploying" and status.weights == {"v1": 90, "v2": 10}
    assert status.ready == {"v1": True, "v2": False}
    [update] = contract.calls_to("update_service")
    assert update.method == "PUT" and update.path == f"/v1/{PROJECT}/services/{service.id}"
    assert set(update.body) == {"config"}  # never `status` too: ModelArts would then ignore the config
    assert [entry["model_id"] for entry in update.body["config"]] == [models["v1"], models["v2"]]
    assert config_weights(update.body) == {"v1": 90, "v2": 10}
    fake.advance(service.id, "running")

    assert platform.set_weights(SERVICE, {"v1": 0, "v2": 100}).weights == {"v1": 0, "v2": 100}
    final = platform.deploy(SERVICE, [ModelSlot("v2", 100)], "promote v2")
    assert final.running and final.weights == {"v2": 100}
    assert fake.weights(service.id) == {models["v2"]: 100}
    assert [config_weights(call.body) for call in contract.calls_to("update_service")] == [
        {"v1": 90, "v2": 10},
        {"v1": 0, "v2": 100},
        {"v2": 100},
    ]
    assert len(contract.calls_to("show_service_specifications")) == 1  # checked once, before its first use


def test_rollback_moves_all_traffic_back_and_keeps_the_challenger_without_traffic(
    platform: RealtimeServingPlatform, contract: ContractServer, fake: RealtimeServicesFake
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    service = fake.only_service()
    fake.advance(service.id, "running")
    platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)])
    fake.advance(service.id, "running")
    status = platform.set_weights(SERVICE, {"v1": 100, "v2": 0}, "rollback")
    assert status.running and status.weights == {"v1": 100, "v2": 0} and status.serves({"v1": 100})
    with pytest.raises(ServingPlatformError, match="must sum to 100"):
        platform.set_weights(SERVICE, {"v1": 70, "v2": 20})
    with pytest.raises(ServingPlatformError, match="must name exactly"):
        platform.set_weights(SERVICE, {"v1": 100})
    assert len(contract.calls_to("update_service")) == 2  # refused before any call


def test_token_auth_reports_the_service_access_address_and_registers_no_app_api(
    tmp_path: Path, contract: ContractServer, fake: RealtimeServicesFake, models: dict[str, str]
) -> None:
    settings = make_settings(tmp_path, contract.endpoint, {"huawei.service_auth": "token"})
    platform = make_platform(settings, models)
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    service = fake.only_service()
    fake.advance(service.id, "running")
    assert platform.endpoint(SERVICE) == fake.access_address(service.id)
    assert not [op for op in contract.operations() if op and "auth" in op]


def test_app_auth_without_an_app_id_is_refused_before_any_call(
    tmp_path: Path, contract: ContractServer, fake: RealtimeServicesFake, models: dict[str, str]
) -> None:
    platform = make_platform(make_settings(tmp_path, contract.endpoint), models)
    with pytest.raises(ServingPlatformError, match=r"service_app_id is empty.*service_auth = \"token\""):
        platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    assert contract.calls == []


def test_an_existing_app_auth_api_is_authorised_for_the_configured_app(
    tmp_path: Path, contract: ContractServer, fake: RealtimeServicesFake, models: dict[str, str], app_id: str
) -> None:
    make_platform(make_settings(tmp_path, contract.endpoint, {"huawei.service_app_id": app_id}), models).deploy(
        SERVICE, [ModelSlot("v1", 100)]
    )
    service = fake.only_service()
    fake.advance(service.id, "running")
    other_app = fake.add_app()
    platform = make_platform(make_settings(tmp_path, contract.endpoint, {"huawei.service_app_id": other_app}), models)
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    [authorize] = contract.calls_to("authorize_api_to_apps")
    assert service.app_auth_api is not None
    assert authorize.path == f"/v1/{PROJECT}/services/{service.id}/app-auth-apis/{service.app_auth_api.id}/app-auth-api"
    assert service.app_auth_api.apps == [app_id, other_app]
    assert len(contract.calls_to("create_and_auth_app_auth_api")) == 1  # the API is registered once
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    assert len(contract.calls_to("authorize_api_to_apps")) == 1  # authorised already: nothing sent


def test_an_app_modelarts_cannot_authorise_is_an_explicit_error(
    tmp_path: Path, contract: ContractServer, fake: RealtimeServicesFake, models: dict[str, str]
) -> None:
    platform = make_platform(
        make_settings(tmp_path, contract.endpoint, {"huawei.service_app_id": "no-such-app"}), models
    )
    with pytest.raises(ServingPlatformError, match=r"could not authorise app no-such-app.*APP does not exist"):
        platform.deploy(SERVICE, [ModelSlot("v1", 100)])


def test_an_unknown_specification_stops_before_the_service_is_created_naming_the_usable_ones(
    tmp_path: Path, contract: ContractServer, fake: RealtimeServicesFake, models: dict[str, str], app_id: str
) -> None:
    for wanted, why in (("modelarts.vm.cpu.9u", "is not offered"), ("modelarts.vm.gpu.pnt004", "is not open")):
        settings = make_settings(
            tmp_path, contract.endpoint, {"huawei.service_app_id": app_id, "huawei.service_specification": wanted}
        )
        with pytest.raises(ServingPlatformError) as refused:
            make_platform(settings, models).deploy(SERVICE, [ModelSlot("v1", 100)])
        assert why in str(refused.value) and "usable: modelarts.vm.cpu.2u" in str(refused.value)
        assert wanted in str(refused.value)
    assert contract.calls_to("create_service") == []


def test_a_dedicated_pool_is_named_and_its_specifications_listed(
    tmp_path: Path, contract: ContractServer, fake: RealtimeServicesFake, models: dict[str, str], app_id: str
) -> None:
    settings = make_settings(tmp_path, contract.endpoint, {"huawei.service_app_id": app_id, "huawei.pool_id": "pool-1"})
    make_platform(settings, models).deploy(SERVICE, [ModelSlot("v1", 100)])
    [spec_query] = contract.calls_to("show_service_specifications")
    assert ("is_personal_cluster", "true") in spec_query.query
    assert contract.calls_to("create_service")[0].body["pool_name"] == "pool-1"


def test_a_version_that_was_never_imported_is_named(
    platform: RealtimeServingPlatform, contract: ContractServer
) -> None:
    with pytest.raises(ServingPlatformError, match="AI application of v9: v9 was never imported"):
        platform.deploy(SERVICE, [ModelSlot("v9", 100)])
    assert contract.calls_to("create_service") == []


def test_a_failed_deployment_reports_modelarts_reason(
    platform: RealtimeServingPlatform, fake: RealtimeServicesFake
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    fake.advance(fake.only_service().id, "failed", "image pull failed for model arsl-sign-classifier 1.0.0")
    status = platform.status(SERVICE)
    assert status.phase == "failed" and "image pull failed" in status.detail


def test_stats_sum_cloud_eye_calls_per_real_model_id(
    platform: RealtimeServingPlatform,
    contract: ContractServer,
    fake: RealtimeServicesFake,
    cloud_eye: CloudEyeMetricsFake,
    models: dict[str, str],
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    service = fake.only_service()
    fake.advance(service.id, "running")
    platform.deploy(SERVICE, [ModelSlot("v1", 80), ModelSlot("v2", 20)])
    fake.advance(service.id, "running")
    now_ms = int(time.time() * 1000)
    for version, calls, failures in (("v1", [400, 380], [1, 0]), ("v2", [100, 90], [9, 12])):
        dims = {"service_id": service.id, "model_id": models[version]}
        cloud_eye.set_points(
            CES_NAMESPACE, CALLS_METRIC, dims, [(now_ms - 90_000, calls[0]), (now_ms - 30_000, calls[1])]
        )
        cloud_eye.set_points(
            CES_NAMESPACE, FAILURES_METRIC, dims, [(now_ms - 90_000, failures[0]), (now_ms - 30_000, failures[1])]
        )
    cloud_eye.set_points(
        CES_NAMESPACE, CALLS_METRIC, {"service_id": service.id, "model_id": models["v3"]}, [(now_ms - 1, 9_999)]
    )
    stats = platform.stats(SERVICE, ["v1", "v2"], window_s=120)
    assert (stats["v1"].requests, stats["v1"].errors) == (780, 1)
    assert (stats["v2"].requests, stats["v2"].errors) == (190, 21)
    assert stats["v2"].latency_ms == () and stats["v2"].feedback == 0  # not published per version by ModelArts
    [query] = contract.calls_to("batch_list_metric_data")
    body = query.body
    assert (body["period"], body["filter"]) == ("1", "sum") and body["to"] - body["from"] == 120_000
    asked = {
        (
            metric["namespace"],
            metric["metric_name"],
            tuple((item["name"], item["value"]) for item in metric["dimensions"]),
        )
        for metric in body["metrics"]
    }
    assert asked == {
        (CES_NAMESPACE, name, (("service_id", service.id), ("model_id", models[version])))
        for name in (CALLS_METRIC, FAILURES_METRIC)
        for version in ("v1", "v2")
    }
    assert platform.stats("no-such-service", ["v1"], 60)["v1"].requests == 0


def test_errors_become_explicit_and_say_whether_to_retry(
    platform: RealtimeServingPlatform,
    contract: ContractServer,
    fake: RealtimeServicesFake,
    models: dict[str, str],
    tmp_path: Path,
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)])
    fake.advance(fake.only_service().id, "running")
    contract.inject("update_service", status=429, error_code="APIGW.0308", error_msg="Too many requests")
    with pytest.raises(ServingPlatformError) as throttled:
        platform.set_weights(SERVICE, {"v1": 50, "v2": 50})
    assert throttled.value.transient and throttled.value.status == 429 and "throttled" in str(throttled.value)
    contract.inject("show_service", status=500, error_msg="internal")
    with pytest.raises(ServingPlatformError) as internal:
        platform.status(SERVICE)
    assert internal.value.transient and internal.value.status == 500
    contract.inject("update_service", status=400, error_code="ModelArts.3551", error_msg="bad config")
    with pytest.raises(ServingPlatformError) as refused:
        platform.set_weights(SERVICE, {"v1": 50, "v2": 50})
    assert not refused.value.transient and "ModelArts.3551" in str(refused.value)
    assert "UpdateService" in str(refused.value) and SERVICE in str(refused.value)
    nowhere = make_platform(make_settings(tmp_path / "x", closed_port_endpoint()), models)
    with pytest.raises(ServingPlatformError) as unreachable:
        nowhere.status(SERVICE)
    assert unreachable.value.transient
    assert CREDENTIALS.secret_key not in str(unreachable.value) + str(refused.value)


def test_a_service_deleted_behind_the_platforms_back_is_looked_up_again(
    platform: RealtimeServingPlatform, fake: RealtimeServicesFake
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    service = fake.only_service()
    del fake.services[service.id]
    with pytest.raises(ServingPlatformError) as gone:
        platform.status(SERVICE)
    assert gone.value.status == 404
    assert platform.status(SERVICE).phase == "absent"


def test_descriptions_keep_to_the_documented_rules() -> None:
    assert description_from("") == "arsl canary"
    assert description_from('a "b" <c> & d=e! f+g\'') == "a b c d e f g"
    assert len(description_from("x" * 500)) == 100


# --- the contract's rules: bodies the real service would refuse -----------------------------------


@pytest.fixture
def raw(contract: ContractServer, fake: RealtimeServicesFake) -> Callable[..., Any]:
    """Send a request through the real SDK client's signing and transport; the answer, or the refusal."""
    client, _ = build_clients(contract.endpoint, contract.endpoint, CREDENTIALS, 5.0)

    def send(
        method: str, path: str, *, body: Any = None, query: list[tuple[str, str]] | None = None, **params: str
    ) -> Any:
        return rest_json(client, method, path, path_params=params, query=query or [], body=body)

    return send


def good_entry(model_id: str, weight: int = 100) -> dict[str, Any]:
    return {"model_id": model_id, "weight": weight, "specification": SPECIFICATION, "instance_count": 1}


def good_create(models: dict[str, str], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"service_name": SERVICE, "infer_type": "real-time", "config": [good_entry(models["v1"])]}
    body.update(changes)
    return body


def refused(contract: ContractServer, send: Callable[[], Any], expected: str) -> None:
    """`send()` is answered 400 naming `expected`; the violation it recorded is taken off the list."""
    with pytest.raises(ClientRequestException) as answer:
        send()
    assert answer.value.status_code == 400, answer.value
    assert expected in str(answer.value.error_msg), answer.value.error_msg
    assert any(expected in text for text in contract.violations), contract.violations
    contract.violations.clear()


# Each case: a body CreateService ("Deploying Services", modelarts_03_0082, Table 3 and Table 5 ServiceConfig)
# documents as invalid, and the words of the refusal.
CREATE_RULES: list[tuple[str, Callable[[dict[str, str]], dict[str, Any]], str]] = [
    (
        "weights must sum to 100",
        lambda m: good_create(m, config=[good_entry(m["v1"], 60), good_entry(m["v2"], 60)]),
        "must sum to 100",
    ),
    (
        "weight is mandatory for real-time",
        lambda m: good_create(m, config=[{**good_entry(m["v1"]), "weight": None}]),
        "weight is mandatory",
    ),
    (
        "a weight above 100",
        lambda m: good_create(m, config=[good_entry(m["v1"], 150), good_entry(m["v2"], -50)]),
        "0..100",
    ),
    (
        "model_id is required",
        lambda m: good_create(m, config=[{k: v for k, v in good_entry(m["v1"]).items() if k != "model_id"}]),
        "model_id is required",
    ),
    (
        "specification is required",
        lambda m: good_create(m, config=[{k: v for k, v in good_entry(m["v1"]).items() if k != "specification"}]),
        "specification is required",
    ),
    (
        "custom specification needs custom_spec and a dedicated pool",
        lambda m: good_create(m, config=[{**good_entry(m["v1"]), "specification": "custom"}]),
        "custom needs custom_spec",
    ),
    (
        "instance_count at most 128",
        lambda m: good_create(m, config=[{**good_entry(m["v1"]), "instance_count": 129}]),
        "from 1 to 128",
    ),
    (
        "instance_count at least 1",
        lambda m: good_create(m, config=[{**good_entry(m["v1"]), "instance_count": 0}]),
        "from 1 to 128",
    ),
    (
        "model versions must be unique",
        lambda m: good_create(m, config=[good_entry(m["v1"], 50), good_entry(m["v1"], 50)]),
        "names a model version twice",
    ),
    ("infer_type real-time or batch", lambda m: good_create(m, infer_type="REAL_TIME"), "infer_type must be one of"),
    ("service_name pattern", lambda m: good_create(m, service_name="arsl signs!"), "service_name"),
    ("description at most 100 characters", lambda m: good_create(m, description="x" * 101), "longer than 100"),
    ("description without !<>+&\"'", lambda m: good_create(m, description="v2 <canary>"), "forbidden characters"),
    ("priority 1 to 3", lambda m: good_create(m, priority=4), "priority must be an integer from 1 to 3"),
    ("vpc_id needs its security group and subnet", lambda m: good_create(m, vpc_id="vpc-1"), "vpc_id needs"),
    ("no undocumented fields (the v2 group_configs)", lambda m: good_create(m, group_configs=[]), "undocumented"),
    (
        "no undocumented config fields",
        lambda m: good_create(m, config=[{**good_entry(m["v1"]), "pool_id": "p"}]),
        "undocumented fields",
    ),
    ("config is required", lambda m: {"service_name": SERVICE, "infer_type": "real-time"}, "config must be"),
]


@pytest.mark.parametrize(("rule", "make_body", "expected"), CREATE_RULES, ids=[case[0] for case in CREATE_RULES])
def test_create_service_refuses_what_the_docs_forbid(
    raw: Callable[..., Any],
    contract: ContractServer,
    fake: RealtimeServicesFake,
    models: dict[str, str],
    rule: str,
    make_body: Callable[[dict[str, str]], dict[str, Any]],
    expected: str,
) -> None:
    refused(contract, lambda: raw("POST", "/v1/{project_id}/services", body=make_body(models)), expected)
    assert fake.services == {}


def test_create_service_accepts_the_documented_examples(
    raw: Callable[..., Any], fake: RealtimeServicesFake, models: dict[str, str]
) -> None:
    # The page's multi-version example sends the weights as strings ("70", "30").
    body = good_create(
        models, config=[{**good_entry(models["v1"]), "weight": "70"}, {**good_entry(models["v2"]), "weight": "30"}]
    )
    answer = raw("POST", "/v1/{project_id}/services", body=body)
    assert fake.weights(answer["service_id"]) == {models["v1"]: 70, models["v2"]: 30}


def test_create_service_refuses_a_specification_modelarts_does_not_offer_and_an_unknown_model(
    raw: Callable[..., Any], contract: ContractServer, fake: RealtimeServicesFake, models: dict[str, str]
) -> None:
    with pytest.raises(ClientRequestException) as unknown_spec:
        raw(
            "POST",
            "/v1/{project_id}/services",
            body=good_create(models, config=[{**good_entry(models["v1"]), "specification": "modelarts.vm.cpu.9u"}]),
        )
    assert unknown_spec.value.status_code == 400 and "specification" in unknown_spec.value.error_msg
    with pytest.raises(ClientRequestException) as unknown_model:
        raw("POST", "/v1/{project_id}/services", body=good_create(models, config=[good_entry("no-such-model")]))
    assert unknown_model.value.status_code == 404
    assert fake.services == {}


# UpdateService ("Updating Service Configurations", modelarts_03_0086, Table 3 and Table 5).
UPDATE_RULES: list[tuple[str, Callable[[dict[str, str]], dict[str, Any]], str]] = [
    (
        "weights must sum to 100",
        lambda m: {"config": [good_entry(m["v1"], 90), good_entry(m["v2"], 20)]},
        "must sum to 100",
    ),
    (
        "model_id is required",
        lambda m: {"config": [{"weight": 100, "specification": SPECIFICATION, "instance_count": 1}]},
        "model_id is required",
    ),
    ("status running or stopped", lambda m: {"status": "paused"}, "status must be running or stopped"),
    ("description without <>=&\"'", lambda m: {"description": "weights=90/10"}, "forbidden characters"),
    ("no undocumented fields (the v2 group_configs)", lambda m: {"group_configs": [{"weight": 100}]}, "undocumented"),
]


@pytest.mark.parametrize(("rule", "make_body", "expected"), UPDATE_RULES, ids=[case[0] for case in UPDATE_RULES])
def test_update_service_refuses_what_the_docs_forbid(
    raw: Callable[..., Any],
    contract: ContractServer,
    fake: RealtimeServicesFake,
    models: dict[str, str],
    rule: str,
    make_body: Callable[[dict[str, str]], dict[str, Any]],
    expected: str,
) -> None:
    service_id = raw("POST", "/v1/{project_id}/services", body=good_create(models))["service_id"]
    refused(
        contract,
        lambda: raw("PUT", "/v1/{project_id}/services/{service_id}", body=make_body(models), service_id=service_id),
        expected,
    )
    assert fake.weights(service_id) == {models["v1"]: 100}


def test_update_with_status_and_config_changes_the_status_only(
    raw: Callable[..., Any], fake: RealtimeServicesFake, models: dict[str, str]
) -> None:
    service_id = raw("POST", "/v1/{project_id}/services", body=good_create(models))["service_id"]
    fake.advance(service_id, "running")
    body = {"status": "stopped", "config": [good_entry(models["v1"], 50), good_entry(models["v2"], 50)]}
    raw("PUT", "/v1/{project_id}/services/{service_id}", body=body, service_id=service_id)
    assert fake.services[service_id].status == "stopped" and fake.weights(service_id) == {models["v1"]: 100}


QUERY_RULES: list[tuple[str, str, list[tuple[str, str]], str]] = [
    (
        "ListServices: documented parameters only",
        "/v1/{project_id}/services",
        [("name", SERVICE)],
        "undocumented query",
    ),
    ("ListServices: status enum", "/v1/{project_id}/services", [("status", "RUNNING")], "status must be one of"),
    ("ListServices: sort_by enum", "/v1/{project_id}/services", [("sort_by", "name")], "sort_by must be one of"),
    (
        "specifications: infer_type enum",
        "/v1/{project_id}/services/specifications",
        [("infer_type", "REAL_TIME")],
        "infer_type",
    ),
    (
        "specifications: is_personal_cluster boolean",
        "/v1/{project_id}/services/specifications",
        [("is_personal_cluster", "yes")],
        "is_personal_cluster",
    ),
]


@pytest.mark.parametrize(("rule", "path", "query", "expected"), QUERY_RULES, ids=[case[0] for case in QUERY_RULES])
def test_queries_keep_to_the_documented_parameters(
    raw: Callable[..., Any], contract: ContractServer, rule: str, path: str, query: list[tuple[str, str]], expected: str
) -> None:
    refused(contract, lambda: raw("GET", path, query=query), expected)


def test_app_auth_bodies_name_apps_as_documented(
    raw: Callable[..., Any], contract: ContractServer, fake: RealtimeServicesFake, models: dict[str, str]
) -> None:
    # CreateAndAuthAppAuthApi: `apps` is mandatory, an array of {app_id}.
    service_id = raw("POST", "/v1/{project_id}/services", body=good_create(models))["service_id"]
    path = "/v1/{project_id}/services/{service_id}/app-auth-api"
    refused(contract, lambda: raw("POST", path, body={}, service_id=service_id), "apps is mandatory")
    refused(contract, lambda: raw("POST", path, body={"apps": ["app-1"]}, service_id=service_id), "apps[0] must be")
    assert fake.services[service_id].app_auth_api is None


# --- the canary controller on real-time services --------------------------------------------------


class Rig:
    """A controller on the contract server, a registry with v1 (champion) and v2, and a clock the test moves."""

    def __init__(
        self,
        tmp_path: Path,
        settings: Settings,
        fake: RealtimeServicesFake,
        cloud_eye: CloudEyeMetricsFake,
        models: dict[str, str],
    ) -> None:
        self.settings, self.fake, self.cloud_eye, self.models = settings, fake, cloud_eye, models
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
        self.platform = make_platform(settings, models, self.now)
        self.controller = CanaryController(
            settings,
            platform=self.platform,
            registry=self.registry,
            store=CanaryStore.open(settings.home_dir),
            service=SERVICE,
            user="ops",
            clock=lambda: self.now[0],
        )

    def serve_champion(self) -> str:
        """v1 alone, running (the service before any canary)."""
        self.platform.deploy(SERVICE, [ModelSlot("v1", 100)])
        service = self.fake.only_service()
        self.fake.advance(service.id, "running")
        return service.id

    def counts(self, service_id: str, traffic: dict[str, tuple[int, int]]) -> None:
        """Cloud Eye reports `traffic[version] = (calls, failures)` for the minute just before now."""
        at = int(self.now[0] * 1000) - 1_000
        for version, (calls, failures) in traffic.items():
            dims = {"service_id": service_id, "model_id": self.models[version]}
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

    def weights(self, service_id: str) -> dict[str, int]:
        versions = {model_id: version for version, model_id in self.models.items()}
        return {versions[model_id]: weight for model_id, weight in self.fake.weights(service_id).items()}


@pytest.fixture
def rig(
    tmp_path: Path,
    settings: Settings,
    fake: RealtimeServicesFake,
    cloud_eye: CloudEyeMetricsFake,
    models: dict[str, str],
) -> Iterator[Rig]:
    built = Rig(tmp_path, settings, fake, cloud_eye, models)
    yield built
    built.controller.close()


def test_a_canary_at_10_percent_is_deployed_judged_and_promoted(rig: Rig, contract: ContractServer) -> None:
    service_id = rig.serve_champion()
    run = rig.controller.start("v2")
    assert run.phase is Phase.DEPLOYING  # v2's instances are still starting on ModelArts
    assert rig.weights(service_id) == {"v1": 90, "v2": 10}
    assert rig.tick().phase is Phase.DEPLOYING
    rig.fake.advance(service_id, "running")
    run = rig.tick()
    assert run.phase is Phase.OBSERVING and run.step == 0

    rig.end_window()
    rig.counts(service_id, {"v1": (900, 2), "v2": (100, 0)})
    run = rig.tick()
    assert run.step == 1 and rig.weights(service_id) == {"v1": 0, "v2": 100}
    rig.end_window()
    rig.counts(service_id, {"v2": (1000, 1)})  # at 100 % only the limits judge
    run = rig.tick()
    assert run.phase is Phase.PROMOTED
    assert rig.weights(service_id) == {"v2": 100}  # v1's entry removed
    assert rig.registry.aliases()["champion"] == "v2"
    updates = [config_weights(call.body) for call in contract.calls_to("update_service")]
    assert updates == [{"v1": 90, "v2": 10}, {"v1": 0, "v2": 100}, {"v2": 100}]


def test_a_failing_canary_at_10_percent_is_rolled_back(rig: Rig) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.fake.advance(service_id, "running")
    rig.tick()
    rig.end_window()
    rig.counts(service_id, {"v1": (900, 2), "v2": (100, 20)})
    run = rig.tick()
    assert run.phase is Phase.ROLLED_BACK and "error rate 20.00%" in run.alarm
    assert rig.weights(service_id) == {"v1": 100, "v2": 0}
    assert rig.registry.aliases()["champion"] == "v1"


def test_an_operator_rollback_restores_the_champion(rig: Rig) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.fake.advance(service_id, "running")
    rig.tick()
    run = rig.controller.command(Command.ROLLBACK, reason="bad reviews")
    assert run.phase is Phase.ROLLED_BACK, (run.phase, run.error)
    assert rig.weights(service_id) == {"v1": 100, "v2": 0}


def test_a_deployment_that_fails_on_modelarts_fails_the_canary_and_restores_the_champion(rig: Rig) -> None:
    service_id = rig.serve_champion()
    rig.controller.start("v2")
    rig.fake.advance(service_id, "failed", "model arsl-sign-classifier 2.0.0 failed to start")
    run = rig.tick()
    assert run.phase is Phase.FAILED and "failed to start" in run.reason
    assert rig.weights(service_id) == {"v1": 100, "v2": 0}


def test_the_serving_and_auth_settings_take_only_their_documented_values(tmp_path: Path) -> None:
    defaults = load_settings(None, environ={}, cwd=tmp_path).huawei
    assert (defaults.serving, defaults.service_auth, defaults.service_specification) == (
        "realtime",
        "app",
        "modelarts.vm.cpu.2u",
    )
    for key, value in (("huawei.serving", "v1"), ("huawei.service_auth", "none")):
        with pytest.raises(ConfigError, match=key.split(".")[1]):
            load_settings(None, environ={}, cwd=tmp_path, cli_overrides={key: value})


def test_a_rollback_whose_put_times_out_is_checked_not_repeated(
    tmp_path: Path,
    contract: ContractServer,
    fake: RealtimeServicesFake,
    cloud_eye: CloudEyeMetricsFake,
    models: dict[str, str],
    app_id: str,
) -> None:
    settings = make_settings(tmp_path, contract.endpoint, {"huawei.service_app_id": app_id}, timeout_s=0.5)
    rig = Rig(tmp_path, settings, fake, cloud_eye, models)
    try:
        service_id = rig.serve_champion()
        rig.controller.start("v2")
        rig.fake.advance(service_id, "running")
        rig.tick()
        contract.inject("update_service", delay_s=1.5)  # answered after the client gave up
        run = rig.controller.command(Command.ROLLBACK, reason="bad reviews")
        assert run.phase is Phase.ROLLING_BACK and "no answer within 0.5 s" in run.error
        deadline = time.monotonic() + 10
        while contract.calls_to("update_service")[-1].status == 0:  # the server applies it late
            assert time.monotonic() < deadline, "the delayed update was never applied"
            time.sleep(0.01)  # waiting on the fake server's own thread, which has no event to wait on
        run = rig.tick()
        assert run.phase is Phase.ROLLED_BACK
        rollbacks = [
            call for call in contract.calls_to("update_service") if config_weights(call.body) == {"v1": 100, "v2": 0}
        ]
        assert len(rollbacks) == 1  # checked and found applied: never sent twice
    finally:
        rig.controller.close()


def test_an_import_that_can_be_retried_stays_retryable(
    settings: Settings, contract: ContractServer, fake: RealtimeServicesFake
) -> None:
    def still_importing(version: str) -> str:
        raise ModelImportError(f"{version} is still being imported (publishing)", transient=True)

    platform = RealtimeServingPlatform.from_settings(settings, model_id=still_importing, credentials=CREDENTIALS)
    with pytest.raises(ServingPlatformError) as waiting:
        platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    assert waiting.value.transient and "v1 is still being imported" in str(waiting.value)
    assert contract.calls_to("create_service") == []
