"""`arsl gate JOB [--override --reason TEXT]` and `arsl models list|show VERSION|log`.

`arsl gate JOB` prints the rule table (✓/✗, measured value, threshold) of a finished job and, on a
pass, registers the job's model package as the next version (`challenger`; `champion` too when
there is none yet). Exit codes: 0 passed (or failed and registered by `--override`), 1 failed,
2 usage (job not finished, unknown job, read-only mode, override without a reason), 3 backend or
registry error. `--dry-run` evaluates and writes nothing. With `--json` the result is one object:
the gate record (`verdict`, `rules`, `thresholds`, `champion_version`) plus `registered`, `version`,
`aliases`, `override`.

`arsl models list`, `arsl models show VERSION` (`--json`: `version`, `aliases`, `metrics`,
`lineage`, `gate`, …) and `arsl models log` (the promotion log) only read. A version that a
promotion made champion is no longer challenger (`domain.registry.RegistryState.aliases`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from arsl_tui.backends import backend_for
from arsl_tui.cli.common import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandContext,
    CommandFailed,
    Handler,
    confirm,
)

if TYPE_CHECKING:
    from arsl_tui.domain.registry import ModelVersion, RegistryState
    from arsl_tui.ops.gating import GateOutcome

PASS_GLYPH = "✓"  # noqa: S105 - a check mark, not a password
FAIL_GLYPH = "✗"


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    gate = subcommands.add_parser(
        "gate",
        parents=[common],
        help="judge a finished training job; on pass register it as challenger",
        description="Evaluate every gate rule ([gate] in config.toml) on a finished job's metrics; on a pass copy "
        "its model package into the registry as the next version (challenger).",
    )
    gate.add_argument("job", metavar="JOB", help="the training job id")
    gate.add_argument("--override", action="store_true", help="register the model even though it failed the gate")
    gate.add_argument("--reason", default=None, metavar="TEXT", help="why (required with --override; logged)")
    gate.add_argument("--dry-run", action="store_true", help="evaluate only: register nothing, store nothing")
    gate.add_argument("--yes", "-y", action="store_true", help="do not ask before an override")
    gate.set_defaults(handler=_errors(gate_command))

    models = subcommands.add_parser("models", parents=[common], help="registered model versions")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="every version with its aliases and test figures")
    listing.set_defaults(handler=_errors(list_command))
    show = actions.add_parser("show", parents=[common], help="one version: metrics, lineage, gate record")
    show.add_argument("version", metavar="VERSION", help="v1, v2, … or an alias (champion, challenger)")
    show.set_defaults(handler=_errors(show_command))
    log = actions.add_parser("log", parents=[common], help="the promotion log: who moved what, when and why")
    log.set_defaults(handler=_errors(log_command))


def _errors(handler: Handler) -> Handler:
    """Gate, registry and training errors → a one-line message and the contract's exit code."""

    @functools.wraps(handler)
    def run(context: CommandContext, namespace: argparse.Namespace) -> int:
        from arsl_tui.domain.gate import MetricsFormatError
        from arsl_tui.domain.jobs import JobNotFound, PlatformUnavailable, TrainingError
        from arsl_tui.domain.registry import AliasMoveError, RegistryError, VersionFormatError
        from arsl_tui.ops.gating import GateError
        from arsl_tui.ops.registry import VersionNotFound

        try:
            return handler(context, namespace)
        except (GateError, JobNotFound, PlatformUnavailable, VersionFormatError, AliasMoveError) as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None
        except VersionNotFound as error:
            # Named by the user (`models show v9`) it is a usage error; named by the log, a broken registry.
            raise CommandFailed(str(error), EXIT_USAGE if namespace.command == "models" else EXIT_BACKEND) from None
        except (TrainingError, RegistryError) as error:
            raise CommandFailed(str(error), EXIT_BACKEND) from None
        except MetricsFormatError as error:
            raise CommandFailed(f"the job's metrics.jsonl is malformed: {error}", EXIT_BACKEND) from None

    return run


# --- formatting -----------------------------------------------------------------------------------


