"""The `Monitor` port on Cloud Eye (CES) through `huaweicloudsdkces` (v2 rules and records, v1 metric data).

- Rules: v2 `create_alarm_rules` (`POST /v2/{project_id}/alarms`, type MULTI_INSTANCE, one policy, one
  resource), matched by name for idempotency: `list_alarm_rules` is paged through (offset/limit 100),
  a rule that exists with the same policy and notifications is left alone, one whose policy or
  notifications differ is updated in place (`update_alarm_rule_policies`, `update_alarm_notifications`).
  Alarm and recovery notifications go to the SMN topic of `[alarms] smn_topic_urn` (none when empty).
- States: v2 rules carry none, so a rule's state is the status of its newest v2 alarm record
  (`list_alarm_histories`: alarm, ok, ok_manual, insufficient_data, invalid); a rule without any
  record is ok when its metric has data, else insufficient_data. The last value comes from v1
  `batch_list_metric_data`.
- Series: v1 `show_metric_data`; custom metrics (error rate, online accuracy, canary rollbacks,
  service up) are pushed with v1 `create_metric_data` to a namespace not starting with SYS.

Credentials are always passed explicitly (never the SDK's default chain, which ends at the ECS
metadata service). SDK errors — and the raw `requests` exceptions that POST/PUT read timeouts leak —
become `MonitorError`s with the status, error code and request id.

Every call has a total deadline (`call_deadline_s`) besides the SDK's timeouts: those bound each
connect and each read, so a server that answers a byte at a time, each within the read timeout,
would keep a call (and the alarm round or canary tick waiting on it) going for as long as it likes.
The call runs on a daemon thread; past the deadline the caller gets a transient `MonitorError` and
the thread is left to end when the server lets go.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import huaweicloudsdkces.v1 as ces1
import huaweicloudsdkces.v2 as ces2
import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from arsl_tui.domain.alarms import (
    RULE_PREFIX,
    SERVICE_DIMENSION,
    AlarmRule,
    AlarmState,
    Comparison,
    DataPoint,
    Filter,
    HistoryEntry,
    HistoryKind,
    MonitorError,
    MonitorUnavailable,
    RuleView,
    SetupReport,
    check_custom_namespace,
    dimensions_of,
)
from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing, load_credentials
from arsl_tui.providers.huawei.errors import CloudFailure, failure_from_exception
from arsl_tui.providers.huawei.sdk_clients import (
    CallStalled,
    basic_credentials,
    build_sdk_client,
    call_deadline_s,
    call_with_deadline,
)

if TYPE_CHECKING:
    from arsl_tui.config import Settings

SERVICE = "Cloud Eye"
PAGE_LIMIT = 100
MAX_PAGES = 100
"""A bound on paging (10,000 records), so a misbehaving server cannot keep a listing going forever."""
CUSTOM_TTL_S = 7 * 86400
QUERY_PERIODS = (1, 60, 300, 1200, 3600, 14400, 86400)
STATE_LOOKBACK_S = 7 * 86400
_RECORD_STATES = {
    "alarm": AlarmState.ALARM,
    "ok": AlarmState.OK,
    "ok_manual": AlarmState.OK,
    "insufficient_data": AlarmState.INSUFFICIENT_DATA,
    "invalid": AlarmState.INSUFFICIENT_DATA,
}
_HINTS = {
    401: "the access key pair was refused: check HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK",
    403: "the account may not use Cloud Eye in this project: check its IAM permissions (CES FullAccess for setup, "
    "CES ReadOnlyAccess to read) and HUAWEICLOUD_SDK_PROJECT_ID",
    429: "Cloud Eye is throttling requests: try again in a moment",
}

T = TypeVar("T")


def build_clients(endpoint: str, credentials: Credentials, timeout_s: float) -> tuple[Any, Any]:
    """CES v1 and v2 clients for `endpoint` signing with `credentials` (never the SDK's credential chain)."""
    basic = basic_credentials(credentials, "Cloud Eye")
    return (
        build_sdk_client(ces1.CesClient, endpoint, basic, timeout_s),
        build_sdk_client(ces2.CesClient, endpoint, basic, timeout_s),
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(value: Any) -> float | None:
    """A record time (datetime, ISO text or epoch milliseconds) as epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000.0 if value > 1e11 else float(value)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def query_period(period_s: int) -> int:
    """The smallest v1 metric-data granularity at least `period_s` (1 = raw points)."""
    return next((option for option in QUERY_PERIODS if option >= period_s), QUERY_PERIODS[-1])


@dataclass(frozen=True)
class CloudRule:
    """A rule as Cloud Eye holds it."""

    alarm_id: str
    rule: AlarmRule | None
    """None when the stored rule has a shape arsl does not manage (several policies or resources)."""
    enabled: bool
    notification_enabled: bool
    alarm_topics: tuple[str, ...]
    ok_topics: tuple[str, ...]
    problem: str = ""


class CloudEyeMonitor:
    """Alarm rules, records and metric data on Cloud Eye; thread-safe (the SDK clients are)."""

    backend = "huawei"

    def __init__(
        self,
        *,
        v1_client: Any,
        v2_client: Any,
        endpoint: str,
        smn_topic_urn: str = "",
        timeout_s: float = 30.0,
        secrets: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._v1 = v1_client
        self._v2 = v2_client
        self._endpoint = endpoint
        self._topic = smn_topic_urn.strip()
        self._timeout_s = timeout_s
        self._secrets = secrets
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, credentials: Credentials | None = None) -> CloudEyeMonitor:
        try:
            credentials = credentials or load_credentials()
            endpoint = settings.huawei.endpoint("ces")
            v1, v2 = build_clients(endpoint, credentials, settings.huawei.timeout_s)
        except CredentialsMissing as missing:
            raise MonitorUnavailable(f"cannot use Cloud Eye: {missing}") from None
        topic = settings.alarms.smn_topic_urn.strip()
        if topic and not topic.startswith("urn:smn:"):
            raise MonitorUnavailable(
                f"{settings.source}: alarms.smn_topic_urn = {topic!r}: expected an SMN topic URN "
                "'urn:smn:<region>:<project id>:<topic name>'"
            )
        return cls(
            v1_client=v1,
            v2_client=v2,
            endpoint=endpoint,
            smn_topic_urn=topic,
            timeout_s=settings.huawei.timeout_s,
            secrets=credentials.secrets(),
        )

    # --- errors ---------------------------------------------------------------------------------

    def _call(self, operation: str, target: str, method: Callable[[Any], T], request: Any) -> T:
        deadline = call_deadline_s(self._timeout_s)
        try:
            return call_with_deadline(method, request, deadline, operation)
        except CallStalled:
            raise MonitorError(
                f"{SERVICE} {operation} for {target}: {SERVICE} at {self._endpoint} had not finished "
                f"answering after {deadline:g} s (it stalls or trickles its answer); the request may "
                "still have been carried out",
                transient=True,
            ) from None
        except (SdkException, requests.exceptions.RequestException, OSError) as error:
            failure = failure_from_exception(
                error, service=SERVICE, operation=operation, target=target, secrets=self._secrets
            )
            raise self._error(failure, error) from None

    def _error(self, failure: CloudFailure, error: BaseException) -> MonitorError:
        lowered = f"{failure.detail} {type(error).__name__}".lower()
        where = f"{SERVICE} at {self._endpoint}"
        head = f"{SERVICE} {failure.operation} for {failure.target}"
        if failure.status is None and ("timed out" in lowered or "timeout" in lowered):
            message = (
                f"{head}: no answer from {where} within {self._timeout_s:g} s (read timeout); the request "
                "may still have been carried out"
            )
        elif failure.status is None and ("refused" in lowered or "failed to establish" in lowered):
            message = f"{head}: cannot connect to {where} (connection refused); check huawei.ces_endpoint"
        elif failure.status is None and failure.code:
            message = f"{head}: cannot reach {where} ({failure.code})"
        else:
            message = failure.message
            hint = _HINTS.get(failure.status or 0) or (
                "Cloud Eye had an internal error: try again later" if (failure.status or 0) >= 500 else ""
            )
            if hint:
                message += f" — {hint}"
        return MonitorError(
            message,
            status=failure.status,
            code=failure.code,
            request_id=failure.request_id,
            transient=failure.transient,
        )

    # --- rules ----------------------------------------------------------------------------------

    def _notifications(self) -> list[Any]:
        return [ces2.Notification(type="notification", notification_list=[self._topic])] if self._topic else []

    def _policy(self, rule: AlarmRule, cls: Any) -> Any:
        return cls(
            metric_name=rule.metric,
            period=rule.period_s,
            filter=rule.filter.value,
            comparison_operator=rule.comparison.value,
            value=rule.threshold,
            unit=rule.unit,
            count=rule.count,
            suppress_duration=rule.suppress_s,
            level=rule.level,
        )

    def _create(self, rule: AlarmRule) -> str:
        body = ces2.PostAlarmsReqV2(
            name=rule.name,
            description=rule.description[:256],
            namespace=rule.namespace,
            resources=[[ces2.Dimension(name=name, value=value) for name, value in rule.dimensions]],
            policies=[self._policy(rule, ces2.AlarmRulePolicy)],
            type="MULTI_INSTANCE",
            alarm_notifications=self._notifications(),
            ok_notifications=self._notifications(),
            enabled=True,
            notification_enabled=bool(self._topic),
        )
        response = self._call(
            "create_alarm_rules",
            f"alarm rule {rule.name!r}",
            self._v2.create_alarm_rules,
            ces2.CreateAlarmRulesRequest(body=body),
        )
        return str(response.alarm_id or "")

    def _pages(
        self, operation: str, target: str, fetch: Callable[[int], tuple[list[Any], int | None]]
    ) -> Iterator[Any]:
        offset = 0
        for _ in range(MAX_PAGES):
            items, total = fetch(offset)
            yield from items
            offset += len(items)
            if len(items) < PAGE_LIMIT or (total is not None and offset >= total):
                return
        raise MonitorError(
            f"{SERVICE} {operation} for {target}: more than {MAX_PAGES * PAGE_LIMIT} items; narrow the query"
        )

    def cloud_rules(self) -> list[CloudRule]:
        """Every rule whose name starts with `arsl-`, as Cloud Eye holds it."""

        def fetch(offset: int) -> tuple[list[Any], int | None]:
            response = self._call(
                "list_alarm_rules",
                "the project's alarm rules",
                self._v2.list_alarm_rules,
                ces2.ListAlarmRulesRequest(offset=offset, limit=PAGE_LIMIT),
            )
            return list(response.alarms or []), response.count

        return [
            self._parse_rule(item)
            for item in self._pages("list_alarm_rules", "the project's alarm rules", fetch)
            if str(item.name or "").startswith(RULE_PREFIX)
        ]

    @staticmethod
    def _topics(notifications: Any) -> tuple[str, ...]:
        return tuple(
            sorted(
                topic
                for item in notifications or []
                if getattr(item, "type", "") == "notification"
                for topic in (getattr(item, "notification_list", None) or [])
            )
        )

    def _parse_rule(self, item: Any) -> CloudRule:
        policies = list(item.policies or [])
        resources = list(item.resources or [])
        base = CloudRule(
            alarm_id=str(item.alarm_id or ""),
            rule=None,
            enabled=bool(item.enabled),
            notification_enabled=bool(item.notification_enabled),
            alarm_topics=self._topics(item.alarm_notifications),
            ok_topics=self._topics(item.ok_notifications),
        )
        if len(policies) != 1 or len(resources) != 1:
            return replace(
                base,
                problem=f"{len(policies)} policies and {len(resources)} resources (arsl manages "
                "rules with one of each)",
            )
        policy = policies[0]
        dimensions = dimensions_of((str(dim.name), str(dim.value)) for dim in resources[0].dimensions or [])
        try:
            rule = AlarmRule(
                name=str(item.name),
                namespace=str(item.namespace),
                metric=str(policy.metric_name),
                dimensions=dimensions,
                period_s=int(policy.period),
                filter=Filter(policy.filter),
                comparison=Comparison(policy.comparison_operator),
                threshold=float(policy.value),
                count=int(policy.count),
                suppress_s=int(policy.suppress_duration or 0),
                level=int(policy.level or 2),
                unit=str(policy.unit or ""),
                description=str(item.description or ""),
            )
        except (TypeError, ValueError) as error:
            return replace(base, problem=f"a policy arsl cannot read ({error})")
        return replace(base, rule=rule)

    def ensure_rules(self, rules: Sequence[AlarmRule]) -> SetupReport:
        existing: dict[str, list[CloudRule]] = {}
        for cloud in self.cloud_rules():
            name = cloud.rule.name if cloud.rule else ""
            if cloud.rule is not None:
                existing.setdefault(name, []).append(cloud)
        created: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        notes: list[str] = []
        wanted_topics = (self._topic,) if self._topic else ()
        for rule in rules:
            matches = existing.get(rule.name, [])
            if not matches:
                self._create(rule)
                created.append(rule.name)
                continue
            if len(matches) > 1:
                notes.append(
                    f"{len(matches)} Cloud Eye rules are named {rule.name!r}; the first "
                    f"({matches[0].alarm_id}) is kept in step, delete the others"
                )
            cloud = matches[0]
            assert cloud.rule is not None
            changed = False
            if (cloud.rule.namespace, cloud.rule.dimensions) != (rule.namespace, rule.dimensions):
                notes.append(
                    f"rule {rule.name!r} ({cloud.alarm_id}) watches {cloud.rule.namespace} "
                    f"{dict(cloud.rule.dimensions)}, not {rule.namespace} {dict(rule.dimensions)}; delete it "
                    "in Cloud Eye and run setup again to re-create it"
                )
            if self._policy_differs(cloud.rule, rule):
                body = ces2.UpdateAlarmRulePoliciesReqBodyV2(policies=[self._policy(rule, ces2.UpdatePolicyReq)])
                self._call(
                    "update_alarm_rule_policies",
                    f"alarm rule {rule.name!r}",
                    self._v2.update_alarm_rule_policies,
                    ces2.UpdateAlarmRulePoliciesRequest(alarm_id=cloud.alarm_id, body=body),
                )
                changed = True
            if (cloud.alarm_topics, cloud.ok_topics, cloud.notification_enabled) != (
                wanted_topics,
                wanted_topics,
                bool(self._topic),
            ):
                body = ces2.PutAlarmNotificationReq(
                    notification_enabled=bool(self._topic),
                    alarm_notifications=self._notifications(),
                    ok_notifications=self._notifications(),
                )
                self._call(
                    "update_alarm_notifications",
                    f"alarm rule {rule.name!r}",
                    self._v2.update_alarm_notifications,
                    ces2.UpdateAlarmNotificationsRequest(alarm_id=cloud.alarm_id, body=body),
                )
                changed = True
            (updated if changed else unchanged).append(rule.name)
        wanted = {rule.name for rule in rules}
        notes += [
            f"rule {name!r} exists in Cloud Eye but is no longer configured; it is kept"
            for name in sorted(set(existing) - wanted)
        ]
        return SetupReport(
            created=tuple(created), updated=tuple(updated), unchanged=tuple(unchanged), notes=tuple(notes)
        )

    @staticmethod
    def _policy_differs(current: AlarmRule, wanted: AlarmRule) -> bool:
        def key(rule: AlarmRule) -> tuple[Any, ...]:
            return (
                rule.metric,
                rule.period_s,
                rule.filter,
                rule.comparison,
                rule.threshold,
                rule.unit,
                rule.count,
                rule.suppress_s,
                rule.level,
            )

        return key(current) != key(wanted)

    # --- states ---------------------------------------------------------------------------------

    def _records(
        self,
        *,
        alarm_ids: Sequence[str] = (),
        name: str | None = None,
        since: float,
        until: float,
        limit: int | None = None,
    ) -> list[Any]:
        target = f"alarm rule {name!r}" if name else "the arsl alarm rules"

        def fetch(offset: int) -> tuple[list[Any], int | None]:
            request = ces2.ListAlarmHistoriesRequest(
                alarm_id=list(alarm_ids) or None,
                name=name,
                _from=_iso(since),
                to=_iso(until),
                offset=offset,
                limit=PAGE_LIMIT,
            )
            response = self._call("list_alarm_histories", target, self._v2.list_alarm_histories, request)
            return list(response.alarm_histories or []), response.count

        records = []
        for record in self._pages("list_alarm_histories", target, fetch):
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
        return records

    def latest_values(self, rules: Sequence[AlarmRule], since: float, until: float) -> dict[str, float]:
        """Rule name → the newest value of its metric (reduced by its filter) between `since` and `until`."""
        values: dict[str, float] = {}
        groups: dict[tuple[Filter, int], list[AlarmRule]] = {}
        for rule in rules:
            groups.setdefault((rule.filter, query_period(rule.period_s)), []).append(rule)
        for (flt, period), members in groups.items():
            metrics = [
                ces1.MetricInfo(
                    namespace=rule.namespace,
                    metric_name=rule.metric,
                    dimensions=[ces1.MetricsDimension(name=name, value=value) for name, value in rule.dimensions],
                )
                for rule in members
            ]
            body = ces1.BatchListMetricDataRequestBody(
                metrics=metrics, period=str(period), filter=flt.value, _from=int(since * 1000), to=int(until * 1000)
            )
            response = self._call(
                "batch_list_metric_data",
                f"{len(members)} metric(s)",
                self._v1.batch_list_metric_data,
                ces1.BatchListMetricDataRequest(body=body),
            )
            for data in response.metrics or []:
                dims = dimensions_of((str(dim.name), str(dim.value)) for dim in data.dimensions or [])
                points = sorted(
                    (point for point in data.datapoints or [] if getattr(point, flt.value, None) is not None),
                    key=lambda point: point.timestamp,
                )
                if not points:
                    continue
                for rule in members:
                    if (rule.namespace, rule.metric, rule.dimensions) == (data.namespace, data.metric_name, dims):
                        values[rule.name] = float(getattr(points[-1], flt.value))
        return values

    def rules(self) -> list[RuleView]:
        now = self._clock()
        clouds = [cloud for cloud in self.cloud_rules() if cloud.rule is not None]
        newest: dict[str, Any] = {}
        if clouds:
            records = self._records(
                alarm_ids=[cloud.alarm_id for cloud in clouds], since=now - STATE_LOOKBACK_S, until=now
            )
            for record in records:
                alarm_id = str(record.alarm_id or "")
                stamp = _epoch(record.last_alarm_time) or _epoch(record.begin_time) or 0.0
                held = newest.get(alarm_id)
                if held is None or stamp > (_epoch(held.last_alarm_time) or _epoch(held.begin_time) or 0.0):
                    newest[alarm_id] = record
        lookback = max((cloud.rule.period_s for cloud in clouds if cloud.rule), default=60)
        values = (
            self.latest_values([cloud.rule for cloud in clouds if cloud.rule], now - max(3 * lookback, 600), now)
            if clouds
            else {}
        )
        views = []
        for cloud in clouds:
            assert cloud.rule is not None
            record = newest.get(cloud.alarm_id)
            value = values.get(cloud.rule.name)
            if record is not None:
                state = _RECORD_STATES.get(str(record.status), AlarmState.INSUFFICIENT_DATA)
                since = (
                    (_epoch(record.first_alarm_time) or _epoch(record.begin_time))
                    if state is AlarmState.ALARM
                    else (_epoch(record.alarm_recovery_time) or _epoch(record.end_time) or _epoch(record.begin_time))
                )
            else:
                state = AlarmState.OK if value is not None else AlarmState.INSUFFICIENT_DATA
                since = None
            views.append(
                RuleView(
                    rule=cloud.rule,
                    state=state,
                    since=since,
                    value=value,
                    rule_id=cloud.alarm_id,
                    enabled=cloud.enabled,
                )
            )
        return views

    def history(self, rule: str | None = None, since: float | None = None, limit: int = 100) -> list[HistoryEntry]:
        now = self._clock()
        start = now - STATE_LOOKBACK_S if since is None else since
        records = self._records(name=rule, since=start, until=now, limit=limit)
        entries: list[HistoryEntry] = []
        for record in records:
            name = str(record.name or "")
            if not name.startswith(RULE_PREFIX):
                continue
            record_id = str(record.record_id or "")
            value = None
            points = list(record.data_points or [])
            if points:
                value = float(points[-1].value) if points[-1].value is not None else None
            began = _epoch(record.first_alarm_time) or _epoch(record.begin_time)
            if began is not None:
                entries.append(
                    HistoryEntry(
                        seq=0,
                        rule=name,
                        time=began,
                        kind=HistoryKind.TRANSITION,
                        old=AlarmState.OK,
                        new=AlarmState.ALARM,
                        value=value,
                        detail=f"Cloud Eye alarm record {record_id}",
                        record_id=record_id,
                    )
                )
            status = _RECORD_STATES.get(str(record.status))
            ended = _epoch(record.alarm_recovery_time) or _epoch(record.end_time)
            if status is not None and status is not AlarmState.ALARM and ended is not None:
                entries.append(
                    HistoryEntry(
                        seq=0,
                        rule=name,
                        time=ended,
                        kind=HistoryKind.TRANSITION,
                        old=AlarmState.ALARM,
                        new=status,
                        value=value,
                        detail=f"Cloud Eye record {record_id}: {record.status}",
                        record_id=record_id,
                    )
                )
        entries.sort(key=lambda entry: (entry.time, entry.rule))
        entries = entries[-limit:]
        return [replace(entry, seq=index + 1) for index, entry in enumerate(entries)]

    # --- metric data ----------------------------------------------------------------------------

    def put_metric(
        self,
        namespace: str,
        metric: str,
        value: float,
        dimensions: Mapping[str, str],
        *,
        unit: str = "",
        at: float | None = None,
    ) -> None:
        check_custom_namespace(namespace)
        if not math.isfinite(value):
            raise MonitorError(f"metric {namespace}/{metric}: value {value!r} is not a finite number")
        dims = dimensions_of(dimensions)
        if not 1 <= len(dims) <= 3:
            raise MonitorError(f"metric {namespace}/{metric}: custom metrics take 1 to 3 dimensions, got {len(dims)}")
        at = self._clock() if at is None else at
        body = ces1.CreateMetricDataRequestBody(
            metric=ces1.MetricInfo(
                namespace=namespace,
                metric_name=metric,
                dimensions=[ces1.MetricsDimension(name=name, value=text) for name, text in dims],
            ),
            ttl=CUSTOM_TTL_S,
            collect_time=int(at * 1000),
            value=float(value),
            unit=unit,
            type="float",
        )
        self._call(
            "create_metric_data",
            f"metric {namespace}/{metric}",
            self._v1.create_metric_data,
            ces1.CreateMetricDataRequest(body=[body]),
        )

    def series(
        self,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, str],
        *,
        since: float,
        until: float,
        period_s: int,
        filter: Filter,
    ) -> list[DataPoint]:
        dims = dimensions_of(dimensions)
        if not 1 <= len(dims) <= 4:
            raise MonitorError(f"metric {namespace}/{metric}: a query takes 1 to 4 dimensions, got {len(dims)}")
        flt = Filter(filter)
        named = {f"dim_{index}": f"{name},{value}" for index, (name, value) in enumerate(dims)}
        request = ces1.ShowMetricDataRequest(
            namespace=namespace,
            metric_name=metric,
            filter=flt.value,
            period=query_period(period_s),
            _from=int(since * 1000),
            to=int(until * 1000),
            **named,
        )
        response = self._call("show_metric_data", f"metric {namespace}/{metric}", self._v1.show_metric_data, request)
        points = []
        for point in response.datapoints or []:
            value = getattr(point, flt.value, None)
            if value is not None and point.timestamp is not None:
                points.append(DataPoint(point.timestamp / 1000.0, float(value)))
        return sorted(points, key=lambda point: point.time)

    def publish_error_rate(
        self, service_id: str, custom_namespace: str, window_s: float, now: float | None = None
    ) -> float | None:
        """Failed / total calls of a ModelArts service over the last window, pushed as `error_rate`.

        SYS.ModelArts counts calls per minute; Cloud Eye cannot alarm on a ratio, so arsl computes it.
        Returns the rate (None when there were no calls: nothing is pushed then).
        """
        now = self._clock() if now is None else now
        dims = [ces1.MetricsDimension(name=SERVICE_DIMENSION, value=service_id)]
        metrics = [
            ces1.MetricInfo(namespace="SYS.ModelArts", metric_name=name, dimensions=dims)
            for name in ("total_called_times", "failed_called_times")
        ]
        body = ces1.BatchListMetricDataRequestBody(
            metrics=metrics, period="1", filter="sum", _from=int((now - window_s) * 1000), to=int(now * 1000)
        )
        response = self._call(
            "batch_list_metric_data",
            f"service {service_id}",
            self._v1.batch_list_metric_data,
            ces1.BatchListMetricDataRequest(body=body),
        )
        sums: dict[str, float] = {}
        for data in response.metrics or []:
            sums[str(data.metric_name)] = math.fsum(
                float(point.sum if point.sum is not None else point.average or 0.0) for point in data.datapoints or []
            )
        total = sums.get("total_called_times", 0.0)
        if total <= 0:
            return None
        rate = sums.get("failed_called_times", 0.0) / total
        self.put_metric(custom_namespace, "error_rate", rate, {SERVICE_DIMENSION: service_id}, at=now)
        return rate


__all__ = ["CloudEyeMonitor", "CloudRule", "build_clients", "query_period"]
