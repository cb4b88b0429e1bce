"""What the Gate tab shows of an evaluation, as plain rows and lines (pure: tested without a screen)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arsl_tui.domain.gate import FinalMetrics, GateRecord, RuleResult
from arsl_tui.ui import formatting as fmt


@dataclass(frozen=True)
class Confusion:
    true_class: str
    predicted: str
    count: int
    share: float
    """Of the true class's test images."""

    def line(self) -> str:
        return f"{self.true_class} → {self.predicted}: {self.count:,} ({100 * self.share:.1f} % of {self.true_class})"


def top_confusions(final: Mapping[str, Any] | None, limit: int = 5) -> list[Confusion]:
    """The largest off-diagonal cells of the test confusion matrix (rows: true class, columns: predicted)."""
    if not final:
        return []
    classes = final.get("classes")
    matrix = final.get("confusion")
    if not isinstance(classes, list) or not isinstance(matrix, list) or len(matrix) != len(classes):
        return []
    found: list[Confusion] = []
    for row_index, row in enumerate(matrix):
        if not isinstance(row, list) or len(row) != len(classes):
            return []
        row_total = sum(cell for cell in row if isinstance(cell, int | float))
        for column_index, cell in enumerate(row):
            if column_index == row_index or not isinstance(cell, int | float) or cell <= 0:
                continue
            found.append(
                Confusion(
                    str(classes[row_index]),
                    str(classes[column_index]),
                    int(cell),
                    cell / row_total if row_total else 0.0,
                )
            )
    found.sort(key=lambda item: (-item.count, item.true_class, item.predicted))
    return found[:limit]


def verdict_line(
    record: GateRecord, champion_version: str | None, registered: str | None, read_only: bool
) -> tuple[str, str, str]:
    """(level, status, text) for the verdict line: pass/fail, how many rules, what the keys do now."""
    total = len(record.rules)
    against = f"vs champion {champion_version}" if champion_version else "no champion yet"
    if record.verdict == "pass":
        head = f"PASS: {total}/{total} rules ({against})"
        if registered:
            return "ok", "pass", f"{head}; registered as {registered}."
        return (
            "ok",
            "pass",
            head
            + (" — read-only mode: registering is off." if read_only else " — R registers it as the next version."),
        )
    failed = record.failed_rules
    names = ", ".join(rule.rule for rule in failed[:2]) + (", …" if len(failed) > 2 else "")
    head = f"FAIL: {len(failed)}/{total} rules failed: {names} ({against})"
    if registered:
        return "warning", "fail", f"{head}; registered by override as {registered}."
    return (
        "error",
        "fail",
        head + (" — read-only mode: no override." if read_only else " — O registers it anyway, with a reason."),
    )


def rule_cells(rule: RuleResult) -> tuple[str, str, str, str, str]:
    """glyph+verdict, rule, measured, comparison and threshold, detail (or what it measures)."""
    return (
        fmt.status_text(rule.verdict),
        rule.rule,
        fmt.metric(rule.measured),
        f"{rule.comparison} {fmt.metric(rule.threshold)}",
        rule.detail or rule.description,
    )


def _worst(per_class: Mapping[str, float]) -> tuple[str, float] | None:
    finite = {name: value for name, value in per_class.items() if math.isfinite(value)}
    if not finite:
        return None
    name = min(finite, key=lambda key: (finite[key], key))
    return name, finite[name]


def champion_rows(candidate: FinalMetrics | None, champion: FinalMetrics | None) -> list[tuple[str, str, str, str]]:
    """(figure, this job, champion, change) for the figures the no-regression rules compare."""
    if candidate is None:
        return [("test figures", "–", "–", "the job wrote no final record")]
    rows: list[tuple[str, str, str, str]] = []

    def change(new: float, old: float | None) -> str:
        if old is None or not math.isfinite(new) or not math.isfinite(old):
            return "–"
        return f"{new - old:+.4f}"

    old_acc = champion.test_acc if champion else None
    old_loss = champion.test_loss if champion else None
    rows.append(
        ("test accuracy", fmt.metric(candidate.test_acc), fmt.metric(old_acc), change(candidate.test_acc, old_acc))
    )
    rows.append(
        ("test loss", fmt.metric(candidate.test_loss), fmt.metric(old_loss), change(candidate.test_loss, old_loss))
    )
    mine = _worst(candidate.per_class_acc)
    theirs = _worst(champion.per_class_acc) if champion else None
    rows.append(
        (
            "worst class",
            f"{mine[0]} {mine[1]:.4f}" if mine else "–",
            f"{theirs[0]} {theirs[1]:.4f}" if theirs else "–",
            "",
        )
    )
    if champion is not None:
        shared = sorted(set(candidate.per_class_acc) & set(champion.per_class_acc))
        drops = {name: candidate.per_class_acc[name] - champion.per_class_acc[name] for name in shared}
        if drops:
            name = min(drops, key=lambda key: (drops[key], key))
            rows.append(
                (
                    "largest class change",
                    f"{name} {candidate.per_class_acc[name]:.4f}",
                    f"{name} {champion.per_class_acc[name]:.4f}",
                    f"{drops[name]:+.4f}",
                )
            )
    return rows


def per_class_values(final: FinalMetrics | None, classes: Sequence[str] | None) -> list[tuple[str, float]]:
    """Per-class test accuracy in the model's class order (the final record's `classes`), else by name."""
    if final is None:
        return []
    order = [name for name in (classes or []) if name in final.per_class_acc]
    order += sorted(name for name in final.per_class_acc if name not in order)
    return [(name, final.per_class_acc[name]) for name in order]
