"""Alarm rule evaluation over crafted series: Cloud Eye's semantics, period by period."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from arsl_tui.domain.alarms import (
    AlarmRule,
    AlarmRuleError,
    AlarmState,
    AlarmThresholds,
    Comparison,
    DataPoint,
    Filter,
    NoticeKind,
    RuleStatus,
    check_custom_namespace,
    evaluate,
    local_rules,
    parse_duration,
)
from arsl_tui.providers.huawei.alarm_rules import CES_COUNTS, CES_PERIODS, CES_SUPPRESS, CloudTargets, cloud_eye_rules

P = 60  # period in seconds
T0 = 1_700_000_040.0  # a period boundary (divisible by 60)
OK, ALARM, NODATA = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA


def make_rule(
    comparison: Comparison = Comparison.GT,
    threshold: float = 0.5,
    *,
    count: int = 2,
    flt: Filter = Filter.AVERAGE,
    suppress_s: int = 0,
    missing_periods: int = 0,
) -> AlarmRule:
    return AlarmRule(
        name="r",
        namespace="ARSL.Gateway",
        metric="error_rate",
        dimensions=(("service_id", "local"),),
        period_s=P,
        filter=flt,
        comparison=comparison,
        threshold=threshold,
        count=count,
        suppress_s=suppress_s,
        missing_periods=missing_periods,
    )


def series(*values: float | None, start: float = T0, per_period: int = 1) -> list[DataPoint]:
    """One value per period from `start` (None leaves the period empty), `per_period` points each."""
    points = []
    for index, value in enumerate(values):
        if value is None:
            continue
        for k in range(per_period):
            points.append(DataPoint(start + index * P + 1 + k, value))
    return points


def run(
    rule: AlarmRule, points: Sequence[DataPoint], periods: int, status: RuleStatus | None = None, start: float = T0
) -> tuple[RuleStatus, list[tuple[float, AlarmState, AlarmState]], list]:
    status = status or RuleStatus.new(rule, start)
    result = evaluate(rule, status, points, start + periods * P)
    return result.status, [(t.time, t.old, t.new) for t in result.transitions], list(result.notices)


@pytest.mark.parametrize(
    ("comparison", "threshold", "breaching", "fine"),
    [
        (Comparison.GT, 0.5, 0.51, 0.5),
        (Comparison.GE, 0.5, 0.5, 0.49),
        (Comparison.LT, 0.9, 0.89, 0.9),
        (Comparison.LE, 0.9, 0.9, 0.91),
        (Comparison.EQ, 0.0, 0.0, 0.01),
        (Comparison.NE, 1.0, 0.0, 1.0),
    ],
)
def test_each_comparison_breaches_on_one_side_of_the_threshold_only(
    comparison: Comparison, threshold: float, breaching: float, fine: float
) -> None:
    rule = make_rule(comparison, threshold, count=1)
    status, changes, _ = run(rule, series(breaching), 1)
    assert status.state is ALARM and changes == [(T0 + P, NODATA, ALARM)]
    status, changes, _ = run(rule, series(fine), 1)
    assert status.state is OK and changes == [(T0 + P, NODATA, OK)]


@pytest.mark.parametrize(
    ("flt", "expected"), [(Filter.AVERAGE, 2.5), (Filter.MAX, 4.0), (Filter.MIN, 1.0), (Filter.SUM, 10.0)]
)
def test_the_filter_reduces_a_periods_points(flt: Filter, expected: float) -> None:
    rule = make_rule(Comparison.GT, 100, count=1, flt=flt)
    points = [DataPoint(T0 + 5 * k, value) for k, value in enumerate((1.0, 4.0, 2.0, 3.0))]
    status, _, _ = run(rule, points, 1)
    assert status.value == expected


def test_the_alarm_needs_count_consecutive_breaching_periods() -> None:
    rule = make_rule(count=3)
    status, changes, notices = run(rule, series(0.9, 0.9, 0.1, 0.9, 0.9), 5)
    assert status.state is OK and status.breach_run == 2  # the good third period broke the run
    assert changes == [(T0 + 3 * P, NODATA, OK)]
    assert notices == []
    status, changes, notices = run(rule, series(0.9, 0.9, 0.1, 0.9, 0.9, 0.9), 6)
    assert status.state is ALARM and changes[-1] == (T0 + 6 * P, OK, ALARM)
    assert [(n.kind, n.time) for n in notices] == [(NoticeKind.ALARM, T0 + 6 * P)]
    assert "error_rate average 0.9 > 0.5 for 3 consecutive period(s)" in notices[0].reason


def test_recovery_at_the_first_good_period_notifies_once() -> None:
    rule = make_rule(count=2)
    status, changes, notices = run(rule, series(0.9, 0.9, 0.9, 0.2, 0.3), 5)
    assert status.state is OK
    assert changes == [(T0 + 2 * P, NODATA, ALARM), (T0 + 4 * P, ALARM, OK)]
    assert [n.kind for n in notices] == [NoticeKind.ALARM, NoticeKind.RECOVERED]
    assert "no longer > 0.5" in notices[1].reason


def test_suppression_repeats_a_lasting_alarm_at_most_every_suppress_seconds() -> None:
    rule = make_rule(count=1, suppress_s=180)
    _, changes, notices = run(rule, series(*([0.9] * 10)), 10)
    assert changes == [(T0 + P, NODATA, ALARM)]
    assert [(n.kind, n.time - T0) for n in notices] == [
        (NoticeKind.ALARM, 60),
        (NoticeKind.REPEAT, 240),
        (NoticeKind.REPEAT, 420),
        (NoticeKind.REPEAT, 600),
    ]
    once = make_rule(count=1, suppress_s=0)
    _, _, notices = run(once, series(*([0.9] * 10)), 10)
    assert [n.kind for n in notices] == [NoticeKind.ALARM]


def test_suppression_carries_over_rounds() -> None:
    rule = make_rule(count=1, suppress_s=300)
    points = series(*([0.9] * 12))
    status, _, first = run(rule, points, 3)
    assert [n.kind for n in first] == [NoticeKind.ALARM]
    result = evaluate(rule, status, points, T0 + 12 * P)
    assert [(n.kind, n.time - T0) for n in result.notices] == [(NoticeKind.REPEAT, 360), (NoticeKind.REPEAT, 660)]


def test_a_new_rule_without_data_stays_insufficient_and_goes_there_again_after_a_gap() -> None:
    rule = make_rule(count=2)
    status, changes, _ = run(rule, [], 5)
    assert status.state is NODATA and changes == [] and status.missing_run == 5
    status, changes, _ = run(rule, series(0.1, None, None, None), 4)
    assert changes == [(T0 + P, NODATA, OK), (T0 + 3 * P, OK, NODATA)]
    assert status.state is NODATA and status.value is None
    explicit = make_rule(count=2, missing_periods=3)
    status, changes, _ = run(explicit, series(0.1, None, None, None), 4)
    assert changes == [(T0 + P, NODATA, OK), (T0 + 4 * P, OK, NODATA)]


def test_a_gap_breaks_a_run_of_breaches_and_a_short_gap_keeps_the_state() -> None:
    rule = make_rule(count=2, missing_periods=3)
    status, changes, _ = run(rule, series(0.9, None, 0.9, None, 0.9), 5)
    assert changes == [] and status.state is NODATA  # never two breaching periods in a row
    status, changes, _ = run(rule, series(0.9, 0.9, None, 0.9), 4)
    assert changes == [(T0 + 2 * P, NODATA, ALARM)] and status.state is ALARM  # one empty period: still in alarm


def test_only_completed_periods_are_judged_each_exactly_once() -> None:
    rule = make_rule(count=1)
    points = series(0.1, 0.9)
    # Half-way through the second period: only the first is judged.
    result = evaluate(rule, RuleStatus.new(rule, T0), points, T0 + 1.5 * P)
    assert result.status.state is OK and result.status.next_period == int(T0 // P) + 1
    # A point arriving late for an already judged period changes nothing.
    late = [*points, DataPoint(T0 + 2, 0.99), DataPoint(T0 + 3, 0.99)]
    again = evaluate(rule, result.status, late, T0 + 1.6 * P)
    assert again.status == result.status and again.transitions == ()
    final = evaluate(rule, result.status, late, T0 + 2 * P)
    assert [(t.old, t.new) for t in final.transitions] == [(OK, ALARM)]


def test_a_clock_that_goes_backwards_judges_nothing_until_it_catches_up() -> None:
    rule = make_rule(count=1)
    status, _, _ = run(rule, series(0.1, 0.1, 0.1), 3)
    back = evaluate(rule, status, series(0.9, 0.9, 0.9, 0.9, start=T0 - 10 * P), T0 - 5 * P)
    assert back.status == status and back.transitions == ()
    ahead = evaluate(rule, status, series(0.1, 0.1, 0.1, 0.9), T0 + 4 * P)
    assert [(t.time, t.new) for t in ahead.transitions] == [(T0 + 4 * P, ALARM)]


def test_a_long_clock_jump_is_a_gap_judged_without_walking_every_period() -> None:
    rule = make_rule(count=2)
    status, _, _ = run(rule, series(0.1), 1)
    year = 365 * 86400
    points = [DataPoint(T0 + year + 1, 0.9), DataPoint(T0 + year + P + 1, 0.9)]
    result = evaluate(rule, status, points, T0 + year + 2 * P)
    assert [(t.old, t.new, t.time - T0) for t in result.transitions] == [
        (OK, NODATA, 3 * P),
        (NODATA, ALARM, year + 2 * P),
    ]


def test_out_of_order_points_and_non_finite_values() -> None:
    rule = make_rule(count=1, flt=Filter.MAX)
    points = [
        DataPoint(T0 + 30, 0.2),
        DataPoint(T0 + 5, 0.9),
        DataPoint(T0 + 10, float("nan")),
        DataPoint(T0 + 11, float("inf")),
    ]
    status, changes, _ = run(rule, points, 1)
    assert status.value == 0.9 and changes == [(T0 + P, NODATA, ALARM)]


def test_rules_refuse_bad_values_naming_them() -> None:
    with pytest.raises(AlarmRuleError, match=r"rule 'r': count = 0: expected an integer >= 1"):
        AlarmRule(
            name="r",
            namespace="ARSL.Gateway",
            metric="m",
            dimensions=(("a", "b"),),
            period_s=60,
            filter=Filter.SUM,
            comparison=Comparison.GT,
            threshold=1,
            count=0,
        )
    with pytest.raises(ValueError, match="'>>'"):
        AlarmRule(
            name="r",
            namespace="ARSL.Gateway",
            metric="m",
            dimensions=(("a", "b"),),
            period_s=60,
            filter=Filter.SUM,
            comparison=">>",
            threshold=1,
        )  # type: ignore[arg-type]
    with pytest.raises(AlarmRuleError, match="threshold = nan"):
        AlarmRule(
            name="r",
            namespace="ARSL.Gateway",
            metric="m",
            dimensions=(("a", "b"),),
            period_s=60,
            filter=Filter.SUM,
            comparison=Comparison.GT,
            threshold=float("nan"),
        )
    with pytest.raises(AlarmRuleError, match="needs 1 to 4 dimensions"):
        AlarmRule(
            name="r",
            namespace="ARSL.Gateway",
            metric="m",
            dimensions=(),
            period_s=60,
            filter=Filter.SUM,
            comparison=Comparison.GT,
            threshold=1,
        )
    with pytest.raises(AlarmRuleError, match="must not start with SYS"):
        check_custom_namespace("SYS.Mine")
    with pytest.raises(AlarmRuleError, match=r"'Service\.Item'"):
        check_custom_namespace("nodot")


def test_rule_json_round_trip_is_exact() -> None:
    rule = make_rule(Comparison.LE, 0.25, count=4, flt=Filter.MIN, suppress_s=600, missing_periods=7)
    assert AlarmRule.from_json(rule.to_json()) == rule
    with pytest.raises(AlarmRuleError, match="malformed rule"):
        AlarmRule.from_json({"name": "x"})


def test_default_local_rules_follow_the_thresholds() -> None:
    rules = {
        rule.name: rule
        for rule in local_rules(
            AlarmThresholds(period_s=30, count=4, max_error_rate=0.1, min_requests=5, max_requests=0)
        )
    }
    assert set(rules) == {
        "arsl-error-rate",
        "arsl-p95-latency",
        "arsl-traffic-low",
        "arsl-online-accuracy",
        "arsl-canary-rollback",
        "arsl-service-down",
        "arsl-input-drift",
    }
    assert rules["arsl-error-rate"].threshold == 0.1 and rules["arsl-error-rate"].count == 4
    assert rules["arsl-traffic-low"].comparison is Comparison.LT and rules["arsl-traffic-low"].filter is Filter.SUM
    assert rules["arsl-canary-rollback"].count == 1 and rules["arsl-service-down"].count == 1
    assert all(rule.period_s == 30 and rule.namespace == "ARSL.Gateway" for rule in rules.values())


def test_cloud_eye_rules_use_real_namespaces_and_allowed_policy_values() -> None:
    targets = CloudTargets(service_id="svc-1", apig_instance_id="inst-1", api_id="api-1")
    rules, skipped = cloud_eye_rules(AlarmThresholds(period_s=90, count=6, suppress_s=100, min_requests=1), targets)
    by_name = {rule.name: rule for rule in rules}
    assert skipped == []
    assert (by_name["arsl-p95-latency"].namespace, by_name["arsl-p95-latency"].metric) == ("SYS.APIC", "max_latency")
    assert by_name["arsl-p95-latency"].dimensions == (("api_id", "api-1"), ("instance_id", "inst-1"))
    assert (by_name["arsl-traffic-low"].namespace, by_name["arsl-traffic-low"].metric) == ("SYS.APIC", "req_count")
    for name in ("arsl-error-rate", "arsl-online-accuracy", "arsl-canary-rollback", "arsl-service-down"):
        assert by_name[name].namespace == "ARSL.Serving" and by_name[name].dimensions == (("service_id", "svc-1"),)
    assert all(
        rule.period_s in CES_PERIODS and rule.count in CES_COUNTS and rule.suppress_s in CES_SUPPRESS for rule in rules
    )
    assert by_name["arsl-error-rate"].period_s == 300 and by_name["arsl-error-rate"].count == 10
    assert by_name["arsl-error-rate"].suppress_s == 300

    only_service, skipped = cloud_eye_rules(AlarmThresholds(min_requests=1), CloudTargets(service_id="svc-1"))
    traffic = {rule.name: rule for rule in only_service}["arsl-traffic-low"]
    assert (traffic.namespace, traffic.metric, traffic.period_s) == ("SYS.ModelArts", "total_called_times", 1)
    assert [item.name for item in skipped] == ["arsl-p95-latency"]
    nothing, skipped = cloud_eye_rules(AlarmThresholds(), CloudTargets())
    assert nothing == [] and all("alarms.service_id" in s.reason or "api_id" in s.reason for s in skipped)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1.5h", 5400), (" 10 min ", 600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_bad_duration_names_the_text() -> None:
    with pytest.raises(ValueError, match="'ten minutes'"):
        parse_duration("ten minutes")
