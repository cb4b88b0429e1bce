"""`arsl pipeline run|status|watch|cancel`: the whole workflow in one command, and the run from any shell.

    arsl pipeline run DIR|--demo   every phase in order, one line each (`--json`: the events)
    arsl pipeline status           the latest run (the live one if any): its state, phase by phase
    arsl pipeline watch            follow the run's event file until it ends; Ctrl-C stops watching only
    arsl pipeline cancel           SIGINT to the run's process group, as the console's X does: the run
                                   stops its training job and records `cancelled`; run it again to resume

Exit codes: run and watch 0 promoted, 1 any other end (rolled back, gate failed, failed, cancelled,
interrupted), 2 usage (no run to watch), 130 Ctrl-C (watch: the run goes on); status 0; cancel 0 once
the run stopped, 1 nothing to cancel or still running `CANCEL_PATIENCE_S` after SIGINT, 2 read-only.
`--json`: status → the run (`run_id`, `state`, `outcome`, `current_phase`, `phases`, `elapsed_s`,
`events_file`, …); watch → every event of the run as its file holds it, then `{"event": "PipelineStatus",
…}`; cancel → `signalled`, `pipeline`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from arsl_tui.backends import backend_for
from arsl_tui.cli.commands_data import MAX_PER_CLASS, MAX_SEED
from arsl_tui.cli.common import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandContext,
    CommandFailed,
    confirm,
    whole_number,
)
from arsl_tui.domain.pipeline_run import CANCEL_COMMAND

if TYPE_CHECKING:
    from arsl_tui.domain.events import Event
    from arsl_tui.domain.pipeline_run import PipelineView

_MARKS = {"done": ("✓", "green"), "skipped": ("↷", "cyan"), "not needed": ("·", "dim"), "failed": ("✗", "red")}


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    from arsl_tui.ops.pipeline import DEMO_PER_CLASS

    pipeline = subcommands.add_parser(
        "pipeline", parents=[common], help="the whole workflow in one command; follow or cancel a run"
    )
    actions = pipeline.add_subparsers(dest="pipeline_command", metavar="ACTION")
    run = actions.add_parser("run", parents=[common], help="upload → train → gate → canary → promote → alarms")
    run.add_argument("dataset", nargs="?", metavar="DIR", help="the data set folder (not with --demo)")
    run.add_argument(
        "--demo",
        action="store_true",
        help="generate a synthetic data set under $ARSL_HOME/demo and size settings for 2 CPU cores",
    )
    run.add_argument(
        "--per-class",
        type=whole_number(1, MAX_PER_CLASS),
        default=DEMO_PER_CLASS,
        metavar="N",
        help=f"demo images per class (default {DEMO_PER_CLASS})",
    )
    run.add_argument(
        "--seed",
        type=whole_number(0, MAX_SEED - 1),
        default=1,
        metavar="S",
        help="training seed of a first version (the challenger's is S + 1)",
    )
    run.add_argument(
        "--broken-challenger",
        action="store_true",
        help="release a challenger with random weights, to see the automatic rollback",
    )
    run.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    run.set_defaults(handler=run_command)
    status = actions.add_parser("status", parents=[common], help="the latest run: its state, phase by phase")
    status.set_defaults(handler=status_command)
    watch = actions.add_parser(
        "watch",
        parents=[common],
        help="follow the run until it ends (exit 0 promoted, 1 otherwise); Ctrl-C stops watching only",
    )
    watch.set_defaults(handler=watch_command)
    cancel = actions.add_parser(
        "cancel", parents=[common], help="stop the running pipeline (SIGINT to its process group, as X in the console)"
    )
    cancel.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    cancel.set_defaults(handler=cancel_command)


def _hear_cancel() -> None:
    """Make SIGINT interrupt the run: `arsl pipeline cancel` (and the console's cancel key) sends it, and a run
    started with SIGINT ignored (`nohup`, `cmd &` in a script) would otherwise never stop."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
            context.console.print(
                "demo settings (values you did not configure): "
                + ", ".join(f"{name} = {_show(value)}" for name, value in changed.items()),
                soft_wrap=True,
            )
    confirm(
        context,
        f"Run the whole pipeline on the {backend_for(settings).name} backend (home {settings.home_dir})?",
        namespace.yes,
    )
    request = PipelineRequest(
        dataset=Path(namespace.dataset) if namespace.dataset else None,
        demo=namespace.demo,
        broken_challenger=namespace.broken_challenger,
        per_class=namespace.per_class,
        seed=namespace.seed,
    )
    _hear_cancel()
    try:
        outcome = run_pipeline(settings, request, on_event=lambda event: _show_event(context, event), changed=changed)
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
    from arsl_tui.ops.serving import ServingError

    return (TrainingError, RegistryError, GateError, ServingError, CanaryError, OSError)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _show_event(context: CommandContext, event: Event) -> None:
    from arsl_tui.ops.pipeline_log import event_payload

    payload = event_payload(event)  # the same dict the run's event file holds
    if context.json_output:
        context.emit_json(payload)
        return
    _show_payload(context, payload)


def _show_payload(context: CommandContext, payload: Mapping[str, Any]) -> None:
    """One event as `arsl pipeline run` prints it, from its dict (as `--json` prints it and its file holds it)."""
    console = context.console
    kind, phase, detail = payload.get("event"), str(payload.get("phase", "")), str(payload.get("detail", ""))
    if kind == "PipelineStarted":
        resumed = f"; resuming phases done in {payload.get('resumed_from')}" if payload.get("resumed_from") else ""
        console.print(
            f"pipeline {payload.get('run_id')}: data {payload.get('dataset')}, code {payload.get('code')}{resumed}",
            soft_wrap=True,
            markup=False,
        )
    elif kind == "PipelinePhase" and not payload.get("state"):
        if detail:
            console.print(Text.assemble(("  … ", "dim"), f"{phase}: {detail}"), soft_wrap=True)
    elif kind == "PipelinePhase":
        state = str(payload.get("state"))
        mark, style = _MARKS.get(state, ("?", ""))
        took = f" ({_seconds(payload.get('elapsed_s'))} s)" if state == "done" else ""
        console.print(
            Text.assemble((f"{mark} ", style), (f"{phase:<9}", "bold"), f" {state}: ", detail, took), soft_wrap=True
        )
    elif kind == "PipelineProgress":
        console.print(Text.assemble(("  … ", "dim"), f"{phase}: {detail}"), soft_wrap=True)
    elif kind == "PipelineEnded":
        outcome = str(payload.get("outcome", ""))
        style = "bold green" if outcome == "promoted" else "bold red"
        console.print(
            Text.assemble(
                (f"{outcome.upper()} ", style),
                f"{payload.get('version') or ''} in {_seconds(payload.get('elapsed_s'))} s — {detail}",
            ),
            soft_wrap=True,
        )


def _seconds(value: Any) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) and not isinstance(value, bool) else "?"


