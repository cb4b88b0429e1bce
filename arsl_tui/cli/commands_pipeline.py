"""`arsl pipeline run`: the whole workflow in one command, one line per phase (or `--json` events)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from arsl_tui.cli.commands_data import MAX_PER_CLASS, MAX_SEED
from arsl_tui.cli.common import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandContext,
    CommandFailed,
    whole_number,
)

if TYPE_CHECKING:
    from arsl_tui.domain.events import Event

_MARKS = {"done": ("✓", "green"), "skipped": ("↷", "cyan"), "not needed": ("·", "dim"), "failed": ("✗", "red")}


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    from arsl_tui.ops.pipeline import DEMO_PER_CLASS

    pipeline = subcommands.add_parser("pipeline", parents=[common], help="the whole workflow in one command")
    actions = pipeline.add_subparsers(dest="pipeline_command", metavar="ACTION")
    run = actions.add_parser("run", parents=[common], help="upload → train → gate → canary → promote → alarms")
    run.add_argument("dataset", nargs="?", metavar="DIR", help="the data set folder (not with --demo)")
    run.add_argument("--demo", action="store_true",
                     help="generate a synthetic data set under $ARSL_HOME/demo and size settings for 2 CPU cores")
    run.add_argument("--per-class", type=whole_number(1, MAX_PER_CLASS), default=DEMO_PER_CLASS, metavar="N",
                     help=f"demo images per class (default {DEMO_PER_CLASS})")
    run.add_argument("--seed", type=whole_number(0, MAX_SEED - 1), default=1, metavar="S",
                     help="training seed of a first version (the challenger's is S + 1)")
    run.add_argument("--broken-challenger", action="store_true",
                     help="release a challenger with random weights, to see the automatic rollback")
    run.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    run.set_defaults(handler=run_command)


def run_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.pipeline import PipelineError, PipelineRequest, busy_message, demo_settings, run_pipeline
    from arsl_tui.ops.pipeline_log import live_holder

    if namespace.demo and namespace.dataset:
        raise CommandFailed("give a data set folder or --demo, not both", EXIT_USAGE)
    if not namespace.demo and not namespace.dataset:
        raise CommandFailed("name a data set folder, or pass --demo to generate one", EXIT_USAGE)
    context.require_writable("run the pipeline")
    settings = context.settings
    holder = live_holder(settings.home_dir)
    if holder is not None:  # said before any question; the lock `run_pipeline` takes is what really guards
        raise CommandFailed(busy_message(settings.home_dir, holder), EXIT_FAILED)
    changed: dict[str, Any] = {}
    if namespace.demo:
        settings, changed = demo_settings(settings)
        if changed and not context.json_output:
            context.console.print("demo settings (values you did not configure): " +
                                  ", ".join(f"{name} = {_show(value)}" for name, value in changed.items()),
                                  soft_wrap=True)
    _confirm(context, f"Run the whole pipeline on the {settings.backend} backend (home {settings.home_dir})?",
             namespace.yes)
    request = PipelineRequest(dataset=Path(namespace.dataset) if namespace.dataset else None, demo=namespace.demo,
                              broken_challenger=namespace.broken_challenger, per_class=namespace.per_class,
                              seed=namespace.seed)
    try:
        outcome = run_pipeline(settings, request, on_event=lambda event: _show_event(context, event),
                               changed=changed)
    except PipelineError as error:
        raise CommandFailed(str(error), EXIT_FAILED) from None
    except _usage_errors() as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None
    except _backend_errors() as error:
        raise CommandFailed(f"{type(error).__name__}: {error}", EXIT_BACKEND) from None
    if context.json_output:
        context.emit_json(outcome.to_json())
    return EXIT_OK if outcome.promoted else EXIT_FAILED


def _usage_errors() -> tuple[type[Exception], ...]:
    from arsl_tui.domain.jobs import JobSpecError
    from arsl_tui.ops.dataset import DatasetError
    from arsl_tui.ops.synth import SynthError
    from arsl_tui.ops.upload import UploadRefused

    return (JobSpecError, DatasetError, SynthError, UploadRefused)


def _backend_errors() -> tuple[type[Exception], ...]:
    from arsl_tui.domain.canary import CanaryError
    from arsl_tui.domain.jobs import TrainingError
    from arsl_tui.domain.registry import RegistryError
    from arsl_tui.ops.gating import GateError
    from arsl_tui.providers.local.serving_control import ServingError

    return (TrainingError, RegistryError, GateError, ServingError, CanaryError, OSError)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _show_event(context: CommandContext, event: Event) -> None:
    from arsl_tui.domain.pipeline import PipelineEnded, PipelinePhase, PipelineStarted
    from arsl_tui.ops.pipeline import PipelineProgress
    from arsl_tui.ops.pipeline_log import event_payload

    if context.json_output:
        context.emit_json(event_payload(event))  # the same dict the run's event file holds
        return
    console = context.console
    if isinstance(event, PipelineStarted):
        resumed = f"; resuming phases done in {event.resumed_from}" if event.resumed_from else ""
        console.print(f"pipeline {event.run_id}: data {event.dataset}, code {event.code}{resumed}", soft_wrap=True)
    elif isinstance(event, PipelinePhase) and not event.state:
        if event.detail:
            console.print(Text.assemble(("  … ", "dim"), f"{event.phase}: {event.detail}"), soft_wrap=True)
    elif isinstance(event, PipelinePhase):
        mark, style = _MARKS.get(event.state, ("?", ""))
        took = f" ({event.elapsed_s:.0f} s)" if event.state == "done" else ""
        console.print(Text.assemble((f"{mark} ", style), (f"{event.phase:<9}", "bold"), f" {event.state}: ",
                                    event.detail, took), soft_wrap=True)
    elif isinstance(event, PipelineProgress):
        console.print(Text.assemble(("  … ", "dim"), f"{event.phase}: {event.detail}"), soft_wrap=True)
    elif isinstance(event, PipelineEnded):
        style = "bold green" if event.outcome == "promoted" else "bold red"
        console.print(Text.assemble((f"{event.outcome.upper()} ", style),
                                    f"{event.version or ''} in {event.elapsed_s:.0f} s — {event.detail}"),
                      soft_wrap=True)


def _confirm(context: CommandContext, question: str, assume_yes: bool) -> None:
    if assume_yes or not sys.stdin.isatty():
        return
    answer = context.err_console.input(f"{question} [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise CommandFailed("cancelled; nothing was changed", EXIT_FAILED)
