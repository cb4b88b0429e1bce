"""`arsl doctor [--json]`: a read-only preflight of the configured backend.

One line per check, ✓ or ✗ (– for one not configured and not needed), what was found and, for a ✗,
the fix; then the phases that cannot run. Exit codes: 0 nothing a phase needs is missing, 1 something is. With
`--json` the report is one object: `backend`, `healthy`, `blocked_phases` and `checks` (each `name`,
`ok`, `skipped`, `detail`, `fix`, `needed_by`).
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.text import Text

from arsl_tui.backends import backend_for
from arsl_tui.cli.common import EXIT_FAILED, EXIT_OK, CommandContext, safe_text
from arsl_tui.ops.doctor import PASS_GLYPH, Check, DoctorReport, run_doctor


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    doctor = subcommands.add_parser(
        "doctor",
        parents=[common],
        help="check the configured backend before a run (read-only)",
        description="Check, without changing anything, that the configured backend can run every phase: "
        "credentials, endpoints, bucket, engine and flavor, serving, gateway, notifications (huawei); disk, "
        "port and torch (local). Exit 1 when something a phase needs is missing.",
    )
    doctor.set_defaults(handler=doctor_command)


def check_line(check: Check) -> Text:
    """`✓ name: detail`, or `✗ name: detail` and its fix on the next line."""
    style = "bold green" if check.glyph == PASS_GLYPH else ("bold red" if not check.ok else "dim")
    glyph = Text(check.glyph, style=style)
    line = Text.assemble(glyph, " ", (check.name, "bold"), ": ", safe_text(check.detail))
    if not check.ok and check.fix:
        line.append(f"\n    fix: {safe_text(check.fix)}", style="yellow")
    return line


def summary_line(report: DoctorReport) -> Text:
    return Text(report.summary(), style="green" if report.healthy else "bold red")


def doctor_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    report = run_doctor(backend_for(context.settings))
    if context.json_output:
        context.emit_json(report.to_json())
    else:
        for check in report.checks:
            context.console.print(check_line(check), soft_wrap=True)
        context.console.print(summary_line(report), soft_wrap=True)
    return EXIT_OK if report.healthy else EXIT_FAILED


__all__ = ["add_parser", "check_line", "doctor_command", "summary_line"]