# --- status, watch, cancel ------------------------------------------------------------------------


def _phase_table(view: PipelineView) -> Table:
    from arsl_tui.domain.pipeline_run import PHASE_GLYPHS

    table = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    for _ in range(4):
        table.add_column()
    styles = {
        "done": "green",
        "skipped": "cyan",
        "running": "bold cyan",
        "failed": "bold red",
        "stopped": "bold red",
        "pending": "dim",
        "not needed": "dim",
    }
    for phase in view.phases:
        style = styles.get(phase.state, "")
        detail = view.progress if phase.state == "running" and view.progress else phase.detail
        table.add_row(
            Text(f"  {PHASE_GLYPHS.get(phase.state, '?')}", style=style),
            Text(phase.name, style="bold"),
            Text(phase.state, style=style),
            Text(detail),
        )
    return table


def _show_status(context: CommandContext, view: PipelineView, home: Path) -> None:
    """The run in a few lines: what it is doing (or how it ended), its process and file, every phase."""
    from arsl_tui.domain.pipeline_run import OUTCOME_GLYPHS, describe, next_command
    from arsl_tui.ops.pipeline_log import events_path

    console = context.console
    if not view.exists:
        console.print(
            f"no pipeline run in {home} yet (`arsl pipeline run --demo` runs the demo)", markup=False, soft_wrap=True
        )
        return
    glyph = "►" if view.alive else OUTCOME_GLYPHS.get(view.outcome, "?")
    style = "bold" if view.alive else ("bold green" if view.outcome == "promoted" else "bold red")
    head = Text.assemble(
        (f"{glyph} pipeline {view.run_id}", style), " (demo)" if view.demo else "", ": ", describe(view)
    )
    if view.ended and view.outcome_detail:
        head.append(f" — {view.outcome_detail}")
    console.print(head, soft_wrap=True)
    if view.alive:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(view.started_at)) if view.started_at else "?"
        where = f"process {view.pid} (group {view.pgid or view.pid}), started {started}"
    else:
        where = f"ended {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(view.last_at))}" if view.last_at else ""
    console.print(
        Text.assemble(
            ("  ", ""), (f"{where} · " if where else "", "dim"), ("events ", "dim"), str(events_path(home, view.run_id))
        ),
        soft_wrap=True,
    )
    console.print(_phase_table(view))
    hint = next_command(view)
    if hint:
        also = f" (or `{CANCEL_COMMAND}` to stop it)" if view.alive else ""
        console.print(Text.assemble(("next: ", "bold"), hint, also), soft_wrap=True)


