"""The canary judge on synthetic windows: the U test itself, each metric, the score and the outcome."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace

import pytest

from arsl_tui.domain.judge import (
    Classification,
    JudgeConfig,
    MetricResult,
    Outcome,
    judge,
    mann_whitney_binary,
    mann_whitney_u,
)
from arsl_tui.domain.serving import VersionStats

CONFIG = JudgeConfig(
    min_samples=100, max_error_rate=0.05, max_p95_latency_ms=250.0, min_online_accuracy=0.8, min_feedback=30
)


def window(
    version: str,
    rng: random.Random,
    *,
    requests: int,
    error_rate: float = 0.005,
    latency_ms: float = 40.0,
    spread: float = 0.3,
    feedback: int = 0,
    accuracy: float = 0.95,
) -> VersionStats:
    """A window whose requests fail, take time and are right at the given rates (seeded, so reproducible)."""
    errors = sum(rng.random() < error_rate for _ in range(requests))
    latencies = tuple(latency_ms * math.exp(rng.gauss(0.0, spread)) for _ in range(requests - errors))
    correct = sum(rng.random() < accuracy for _ in range(feedback))
    return VersionStats(
        version=version,
        window_s=60.0,
        requests=requests,
        errors=errors,
        latency_ms=latencies,
        latency_samples_total=len(latencies),
        feedback=feedback,
        correct=correct,
    )


def by_name(judgement_metrics: tuple[MetricResult, ...], name: str) -> MetricResult:
    return next(metric for metric in judgement_metrics if metric.name == name)


# --- the U test -----------------------------------------------------------------------------------


def pair_count_u(canary: list[float], baseline: list[float]) -> float:
    """U by definition: pairs where the canary value is larger, ties counting half."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(canary, baseline))


def test_u_equals_the_pair_count_with_ties() -> None:
    rng = random.Random(3)
    canary = [float(rng.randint(0, 9)) for _ in range(40)]
    baseline = [float(rng.randint(0, 9)) for _ in range(55)]
    assert mann_whitney_u(canary, baseline).u == pytest.approx(pair_count_u(canary, baseline))


def test_normal_approximation_matches_a_hand_computed_case() -> None:
    # canary 4,5,6 vs baseline 1,2,3: U = 9 (every pair larger), mean 4.5, variance 3·3·7/12 = 5.25.
    result = mann_whitney_u([4, 5, 6], [1, 2, 3])
    assert result.u == 9
    expected_z = (9 - 4.5 - 0.5) / math.sqrt(5.25)
    assert result.z == pytest.approx(expected_z)
    assert result.p_value == pytest.approx(math.erfc(expected_z / math.sqrt(2)))


def test_tie_correction_shrinks_the_variance() -> None:
    # Heavily tied samples: the corrected variance is smaller, so the same U is more significant.
    canary, baseline = [1.0] * 10 + [2.0] * 30, [1.0] * 30 + [2.0] * 10
    tied = mann_whitney_u(canary, baseline)
    n1 = n2 = 40
    untied_sd = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    assert abs(tied.z) > (abs(tied.u - n1 * n2 / 2) - 0.5) / untied_sd


def test_binary_counts_equal_the_expanded_samples() -> None:
    expanded = mann_whitney_u([1.0] * 7 + [0.0] * 193, [1.0] * 2 + [0.0] * 398)
    counted = mann_whitney_binary(7, 200, 2, 400)
    assert counted.u == pytest.approx(expanded.u)
    assert counted.z == pytest.approx(expanded.z)
    assert counted.p_value == pytest.approx(expanded.p_value)


def test_all_values_equal_is_not_significant() -> None:
    result = mann_whitney_u([5.0] * 20, [5.0] * 30)
    assert result.z == 0 and result.p_value == 1.0
    assert mann_whitney_binary(0, 50, 0, 80).p_value == 1.0


def test_empty_sides_are_refused() -> None:
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])
    with pytest.raises(ValueError):
        mann_whitney_binary(0, 0, 1, 3)


