"""Every gate rule on crafted metric histories."""

from __future__ import annotations

import math
from typing import Any

import pytest

from arsl_tui.domain.gate import (
    GateThresholds,
    MetricsFormatError,
    evaluate_gate,
    summarise_metrics,
)

LIMITS = GateThresholds()
CLASSES = ("ain", "al", "aleff")


def epoch(
    number: int, val_acc: float = 0.97, val_loss: float = 0.08, train_acc: float = 0.98, train_loss: float = 0.06
) -> dict[str, Any]:
    return {
        "type": "epoch",
        "epoch": number,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
    }


def final(
    test_acc: float = 0.97, test_loss: float = 0.08, per_class: dict[str, float] | None = None, manifest_id: str = "m1"
) -> dict[str, Any]:
    return {
        "type": "final",
        "test_acc": test_acc,
        "test_loss": test_loss,
        "manifest_id": manifest_id,
        "per_class_acc": per_class if per_class is not None else dict.fromkeys(CLASSES, 0.97),
    }


def clean_history(**final_fields: Any) -> list[dict[str, Any]]:
    return [
        {"type": "step", "step": 1},
        epoch(1, 0.90, 0.30, 0.88, 0.35),
        epoch(2, 0.965, 0.09),
        epoch(3, 0.97, 0.085),
        epoch(4, 0.972, 0.08),
        final(**final_fields),
    ]


def verdicts(records: list[dict[str, Any]], **kwargs: Any) -> dict[str, str]:
    record = evaluate_gate(summarise_metrics(records), kwargs.pop("limits", LIMITS), **kwargs)
    return {rule.rule: rule.verdict for rule in record.rules} | {"overall": record.verdict}


def test_a_clean_run_passes_every_rule() -> None:
    result = verdicts(clean_history())
    assert result == {
        "test_accuracy": "pass",
        "test_loss": "pass",
        "class_floor": "pass",
        "val_stability": "pass",
        "train_val_gap": "pass",
        "val_loss_trend": "pass",
        "overall": "pass",
    }


@pytest.mark.parametrize(
    ("records", "failing_rule"),
    [
        (clean_history(test_acc=0.94), "test_accuracy"),
        (clean_history(test_loss=0.11), "test_loss"),
        (clean_history(per_class={"ain": 0.99, "al": 0.99, "aleff": 0.7}), "class_floor"),
        ([epoch(1), epoch(2, val_acc=0.94), epoch(3, val_acc=0.97), final()], "val_stability"),
        (
            [epoch(1, val_acc=0.955), epoch(2, val_acc=0.955), epoch(3, train_acc=1.0, val_acc=0.945), final()],
            "train_val_gap",
        ),
        ([epoch(1, val_loss=0.05), epoch(2, val_loss=0.06), epoch(3, val_loss=0.08), final()], "val_loss_trend"),
    ],
    ids=["accuracy", "loss", "one-class", "unstable", "overfit-gap", "val-loss-rising"],
)
def test_each_single_failure_fails_only_its_rule(records: list[dict[str, Any]], failing_rule: str) -> None:
    result = verdicts(records)
    assert result["overall"] == "fail"
    assert [rule for rule, verdict in result.items() if verdict == "fail" and rule != "overall"] == [failing_rule]


def test_borderline_values_pass_at_the_threshold() -> None:
    limits = GateThresholds(min_accuracy=0.95, max_loss=0.1, max_train_val_gap=0.05)
    records = [epoch(1), epoch(2), epoch(3, train_acc=1.0, val_acc=0.95), final(test_acc=0.95, test_loss=0.1)]
    result = verdicts(records, limits=GateThresholds(**{**limits.__dict__, "max_val_acc_spread": 0.05}))
    assert result["test_accuracy"] == result["test_loss"] == result["train_val_gap"] == "pass"
    assert verdicts([*records[:-1], final(test_acc=0.9499)])["test_accuracy"] == "fail"


def test_missing_epochs_and_missing_final_fail_with_reasons() -> None:
    record = evaluate_gate(summarise_metrics([epoch(1)]), LIMITS)
    assert record.verdict == "fail"
    details = {rule.rule: rule.detail for rule in record.rules}
    assert details["test_accuracy"] == "no final record: the job did not finish its test evaluation"
    assert details["val_stability"] == "needs 3 epoch record(s), the job wrote 1"


def test_a_resumed_job_counts_each_epoch_once() -> None:
    records = [epoch(1, 0.9), epoch(2, 0.5), epoch(2, 0.969), epoch(3, 0.97), final()]
    summary = summarise_metrics(records)
    assert [item.epoch for item in summary.epochs] == [1, 2, 3]
    assert summary.epochs[1].val_acc == 0.969


