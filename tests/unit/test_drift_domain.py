"""Input drift arithmetic: histograms, PSI, the score, verdicts and the monitor's drift points."""

from __future__ import annotations

import math

import pytest

from arsl_tui.domain.alarms import (
    INPUT_DRIFT,
    INPUT_DRIFT_METRIC,
    LOW_CONFIDENCE_METRIC,
    AlarmThresholds,
    Comparison,
    drift_samples,
    local_rules,
)
from arsl_tui.domain.drift import (
    EPSILON,
    FEATURES,
    DriftError,
    DriftThresholds,
    Histogram,
    LiveProfile,
    ReferenceProfile,
    Verdict,
    compare,
    psi,
    shares,
    sparkline,
)

EDGES = (0.2, 0.4, 0.6, 0.8)
FLAT = (20, 20, 20, 20, 20)


def reference(counts: tuple[int, ...] = FLAT) -> ReferenceProfile:
    return ReferenceProfile.from_json(
        {
            "format": "arsl-input-profile/1",
            "samples": sum(counts),
            "features": {name: {"edges": list(EDGES), "counts": list(counts)} for name in FEATURES},
            "confidence": {"edges": [0.5, 0.9], "counts": [10, 30, 60]},
            "predicted_class": {"classes": ["a", "b"], "counts": [50, 50]},
        }
    )


def live(counts: dict[str, tuple[int, ...]], *, low: int = 0, version: str = "v1") -> LiveProfile:
    images = sum(next(iter(counts.values()), FLAT))
    return LiveProfile(
        version=version,
        window_s=60.0,
        images=images,
        features={name: Histogram(EDGES, counts.get(name, FLAT)) for name in FEATURES},
        confidence=Histogram((0.5, 0.9), (10, 30, 60)),
        class_counts=(images // 2, images - images // 2),
        low_confidence=low,
    )


def test_psi_is_zero_for_the_same_shares_and_matches_the_formula() -> None:
    assert psi([10, 20, 30], [20, 40, 60]) == pytest.approx(0.0)
    expected = (0.5 - 0.25) * math.log(0.5 / 0.25) + (0.5 - 0.75) * math.log(0.5 / 0.75)
    assert psi([25, 75], [50, 50]) == pytest.approx(expected)
    assert psi([25, 75], [50, 50]) == pytest.approx(psi([50, 50], [25, 75]))  # PSI is symmetric


def test_an_empty_bin_gives_a_large_but_finite_psi() -> None:
    value = psi([50, 50], [100, 0])
    assert math.isfinite(value) and value > 2.0
    assert shares([0, 10]) == [EPSILON, 1.0]
    assert shares([0, 0]) == [0.5, 0.5]  # no counts: uniform, so an empty side scores 0, not a crash
    with pytest.raises(DriftError, match="same bins"):
        psi([1, 2], [1, 2, 3])


def test_histograms_bin_with_the_reference_edges() -> None:
    histogram = Histogram.of_values([0.0, 0.2, 0.39, 0.5, 0.99, 1.5], EDGES)
    assert histogram.counts == (1, 2, 1, 0, 2)  # a value on an edge goes to the bin it opens
    with pytest.raises(DriftError, match="needs 5 counts"):
        Histogram(EDGES, (1, 2))
    with pytest.raises(DriftError, match="edges must rise"):
        Histogram.from_json({"edges": [0.5, 0.1], "counts": [1, 1, 1]}, "x")


def test_the_score_is_the_largest_feature_psi_and_names_what_moved() -> None:
    thresholds = DriftThresholds(threshold=0.25, min_images=50)
    moved = live({"intensity_mean": (0, 0, 10, 30, 60)})
    report = compare(reference(), moved, thresholds)
    by_name = {item.name: item.psi for item in report.features}
    assert report.score == pytest.approx(by_name["intensity_mean"]) and report.score > 1.0
    assert by_name["contrast"] == pytest.approx(0.0) and report.moved_most == "intensity_mean"
    assert report.verdict is Verdict.DRIFTING
    document = report.to_json()
    assert document["features"]["intensity_mean"]["live_spark"] == "▁▁▂▅█"
    assert document["features"]["intensity_mean"]["reference_spark"] == "█████"


def test_verdicts_follow_the_threshold_and_the_minimum_of_images() -> None:
    thresholds = DriftThresholds(threshold=0.25, min_images=50)
    assert compare(reference(), live({}), thresholds).verdict is Verdict.STABLE
    slight = live({"contrast": (14, 20, 20, 20, 26)})
    assert compare(reference(), slight, thresholds).verdict is Verdict.STABLE
    shifting = live({"contrast": (8, 16, 20, 24, 32)})
    value = compare(reference(), shifting, thresholds).score
    assert value is not None and 0.125 < value <= 0.25
    assert compare(reference(), shifting, thresholds).verdict is Verdict.SHIFTING
    few = live({"intensity_mean": (0, 0, 0, 0, 10)})
    report = compare(reference(), few, thresholds)
    assert report.verdict is Verdict.TOO_FEW and report.score is None and report.features  # shown, not scored
    none = compare(None, live({}, low=25), thresholds)
    assert none.verdict is Verdict.NO_REFERENCE and none.score is None and none.low_confidence_share == 0.25


def test_a_reference_profile_is_checked() -> None:
    with pytest.raises(DriftError, match="format"):
        ReferenceProfile.from_json({"format": "other"})
    with pytest.raises(DriftError, match="features must hold"):
        ReferenceProfile.from_json({"format": "arsl-input-profile/1", "features": {}})


def test_sparklines_scale_to_the_largest_bin() -> None:
    assert sparkline([0, 5, 10]) == "▁▅█"
    assert sparkline([0, 0]) == "▁▁" and sparkline([]) == ""


def test_drift_points_exist_only_for_scored_windows() -> None:
    thresholds = DriftThresholds(threshold=0.25, min_images=50)
    scored = compare(reference(), live({"edge_density": (60, 40, 0, 0, 0)}, low=10), thresholds)
    idle = compare(reference(), live({"edge_density": (1, 1, 1, 1, 1)}, version="v2"), thresholds)
    samples = drift_samples([idle, scored])
    points = {(sample.metric, dict(sample.dimensions).get("model_id")): sample.value for sample in samples}
    assert (INPUT_DRIFT_METRIC, "v2") not in points, "too few images: no data, never a reassuring 0"
    assert points[(INPUT_DRIFT_METRIC, "v1")] == pytest.approx(scored.score)
    assert points[(INPUT_DRIFT_METRIC, None)] == pytest.approx(scored.score)
    assert points[(LOW_CONFIDENCE_METRIC, "v1")] == pytest.approx(0.1)
    assert points[(LOW_CONFIDENCE_METRIC, None)] == pytest.approx(10 / 105)  # pooled over both versions' images


def test_the_local_drift_rule_follows_the_drift_settings() -> None:
    rules = {
        rule.name: rule for rule in local_rules(AlarmThresholds(period_s=30, max_input_drift=0.4, drift_periods=5))
    }
    rule = rules[INPUT_DRIFT]
    assert (rule.metric, rule.comparison, rule.threshold, rule.count) == (INPUT_DRIFT_METRIC, Comparison.GT, 0.4, 5)
    assert rule.period_s == 30 and rule.dimensions == (("service_id", "local"),)
