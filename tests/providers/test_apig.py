"""`arsl gateway setup|versions|rollback` on API Gateway: the real SDK client against the contract server's
APIG fake.

Every call's method and path is checked against the documented routes, its query string and body against
the documented request (tests/fixtures/apig_fake.py). The setup must build the whole chain once, give the
service's backend call its AppCode, bind the configured domain (or warn about the debugging domain's daily
cap), change nothing when run again, republish only what changed, record the published version, switch
back to an earlier one, and report errors plainly. The last tests send, one rule each, requests the real
gateway refuses, and check the fake refuses them too.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import huaweicloudsdkapig.v2 as apig
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from arsl_tui.backends import Backend
from arsl_tui.cli import build_parser
from arsl_tui.cli.common import CommandContext, run_command
from arsl_tui.config import Settings, load_settings
from arsl_tui.providers.huawei.apig import (
    SERVICE_APP_CODE_ENV,
    ApigError,
    ApigGateway,
    build_client,
    spec_from_settings,
)
from arsl_tui.state.canary_store import CanaryStore
from tests.fixtures.apig_fake import RELEASE_ENV_ID, ApigFake, query_problems, route_problems
from tests.fixtures.huawei_contract import Call, ContractServer
from tests.fixtures.huawei_serving_fakes import SERVICES
from tests.providers.conftest import FAKE_CREDENTIALS

PROJECT = "p-apig-0001"
INSTANCE = "inst-1"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)
SERVICE_URL = "https://infer.af-north-1.example/v1/infers/svc-123"
SERVICE_APP_CODE = "svc-appcode-" + "7" * 52
PREFIX = f"/v2/{PROJECT}/apigw/instances/{INSTANCE}"


@pytest.fixture(autouse=True)
def service_app_code(monkeypatch: pytest.MonkeyPatch) -> str:
    """The AppCode the gateway's API sends to the app-authenticated ModelArts service."""
    monkeypatch.setenv(SERVICE_APP_CODE_ENV, SERVICE_APP_CODE)
    return SERVICE_APP_CODE


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
    # The service runs with app authentication: every backend call carries the AppCode as a constant header.
    assert body["backend_params"] == [
        {
            "origin": "CONSTANT",
            "name": "X-Apig-AppCode",
            "location": "HEADER",
            "value": SERVICE_APP_CODE,
            "remark": "AppCode of an app authorised on the ModelArts service",
        }
    ]
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
    assert report.url == f"https://{fake.groups[report.group_id]['sl_domain']}/v1/predict" and report.domain == ""
    [warning] = report.warnings
    assert "only its debugging domain" in warning and "1,000 calls a day" in warning and "apig_domain" in warning
    assert not contract.calls_to("associate_domain_v2")
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


def test_without_the_service_app_code_nothing_is_created(
    gateway: ApigGateway, settings: Settings, contract: ContractServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SERVICE_APP_CODE_ENV)
    with pytest.raises(ApigError, match=f"set {SERVICE_APP_CODE_ENV}"):
        gateway.setup(spec_from_settings(settings, SERVICE_URL))
    assert contract.calls == []


def test_an_http_service_url_is_refused_since_its_app_code_would_be(
    gateway: ApigGateway, settings: Settings, contract: ContractServer
) -> None:
    with pytest.raises(ApigError, match="not HTTPS"):
        gateway.setup(spec_from_settings(settings, "http://infer.af-north-1.example/v1/infers/svc-123"))
    assert not contract.calls_to("create_api_v2")


def test_a_configured_domain_is_bound_once_and_reported_instead_of_the_debugging_domain(
    tmp_path: Path, contract: ContractServer, fake: ApigFake
) -> None:
    settings = make_settings(tmp_path, contract.endpoint, **{"huawei.apig_domain": "Signs.Example.com"})
    gateway = ApigGateway.from_settings(settings, credentials=CREDENTIALS)
    report = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    [bind] = contract.calls_to("associate_domain_v2")
    assert bind.path == f"{PREFIX}/api-groups/{report.group_id}/domains"
    assert bind.body == {"url_domain": "signs.example.com", "min_ssl_version": "TLSv1.2"}
    assert (report.url, report.domain, report.warnings) == (
        "https://signs.example.com/v1/predict",
        "signs.example.com",
        [],
    )
    assert report.changed[:2] == ["group", "domain"]
    again = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    assert again.changed == [] and again.url == report.url
    assert len(contract.calls_to("associate_domain_v2")) == 1


