"""`arsl drift status|check`: how far inputs have moved from a version's reference profile.

    arsl drift status     per version: drift score (largest feature PSI), verdict, images in the window,
                          share of low-confidence answers, and per feature the PSI with the reference and
                          live histograms as sparklines; the arsl-input-drift rule's state and since when
    arsl drift check FOLDER [--version V | --package DIR] [--no-push]
                          the same report for a folder of captured production images (JPEG/PNG, recursively),
                          answered by the version's own model on this CPU (default: the champion); on huawei
                          the score is pushed to Cloud Eye's input_drift metric, which arsl-input-drift judges

`--json` output: `window_s`, `threshold`, `periods`, `low_confidence`, `min_images`, `drifting`,
`drifting_since`, `rule` (`name`, `state`, `since`, `value`, `condition`), `versions` (per version:
`score`, `verdict`, `images`, `moved_most`, `low_confidence_share`, `confidence_psi`, `class_psi`,
`features` → per feature `psi`, `reference`, `live`, `reference_spark`, `live_spark`), `notes`.
Exit codes: 0 no version drifts; 1 a version drifts (or the rule is in alarm); 2 usage; 3 backend error.

`check --json`: the version's report (as in `versions` above, with `version` and `images`), `undecodable`
(the image files that did not decode, relative to FOLDER), `pushed` (`monitor`, `namespace`, `metric`,
`dimensions`, `value`; null when nothing was pushed) and `note` (why nothing was pushed). Exit codes: 0 the
folder does not drift; 1 it drifts; 2 usage (no such folder, no image in it, unknown version, no package,
`alarms.service_id` empty); 3 backend error (the registry, the monitor refused the data point).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from arsl_tui.cli.common import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandContext,
    CommandFailed,
    safe_text,
)

if TYPE_CHECKING:
    from rich.console import Console

    from arsl_tui.domain.drift import DriftReport

VERDICT_STYLES = {"stable": "green", "shifting": "yellow", "drifting": "bold red"}


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    drift = subcommands.add_parser(
        "drift",
        parents=[common],
        help="input drift of production images against the training data",
        description="Compare production images with a model's reference profile (written at export from its "
        "validation split): population stability index per feature ([drift] in config.toml). `status` reads "
        "what the local gateway answered; `check FOLDER` scores a folder of captured images on any backend.",
    )
    actions = drift.add_subparsers(dest="drift_command", metavar="ACTION")
    status = actions.add_parser("status", parents=[common], help="drift score per version and feature, since when")
    status.set_defaults(handler=status_command)
    check = actions.add_parser(
        "check",
        parents=[common],
        help="score a folder of captured production images; on huawei push the score to Cloud Eye",
        description="Score a folder of production inputs (JPEG/PNG, recursively) against a version's reference "
        "profile, with that version's answers computed here on the CPU. On huawei the score goes to Cloud Eye "
        "(custom metric input_drift), where the arsl-input-drift rule of `arsl alarms setup` judges it; "
        "run it from cron, e.g. */5 * * * * arsl drift check /srv/captured/last-5-min --backend huawei.",
    )
    check.add_argument("folder", metavar="FOLDER", help="captured production images (.jpg/.jpeg/.png)")
    which = check.add_mutually_exclusive_group()
    which.add_argument("--version", metavar="V", help="the version that answers them (default: the champion)")
    which.add_argument(
        "--package", metavar="DIR", help="an exported model package folder instead of a registry version"
    )
    check.add_argument("--no-push", action="store_true", help="score only: push nothing to the monitor")
    check.set_defaults(handler=check_command)


def _score(report: DriftReport) -> str:
    return "—" if report.score is None else f"{report.score:.3f}"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def print_version_report(console: Console, report: DriftReport) -> None:
    """One version's verdict line, then per feature its PSI and the reference and live sparklines."""
    console.print(
        Text.assemble(
            (f"{report.version} ", "bold"),
            (report.verdict.value, VERDICT_STYLES.get(report.verdict.value, "dim")),
            f" · score {_score(report)} · {report.images} image(s) · low confidence "
            f"{_share(report.low_confidence_share)}",
        )
    )
    if not report.features:
        return
    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("feature", "PSI", "reference", "live"):
        table.add_column(column, justify="right" if column == "PSI" else "left")
    for item in report.features:
        table.add_row(item.name, f"{item.psi:.3f}", item.to_json()["reference_spark"], item.to_json()["live_spark"])
    console.print(table)


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
        print_version_report(console, report)
    if not result.reports:
        console.print(Text("no version has answered yet in the window", style="dim"))
    for note in result.notes:
        console.print(Text(note, style="dim"))
    return code


def check_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from pathlib import Path

    from arsl_tui.domain.alarms import MonitorError, MonitorUnavailable
    from arsl_tui.domain.drift import Verdict
    from arsl_tui.domain.registry import RegistryError
    from arsl_tui.ops.drift_check import CheckInputError, check, pushes, shown_names

    if pushes(context.settings, not namespace.no_push):
        context.require_writable("push the input_drift score to the monitor (--no-push scores only)")
    try:
        result = check(
            context.settings,
            Path(namespace.folder),
            version=namespace.version,
            package=None if namespace.package is None else Path(namespace.package),
            push=not namespace.no_push,
        )
    except (CheckInputError, MonitorUnavailable) as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None
    except (MonitorError, RegistryError) as error:
        raise CommandFailed(str(error), EXIT_BACKEND) from None
    code = EXIT_FAILED if result.drifting else EXIT_OK
    if context.json_output:
        context.emit_json(result.to_json())
        return code
    console = context.console
    print_version_report(console, result.report)
    if result.report.verdict is Verdict.NO_REFERENCE:
        console.print(
            Text(f"{safe_text(result.version)}'s package has no input_profile.json: retrain to get one", style="dim")
        )
    if result.undecodable:
        console.print(
            Text(
                f"{len(result.undecodable)} file(s) did not decode and were left out: "
                f"{safe_text(shown_names(result.undecodable))}",
                style="yellow",
            )
        )
    console.print(Text(result.pushed.describe() if result.pushed is not None else result.note or "", style="dim"))
    return code


__all__ = ["add_parser", "check_command", "print_version_report", "status_command"]