def test_nan_losses_fail_and_say_so() -> None:
    records = [epoch(1), epoch(2, val_loss=math.nan), epoch(3), final(test_loss=math.nan)]
    record = evaluate_gate(summarise_metrics(records), LIMITS)
    by_rule = {rule.rule: rule for rule in record.rules}
    assert by_rule["test_loss"].verdict == "fail" and by_rule["test_loss"].detail == "not a number"
    assert by_rule["val_loss_trend"].verdict == "fail"
    assert "not a number" in by_rule["val_loss_trend"].detail


def test_better_overall_but_worse_on_one_class_than_the_champion_fails() -> None:
    champion = summarise_metrics([final(test_acc=0.96, per_class={"ain": 0.96, "al": 0.96, "aleff": 0.96})]).final
    candidate = clean_history(test_acc=0.98, per_class={"ain": 1.0, "al": 1.0, "aleff": 0.90})
    result = verdicts(candidate, champion=champion, champion_version="v1")
    assert result["no_regression"] == "pass"
    assert result["no_class_regression"] == "fail"
    assert result["overall"] == "fail"


def test_regression_against_the_champion_fails_and_other_data_sets_are_not_compared() -> None:
    champion = summarise_metrics([final(test_acc=0.99)]).final
    assert verdicts(clean_history(test_acc=0.98), champion=champion)["no_regression"] == "fail"
    other = summarise_metrics([final(test_acc=0.99, manifest_id="other")]).final
    record = evaluate_gate(summarise_metrics(clean_history(test_acc=0.98)), LIMITS, champion=other)
    skipped = next(rule for rule in record.rules if rule.rule == "no_regression")
    assert skipped.verdict == "pass" and "another data set" in skipped.detail


def test_malformed_records_name_the_field() -> None:
    with pytest.raises(MetricsFormatError, match=r"metrics record 2: field 'val_acc' is 'high'"):
        summarise_metrics([epoch(1), {**epoch(2), "val_acc": "high"}])


def test_record_serialises_with_values_and_thresholds() -> None:
    record = evaluate_gate(summarise_metrics(clean_history()), LIMITS, champion_version=None)
    data = record.to_json()
    assert data["verdict"] == "pass"
    first = data["rules"][0]
    assert first == {
        "rule": "test_accuracy",
        "description": "accuracy on the held-out test split",
        "measured": 0.97,
        "threshold": 0.95,
        "comparison": "≥",
        "verdict": "pass",
        "detail": "",
    }
    assert data["thresholds"]["max_loss"] == 0.1


def test_the_trainers_null_for_a_diverged_loss_reads_as_not_a_number() -> None:
    # trainer.metrics writes NaN/Infinity as null (JSON has neither); the gate must fail it, not crash.
    records = [
        epoch(1),
        epoch(2),
        {**epoch(3), "val_loss": None},
        {**final(per_class={"ain": 0.97, "al": None, "aleff": 0.97}), "test_loss": None},
    ]
    summary = summarise_metrics(records)
    assert summary.final is not None and math.isnan(summary.final.test_loss)
    assert math.isnan(summary.final.per_class_acc["al"])
    by_rule = {rule.rule: rule for rule in evaluate_gate(summary, LIMITS).rules}
    assert by_rule["test_loss"].verdict == "fail" and by_rule["test_loss"].detail == "not a number"
    assert by_rule["class_floor"].verdict == "fail" and by_rule["class_floor"].detail == "worst class: al"
    assert by_rule["val_loss_trend"].verdict == "fail"
    champion = summarise_metrics([final()]).final
    against = {rule.rule: rule for rule in evaluate_gate(summary, LIMITS, champion=champion).rules}
    assert against["no_class_regression"].verdict == "fail"
    assert against["no_class_regression"].detail == "worst class: al"


def test_a_missing_field_and_a_fractional_epoch_are_named() -> None:
    incomplete = {key: value for key, value in final().items() if key != "test_loss"}
    with pytest.raises(MetricsFormatError, match=r"metrics record 1: field 'test_loss' is missing"):
        summarise_metrics([incomplete])
    with pytest.raises(MetricsFormatError, match=r"field 'epoch' is 1.5, expected an integer"):
        summarise_metrics([{**epoch(1), "epoch": 1.5}])


def test_the_final_records_unaugmented_gap_is_preferred_over_epoch_records() -> None:
    records = clean_history()
    records[-1] = {**records[-1], "train_val_gap": 0.08}
    record = evaluate_gate(summarise_metrics(records), LIMITS)
    gap = next(rule for rule in record.rules if rule.rule == "train_val_gap")
    assert (gap.measured, gap.verdict) == (0.08, "fail")
    assert "without augmentation" in gap.detail
    records[-1] = {**records[-1], "train_val_gap": 0.01}
    assert evaluate_gate(summarise_metrics(records), LIMITS).verdict == "pass"
