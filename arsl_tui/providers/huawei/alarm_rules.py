"""Cloud Eye's default alarm rules for arsl: what its real namespaces measure and the values its API accepts.

The rules watch `SYS.ModelArts` (by `service_id`), `SYS.APIC` (by `instance_id` / `api_id`) and arsl's
custom namespace for what Cloud Eye does not measure (error rate, online accuracy, canary rollbacks,
the service being up, input drift). Their semantics (periods, counts, states) are the domain's (`domain.alarms`);
this module only knows Cloud Eye's names and allowed policy values. No SDK is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from arsl_tui.domain.alarms import (
    CANARY_ROLLBACK,
    ERROR_RATE,
    INPUT_DRIFT,
    INPUT_DRIFT_METRIC,
    ONLINE_ACCURACY,
    P95_LATENCY,
    SERVICE_DIMENSION,
    SERVICE_DOWN,
    TRAFFIC_HIGH,
    TRAFFIC_LOW,
    AlarmRule,
    AlarmThresholds,
    Comparison,
    Dimensions,
    Filter,
    SkippedRule,
    check_custom_namespace,
)

APIC_NAMESPACE = "SYS.APIC"
MODELARTS_NAMESPACE = "SYS.ModelArts"
APIC_INSTANCE_DIMENSION = "instance_id"
APIC_API_DIMENSION = "api_id"

# Cloud Eye accepts only these policy values (v2 create_alarm_rules); others are rounded up.
CES_PERIODS = (1, 300, 1200, 3600, 14400, 86400)
CES_COUNTS = (1, 2, 3, 4, 5, 10, 15, 30, 60, 90, 120, 180)
CES_SUPPRESS = (0, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400)
CES_RAW_PERIOD_S = 60
"""SYS.ModelArts and SYS.APIC report once a minute; Cloud Eye's period 1 means "each raw point"."""


def _round_up(value: int, allowed: Sequence[int]) -> int:
    return next((option for option in allowed if option >= value), allowed[-1])


def cloud_eye_period(period_s: int) -> int:
    return 1 if period_s <= CES_RAW_PERIOD_S else _round_up(period_s, CES_PERIODS)


@dataclass(frozen=True)
class CloudTargets:
    """What the Cloud Eye rules watch: the ModelArts real-time service and the APIG API in front of it."""

    service_id: str = ""
    apig_instance_id: str = ""
    api_id: str = ""


