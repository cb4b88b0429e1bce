"""`arsl gateway setup` on API Gateway: the real SDK client against the contract server's APIG fake.

Every call's method, path, signature and body is checked. The setup must build the whole chain once,
change nothing when run again, republish only what changed, record the published version, switch back
to an earlier one, and report errors plainly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from arsl_tui.cli import build_parser
from arsl_tui.cli.common import CommandContext, run_command
from arsl_tui.config import Settings, load_settings
from arsl_tui.providers.huawei.apig import ApigError, ApigGateway, spec_from_settings
from arsl_tui.state.canary_store import CanaryStore
from tests.fixtures.apig_fake import RELEASE_ENV_ID, ApigFake
from tests.fixtures.huawei_contract import ContractServer
from tests.fixtures.huawei_serving_fakes import SERVICES, InferServiceFake
from tests.providers.conftest import FAKE_CREDENTIALS

PROJECT = "p-apig-0001"
INSTANCE = "inst-1"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)
SERVICE_URL = "https://infer.af-north-1.example/v1/infers/svc-123"
PREFIX = f"/v2/{PROJECT}/apigw/instances/{INSTANCE}"


@pytest.fixture
def contract() -> Iterator[ContractServer]:
    server = ContractServer(
        services=SERVICES, credentials={CREDENTIALS.access_key: CREDENTIALS.secret_key}, project_id=PROJECT
    )
    with server:
        yield server
    assert server.violations == [], "calls broke the documented contract"


@pytest.fixture
def fake(contract: ContractServer) -> ApigFake:
    return ApigFake(contract, INSTANCE)


def make_settings(tmp_path: Path, endpoint: str, **overrides: object) -> Settings:
    return load_settings(
        None,
        environ={},
        cwd=tmp_path,
        cli_overrides={
            "backend": "huawei",
            "home": str(tmp_path / "home"),
            "huawei.apig_endpoint": endpoint,
            "huawei.modelarts_endpoint": endpoint,
            "huawei.ces_endpoint": endpoint,
            "huawei.apig_instance_id": INSTANCE,
            "huawei.service_name": "arsl-signs",
            "huawei.service_image": "swr.example/arsl/serve:1",
            "gateway.api_call_limit": 600,
            "gateway.app_call_limit": 60,
            "gateway.time_unit": "MINUTE",
            **overrides,
        },
    )


@pytest.fixture
def settings(tmp_path: Path, contract: ContractServer) -> Settings:
    return make_settings(tmp_path, contract.endpoint)


@pytest.fixture
def gateway(settings: Settings, fake: ApigFake) -> ApigGateway:
    return ApigGateway.from_settings(settings, credentials=CREDENTIALS)


def creations(contract: ContractServer) -> list[str]:
    return [
        str(call.operation)
        for call in contract.calls
        if call.method in ("POST", "PUT") and call.operation and call.status < 300
    ]


def test_first_setup_builds_the_whole_chain(
    gateway: ApigGateway, settings: Settings, contract: ContractServer, fake: ApigFake
) -> None:
    report = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    assert creations(contract) == [
        "create_api_group_v2",
        "create_api_v2",
        "create_or_delete_publish_record_for_api_v2",
        "create_an_app_v2",
        "create_app_code_auto_v2",
        "create_authorizing_apps_v2",
        "create_request_throttling_policy_v2",
        "associate_request_throttling_policy_v2",
    ]
    assert report.changed == [
        "group",
        "api",
        "publish",
        "app",
        "app_code",
        "authorisation",
        "throttle",
        "throttle_binding",
    ]
    [api_call] = contract.calls_to("create_api_v2")
    assert api_call.path == f"{PREFIX}/apis"
    body = api_call.body
    assert (body["auth_type"], body["auth_opt"], body["req_method"], body["req_uri"]) == (
        "APP",
        {"app_code_auth_type": "HEADER"},
        "POST",
        "/v1/predict",
    )
    assert body["group_id"] == report.group_id and body["backend_type"] == "HTTP"
    assert body["backend_api"] == {
        "url_domain": "infer.af-north-1.example",
        "req_protocol": "HTTPS",
        "req_method": "POST",
        "req_uri": "/v1/infers/svc-123",
        "timeout": 40000,
        "retry_count": "-1",
    }
    [publish] = contract.calls_to("create_or_delete_publish_record_for_api_v2")
    assert publish.path == f"{PREFIX}/apis/action"
    assert publish.body["action"] == "online" and publish.body["env_id"] == RELEASE_ENV_ID
    [throttle] = contract.calls_to("create_request_throttling_policy_v2")
    assert {
        key: throttle.body[key] for key in ("api_call_limits", "app_call_limits", "time_interval", "time_unit", "type")
    } == {"api_call_limits": 600, "app_call_limits": 60, "time_interval": 1, "time_unit": "MINUTE", "type": 1}
    assert "ip_call_limits" not in throttle.body  # 0 in [gateway] means no per-address limit
    [binding] = contract.calls_to("associate_request_throttling_policy_v2")
    assert binding.body == {"strategy_id": report.throttle_id, "publish_ids": [report.publish_id]}
    [auth] = contract.calls_to("create_authorizing_apps_v2")
    assert auth.body == {"env_id": RELEASE_ENV_ID, "app_ids": [report.app_id], "api_ids": [report.api_id]}
    assert report.key == fake.app_codes[report.app_id][0]["app_code"]
    assert report.version_id == fake.versions[-1]["version_id"]
    assert report.url == f"https://{fake.groups[report.group_id]['sl_domain']}/v1/predict"
    assert report.versions == [
        {
            "version_id": report.version_id,
            "version_no": fake.versions[-1]["version_no"],
            "publish_time": "2026-01-01T00:00:00+00:00",
            "effective": True,
        }
    ]


def test_a_second_setup_changes_nothing_and_shows_no_key(
    gateway: ApigGateway, settings: Settings, contract: ContractServer
) -> None:
    first = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    before = len(creations(contract))
    again = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    assert len(creations(contract)) == before
    assert again.changed == [] and again.key is None
    assert (again.api_id, again.version_id, again.publish_id) == (first.api_id, first.version_id, first.publish_id)


def test_a_new_service_url_updates_and_republishes_and_the_old_version_can_be_switched_back(
    gateway: ApigGateway, settings: Settings, contract: ContractServer, fake: ApigFake
) -> None:
    first = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    moved = gateway.setup(spec_from_settings(settings, "https://infer2.af-north-1.example:8443/v1/infers/svc-9"))
    assert moved.changed == ["api", "publish"] and moved.version_id != first.version_id
    [update] = contract.calls_to("update_api_v2")
    assert update.path == f"{PREFIX}/apis/{first.api_id}"
    assert update.body["backend_api"]["url_domain"] == "infer2.af-north-1.example:8443"
    assert [item["effective"] for item in moved.versions] == [True, False]
    switched = gateway.rollback_to(first.api_id, first.version_id)
    assert switched["version_id"] == first.version_id
    [change] = contract.calls_to("change_api_version_v2")
    assert change.method == "PUT" and change.path == f"{PREFIX}/apis/publish/{first.api_id}"
    assert change.body == {"version_id": first.version_id}
    effective = [item for item in gateway.versions(first.api_id, RELEASE_ENV_ID) if item["effective"]]
    assert [item["version_id"] for item in effective] == [first.version_id]
    assert fake.apis[first.api_id]["definition"]["backend_api"]["url_domain"] == "infer.af-north-1.example"


def test_changed_limits_update_the_policy(tmp_path: Path, contract: ContractServer, fake: ApigFake) -> None:
    settings = make_settings(tmp_path, contract.endpoint)
    gateway = ApigGateway.from_settings(settings, credentials=CREDENTIALS)
    first = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    tighter = make_settings(tmp_path, contract.endpoint, **{"gateway.app_call_limit": 30, "gateway.ip_call_limit": 20})
    report = gateway.setup(spec_from_settings(tighter, SERVICE_URL))
    assert report.changed == ["throttle"]
    [update] = contract.calls_to("update_request_throttling_policy_v2")
    assert update.path == f"{PREFIX}/throttles/{first.throttle_id}"
    assert (update.body["app_call_limits"], update.body["ip_call_limits"]) == (30, 20)
    assert fake.throttles[first.throttle_id]["app_call_limits"] == 30


def test_errors_name_the_call_and_say_whether_to_retry(
    gateway: ApigGateway, settings: Settings, contract: ContractServer
) -> None:
    contract.inject("create_api_v2", status=429, error_code="APIG.1009", error_msg="too many requests")
    with pytest.raises(ApigError) as throttled:
        gateway.setup(spec_from_settings(settings, SERVICE_URL))
    assert throttled.value.transient and "create_api_v2" in str(throttled.value) and "APIG.1009" in str(throttled.value)
    contract.inject("list_environments_v2", status=500, error_msg="internal")
    with pytest.raises(ApigError) as internal:
        gateway.setup(spec_from_settings(settings, SERVICE_URL))
    assert internal.value.transient and internal.value.status == 500
    report = gateway.setup(spec_from_settings(settings, SERVICE_URL))  # finishes what the failures left
    assert report.api_id and report.throttle_id
    assert len(contract.calls_to("create_api_group_v2")) == 1  # the group made by the first try is reused
    with pytest.raises(ApigError, match="no environment 'TEST'"):
        gateway.setup(replace(spec_from_settings(settings, SERVICE_URL), environment="TEST"))
    with pytest.raises(ApigError, match="not an http"):
        gateway.setup(spec_from_settings(settings, "ftp://nowhere/x"))
    with pytest.raises(ApigError, match="apig_instance_id is empty"):
        ApigGateway.from_settings(
            make_settings(settings.home_dir.parent, contract.endpoint, **{"huawei.apig_instance_id": ""}),
            credentials=CREDENTIALS,
        )


def test_cli_gateway_setup_publishes_the_running_service_and_records_the_version(
    tmp_path: Path, contract: ContractServer, fake: ApigFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = InferServiceFake(contract)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""backend = "huawei"
home = "{tmp_path / "home"}"
[huawei]
apig_endpoint = "{contract.endpoint}"
modelarts_endpoint = "{contract.endpoint}"
ces_endpoint = "{contract.endpoint}"
obs_endpoint = "{contract.endpoint}"
apig_instance_id = "{INSTANCE}"
service_name = "arsl-signs"
service_image = "swr.example/arsl/serve:1"
""",
        encoding="utf-8",
    )
    for name, value in (
        ("HUAWEICLOUD_SDK_AK", CREDENTIALS.access_key),
        ("HUAWEICLOUD_SDK_SK", CREDENTIALS.secret_key),
        ("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", str(tmp_path / "no-credentials-file"))

    def cli(*arguments: str) -> tuple[int, str, str]:
        namespace = build_parser().parse_args([*arguments, "--config", str(config)])
        out, err = io.StringIO(), io.StringIO()
        context = CommandContext(config_path=str(config), backend=None, json_output=True, stdout=out, stderr=err)
        return run_command(namespace.handler, context, namespace), out.getvalue(), err.getvalue()

    code, out, _err = cli("gateway", "setup", "--yes", "--json")
    assert code == 3 and "has no prediction URL yet" in json.loads(out)["error"]

    from arsl_tui.domain.ports import ModelSlot
    from arsl_tui.providers.huawei.services import ModelArtsServingPlatform

    platform = ModelArtsServingPlatform.from_settings(
        load_settings(config, environ={}),
        package_address=lambda v: f"obs://arsl-ml/models/packages/{v}/",
        credentials=CREDENTIALS,
    )
    platform.deploy("arsl-signs", [ModelSlot("v1", 100)])
    services.advance(services.only_service().id, "RUNNING")
    contract.calls.clear()
    code, out, err = cli("gateway", "setup", "--yes", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["key"] and report["version_id"] and "api" in report["changed"]
    [api_call] = contract.calls_to("create_api_v2")
    assert api_call.body["backend_api"]["req_uri"] == f"/v1/infers/{services.only_service().id}"
    store = CanaryStore.open(tmp_path / "home")
    try:
        [recorded] = store.publications()
    finally:
        store.close()
    assert (recorded["api_id"], recorded["version_id"]) == (report["api_id"], report["version_id"])
    assert CREDENTIALS.secret_key not in out + err