# --- verdicts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_identical_distributions_pass(seed: int) -> None:
    rng = random.Random(seed)
    canary = window("v2", rng, requests=400, feedback=200)
    baseline = window("v1", rng, requests=3600, feedback=1800)
    result = judge(canary, baseline, CONFIG)
    assert result.outcome is Outcome.PASS, result.reason
    assert result.score == 100.0
    assert {metric.classification for metric in result.metrics} <= {
        Classification.PASS,
        Classification.LOW,
        Classification.HIGH,
    }
    assert not result.failed_metrics


def test_five_times_the_error_rate_fails_even_under_the_absolute_limit() -> None:
    rng = random.Random(11)
    canary = window("v2", rng, requests=3000, error_rate=0.025)
    baseline = window("v1", rng, requests=9000, error_rate=0.005)
    assert canary.error_rate < CONFIG.max_error_rate  # only the comparison can catch it
    result = judge(canary, baseline, CONFIG)
    errors = by_name(result.metrics, "error_rate")
    assert errors.classification is Classification.HIGH and errors.failed and errors.critical
    assert errors.p_value is not None and errors.p_value < 0.02
    assert result.outcome is Outcome.FAIL and result.score == 0.0


def test_error_rate_over_the_absolute_limit_fails_whatever_the_baseline() -> None:
    rng = random.Random(12)
    canary = window("v2", rng, requests=500, error_rate=0.12)
    baseline = window("v1", rng, requests=500, error_rate=0.12)
    result = judge(canary, baseline, CONFIG)
    assert by_name(result.metrics, "error_rate").failed
    assert result.outcome is Outcome.FAIL


def test_a_few_samples_are_inconclusive_however_bad_they_look() -> None:
    rng = random.Random(13)
    canary = window("v2", rng, requests=12, error_rate=0.5, latency_ms=900.0, feedback=12, accuracy=0.1)
    baseline = window("v1", rng, requests=2000)
    result = judge(canary, baseline, CONFIG)
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "12 canary requests" in result.reason


def test_a_latency_regression_fails() -> None:
    rng = random.Random(14)
    canary = window("v2", rng, requests=600, latency_ms=200.0, error_rate=0.0)
    baseline = window("v1", rng, requests=3000, latency_ms=45.0, error_rate=0.0)
    result = judge(canary, baseline, CONFIG)
    latency, p95 = by_name(result.metrics, "latency"), by_name(result.metrics, "p95_latency")
    assert latency.classification is Classification.HIGH and latency.failed
    assert p95.classification is Classification.HIGH and p95.failed and p95.canary is not None
    assert p95.canary > CONFIG.max_p95_latency_ms
    assert result.outcome is Outcome.FAIL
    assert result.score == pytest.approx(100 * 1 / 3)  # error rate passes; accuracy has no data


def test_a_significant_slowdown_within_the_limit_is_marginal_and_holds() -> None:
    rng = random.Random(15)
    canary = window("v2", rng, requests=800, latency_ms=90.0, spread=0.1, feedback=100)
    baseline = window("v1", rng, requests=4000, latency_ms=40.0, spread=0.1, feedback=500)
    result = judge(canary, baseline, CONFIG)
    assert by_name(result.metrics, "latency").failed
    assert not by_name(result.metrics, "p95_latency").failed
    assert result.score == 75.0
    assert result.outcome is Outcome.MARGINAL


def test_a_small_latency_drift_is_not_a_regression() -> None:
    # Significant at this traffic, but under the allowed effect size: Pass.
    rng = random.Random(16)
    canary = window("v2", rng, requests=4000, latency_ms=44.0, spread=0.05)
    baseline = window("v1", rng, requests=4000, latency_ms=40.0, spread=0.05)
    latency = by_name(judge(canary, baseline, CONFIG).metrics, "latency")
    assert latency.p_value is not None and latency.p_value < 1e-6
    assert latency.classification is Classification.PASS and not latency.failed


