"""The evaluation gate: explicit, reproducible rules on a finished job's metrics.

Each rule reports its measured value, its threshold and a verdict, so the record explains itself.
A model passes only if every rule passes. Rules read `metrics.jsonl`: the epoch history (train/val
accuracy and loss per epoch) and the final record (held-out test split, per-class accuracy).
The champion comparison follows MLflow's `MetricThreshold`: an absolute floor relative to the
baseline (the candidate may be at most `max_regression` worse) evaluated on the same test split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Verdict = Literal["pass", "fail"]

# Metrics pass through float arithmetic (1.0 - 0.95 > 0.05): a value equal to its threshold up to
# this tolerance counts as equal.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class GateThresholds:
    min_accuracy: float = 0.95
    max_loss: float = 0.1
    stability_epochs: int = 3
    max_val_acc_spread: float = 0.02
    max_train_val_gap: float = 0.05
    max_val_loss_rise: float = 0.02
    min_class_accuracy: float = 0.8
    max_regression: float = 0.005
    max_class_regression: float = 0.05


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float


@dataclass(frozen=True)
class FinalMetrics:
    test_acc: float
    test_loss: float
    per_class_acc: Mapping[str, float]
    manifest_id: str = ""
    train_val_gap: float | None = None
    """Train − validation accuracy of the exported model, both measured without augmentation."""


@dataclass(frozen=True)
class MetricsSummary:
    """What the gate reads from one job's metrics.jsonl."""

    epochs: tuple[EpochMetrics, ...]
    final: FinalMetrics | None


@dataclass(frozen=True)
class RuleResult:
    rule: str
    description: str
    measured: float | None
    threshold: float | None
    comparison: str
    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True)
class GateRecord:
    verdict: Verdict
    rules: tuple[RuleResult, ...]
    thresholds: GateThresholds
    champion_version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed_rules(self) -> list[RuleResult]:
        return [rule for rule in self.rules if rule.verdict == "fail"]

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "rules": [asdict(rule) for rule in self.rules],
            "thresholds": asdict(self.thresholds),
            "champion_version": self.champion_version,
            **dict(self.extra),
        }


class MetricsFormatError(ValueError):
    """A metrics record is missing a field or holds something that is not a number."""


def _number(record: Mapping[str, Any], key: str, where: str) -> float:
    if key not in record:
        raise MetricsFormatError(f"{where}: field {key!r} is missing")
    value = record[key]
    if value is None:
        # The trainer writes NaN and infinities as null (JSON has neither): a diverged run, not a bad file.
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MetricsFormatError(f"{where}: field {key!r} is {value!r}, expected a number")
    return float(value)


def summarise_metrics(records: Iterable[Mapping[str, Any]]) -> MetricsSummary:
    """Epoch history (last record per epoch wins, so a resumed job counts each epoch once) and final."""
    by_epoch: dict[int, EpochMetrics] = {}
    final: FinalMetrics | None = None
    for line_number, record in enumerate(records, start=1):
        where = f"metrics record {line_number}"
        kind = record.get("type")
        if kind == "epoch":
            number = _number(record, "epoch", where)
            if not math.isfinite(number) or not number.is_integer():
                raise MetricsFormatError(f"{where}: field 'epoch' is {record.get('epoch')!r}, expected an integer")
            epoch = int(number)
            by_epoch[epoch] = EpochMetrics(
                epoch=epoch,
                train_loss=_number(record, "train_loss", where),
                train_acc=_number(record, "train_acc", where),
                val_loss=_number(record, "val_loss", where),
                val_acc=_number(record, "val_acc", where),
            )
        elif kind == "final":
            per_class = record.get("per_class_acc", {})
            if not isinstance(per_class, Mapping):
                raise MetricsFormatError(f"{where}: per_class_acc must map class names to accuracies")
            final = FinalMetrics(
                test_acc=_number(record, "test_acc", where),
                test_loss=_number(record, "test_loss", where),
                per_class_acc={str(name): _number(per_class, name, f"{where}: per_class_acc") for name in per_class},
                manifest_id=str(record.get("manifest_id", "")),
                train_val_gap=(
                    _number(record, "train_val_gap", where) if record.get("train_val_gap") is not None else None
                ),
            )
    return MetricsSummary(epochs=tuple(by_epoch[number] for number in sorted(by_epoch)), final=final)


def _finite(*values: float) -> bool:
    return all(math.isfinite(value) for value in values)


def _worst(values: Mapping[str, float]) -> str:
    """The name with the lowest value; a value that is not a number counts as the worst (NaN never compares)."""
    return min(
        values,
        key=lambda name: (math.isfinite(values[name]), values[name] if math.isfinite(values[name]) else 0.0, name),
    )


def _at_most(rule: str, description: str, measured: float, threshold: float, detail: str = "") -> RuleResult:
    ok = _finite(measured) and measured <= threshold + _TOLERANCE
    return RuleResult(
        rule,
        description,
        measured,
        threshold,
        "≤",
        "pass" if ok else "fail",
        detail or ("" if _finite(measured) else "not a number"),
    )


def _at_least(rule: str, description: str, measured: float, threshold: float, detail: str = "") -> RuleResult:
    ok = _finite(measured) and measured >= threshold - _TOLERANCE
    return RuleResult(
        rule,
        description,
        measured,
        threshold,
        "≥",
        "pass" if ok else "fail",
        detail or ("" if _finite(measured) else "not a number"),
    )


def _missing(rule: str, description: str, comparison: str, threshold: float, detail: str) -> RuleResult:
    return RuleResult(rule, description, None, threshold, comparison, "fail", detail)