def status_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.pipeline_control import status_json
    from arsl_tui.ops.pipeline_log import PipelineLogReader

    home = context.settings.home_dir
    view = PipelineLogReader(home).read()
    if context.json_output:
        context.emit_json(status_json(view, home))
    else:
        _show_status(context, view, home)
    return EXIT_OK


def watch_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.domain.pipeline_run import WATCH_COMMAND, exit_status
    from arsl_tui.ops.pipeline_control import follow, status_json
    from arsl_tui.ops.pipeline_log import PipelineLogReader

    home = context.settings.home_dir
    reader = PipelineLogReader(home)
    first = [True]

    def shown(view: PipelineView, events: Sequence[Mapping[str, Any]]) -> None:
        if context.json_output:
            for payload in events:
                context.emit_json(payload)
        elif first[0] and view.exists:
            _show_status(context, view, home)  # the run so far, then each new event as it comes
        else:
            for payload in events:
                _show_payload(context, payload)
        first[0] = False

    try:
        view = follow(reader, shown)
    except KeyboardInterrupt:
        latest = reader.read() if reader.run_id else None
        goes_on = (
            (f"; pipeline run {latest.run_id} goes on (process {latest.pid}): `{WATCH_COMMAND}` follows it again")
            if latest is not None and latest.alive
            else ""
        )
        context.err_console.print(f"stopped watching{goes_on}", markup=False, soft_wrap=True)
        return EXIT_INTERRUPTED
    if not view.exists:
        raise CommandFailed(
            f"no pipeline run in {home} to watch (`arsl pipeline run --demo` runs the demo)", EXIT_USAGE
        )
    if context.json_output:
        context.emit_json({"event": "PipelineStatus", **status_json(view, home)})
    elif not first[0] and view.outcome == "interrupted":  # no end event in the file: say it here
        context.console.print(Text.assemble(("INTERRUPTED ", "bold red"), view.outcome_detail), soft_wrap=True)
    return exit_status(view)


def cancel_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    import signal

    from arsl_tui.domain.pipeline_run import (
        CANCEL_PATIENCE_S,
        cancel_effects,
        cancel_target,
        end_line,
        outcome_words,
        overdue_line,
    )
    from arsl_tui.ops.pipeline_control import follow, signal_run, status_json
    from arsl_tui.ops.pipeline_log import PipelineLogReader

    context.require_writable("cancel the pipeline")
    home = context.settings.home_dir
    reader = PipelineLogReader(home)
    view = reader.read()
    target = cancel_target(view)
    if target is None:
        latest = f"; the latest, {view.run_id}, {outcome_words(view)}" if view.exists else ""
        raise CommandFailed(f"no pipeline run is going on in {home}{latest}", EXIT_FAILED)
    reader.run_id = view.run_id
    if not namespace.yes and sys.stdin.isatty():  # what the question is about
        for line in cancel_effects(target):
            context.err_console.print(line, markup=False, soft_wrap=True)
    confirm(context, f"Cancel {target.name}?", namespace.yes, refusal="not cancelled; the run goes on")
    try:
        where = signal_run(target.pid, target.pgid, signal.SIGINT)
    except ProcessLookupError:
        where = ""  # it ended on its own meanwhile
    except PermissionError:
        raise CommandFailed(f"not allowed to signal process {target.pid} (another user's run?)", EXIT_FAILED) from None
    if where:
        context.console.print(
            f"SIGINT sent to {where} to cancel {target.name}; waiting up to {CANCEL_PATIENCE_S:.0f} s for it to stop …",
            markup=False,
            soft_wrap=True,
        )
    view = follow(reader, lambda _view, _events: None, timeout_s=CANCEL_PATIENCE_S)
    if view.alive:
        raise CommandFailed(overdue_line(view, f"`{CANCEL_COMMAND}` sends it again"), EXIT_FAILED)
    if context.json_output:
        context.emit_json({"signalled": where or None, "pipeline": status_json(view, home)})
    else:
        context.console.print(end_line(view), markup=False, soft_wrap=True)
    return EXIT_OK