def _value(value: float | None) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return "NaN"
    return f"{value:.4f}"


def _glyph(verdict: str) -> Text:
    return Text(PASS_GLYPH, style="bold green") if verdict == "pass" else Text(FAIL_GLYPH, style="bold red")


def rule_table(rules: Iterable[Mapping[str, Any]]) -> Table:
    """✓/✗, rule, measured value, comparison and threshold, detail: from a gate record's `rules` (JSON shape)."""
    table = Table(show_edge=False, pad_edge=False, box=None)
    for name, justify in (
        ("", "left"),
        ("rule", "left"),
        ("measured", "right"),
        ("threshold", "right"),
        ("detail", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for rule in rules:
        table.add_row(
            _glyph(str(rule.get("verdict"))),
            str(rule.get("rule")),
            _value(_float(rule.get("measured"))),
            f"{rule.get('comparison', '')} {_value(_float(rule.get('threshold')))}",
            Text(str(rule.get("detail") or rule.get("description") or "")),
        )
    return table


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None if value is None else math.nan
    return float(value)


def _summary_line(outcome: GateOutcome) -> Text:
    evaluation = outcome.evaluation
    failed = len(evaluation.record.failed_rules)
    total = len(evaluation.record.rules)
    if evaluation.passed:
        head = Text(f"PASS {PASS_GLYPH}", style="bold green")
        tail = f" all {total} rules passed"
    else:
        head = Text(f"FAIL {FAIL_GLYPH}", style="bold red")
        tail = f" {failed} of {total} rules failed"
    if outcome.version is not None:
        aliases = " and ".join(outcome.aliases) if outcome.aliases else "no alias"
        verb = "already registered as" if outcome.already_registered else "registered as"
        tail += f"; {verb} {outcome.version.version} ({aliases})"
        if outcome.overridden:
            tail += f" by override: {outcome.version.override_reason}"
    elif outcome.record_key is None:
        tail += "; dry run: nothing registered"
    elif not evaluation.passed:
        tail += "; not registered (`--override --reason TEXT` registers it anyway)"
    return Text.assemble(head, tail)


# --- gate -----------------------------------------------------------------------------------------


def gate_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.gating import evaluate_job, gate, thresholds
    from arsl_tui.ops.registry import ModelRegistry, json_safe

    if namespace.override and not (namespace.reason and namespace.reason.strip()):
        raise CommandFailed("--override needs --reason TEXT (the reason goes into the promotion log)", EXIT_USAGE)
    if namespace.reason is not None and not namespace.override:
        raise CommandFailed("--reason is only used with --override", EXIT_USAGE)
    settings = context.settings
    if not namespace.dry_run:
        context.require_writable("record a gate evaluation and register a model version")
    platform = backend_for(settings).training_platform()
    registry = ModelRegistry.from_settings(settings)
    override_reason = namespace.reason.strip() if namespace.override else None
    if override_reason is not None and not namespace.dry_run and not namespace.yes and sys.stdin.isatty():
        # Ask only when the override would take effect: evaluate first.
        evaluation = evaluate_job(platform, registry, namespace.job, thresholds(settings))
        if not evaluation.passed:
            confirm(
                context,
                f"Register job {namespace.job} although it failed the gate?",
                False,
                "cancelled; nothing was registered",
            )
    outcome = gate(
        settings, namespace.job, override_reason, dry_run=namespace.dry_run, platform=platform, registry=registry
    )
    if context.json_output:
        context.emit_json(json_safe(outcome.to_json()))
    else:
        evaluation = outcome.evaluation
        champion = evaluation.record.champion_version
        context.console.print(
            f"gate for job {namespace.job} ({evaluation.job.phase.value}); "
            f"compared with {'champion ' + champion if champion else 'no champion (none yet)'}",
            markup=False,
            soft_wrap=True,
        )
        context.console.print(rule_table(dataclasses.asdict(rule) for rule in evaluation.record.rules))
        context.console.print(_summary_line(outcome), soft_wrap=True)
    if outcome.evaluation.passed or outcome.version is not None:
        return EXIT_OK
    return EXIT_FAILED


# --- models ---------------------------------------------------------------------------------------


def _resolve(state: RegistryState, name: str) -> str:
    from arsl_tui.domain.registry import ALIASES

    if name in ALIASES:
        version = state.aliases.get(name)
        if version is None:
            raise CommandFailed(f"no version is {name} yet", EXIT_USAGE)
        return version
    return name


def _figure(record: ModelVersion, name: str) -> str:
    value = record.metrics.get(name)
    return _value(float(value)) if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def list_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.registry import ModelRegistry, version_json

    registry = ModelRegistry.from_settings(context.settings)
    state = registry.state()
    versions = registry.list()
    if context.json_output:
        context.emit_json(
            {"versions": [version_json(record, state) for record in versions], "aliases": dict(state.aliases)}
        )
        return EXIT_OK
    if not versions:
        context.console.print("no model versions yet (`arsl gate JOB` registers a job that passes)")
        return EXIT_OK
    context.console.print(versions_table(versions, state))
    return EXIT_OK


def versions_table(versions: Iterable[ModelVersion], state: RegistryState) -> Table:
    """One row a version. Ids and figures are never broken; the aliases and the time wrap at a space when
    the terminal is narrow. Who registered a version (the OS user, the same as in `models log`) is in
    `models show`: the job tells versions apart, the user mostly does not."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("version", "aliases", "gate", "test acc", "job", "registered (UTC)"):
        table.add_column(
            column,
            no_wrap=column not in ("aliases", "registered (UTC)"),
            justify="right" if column == "test acc" else "left",
        )
    for record in versions:
        gate_cell = _glyph(record.gate_verdict)
        if record.override_reason is not None:
            gate_cell.append(" override", style="yellow")
        table.add_row(
            record.version,
            ", ".join(state.alias_of(record.version)) or "—",
            gate_cell,
            _figure(record, "test_acc"),
            record.lineage.job_id or "—",
            record.created_at[:16].replace("T", " "),
        )
    return table


def show_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.registry import ModelRegistry, version_json

    registry = ModelRegistry.from_settings(context.settings)
    state = registry.state()
    record = registry.get(_resolve(state, namespace.version))
    if context.json_output:
        context.emit_json(version_json(record, state))
        return EXIT_OK
    lineage = record.lineage
    facts = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    facts.add_column(style="bold")
    facts.add_column()
    rows = [
        ("version", record.version),
        ("aliases", ", ".join(state.alias_of(record.version)) or "—"),
        ("created", f"{record.created_at} by {record.created_by}"),
        (
            "gate",
            record.gate_verdict
            + (f" (override: {record.override_reason})" if record.override_reason is not None else ""),
        ),
        ("test accuracy", _figure(record, "test_acc")),
        ("test loss", _figure(record, "test_loss")),
        ("job", lineage.job_id),
        ("data set", lineage.manifest_id or "—"),
        ("trainer code", lineage.trainer_code_sha256[:16] or "—"),
        ("package", lineage.package_id[:16]),
        ("source", lineage.source),
        ("files", f"{len(record.package)} ({sum(f.size for f in record.package)} bytes)"),
    ]
    for name, value in rows:
        facts.add_row(name, Text(value))
    context.console.print(facts)
    rules = [rule for rule in record.gate.get("rules", []) if isinstance(rule, Mapping)]
    if rules:
        context.console.print(rule_table(rules))
    return EXIT_OK


def log_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.registry import ModelRegistry

    entries = ModelRegistry.from_settings(context.settings).log()
    if context.json_output:
        context.emit_json({"log": [entry.to_json() for entry in entries]})
        return EXIT_OK
    if not entries:
        context.console.print("the promotion log is empty")
        return EXIT_OK
    table = Table(show_edge=False, pad_edge=False)
    for column in ("#", "time", "user", "what", "reason"):
        table.add_column(column)
    for entry in entries:
        table.add_row(str(entry.seq), entry.time, entry.user, entry.describe(), Text(entry.reason))
    context.console.print(table)
    return EXIT_OK