def _test_rules(final: FinalMetrics | None, limits: GateThresholds) -> list[RuleResult]:
    if final is None:
        reason = "no final record: the job did not finish its test evaluation"
        return [
            _missing("test_accuracy", "accuracy on the held-out test split", "≥", limits.min_accuracy, reason),
            _missing("test_loss", "cross-entropy on the held-out test split", "≤", limits.max_loss, reason),
            _missing("class_floor", "lowest per-class test accuracy", "≥", limits.min_class_accuracy, reason),
        ]
    rules = [
        _at_least("test_accuracy", "accuracy on the held-out test split", final.test_acc, limits.min_accuracy),
        _at_most("test_loss", "cross-entropy on the held-out test split", final.test_loss, limits.max_loss),
    ]
    if final.per_class_acc:
        worst_class = _worst(final.per_class_acc)
        worst = final.per_class_acc[worst_class]
        rules.append(
            _at_least(
                "class_floor",
                "lowest per-class test accuracy",
                worst,
                limits.min_class_accuracy,
                f"worst class: {worst_class}",
            )
        )
    else:
        rules.append(
            _missing(
                "class_floor",
                "lowest per-class test accuracy",
                "≥",
                limits.min_class_accuracy,
                "the final record has no per-class accuracy",
            )
        )
    return rules


def _gap_rule(epochs: Sequence[EpochMetrics], final: FinalMetrics | None, limits: GateThresholds) -> RuleResult:
    """Overfitting as the train − validation accuracy gap.

    The final record's gap is preferred: epoch records measure train accuracy on augmented batches,
    which understates it, while the final record scores both splits the same way, without augmentation.
    """
    if final is not None and final.train_val_gap is not None:
        return _at_most(
            "train_val_gap",
            "train − validation accuracy of the exported model (overfitting)",
            final.train_val_gap,
            limits.max_train_val_gap,
            "both splits scored without augmentation",
        )
    if not epochs:
        return _missing(
            "train_val_gap",
            "train − validation accuracy at the last epoch (overfitting)",
            "≤",
            limits.max_train_val_gap,
            "no epoch record and no final record",
        )
    last = epochs[-1]
    gap = last.train_acc - last.val_acc
    return _at_most(
        "train_val_gap",
        "train − validation accuracy at the last epoch (overfitting)",
        gap,
        limits.max_train_val_gap,
        f"epoch {last.epoch}" if _finite(gap) else "not a number",
    )


def _history_rules(epochs: Sequence[EpochMetrics], limits: GateThresholds) -> list[RuleResult]:
    window_size = limits.stability_epochs
    if len(epochs) < window_size or not epochs:
        reason = f"needs {window_size} epoch record(s), the job wrote {len(epochs)}"
        return [
            _missing(
                "val_stability",
                f"spread of validation accuracy over the last {window_size} epochs",
                "≤",
                limits.max_val_acc_spread,
                reason,
            ),
            _missing(
                "val_loss_trend",
                f"rise of validation loss over the last {window_size} epochs",
                "≤",
                limits.max_val_loss_rise,
                reason,
            ),
        ]
    window = epochs[-window_size:]
    last = epochs[-1]
    accuracies = [epoch.val_acc for epoch in window]
    losses = [epoch.val_loss for epoch in window]
    spread = max(accuracies) - min(accuracies) if _finite(*accuracies) else math.nan
    rise = last.val_loss - min(losses) if _finite(*losses) else math.nan
    numbers = f"epochs {window[0].epoch}–{last.epoch}"
    return [
        _at_most(
            "val_stability",
            f"spread of validation accuracy over the last {window_size} epochs",
            spread,
            limits.max_val_acc_spread,
            numbers if _finite(spread) else "a validation accuracy is not a number",
        ),
        _at_most(
            "val_loss_trend",
            f"rise of validation loss over the last {window_size} epochs (overfitting)",
            rise,
            limits.max_val_loss_rise,
            numbers if _finite(rise) else "a validation loss is not a number",
        ),
    ]


def _champion_rules(
    final: FinalMetrics | None, champion: FinalMetrics | None, limits: GateThresholds
) -> list[RuleResult]:
    if champion is None or final is None:
        return []
    if champion.manifest_id and final.manifest_id and champion.manifest_id != final.manifest_id:
        return [
            RuleResult(
                "no_regression",
                "test accuracy against the champion on the same test split",
                None,
                -limits.max_regression,
                "≥",
                "pass",
                "skipped: the champion was evaluated on another data set",
            )
        ]
    rules = [
        _at_least(
            "no_regression",
            "test accuracy change against the champion (same test split)",
            final.test_acc - champion.test_acc,
            -limits.max_regression,
            f"champion {champion.test_acc:.4f} → candidate {final.test_acc:.4f}",
        )
    ]
    shared = sorted(set(final.per_class_acc) & set(champion.per_class_acc))
    if shared:
        changes = {name: final.per_class_acc[name] - champion.per_class_acc[name] for name in shared}
        worst_class = _worst(changes)
        rules.append(
            _at_least(
                "no_class_regression",
                "largest per-class accuracy drop against the champion",
                changes[worst_class],
                -limits.max_class_regression,
                f"worst class: {worst_class}",
            )
        )
    return rules


def evaluate_gate(
    summary: MetricsSummary,
    limits: GateThresholds,
    *,
    champion: FinalMetrics | None = None,
    champion_version: str | None = None,
) -> GateRecord:
    """Evaluate every rule; the verdict is pass only if all pass."""
    rules = (
        *_test_rules(summary.final, limits),
        *_history_rules(summary.epochs, limits),
        _gap_rule(summary.epochs, summary.final, limits),
        *_champion_rules(summary.final, champion, limits),
    )
    verdict: Verdict = "pass" if all(rule.verdict == "pass" for rule in rules) else "fail"
    return GateRecord(verdict=verdict, rules=rules, thresholds=limits, champion_version=champion_version)