def cloud_eye_rules(thresholds: AlarmThresholds, targets: CloudTargets) -> tuple[list[AlarmRule], list[SkippedRule]]:
    """The default rules on Cloud Eye's real metrics; rules whose resource is not configured are skipped."""
    t = thresholds
    custom = check_custom_namespace(t.custom_namespace, "alarms.custom_namespace")
    period = cloud_eye_period(t.period_s)
    count = _round_up(t.count, CES_COUNTS)
    suppress = _round_up(t.suppress_s, CES_SUPPRESS)
    service = ((SERVICE_DIMENSION, targets.service_id),)
    api = ((APIC_INSTANCE_DIMENSION, targets.apig_instance_id), (APIC_API_DIMENSION, targets.api_id))
    rules: list[AlarmRule] = []
    skipped: list[SkippedRule] = []
    no_service = "alarms.service_id is empty (the ModelArts real-time service id the rule watches)"
    no_api = "huawei.apig_instance_id and alarms.api_id are needed (the APIG API in front of the service)"

    def add(
        name: str,
        namespace: str,
        metric: str,
        dims: Dimensions | None,
        flt: Filter,
        comparison: Comparison,
        threshold: float,
        description: str,
        *,
        rule_count: int | None = None,
        level: int = 2,
        unit: str = "",
        missing: str = no_service,
    ) -> None:
        if dims is None or any(not value for _, value in dims):
            skipped.append(SkippedRule(name, missing))
            return
        rules.append(
            AlarmRule(
                name=name,
                namespace=namespace,
                metric=metric,
                dimensions=dims,
                period_s=period,
                filter=flt,
                comparison=comparison,
                threshold=threshold,
                count=count if rule_count is None else rule_count,
                suppress_s=suppress,
                level=level,
                unit=unit,
                description=description,
            )
        )

    have_api = bool(targets.apig_instance_id and targets.api_id)
    add(
        ERROR_RATE,
        custom,
        "error_rate",
        service,
        Filter.AVERAGE,
        Comparison.GT,
        t.max_error_rate,
        "failed / total calls of the ModelArts service (pushed by arsl from SYS.ModelArts call counts)",
        level=1,
    )
    add(
        P95_LATENCY,
        APIC_NAMESPACE,
        "max_latency",
        api if have_api else None,
        Filter.MAX,
        Comparison.GT,
        t.max_p95_latency_ms,
        "APIG max_latency: Cloud Eye has no percentiles, and the maximum bounds the p95 from above",
        unit="ms",
        missing=no_api,
    )
    traffic: tuple[str, str, Dimensions | None] = (
        (APIC_NAMESPACE, "req_count", api)
        if have_api
        else (MODELARTS_NAMESPACE, "total_called_times", service if targets.service_id else None)
    )
    if t.min_requests > 0:
        add(
            TRAFFIC_LOW,
            traffic[0],
            traffic[1],
            traffic[2],
            Filter.SUM,
            Comparison.LT,
            t.min_requests,
            "traffic anomaly: too few calls in a period",
            level=3,
            unit="count",
        )
    if t.max_requests > 0:
        add(
            TRAFFIC_HIGH,
            traffic[0],
            traffic[1],
            traffic[2],
            Filter.SUM,
            Comparison.GT,
            t.max_requests,
            "traffic anomaly: more calls in a period than expected",
            level=3,
            unit="count",
        )
    add(
        ONLINE_ACCURACY,
        custom,
        "online_accuracy",
        service,
        Filter.AVERAGE,
        Comparison.LT,
        t.min_online_accuracy,
        "accuracy of predictions that received a feedback label (pushed by arsl)",
    )
    add(
        CANARY_ROLLBACK,
        custom,
        "canary_rollbacks",
        service,
        Filter.SUM,
        Comparison.GT,
        0,
        "the canary controller rolled a version back (pushed by arsl)",
        rule_count=1,
        unit="count",
    )
    add(
        SERVICE_DOWN,
        custom,
        "service_up",
        service,
        Filter.MIN,
        Comparison.LT,
        1,
        "the ModelArts service is not running (pushed by arsl from the service status)",
        rule_count=1,
        level=1,
    )
    # Input drift: Cloud Eye sees no request bodies, so arsl computes the score (domain/drift.py) and pushes it
    # as a custom metric ("Adding Monitoring Data", POST /V1.0/{project_id}/metric-data, en-us_topic_0032831274);
    # the rule on it is created like the others ("Creating an Alarm Rule (Recommended)", POST
    # /v2/{project_id}/alarms, CreateAlarmRules), its count [drift] periods rounded up to an allowed count.
    add(
        INPUT_DRIFT,
        custom,
        INPUT_DRIFT_METRIC,
        service,
        Filter.AVERAGE,
        Comparison.GT,
        t.max_input_drift,
        "input drift: live images differ from the model's validation images (largest feature PSI, pushed by arsl)",
        rule_count=_round_up(t.drift_periods, CES_COUNTS),
        level=3,
    )
    return rules, skipped


__all__ = [
    "APIC_API_DIMENSION",
    "APIC_INSTANCE_DIMENSION",
    "APIC_NAMESPACE",
    "CES_COUNTS",
    "CES_PERIODS",
    "CES_RAW_PERIOD_S",
    "CES_SUPPRESS",
    "MODELARTS_NAMESPACE",
    "CloudTargets",
    "cloud_eye_period",
    "cloud_eye_rules",
]