def test_a_critical_metric_forces_a_fail_whatever_the_rest() -> None:
    rng = random.Random(17)
    canary = window("v2", rng, requests=600, feedback=300, accuracy=0.82)
    baseline = window("v1", rng, requests=3000, feedback=1500, accuracy=0.97)
    result = judge(canary, baseline, CONFIG)
    accuracy = by_name(result.metrics, "online_accuracy")
    assert accuracy.canary is not None and accuracy.canary >= CONFIG.min_online_accuracy  # above the limit…
    assert accuracy.classification is Classification.LOW and accuracy.failed and accuracy.critical  # …but worse
    assert [metric.name for metric in result.failed_metrics] == ["online_accuracy"]
    assert result.score == 0.0 and result.outcome is Outcome.FAIL
    assert "critical metric failed" in result.reason


def test_a_version_much_worse_than_random_luck_fails_on_accuracy_alone() -> None:
    # Feedback from users says the canary is wrong nearly always: under the absolute limit.
    rng = random.Random(18)
    canary = window("v2", rng, requests=200, feedback=40, accuracy=0.05)
    result = judge(canary, window("v1", rng, requests=1800, feedback=360, accuracy=1.0), CONFIG)
    assert by_name(result.metrics, "online_accuracy").failed
    assert result.outcome is Outcome.FAIL


def test_a_window_without_enough_labels_holds_when_feedback_is_required() -> None:
    rng = random.Random(23)
    canary = window("v2", rng, requests=400, feedback=5)
    baseline = window("v1", rng, requests=3600, feedback=1800)
    # By default it is judged on the other metrics, and the verdict says what was not judged.
    lenient = judge(canary, baseline, CONFIG)
    assert lenient.outcome is Outcome.PASS
    assert "not judged: online_accuracy (5 feedback labels, fewer than 30)" in lenient.reason, lenient.reason
    strict = judge(canary, baseline, replace(CONFIG, require_feedback=True))
    assert strict.outcome is Outcome.INCONCLUSIVE
    assert strict.reason == (
        "online accuracy not measured (5 feedback labels, fewer than 30) and feedback is required: holding"
    )
    # Enough labels: judged as before; a critical failure still fails rather than holding.
    assert judge(
        window("v2", rng, requests=400, feedback=200), baseline, replace(CONFIG, require_feedback=True)
    ).outcome is (Outcome.PASS)
    failing = window("v2", rng, requests=400, error_rate=0.5, feedback=5)
    assert judge(failing, baseline, replace(CONFIG, require_feedback=True)).outcome is Outcome.FAIL


def test_without_a_baseline_only_the_limits_judge() -> None:
    # At 100 % the stable version serves nothing: comparisons have no data, the limits still apply.
    rng = random.Random(19)
    canary = window("v2", rng, requests=500, feedback=100)
    result = judge(canary, None, CONFIG)
    assert by_name(result.metrics, "latency").classification is Classification.NODATA
    assert result.outcome is Outcome.PASS
    # A pass says which metrics had nothing to judge, and why, instead of "every metric passed".
    assert "every metric with data passed; not judged: latency (" in result.reason, result.reason
    assert "every metric passed" not in result.reason
    slow = window("v2", rng, requests=500, latency_ms=400.0)
    assert judge(slow, None, CONFIG).outcome is Outcome.FAIL


def test_too_little_feedback_means_no_accuracy_data() -> None:
    rng = random.Random(20)
    canary = window("v2", rng, requests=300, feedback=5, accuracy=0.0)
    accuracy = by_name(judge(canary, window("v1", rng, requests=300), CONFIG).metrics, "online_accuracy")
    assert accuracy.classification is Classification.NODATA and not accuracy.failed


def test_judgements_survive_a_json_round_trip() -> None:
    from arsl_tui.domain.judge import Judgement

    rng = random.Random(21)
    result = judge(window("v2", rng, requests=300, feedback=50), window("v1", rng, requests=900), CONFIG)
    assert Judgement.from_json(result.to_json()) == result


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="marginal"):
        JudgeConfig(pass_score=70, marginal_score=80)
    with pytest.raises(ValueError, match="confidence"):
        JudgeConfig(confidence=1.0)
