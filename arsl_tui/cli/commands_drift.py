"""`arsl drift status`: how far live inputs have moved from each served version's reference profile.

    arsl drift status     per version: drift score (largest feature PSI), verdict, images in the window,
                          share of low-confidence answers, and per feature the PSI with the reference and
                          live histograms as sparklines; the arsl-input-drift rule's state and since when

`--json` output: `window_s`, `threshold`, `periods`, `low_confidence`, `min_images`, `drifting`,
`drifting_since`, `rule` (`name`, `state`, `since`, `value`, `condition`), `versions` (per version:
`score`, `verdict`, `images`, `moved_most`, `low_confidence_share`, `confidence_psi`, `class_psi`,
`features` → per feature `psi`, `reference`, `live`, `reference_spark`, `live_spark`), `notes`.
Exit codes: 0 no version drifts; 1 a version drifts (or the rule is in alarm); 2 usage; 3 backend error.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from arsl_tui.cli.common import EXIT_FAILED, EXIT_OK, CommandContext

if TYPE_CHECKING:
    from arsl_tui.domain.drift import DriftReport

VERDICT_STYLES = {"stable": "green", "shifting": "yellow", "drifting": "bold red"}


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    drift = subcommands.add_parser(
        "drift",
        parents=[common],
        help="input drift of live traffic against the training data",
        description="Compare the images the gateway answers with each model's reference profile (written at "
        "export from its validation split): population stability index per feature ([drift] in config.toml).",
    )
    actions = drift.add_subparsers(dest="drift_command", metavar="ACTION")
    status = actions.add_parser("status", parents=[common], help="drift score per version and feature, since when")
    status.set_defaults(handler=status_command)


def _score(report: DriftReport) -> str:
    return "—" if report.score is None else f"{report.score:.3f}"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def status_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.drift import since_text, status

    result = status(context.settings)
    code = EXIT_FAILED if result.drifting else EXIT_OK
    if context.json_output:
        context.emit_json(result.to_json())
        return code
    limits = result.thresholds
    console = context.console
    rule = result.rule
    rule_line = "not set up" if rule is None else f"{rule.state.value} ({rule.rule.condition})"
    console.print(
        Text.assemble(
            ("drift ", "bold"),
            f"window {limits.window_s} s · alarm above {limits.threshold:g} for {limits.periods} period(s) · ",
            ("rule ", "bold"),
            rule_line,
        )
    )
    if result.drifting_since is not None:
        console.print(Text(f"drifting {since_text(result.drifting_since)}", style="bold red"))
    for report in result.reports:
        console.print(
            Text.assemble(
                (f"{report.version} ", "bold"),
                (report.verdict.value, VERDICT_STYLES.get(report.verdict.value, "dim")),
                f" · score {_score(report)} · {report.images} image(s) · low confidence "
                f"{_share(report.low_confidence_share)}",
            )
        )
        if not report.features:
            continue
        table = Table(show_edge=False, pad_edge=False, box=None)
        for column in ("feature", "PSI", "reference", "live"):
            table.add_column(column, justify="right" if column == "PSI" else "left")
        for item in report.features:
            table.add_row(item.name, f"{item.psi:.3f}", item.to_json()["reference_spark"], item.to_json()["live_spark"])
        console.print(table)
    if not result.reports:
        console.print(Text("no version has answered yet in the window", style="dim"))
    for note in result.notes:
        console.print(Text(note, style="dim"))
    return code


__all__ = ["add_parser", "status_command"]
