"""Cloud Eye: the real CES SDK clients (v1 and v2) against the contract server on 127.0.0.1.

The server checks every call's method, path, signature and body against the documented shapes; a
test fails if any call broke the contract (see `contract` below).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import huaweicloudsdkces.v1 as ces1
import huaweicloudsdkces.v2 as ces2
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

from arsl_tui.cli import build_parser
from arsl_tui.cli.common import CommandContext, run_command
from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.alarms import (
    AlarmRule,
    AlarmRuleError,
    AlarmState,
    Comparison,
    Filter,
    HistoryKind,
    MonitorError,
    MonitorUnavailable,
)
from arsl_tui.ops import monitoring
from arsl_tui.providers.huawei.ces import CloudEyeMonitor, build_clients
from tests.fixtures.ces_contract import CloudEyeFake, ces_server
from tests.fixtures.ces_metrics_fake import CloudEyeMetricsFake, query_problems, route_problems
from tests.fixtures.huawei_contract import Call, ContractServer, closed_port_endpoint
from tests.providers.conftest import FAKE_CREDENTIALS

PROJECT = "p-contract-0001"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)
TOPIC = f"urn:smn:af-north-1:{PROJECT}:arsl-alarms"
ALL_RULES = [
    "arsl-error-rate",
    "arsl-p95-latency",
    "arsl-traffic-high",
    "arsl-online-accuracy",
    "arsl-canary-rollback",
    "arsl-service-down",
    "arsl-input-drift",
]


@pytest.fixture
def contract() -> Iterator[ContractServer]:
    server = ces_server({CREDENTIALS.access_key: CREDENTIALS.secret_key}, PROJECT)
    with server:
        yield server
    assert server.violations == [], "calls broke the documented contract"


@pytest.fixture
def fake(contract: ContractServer) -> CloudEyeFake:
    return CloudEyeFake(contract)


def make_settings(tmp_path: Path, endpoint: str, **overrides: Any) -> Settings:
    values = {
        "backend": "huawei",
        "home": str(tmp_path / "home"),
        "huawei.ces_endpoint": endpoint,
        "huawei.timeout_s": 5.0,
        "huawei.apig_instance_id": "inst-1",
        "alarms.service_id": "svc-1",
        "alarms.api_id": "api-1",
        "alarms.smn_topic_urn": TOPIC,
        **overrides,
    }
    return load_settings(environ={}, cwd=tmp_path, cli_overrides=values)


@pytest.fixture
def settings(tmp_path: Path, contract: ContractServer) -> Settings:
    return make_settings(tmp_path, contract.endpoint)


@pytest.fixture
def monitor(settings: Settings) -> CloudEyeMonitor:
    return CloudEyeMonitor.from_settings(settings, credentials=CREDENTIALS)


def run_cli(*arguments: str) -> tuple[int, str, str]:
    namespace = build_parser().parse_args(list(arguments))
    out, err = io.StringIO(), io.StringIO()
    context = CommandContext(
        config_path=None,
        backend=getattr(namespace, "backend", None),
        json_output=bool(getattr(namespace, "json", False)),
        stdout=out,
        stderr=err,
    )
    return run_command(namespace.handler, context, namespace), out.getvalue(), err.getvalue()


def test_setup_creates_each_rule_with_the_documented_body_and_twice_creates_nothing_twice(
    settings: Settings, monitor: CloudEyeMonitor, contract: ContractServer, fake: CloudEyeFake
) -> None:
    report = monitoring.setup(settings, monitor)
    assert sorted(report.created) == sorted(ALL_RULES) and report.skipped == ()
    creates = contract.calls_to("create_alarm_rules")
    assert [call.method for call in creates] == ["POST"] * len(ALL_RULES)
    assert all(call.path == f"/v2/{PROJECT}/alarms" for call in creates)
    bodies = {call.body["name"]: call.body for call in creates}
    error_rate = bodies["arsl-error-rate"]
    assert error_rate == {
        "name": "arsl-error-rate",
        "description": error_rate["description"],
        "namespace": "ARSL.Serving",
        "resources": [[{"name": "service_id", "value": "svc-1"}]],
        "policies": [
            {
                "metric_name": "error_rate",
                "period": 1,
                "filter": "average",
                "comparison_operator": ">",
                "value": 0.05,
                "unit": "",
                "count": 3,
                "suppress_duration": 300,
                "level": 1,
            }
        ],
        "type": "MULTI_INSTANCE",
        "alarm_notifications": [{"type": "notification", "notification_list": [TOPIC]}],
        "ok_notifications": [{"type": "notification", "notification_list": [TOPIC]}],
        "enabled": True,
        "notification_enabled": True,
    }
    latency = bodies["arsl-p95-latency"]
    assert (latency["namespace"], latency["policies"][0]["metric_name"]) == ("SYS.APIC", "max_latency")
    assert latency["resources"] == [[{"name": "api_id", "value": "api-1"}, {"name": "instance_id", "value": "inst-1"}]]
    assert bodies["arsl-traffic-high"]["policies"][0]["filter"] == "sum"

    again = monitoring.setup(settings, monitor)
    assert again.created == () and again.updated == () and sorted(again.unchanged) == sorted(ALL_RULES)
    assert len(contract.calls_to("create_alarm_rules")) == len(ALL_RULES)
    assert len(fake.rules) == len(ALL_RULES)


def test_setup_updates_a_changed_policy_and_a_changed_topic_in_place(
    tmp_path: Path, settings: Settings, monitor: CloudEyeMonitor, contract: ContractServer, fake: CloudEyeFake
) -> None:
    monitoring.setup(settings, monitor)
    stricter = make_settings(tmp_path, contract.endpoint, **{"alarms.max_error_rate": 0.01, "alarms.smn_topic_urn": ""})
    quiet = CloudEyeMonitor.from_settings(stricter, credentials=CREDENTIALS)
    report = monitoring.setup(stricter, quiet)
    assert report.created == () and sorted(report.updated) == sorted(ALL_RULES)  # every rule lost its topic
    [policy_update] = contract.calls_to("update_alarm_rule_policies")
    rule = fake.rule_named("arsl-error-rate")
    assert (policy_update.method, policy_update.path) == ("PUT", f"/v2/{PROJECT}/alarms/{rule.alarm_id}/policies")
    assert policy_update.body["policies"][0]["value"] == 0.01 and rule.body["policies"][0]["value"] == 0.01
    notifications = contract.calls_to("update_alarm_notifications")
    assert len(notifications) == len(ALL_RULES)
    assert notifications[0].body == {"notification_enabled": False, "alarm_notifications": [], "ok_notifications": []}
    assert monitoring.setup(stricter, quiet).updated == ()


def test_listing_pages_through_every_rule(
    settings: Settings, monitor: CloudEyeMonitor, contract: ContractServer, fake: CloudEyeFake
) -> None:
    template = {
        "namespace": "SYS.ECS",
        "type": "MULTI_INSTANCE",
        "resources": [[{"name": "instance_id", "value": "i-1"}]],
        "policies": [
            {
                "metric_name": "cpu_util",
                "period": 300,
                "filter": "average",
                "comparison_operator": ">",
                "value": 90,
                "count": 3,
                "suppress_duration": 0,
                "level": 2,
                "unit": "%",
            }
        ],
    }
    for index in range(230):
        fake.add_rule({**template, "name": f"other-{index:03d}"})
    monitoring.setup(settings, monitor)
    contract.calls.clear()
    report = monitoring.setup(settings, monitor)
    assert report.created == ()
    pages = [dict(call.query) for call in contract.calls_to("list_alarm_rules")]
    assert pages == [
        {"offset": "0", "limit": "100"},
        {"offset": "100", "limit": "100"},
        {"offset": "200", "limit": "100"},
    ]


def test_states_come_from_the_newest_record_or_the_metrics_data(
    settings: Settings, monitor: CloudEyeMonitor, contract: ContractServer, fake: CloudEyeFake
) -> None:
    monitoring.setup(settings, monitor)
    now = time.time()
    fake.fire("arsl-error-rate", now - 600, 0.2)
    fake.recover("arsl-error-rate", now - 300)
    fake.fire("arsl-error-rate", now - 120, 0.3)
    fake.fire("arsl-service-down", now - 900, 0.0)
    fake.recover("arsl-service-down", now - 60)
    fake.add_point("SYS.APIC", "max_latency", {"instance_id": "inst-1", "api_id": "api-1"}, now - 30, 180.0)
    fake.add_point("ARSL.Serving", "error_rate", {"service_id": "svc-1"}, now - 30, 0.3)
    views = {view.rule.name: view for view in monitoring.list_rules(settings, monitor)}
    assert views["arsl-error-rate"].state is AlarmState.ALARM
    assert views["arsl-error-rate"].since == pytest.approx(int(now - 120), abs=1)
    assert views["arsl-error-rate"].value == 0.3
    assert views["arsl-error-rate"].rule_id == fake.rule_named("arsl-error-rate").alarm_id
    assert views["arsl-service-down"].state is AlarmState.OK
    assert views["arsl-p95-latency"].state is AlarmState.OK and views["arsl-p95-latency"].value == 180.0
    assert views["arsl-online-accuracy"].state is AlarmState.INSUFFICIENT_DATA
    [histories] = contract.calls_to("list_alarm_histories")
    assert sorted(value for name, value in histories.query if name == "alarm_id") == sorted(
        rule.alarm_id for rule in fake.rules.values()
    )
    batches = contract.calls_to("batch_list_metric_data")
    assert all(call.path == f"/V1.0/{PROJECT}/batch-query-metric-data" for call in batches)
    assert {call.body["filter"] for call in batches} == {"average", "max", "sum", "min"}


def test_the_feed_reports_state_changes_between_polls(
    settings: Settings, monitor: CloudEyeMonitor, fake: CloudEyeFake
) -> None:
    monitoring.setup(settings, monitor)
    feed = monitoring.AlarmFeed(settings, monitor=monitor)
    assert feed.poll() == []
    fake.fire("arsl-canary-rollback", time.time() - 30, 1.0)
    changes = feed.poll()
    assert [(entry.rule, entry.old, entry.new) for entry in changes] == [
        ("arsl-canary-rollback", AlarmState.INSUFFICIENT_DATA, AlarmState.ALARM)
    ]
    assert [view.rule.name for view in monitoring.active_alarms(settings, monitor)] == ["arsl-canary-rollback"]


def test_history_lists_alarm_and_recovery_with_paging(
    settings: Settings, monitor: CloudEyeMonitor, contract: ContractServer, fake: CloudEyeFake
) -> None:
    monitoring.setup(settings, monitor)
    now = time.time()
    for index in range(120):
        fake.fire("arsl-traffic-high", now - 7200 + index * 50, 9000.0 + index)
        fake.recover("arsl-traffic-high", now - 7200 + index * 50 + 20)
    entries = monitoring.history(settings, rule="arsl-traffic-high", since=now - 86400, limit=500, monitor=monitor)
    assert len(entries) == 240
    assert [(entry.old, entry.new) for entry in entries[:2]] == [
        (AlarmState.OK, AlarmState.ALARM),
        (AlarmState.ALARM, AlarmState.OK),
    ]
    assert entries[0].value == 9000.0 and entries[0].record_id and entries[0].kind is HistoryKind.TRANSITION
    calls = contract.calls_to("list_alarm_histories")
    assert [dict(call.query)["offset"] for call in calls] == ["0", "100"]
    assert all(dict(call.query)["name"] == "arsl-traffic-high" for call in calls)


def test_custom_metrics_are_pushed_and_read_back(
    settings: Settings, monitor: CloudEyeMonitor, contract: ContractServer, fake: CloudEyeFake
) -> None:
    now = time.time()
    monitoring.record_canary_rollback(settings, "v3", monitor=monitor, at=now - 5)
    monitoring.publish_online_accuracy(settings, 0.93, monitor=monitor, at=now - 4)
    pushes = contract.calls_to("create_metric_data")
    assert [(call.method, call.path) for call in pushes] == [("POST", f"/V1.0/{PROJECT}/metric-data")] * 2
    assert pushes[0].body == [
        {
            "metric": {
                "namespace": "ARSL.Serving",
                "metric_name": "canary_rollbacks",
                "dimensions": [{"name": "service_id", "value": "svc-1"}],
            },
            "ttl": 604800,
            "collect_time": int((now - 5) * 1000),
            "value": 1.0,
            "unit": "count",
            "type": "float",
        }
    ]
    points = monitor.series(
        "ARSL.Serving",
        "online_accuracy",
        {"service_id": "svc-1"},
        since=now - 600,
        until=now,
        period_s=1,
        filter=Filter.AVERAGE,
    )
    assert [point.value for point in points] == [0.93]
    [query] = contract.calls_to("show_metric_data")
    assert query.path == f"/V1.0/{PROJECT}/metric-data"
    assert dict(query.query) == {
        "namespace": "ARSL.Serving",
        "metric_name": "online_accuracy",
        "dim.0": "service_id,svc-1",
        "filter": "average",
        "period": "1",
        "from": str(int((now - 600) * 1000)),
        "to": str(int(now * 1000)),
    }
    with pytest.raises(AlarmRuleError, match="must not start with SYS"):
        monitor.put_metric("SYS.ModelArts", "model_accuracy", 0.9, {"service_id": "svc-1"})
    with pytest.raises(AlarmRuleError, match="between 0 and 1"):
        monitoring.publish_online_accuracy(settings, 1.5, monitor=monitor)
    assert len(contract.calls_to("create_metric_data")) == 2  # refused before any call


def test_the_error_rate_is_derived_from_modelarts_call_counts(
    settings: Settings, monitor: CloudEyeMonitor, contract: ContractServer, fake: CloudEyeFake
) -> None:
    now = time.time()
    for minute, (total, failed) in enumerate([(100, 2), (120, 10), (80, 0)]):
        fake.add_point("SYS.ModelArts", "total_called_times", {"service_id": "svc-1"}, now - 170 + minute * 60, total)
        fake.add_point("SYS.ModelArts", "failed_called_times", {"service_id": "svc-1"}, now - 170 + minute * 60, failed)
    result = monitoring.run_round(
        replace(settings, alarms=replace(settings.alarms, evaluation_period_s=300)), monitor, now
    )
    assert result.published == ("error_rate=0.0400",)
    [batch] = contract.calls_to("batch_list_metric_data")
    assert [metric["metric_name"] for metric in batch.body["metrics"]] == ["total_called_times", "failed_called_times"]
    assert batch.body["period"] == "1" and batch.body["filter"] == "sum"
    [push] = contract.calls_to("create_metric_data")
    assert push.body[0]["metric"]["metric_name"] == "error_rate" and push.body[0]["value"] == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (403, "ces.0003", r"HTTP 403, error code ces\.0003, request id req-\d+.*IAM permissions"),
        (429, "ces.0429", r"HTTP 429.*throttling"),
        (500, "ces.0500", r"HTTP 500, error code ces\.0500, request id req-\d+.*try again later"),
    ],
)
def test_http_errors_become_one_clear_message(
    monitor: CloudEyeMonitor, contract: ContractServer, fake: CloudEyeFake, status: int, code: str, expected: str
) -> None:
    contract.inject("list_alarm_rules", status=status, error_code=code, error_msg="injected failure")
    with pytest.raises(MonitorError, match=expected) as raised:
        monitor.rules()
    assert raised.value.status == status and raised.value.transient == (status != 403)
    assert "\n" not in str(raised.value) and CREDENTIALS.secret_key not in str(raised.value)
    contract.inject("create_metric_data", status=status, error_code=code, error_msg="injected failure")
    with pytest.raises(MonitorError, match=expected):
        monitor.put_metric("ARSL.Serving", "service_up", 1, {"service_id": "svc-1"})
    assert monitor.rules() == []  # the next call works again


def test_a_wrong_secret_key_is_refused_with_a_hint(
    settings: Settings, contract: ContractServer, fake: CloudEyeFake
) -> None:
    wrong = CloudEyeMonitor.from_settings(settings, credentials=replace(CREDENTIALS, secret_key="sk-wrong-0000"))
    with pytest.raises(MonitorError, match=r"HTTP 401, error code APIGW\.0301.*HUAWEICLOUD_SDK_SK") as raised:
        wrong.rules()
    assert "sk-wrong" not in str(raised.value)


@pytest.mark.parametrize("operation", ["list_alarm_rules", "create_metric_data"])
def test_read_timeouts_on_get_and_post_are_clear_messages(
    tmp_path: Path, contract: ContractServer, fake: CloudEyeFake, operation: str
) -> None:
    quick = CloudEyeMonitor.from_settings(
        make_settings(tmp_path, contract.endpoint, **{"huawei.timeout_s": 0.4}), credentials=CREDENTIALS
    )
    contract.inject(operation, delay_s=5.0)
    with pytest.raises(MonitorError, match=r"no answer from Cloud Eye at .* within 0\.4 s \(read timeout\)") as raised:
        if operation == "list_alarm_rules":
            quick.rules()
        else:
            quick.put_metric("ARSL.Serving", "service_up", 1, {"service_id": "svc-1"})
    assert raised.value.transient
    assert len(contract.calls_to(operation)) == 1  # not retried behind the caller's back


def test_connection_refused_and_missing_settings_are_clear(tmp_path: Path) -> None:
    endpoint = closed_port_endpoint()
    refused = CloudEyeMonitor.from_settings(make_settings(tmp_path, endpoint), credentials=CREDENTIALS)
    with pytest.raises(MonitorError, match=rf"cannot connect to Cloud Eye at {endpoint} \(connection refused\)"):
        refused.rules()
    with pytest.raises(MonitorUnavailable, match="HUAWEICLOUD_SDK_PROJECT_ID"):
        CloudEyeMonitor.from_settings(make_settings(tmp_path, endpoint), credentials=FAKE_CREDENTIALS)
    with pytest.raises(MonitorUnavailable, match=r"alarms.smn_topic_urn = 'arsl-topic'.*urn:smn:"):
        CloudEyeMonitor.from_settings(
            make_settings(tmp_path, endpoint, **{"alarms.smn_topic_urn": "arsl-topic"}), credentials=CREDENTIALS
        )


def test_rules_without_their_resource_are_skipped_and_said_so(
    tmp_path: Path, contract: ContractServer, fake: CloudEyeFake
) -> None:
    bare = make_settings(tmp_path, contract.endpoint, **{"alarms.api_id": "", "alarms.service_id": "svc-1"})
    report = monitoring.setup(bare, CloudEyeMonitor.from_settings(bare, credentials=CREDENTIALS))
    assert [item.name for item in report.skipped] == ["arsl-p95-latency"]
    assert "alarms.api_id" in report.skipped[0].reason
    traffic = fake.rule_named("arsl-traffic-high").body
    assert (traffic["namespace"], traffic["policies"][0]["metric_name"]) == ("SYS.ModelArts", "total_called_times")


def test_the_contract_server_flags_a_bad_rule(
    monitor: CloudEyeMonitor, contract: ContractServer, fake: CloudEyeFake
) -> None:
    bad = AlarmRule(
        name="arsl-bad",
        namespace="ARSL.Serving",
        metric="error_rate",
        dimensions=(("service_id", "s"),),
        period_s=60,
        filter=Filter.AVERAGE,
        comparison=Comparison.GT,
        threshold=1,
        count=7,
    )
    with pytest.raises(MonitorError, match="HTTP 400"):
        monitor.ensure_rules([bad])
    assert contract.violations == [
        "create_alarm_rules: policies[0].period 60 is not one of [0, 1, 300, 1200, 3600, 14400, 86400]",
        "create_alarm_rules: policies[0].count 7 is not one of [1, 2, 3, 4, 5, 10, 15, 30, 60, 90, 120, 180]",
    ]
    contract.violations.clear()  # seen and checked


def test_cli_setup_list_history_and_a_backend_error_exit_code(
    contract: ContractServer, fake: CloudEyeFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HUAWEICLOUD_SDK_SECURITY_TOKEN", "OBS_ACCESS_KEY_ID", "OBS_SECRET_ACCESS_KEY", "ARSL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", CREDENTIALS.access_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", CREDENTIALS.secret_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
    monkeypatch.setenv("ARSL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ARSL_HUAWEI_CES_ENDPOINT", contract.endpoint)
    monkeypatch.setenv("ARSL_ALARMS_SERVICE_ID", "svc-1")
    monkeypatch.chdir(tmp_path)

    code, out, _ = run_cli("--backend", "huawei", "--json", "alarms", "setup", "--yes")
    first = json.loads(out)
    made = len(ALL_RULES) - 1  # all but the API latency rule, which needs [alarms] api_id
    assert code == 0 and len(first["created"]) == made and first["skipped"][0]["name"] == "arsl-p95-latency"
    code, out, _ = run_cli("--backend", "huawei", "--json", "alarms", "setup", "--yes")
    assert code == 0 and json.loads(out)["created"] == [] and len(json.loads(out)["unchanged"]) == made

    fake.fire("arsl-error-rate", time.time() - 60, 0.4)
    code, out, _ = run_cli("--backend", "huawei", "--json", "alarms", "list")
    listed = {item["name"]: item for item in json.loads(out)["alarms"]}
    assert code == 0 and listed["arsl-error-rate"]["state"] == "alarm"
    assert listed["arsl-error-rate"]["rule_id"] == fake.rule_named("arsl-error-rate").alarm_id

    code, out, _ = run_cli("--backend", "huawei", "--json", "alarms", "ack", "arsl-error-rate")
    assert code == 0 and json.loads(out)["acknowledged"] is True
    code, out, _ = run_cli("--backend", "huawei", "--json", "alarms", "history")
    kinds = [(entry["rule"], entry["kind"]) for entry in json.loads(out)["history"]]
    assert kinds == [("arsl-error-rate", "transition"), ("arsl-error-rate", "acknowledged")]

    contract.inject("list_alarm_rules", status=500, error_code="ces.0500")
    code, out, err = run_cli("--backend", "huawei", "--json", "alarms", "list")
    error = json.loads(out)
    assert code == error["exit_code"] == 3 and "HTTP 500" in error["error"] and "Traceback" not in err


# --- the documented rules, one request each that the real Cloud Eye refuses -------------------------

NOW_MS = int(time.time() * 1000)


def batch(namespace: str, metric: str, dimensions: dict[str, str], period: str = "1") -> Any:
    return ces1.BatchListMetricDataRequest(
        body={
            "metrics": [
                {
                    "namespace": namespace,
                    "metric_name": metric,
                    "dimensions": [{"name": name, "value": value} for name, value in dimensions.items()],
                }
            ],
            "period": period,
            "filter": "sum",
            "from": NOW_MS - 600_000,
            "to": NOW_MS,
        }
    )


def rule_on(namespace: str, metric: str, dimensions: dict[str, str]) -> Any:
    return ces2.CreateAlarmRulesRequest(
        body={
            "name": "arsl-probe",
            "namespace": namespace,
            "type": "MULTI_INSTANCE",
            "resources": [[{"name": name, "value": value} for name, value in dimensions.items()]],
            "policies": [
                {
                    "metric_name": metric,
                    "period": 1,
                    "filter": "average",
                    "comparison_operator": ">",
                    "value": 1,
                    "count": 3,
                }
            ],
        }
    )


def metric_data(namespace: str, metric: str, *dims: str, period: str = "300") -> Any:
    padded = [*dims, None, None, None, None][:4]
    return ces1.ShowMetricDataRequest(
        namespace=namespace,
        metric_name=metric,
        dim_0=padded[0],
        dim_1=padded[1],
        dim_2=padded[2],
        dim_3=padded[3],
        filter="sum",
        period=period,
        _from=NOW_MS - 3_600_000,
        to=NOW_MS,
    )


SERVICE, MODEL = {"service_id": "svc-1"}, {"service_id": "svc-1", "model_id": "m-1"}
CES_REFUSED: list[tuple[str, str, str, Any, str]] = [
    # (rule, v1|v2, SDK method, request, what the refusal names) — pages cited in the fakes
    (
        "SYS.ModelArts has no made-up metric",
        "v1",
        "batch_list_metric_data",
        batch("SYS.ModelArts", "model_accuracy", SERVICE),
        "has no metric 'model_accuracy'",
    ),
    (
        "SYS.ModelArts model_id goes with service_id",
        "v1",
        "batch_list_metric_data",
        batch("SYS.ModelArts", "total_called_times", {"model_id": "m-1"}),
        "is measured by model_id+service_id or service_id",
    ),
    (
        "SYS.ModelArts has no deployment dimension",
        "v1",
        "batch_list_metric_data",
        batch("SYS.ModelArts", "failed_called_times", {"service_id": "svc-1", "deployment_id": "d-1"}),
        "not deployment_id+service_id",
    ),
    (
        "model-load metrics need both dimensions",
        "v1",
        "show_metric_data",
        metric_data("SYS.ModelArts", "cpu_usage", "service_id,svc-1"),
        "cpu_usage is measured by model_id+service_id",
    ),
    (
        "dimension values are letters, digits, - and _",
        "v1",
        "batch_list_metric_data",
        batch("SYS.ModelArts", "total_called_times", {"service_id": "svc/1"}),
        "dimension service_id value 'svc/1'",
    ),
    (
        "query periods are 1, 300, 1200, 3600, 14400, 86400",
        "v1",
        "show_metric_data",
        metric_data("SYS.ModelArts", "total_called_times", "service_id,svc-1", period="60"),
        "period=60",
    ),
    (
        "SYS.APIC API metrics are per gateway and API",
        "v2",
        "create_alarm_rules",
        rule_on("SYS.APIC", "req_count", {"instance_id": "inst-1"}),
        "SYS.APIC/req_count is measured by api_id+instance_id",
    ),
    (
        "alarm rules name documented SYS.ModelArts metrics",
        "v2",
        "create_alarm_rules",
        rule_on("SYS.ModelArts", "latency_p95", SERVICE),
        "has no metric 'latency_p95'",
    ),
    (
        "alarm record levels are 1-4",
        "v2",
        "list_alarm_histories",
        ces2.ListAlarmHistoriesRequest(level=5),
        "level='5'",
    ),
    (
        "alarm ids are al + 22 characters",
        "v2",
        "list_alarm_histories",
        ces2.ListAlarmHistoriesRequest(alarm_id=["al-short"]),
        "alarm_id='al-short'",
    ),
]


@pytest.mark.parametrize(
    ("rule", "version", "method", "request_", "named"), CES_REFUSED, ids=[case[0] for case in CES_REFUSED]
)
def test_the_contract_refuses_what_the_docs_forbid(
    contract: ContractServer, fake: CloudEyeFake, rule: str, version: str, method: str, request_: Any, named: str
) -> None:
    v1, v2 = build_clients(contract.endpoint, CREDENTIALS, 5.0)
    with pytest.raises(ClientRequestException) as refused:
        getattr(v1 if version == "v1" else v2, method)(request_)
    assert refused.value.status_code == 400 and named in str(refused.value.error_msg)
    assert any(named in violation for violation in contract.violations), contract.violations
    contract.violations.clear()  # refused on purpose: the fixture checks that nothing else broke the contract


def test_the_metrics_fake_refuses_made_up_modelarts_metrics_too(tmp_path: Path) -> None:
    server = ces_server({CREDENTIALS.access_key: CREDENTIALS.secret_key}, PROJECT)
    with server:
        CloudEyeMetricsFake(server)
        v1, _ = build_clients(server.endpoint, CREDENTIALS, 5.0)
        answer = v1.batch_list_metric_data(batch("SYS.ModelArts", "total_called_times", MODEL))
        assert answer.metrics[0].metric_name == "total_called_times" and server.violations == []
        with pytest.raises(ClientRequestException, match="has no metric 'invocations'"):
            v1.batch_list_metric_data(batch("SYS.ModelArts", "invocations", MODEL))
        with pytest.raises(ClientRequestException, match="period must be one of"):
            v1.batch_list_metric_data(batch("SYS.ModelArts", "total_called_times", MODEL, period="60"))
        assert len(server.violations) == 2


def test_a_policy_change_keeps_to_the_rule_namespace_metrics(
    settings: Settings, monitor: CloudEyeMonitor, contract: ContractServer, fake: CloudEyeFake
) -> None:
    monitoring.setup(settings, monitor)
    rule = fake.rule_named("arsl-traffic-high")
    _, v2 = build_clients(contract.endpoint, CREDENTIALS, 5.0)
    policy = {**rule.body["policies"][0], "metric_name": "request_count"}
    with pytest.raises(ClientRequestException, match="has no metric 'request_count'"):
        v2.update_alarm_rule_policies(
            ces2.UpdateAlarmRulePoliciesRequest(alarm_id=rule.alarm_id, body={"policies": [policy]})
        )


def test_routes_and_query_strings_are_checked_against_the_documented_table() -> None:
    def call(method: str, path: str, query: list[tuple[str, str]]) -> Call:
        return Call("list_alarm_rules", method, path, query, {}, None, {})

    assert route_problems("list_alarm_rules", call("GET", f"/v2/{PROJECT}/alarms", [])) == []
    [wrong] = route_problems("list_alarm_rules", call("GET", f"/V1.0/{PROJECT}/alarms", []))
    assert "ListAlarmRules" in wrong
    assert query_problems("list_alarm_rules", call("GET", "/", [("colour", "red")])) == [
        "undocumented query parameter 'colour'"
    ]
    assert query_problems("create_metric_data", call("POST", "/", [("limit", "1")])) == [
        "undocumented query parameter 'limit'"
    ]
    missing = query_problems("show_metric_data", call("GET", "/", [("namespace", "SYS.ModelArts")]))
    assert "query parameter 'dim.0' is required" in missing