def test_a_domain_bound_by_hand_is_reported_without_a_warning(
    gateway: ApigGateway, settings: Settings, contract: ContractServer, fake: ApigFake
) -> None:
    first = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    fake.bind_domain_by_hand(first.group_id, "api.signs.example")
    report = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    assert (report.url, report.warnings) == ("https://api.signs.example/v1/predict", [])
    assert not contract.calls_to("associate_domain_v2")


def test_a_new_app_code_updates_the_api_and_stays_out_of_messages(
    gateway: ApigGateway, settings: Settings, contract: ContractServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    rotated = "rotated-appcode-" + "9" * 40
    monkeypatch.setenv(SERVICE_APP_CODE_ENV, rotated)
    report = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    assert report.changed == ["api", "publish"] and report.version_id != first.version_id
    [update] = contract.calls_to("update_api_v2")
    assert update.body["backend_params"][0]["value"] == rotated
    monkeypatch.setenv(SERVICE_APP_CODE_ENV, "third-appcode-" + "5" * 40)
    contract.inject(
        "update_api_v2", status=400, error_code="APIG.2012", error_msg="bad value third-appcode-" + "5" * 40
    )
    with pytest.raises(ApigError) as refused:
        gateway.setup(spec_from_settings(settings, SERVICE_URL))
    assert "third-appcode" not in str(refused.value) and "APIG.2012" in str(refused.value)


def test_cli_gateway_setup_publishes_the_running_service_and_records_the_version(
    tmp_path: Path, contract: ContractServer, fake: ApigFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, contract, monkeypatch)
    serve_at(monkeypatch, None)
    code, out, _err = cli(config, "gateway", "setup", "--yes", "--json")
    assert code == 3 and "has no prediction URL yet" in json.loads(out)["error"]

    serve_at(monkeypatch, SERVICE_URL)
    contract.calls.clear()
    code, out, err = cli(config, "gateway", "setup", "--yes", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["key"] and report["version_id"] and "api" in report["changed"]
    assert report["warnings"] and "1,000 calls a day" in report["warnings"][0]
    [api_call] = contract.calls_to("create_api_v2")
    assert api_call.body["backend_api"]["req_uri"] == "/v1/infers/svc-123"
    store = CanaryStore.open(tmp_path / "home")
    try:
        [recorded] = store.publications()
    finally:
        store.close()
    assert (recorded["api_id"], recorded["version_id"]) == (report["api_id"], report["version_id"])
    assert CREDENTIALS.secret_key not in out + err and SERVICE_APP_CODE not in out + err


def test_cli_gateway_versions_and_rollback(
    tmp_path: Path, contract: ContractServer, fake: ApigFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, contract, monkeypatch)
    code, out, _err = cli(config, "gateway", "versions", "--json")
    assert code == 1 and "arsl gateway setup" in json.loads(out)["error"]

    serve_at(monkeypatch, SERVICE_URL)
    assert cli(config, "gateway", "setup", "--yes", "--json")[0] == 0
    first = fake.versions[-1]["version_id"]
    serve_at(monkeypatch, "https://infer2.af-north-1.example/v1/infers/svc-9")
    assert cli(config, "gateway", "setup", "--yes", "--json")[0] == 0
    second = fake.versions[-1]["version_id"]

    code, out, err = cli(config, "gateway", "versions", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [(item["version_id"], item["effective"]) for item in listed["versions"]] == [(second, True), (first, False)]

    code, out, _err = cli(config, "gateway", "rollback", "ver-nope", "--yes", "--json")
    assert code == 1 and first in json.loads(out)["error"] and not contract.calls_to("change_api_version_v2")

    code, out, err = cli(config, "gateway", "rollback", first, "--yes", "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "api_id": listed["api_id"],
        "env_id": RELEASE_ENV_ID,
        "version_id": first,
        "previous_version_id": second,
        "changed": True,
    }
    [switch] = contract.calls_to("change_api_version_v2")
    assert switch.body == {"version_id": first}
    api = fake.apis[listed["api_id"]]["definition"]
    assert api["backend_api"]["url_domain"] == "infer.af-north-1.example"  # the first definition serves again
    code, out, _err = cli(config, "gateway", "rollback", first, "--yes", "--json")
    assert code == 0 and json.loads(out)["changed"] is False and len(contract.calls_to("change_api_version_v2")) == 1
    store = CanaryStore.open(tmp_path / "home")
    try:
        assert store.publications()[0]["version_id"] == first  # the next rollback can come back from here
    finally:
        store.close()

    contract.inject("change_api_version_v2", status=500, error_msg="internal")
    code, out, _err = cli(config, "gateway", "rollback", second, "--yes", "--json")
    assert code == 3 and "change_api_version_v2" in json.loads(out)["error"]

    local = tmp_path / "local.toml"
    local.write_text(f'backend = "local"\nhome = "{tmp_path / "home"}"\n', encoding="utf-8")
    code, out, _err = cli(local, "gateway", "versions", "--json")
    assert code == 2 and "local gateway" in json.loads(out)["error"]


# --- helpers for the CLI tests --------------------------------------------------------------------


def write_config(tmp_path: Path, contract: ContractServer, monkeypatch: pytest.MonkeyPatch) -> Path:
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
    return config


class ServiceAt:
    """The serving platform's answer to "where does the service answer?" — the one thing `gateway setup`
    asks it. The serving modes have their own contract tests; here only the gateway's calls matter."""

    def __init__(self, url: str | None) -> None:
        self.url = url

    def endpoint(self, service: str) -> str | None:
        return self.url


def serve_at(monkeypatch: pytest.MonkeyPatch, url: str | None) -> None:
    monkeypatch.setattr(Backend, "serving_platform", lambda self, registry: ServiceAt(url))


def cli(config: Path, *arguments: str) -> tuple[int, str, str]:
    namespace = build_parser().parse_args([*arguments, "--config", str(config)])
    out, err = io.StringIO(), io.StringIO()
    context = CommandContext(config_path=str(config), backend=None, json_output=True, stdout=out, stderr=err)
    return run_command(namespace.handler, context, namespace), out.getvalue(), err.getvalue()


# --- the documented rules, one request each that the real gateway refuses ---------------------------


def valid_api(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "arsl_predict",
        "type": 1,
        "req_protocol": "HTTPS",
        "req_method": "POST",
        "req_uri": "/v1/predict",
        "auth_type": "APP",
        "auth_opt": {"app_code_auth_type": "HEADER"},
        "backend_type": "HTTP",
        "group_id": "grp0001",
        "backend_api": {
            "url_domain": "infer.af-north-1.example",
            "req_protocol": "HTTPS",
            "req_method": "POST",
            "req_uri": "/v1/infers/svc-123",
            "timeout": 40000,
        },
    }
    return {**body, **changes}


def backend(**changes: Any) -> dict[str, Any]:
    return {**valid_api()["backend_api"], **changes}


def constant_header(**changes: Any) -> list[dict[str, Any]]:
    return [{"origin": "CONSTANT", "name": "X-Apig-AppCode", "location": "HEADER", "value": "code", **changes}]


def throttle(**changes: Any) -> dict[str, Any]:
    return {"name": "arsl_throttle", "api_call_limits": 600, "time_interval": 1, "time_unit": "MINUTE", **changes}


ON_INSTANCE = {"instance_id": INSTANCE}
REFUSED: list[tuple[str, str, Any, str]] = [
    # (rule, SDK method, request, what the refusal names) — each rule's page is cited in apig_fake.py
    (
        "group name: 3-255 characters",
        "create_api_group_v2",
        apig.CreateApiGroupV2Request(**ON_INSTANCE, body={"name": "ab"}),
        "API group name",
    ),
    (
        "API type is 1 or 2",
        "create_api_v2",
        apig.CreateApiV2Request(**ON_INSTANCE, body=valid_api(type=3)),
        "type must be 1",
    ),
    (
        "AUTHORIZER needs authorizer_id",
        "create_api_v2",
        apig.CreateApiV2Request(**ON_INSTANCE, body=valid_api(auth_type="AUTHORIZER", auth_opt=None)),
        "needs authorizer_id",
    ),
    (
        "AppCode auth only with APP auth",
        "create_api_v2",
        apig.CreateApiV2Request(**ON_INSTANCE, body=valid_api(auth_type="IAM")),
        "needs auth_type APP",
    ),
    (
        "AppCode auth only over HTTPS",
        "create_api_v2",
        apig.CreateApiV2Request(**ON_INSTANCE, body=valid_api(req_protocol="HTTP")),
        "needs req_protocol HTTPS",
    ),
    (
        "backend timeout at most 600000 ms",
        "create_api_v2",
        apig.CreateApiV2Request(**ON_INSTANCE, body=valid_api(backend_api=backend(timeout=600_001))),
        "backend_api.timeout",
    ),
    (
        "backend retries -1 to 10",
        "create_api_v2",
        apig.CreateApiV2Request(**ON_INSTANCE, body=valid_api(backend_api=backend(retry_count="11"))),
        "retry_count",
    ),
    (
        "backend address is host[:port]",
        "create_api_v2",
        apig.CreateApiV2Request(**ON_INSTANCE, body=valid_api(backend_api=backend(url_domain="infer.example/v1"))),
        "url_domain must be",
    ),
    (
        "backend parameter origin enum",
        "create_api_v2",
        apig.CreateApiV2Request(**ON_INSTANCE, body=valid_api(backend_params=constant_header(origin="SECRET"))),
        ".origin must be",
    ),
    (
        "backend parameter name pattern",
        "create_api_v2",
        apig.CreateApiV2Request(**ON_INSTANCE, body=valid_api(backend_params=constant_header(name="1-Code"))),
        "backend_params[0].name",
    ),
    (
        "backend parameter value at most 255 characters",
        "create_api_v2",
        apig.CreateApiV2Request(**ON_INSTANCE, body=valid_api(backend_params=constant_header(value="x" * 256))),
        ".value is required",
    ),
    (
        "a REQUEST backend parameter names a request parameter",
        "create_api_v2",
        apig.CreateApiV2Request(
            **ON_INSTANCE, body=valid_api(backend_params=constant_header(origin="REQUEST", value="nope"))
        ),
        "names one of req_params",
    ),
    (
        "no undocumented API fields",
        "update_api_v2",
        apig.UpdateApiV2Request(**ON_INSTANCE, api_id="api0001", body=valid_api(backend_auth="code")),
        "undocumented fields ['backend_auth']",
    ),
    (
        "publish action online|offline",
        "create_or_delete_publish_record_for_api_v2",
        apig.CreateOrDeletePublishRecordForApiV2Request(
            **ON_INSTANCE, body={"action": "publish", "env_id": "e", "api_id": "a"}
        ),
        "action must be online or offline",
    ),
    (
        "version switch takes version_id only",
        "change_api_version_v2",
        apig.ChangeApiVersionV2Request(**ON_INSTANCE, api_id="api0001", body={"version_id": "v", "env_id": "e"}),
        "undocumented fields ['env_id']",
    ),
    (
        "app name starts with a letter",
        "create_an_app_v2",
        apig.CreateAnAppV2Request(**ON_INSTANCE, body={"name": "1app"}),
        "app name",
    ),
    (
        "AppKey 8-200 characters",
        "create_an_app_v2",
        apig.CreateAnAppV2Request(**ON_INSTANCE, body={"name": "clients", "app_key": "short"}),
        "app_key",
    ),
    (
        "authorisation names apps and APIs",
        "create_authorizing_apps_v2",
        apig.CreateAuthorizingAppsV2Request(
            **ON_INSTANCE, body={"env_id": RELEASE_ENV_ID, "app_ids": [], "api_ids": ["a"]}
        ),
        "app_ids must be a non-empty list",
    ),
    (
        "IP limit within the API limit",
        "create_request_throttling_policy_v2",
        apig.CreateRequestThrottlingPolicyV2Request(**ON_INSTANCE, body=throttle(ip_call_limits=700)),
        "ip_call_limits 700 exceeds api_call_limits 600",
    ),
    (
        "app limit within the user limit",
        "create_request_throttling_policy_v2",
        apig.CreateRequestThrottlingPolicyV2Request(
            **ON_INSTANCE, body=throttle(user_call_limits=50, app_call_limits=60)
        ),
        "app_call_limits 60 exceeds user_call_limits 50",
    ),
    (
        "time unit enum",
        "update_request_throttling_policy_v2",
        apig.UpdateRequestThrottlingPolicyV2Request(
            **ON_INSTANCE, throttle_id="thr0001", body=throttle(time_unit="WEEK")
        ),
        "time_unit must be one of",
    ),
    (
        "API limit is a positive integer",
        "create_request_throttling_policy_v2",
        apig.CreateRequestThrottlingPolicyV2Request(**ON_INSTANCE, body=throttle(api_call_limits=0)),
        "api_call_limits is required",
    ),
    (
        "policy id 1-65 characters",
        "associate_request_throttling_policy_v2",
        apig.AssociateRequestThrottlingPolicyV2Request(
            **ON_INSTANCE, body={"strategy_id": "t" * 66, "publish_ids": ["p"]}
        ),
        "strategy_id is required",
    ),
    (
        "binding names publications",
        "associate_request_throttling_policy_v2",
        apig.AssociateRequestThrottlingPolicyV2Request(
            **ON_INSTANCE, body={"strategy_id": "thr0001", "publish_ids": []}
        ),
        "publish_ids must be a non-empty list",
    ),
    (
        "domain name specification",
        "associate_domain_v2",
        apig.AssociateDomainV2Request(**ON_INSTANCE, group_id="grp0001", body={"url_domain": "not a domain"}),
        "url_domain 'not a domain'",
    ),
    (
        "TLS 1.1 or 1.2",
        "associate_domain_v2",
        apig.AssociateDomainV2Request(
            **ON_INSTANCE, group_id="grp0001", body={"url_domain": "a.example.com", "min_ssl_version": "TLSv1.0"}
        ),
        "min_ssl_version must be",
    ),
    (
        "exact search only on documented fields",
        "list_api_groups_v2",
        apig.ListApiGroupsV2Request(**ON_INSTANCE, name="arsl", precise_search="remark"),
        "precise_search='remark'",
    ),
    (
        "bound APIs need the app's id",
        "list_apis_binded_to_app_v2",
        apig.ListApisBindedToAppV2Request(**ON_INSTANCE, api_id="api0001"),
        "query parameter 'app_id' is required",
    ),
    (
        "bound APIs need the policy's id",
        "list_apis_binded_to_request_throttling_policy_v2",
        apig.ListApisBindedToRequestThrottlingPolicyV2Request(**ON_INSTANCE, api_id="api0001"),
        "query parameter 'throttle_id' is required",
    ),
]


@pytest.mark.parametrize(("rule", "method", "request_", "named"), REFUSED, ids=[case[0] for case in REFUSED])
def test_the_contract_refuses_what_the_docs_forbid(
    contract: ContractServer, fake: ApigFake, rule: str, method: str, request_: Any, named: str
) -> None:
    client = build_client(contract.endpoint, CREDENTIALS, 5.0)
    with pytest.raises(ClientRequestException) as refused:
        getattr(client, method)(request_)
    assert refused.value.status_code == 400 and named in str(refused.value.error_msg)
    assert any(named in violation for violation in contract.violations), contract.violations
    contract.violations.clear()  # refused on purpose: the fixture checks that nothing else broke the contract


def test_routes_and_query_strings_are_checked_against_the_documented_table() -> None:
    def call(method: str, path: str, query: list[tuple[str, str]]) -> Call:
        return Call("list_apis_v2", method, path, query, {}, None, {})

    path = f"/v2/{PROJECT}/apigw/instances/{INSTANCE}/apis"
    assert route_problems("list_apis_v2", call("GET", path, [])) == []
    [wrong_method] = route_problems("list_apis_v2", call("DELETE", path, []))
    assert "ListApisV2" in wrong_method
    [wrong_path] = route_problems("show_details_of_api_v2", call("GET", path + "/a/b", []))
    assert "ShowDetailsOfApiV2" in wrong_path
    problems = query_problems("list_apis_v2", call("GET", path, [("colour", "red"), ("limit", "ten")]))
    assert problems == ["undocumented query parameter 'colour'", "query parameter limit='ten' is not an integer"]


def test_a_group_takes_five_domains_and_a_domain_one_group(
    gateway: ApigGateway, settings: Settings, fake: ApigFake
) -> None:
    first = gateway.setup(spec_from_settings(settings, SERVICE_URL))
    client = build_client(settings.huawei.apig_endpoint, CREDENTIALS, 5.0)
    for number in range(5):
        client.associate_domain_v2(
            apig.AssociateDomainV2Request(
                **ON_INSTANCE, group_id=first.group_id, body={"url_domain": f"d{number}.example.com"}
            )
        )
    with pytest.raises(ClientRequestException, match="maximum of five"):
        client.associate_domain_v2(
            apig.AssociateDomainV2Request(**ON_INSTANCE, group_id=first.group_id, body={"url_domain": "d5.example.com"})
        )
    other = client.create_api_group_v2(apig.CreateApiGroupV2Request(**ON_INSTANCE, body={"name": "other_group"}))
    with pytest.raises(ClientRequestException, match="has been bound"):
        client.associate_domain_v2(
            apig.AssociateDomainV2Request(**ON_INSTANCE, group_id=other.id, body={"url_domain": "d0.example.com"})
        )
