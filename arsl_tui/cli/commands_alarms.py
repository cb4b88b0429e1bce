"""`arsl alarms setup|list|history|ack|silence|watch` and `arsl status`.

    arsl alarms setup                  create the [alarms] rules that are missing, update those that differ
                                       (matched by name: running it twice creates nothing twice)
    arsl alarms list [--state S]       every rule: state, value, condition, since, acknowledged / silenced
    arsl alarms history [RULE]         state changes and operator actions (--since 2h, --limit N)
    arsl alarms ack RULE               acknowledge a rule's alarm (logged with who and when)
    arsl alarms silence RULE --for D   mute its notifications for D (30m, 2h, 1d; 0 ends it); logged
    arsl alarms watch [--once]         run the monitor's rounds on a schedule (the local backend samples
                                       the gateway and judges the rules; huawei pushes the derived error rate)
    arsl status                        the latest pipeline run, then every phase: data set, last job,
                                       champion/challenger, service, canary, alarms — and what to do next

`--json` output: setup → `created`, `updated`, `unchanged`, `skipped`, `notes`; list → `alarms`
(`name`, `state`, `value`, `condition`, `since`, `acknowledged`, `silenced_until`, …); history →
`history` (`rule`, `time`, `kind`, `old`, `new`, `value`, `detail`, `user`); status → `pipeline`, `phases`,
`next`.
Exit codes: 0 ok; 1 refused (acknowledging a rule not in alarm, cancelled); 2 usage (unknown rule, bad
duration, missing setting, read-only); 3 backend error (Cloud Eye, the state file).
"""

from __future__ import annotations

import argparse
import functools
import threading
import time
from collections.abc import Sequence
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
    number,
    whole_number,
)

if TYPE_CHECKING:
    from arsl_tui.domain.alarms import HistoryEntry, RuleView
    from arsl_tui.ops.monitoring import RoundResult
    from arsl_tui.ops.status import StatusReport

STATE_GLYPHS = {"ok": ("●", "green"), "alarm": ("▲", "bold red"), "insufficient_data": ("○", "yellow")}
STATE_LABELS = {"ok": "ok", "alarm": "ALARM", "insufficient_data": "no data"}
PHASE_GLYPHS = {
    "done": ("✓", "green"),
    "running": ("◐", "cyan"),
    "attention": ("!", "bold red"),
    "none": ("·", "dim"),
    "unknown": ("?", "yellow"),
}
STATES = ("ok", "alarm", "insufficient_data")


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    alarms = subcommands.add_parser(
        "alarms",
        parents=[common],
        help="alarm rules, their states and history",
        description="Alarm rules with Cloud Eye semantics, on the local gateway or on "
        "Cloud Eye ([alarms] in config.toml).",
    )
    actions = alarms.add_subparsers(dest="alarms_command", metavar="ACTION")
    setup = actions.add_parser("setup", parents=[common], help="create or update the configured rules (idempotent)")
    setup.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    setup.set_defaults(handler=_errors(setup_command))
    listing = actions.add_parser("list", parents=[common], help="every rule with its state and last value")
    listing.add_argument("--state", choices=STATES, help="only rules in this state")
    listing.set_defaults(handler=_errors(list_command))
    history = actions.add_parser("history", parents=[common], help="state changes and acknowledgements")
    history.add_argument("rule", nargs="?", metavar="RULE", help="only this rule")
    history.add_argument("--since", metavar="DURATION", help="only the last DURATION (e.g. 2h, 1d)")
    history.add_argument(
        "--limit", type=whole_number(1, 100_000), default=50, metavar="N", help="at most N lines (default 50)"
    )
    history.set_defaults(handler=_errors(history_command))
    ack = actions.add_parser("ack", parents=[common], help="acknowledge a rule's alarm (logged)")
    ack.add_argument("rule", metavar="RULE")
    ack.add_argument("--note", default="", metavar="TEXT", help="why (kept in the history)")
    ack.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    ack.set_defaults(handler=_errors(ack_command))
    silence = actions.add_parser("silence", parents=[common], help="mute a rule's notifications for a time (logged)")
    silence.add_argument("rule", metavar="RULE")
    silence.add_argument(
        "--for", dest="duration", required=True, metavar="DURATION", help="how long: 30m, 2h, 1d (0 ends a silence)"
    )
    silence.add_argument("--note", default="", metavar="TEXT", help="why (kept in the history)")
    silence.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    silence.set_defaults(handler=_errors(silence_command))
    watch = actions.add_parser("watch", parents=[common], help="run the monitor's rounds on a schedule")
    watch.add_argument("--once", action="store_true", help="one round, then exit")
    watch.add_argument(
        "--interval",
        type=number(0, 86_400, above=True),
        metavar="SECONDS",
        help="seconds between rounds (default: [alarms] evaluation_period_s)",
    )
    watch.set_defaults(handler=_errors(watch_command))

    status = subcommands.add_parser("status", parents=[common], help="every phase at a glance, and what to do next")
    status.set_defaults(handler=_errors(status_command))


def _errors(handler: Handler) -> Handler:
    """Monitor errors → a one-line message and the contract's exit code."""

    @functools.wraps(handler)
    def run(context: CommandContext, namespace: argparse.Namespace) -> int:
        from arsl_tui.domain.alarms import (
            AlarmActionRefused,
            AlarmRuleError,
            MonitorError,
            MonitorUnavailable,
            RuleNotFound,
        )

        try:
            return handler(context, namespace)
        except AlarmActionRefused as error:
            raise CommandFailed(str(error), EXIT_FAILED) from None
        except (RuleNotFound, MonitorUnavailable, AlarmRuleError) as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None
        except MonitorError as error:
            raise CommandFailed(str(error), EXIT_BACKEND) from None

    return run


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _short_when(seconds: float | None) -> str:
    """The time of day for today, else the date too: table cells stay narrow."""
    if seconds is None:
        return "—"
    same_day = time.localtime(seconds)[:3] == time.localtime()[:3]
    return time.strftime("%H:%M:%S" if same_day else "%m-%d %H:%M", time.localtime(seconds))


def _value(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _state(state: str) -> Text:
    glyph, style = STATE_GLYPHS.get(state, ("?", "yellow"))
    return Text(f"{glyph} {STATE_LABELS.get(state, state)}", style=style)


# --- alarms ---------------------------------------------------------------------------------------


def setup_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops import monitoring

    settings = context.settings
    context.require_writable("set up alarm rules")
    backend = backend_for(settings)
    confirm(context, f"Create or update the [alarms] rules in {backend.monitor_label}?", namespace.yes)
    report = monitoring.setup(settings)
    if context.json_output:
        context.emit_json({"backend": backend.name, **report.to_json()})
        return EXIT_OK
    console = context.console
    for label, names, style in (
        ("created", report.created, "green"),
        ("updated", report.updated, "cyan"),
        ("unchanged", report.unchanged, "dim"),
    ):
        for name in names:
            console.print(Text.assemble((f"{label:9} ", style), name))
    for skipped in report.skipped:
        console.print(Text.assemble(("skipped   ", "yellow"), skipped.name, f": {skipped.reason}"))
    for note in report.notes:
        console.print(Text.assemble(("note      ", "yellow"), note))
    return EXIT_OK


def rules_table(views: Sequence[RuleView], now: float) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None)
    for name, justify, wrap in (
        ("state", "left", False),
        ("rule", "left", False),
        ("value", "right", False),
        ("condition", "left", True),
        ("since", "left", False),
        ("marks", "left", True),
    ):
        table.add_column(name, justify=justify, no_wrap=not wrap)  # type: ignore[arg-type]
    for view in views:
        marks = []
        if view.acknowledged_at is not None:
            marks.append(f"acked by {view.acknowledged_by or '?'}")
        if view.silenced(now):
            marks.append(f"silenced until {_short_when(view.silenced_until)}")
        if not view.enabled:
            marks.append("disabled")
        table.add_row(
            _state(view.state.value),
            view.rule.name,
            _value(view.value),
            view.rule.condition,
            _short_when(view.since),
            ", ".join(marks),
        )
    return table


def list_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops import monitoring

    settings = context.settings
    views = monitoring.list_rules(settings)
    if namespace.state:
        views = [view for view in views if view.state.value == namespace.state]
    now = time.time()
    if context.json_output:
        context.emit_json({"backend": backend_for(settings).name, "alarms": [view.to_json(now) for view in views]})
        return EXIT_OK
    if not views:
        context.console.print("no alarm rules" + ("" if namespace.state else "; `arsl alarms setup` creates them"))
        return EXIT_OK
    context.console.print(rules_table(views, now))
    return EXIT_OK


def history_table(entries: Sequence[HistoryEntry]) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None)
    for name in ("time", "rule", "change", "value", "detail"):
        table.add_column(name, justify="right" if name == "value" else "left", no_wrap=name != "detail")
    for entry in entries:
        if entry.kind.value == "transition":
            change = Text.assemble(
                _state(entry.old.value if entry.old else "?"), " → ", _state(entry.new.value if entry.new else "?")
            )
        else:
            change = Text(f"{entry.kind.value} by {entry.user or '?'}", style="cyan")
        table.add_row(_short_when(entry.time), entry.rule, change, _value(entry.value), Text(entry.detail))
    return table


def history_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.domain.alarms import parse_duration
    from arsl_tui.ops import monitoring

    if namespace.limit < 1:
        raise CommandFailed(f"--limit {namespace.limit}: expected at least 1", EXIT_USAGE)
    since = None
    if namespace.since is not None:  # `--since ""` is a mistake, not "all of it"
        try:
            since = time.time() - parse_duration(namespace.since)
        except ValueError as error:
            raise CommandFailed(f"--since: {error}", EXIT_USAGE) from None
    entries = monitoring.history(context.settings, rule=namespace.rule, since=since, limit=namespace.limit)
    if not entries and namespace.rule is not None:
        # A misspelt rule would read as "no history"; a rule removed since keeps its history, so it only
        # gets here when there is none.
        known = [view.rule.name for view in monitoring.list_rules(context.settings)]
        if namespace.rule not in known:
            raise CommandFailed(
                f"no alarm rule named {namespace.rule!r} and no history for it "
                f"(rules: {', '.join(known) or 'none; run `arsl alarms setup`'})",
                EXIT_USAGE,
            )
    if context.json_output:
        context.emit_json(
            {"backend": backend_for(context.settings).name, "history": [entry.to_json() for entry in entries]}
        )
        return EXIT_OK
    if not entries:
        context.console.print("no alarm history" + (f" for {namespace.rule}" if namespace.rule else ""))
        return EXIT_OK
    context.console.print(history_table(entries))
    return EXIT_OK


def ack_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops import monitoring

    context.require_writable("acknowledge an alarm")
    confirm(context, f"Acknowledge the alarm of {namespace.rule}?", namespace.yes)
    view = monitoring.acknowledge(context.settings, namespace.rule, note=namespace.note)
    if context.json_output:
        context.emit_json(view.to_json(time.time()))
    else:
        context.console.print(
            f"{view.rule.name}: acknowledged by {view.acknowledged_by} at "
            f"{_when(view.acknowledged_at)} (until it leaves alarm)"
        )
    return EXIT_OK


def silence_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.domain.alarms import parse_duration
    from arsl_tui.ops import monitoring

    try:
        seconds = parse_duration(namespace.duration)
    except ValueError as error:
        raise CommandFailed(f"--for: {error}", EXIT_USAGE) from None
    context.require_writable("silence an alarm rule")
    question = (
        f"Silence the notifications of {namespace.rule} for {namespace.duration}?"
        if seconds
        else f"End the silence of {namespace.rule}?"
    )
    confirm(context, question, namespace.yes)
    view = monitoring.silence(context.settings, namespace.rule, seconds, note=namespace.note)
    now = time.time()
    if context.json_output:
        context.emit_json(view.to_json(now))
    elif view.silenced(now):
        context.console.print(
            f"{view.rule.name}: silenced until {_when(view.silenced_until)} (it still changes "
            "state; the history records both)"
        )
    else:
        context.console.print(f"{view.rule.name}: not silenced")
    return EXIT_OK


def _print_round(context: CommandContext, result: RoundResult) -> None:
    if context.json_output:
        context.emit_json(
            {
                "time": result.time,
                "published": list(result.published),
                "events": [
                    {
                        "rule": event.rule,
                        "time": event.time,
                        "state": event.state.value,
                        "old": event.old.value if event.old else None,
                        "notice": event.notice.value if event.notice else None,
                        "value": event.value,
                        "reason": event.reason,
                        "silenced": event.silenced,
                    }
                    for event in result.events
                ],
            }
        )
        return
    for event in result.events:
        muted = " (silenced)" if event.silenced else ""
        context.console.print(
            Text.assemble(f"{_when(event.time)} {event.rule} ", _state(event.state.value), f" {event.reason}{muted}")
        )
    for item in result.published:
        context.console.print(f"{_when(result.time)} pushed {item}")


def watch_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.domain.alarms import MonitorError
    from arsl_tui.ops import monitoring

    settings = context.settings
    if namespace.interval is not None and namespace.interval <= 0:
        raise CommandFailed(f"--interval {namespace.interval}: expected a positive number of seconds", EXIT_USAGE)
    context.require_writable("run alarm rounds (each records samples and rule states)")
    monitor = monitoring.open_monitor(settings)
    try:
        if namespace.once:
            _print_round(context, monitoring.run_round(settings, monitor))
            return EXIT_OK
        stop = threading.Event()

        def report_error(error: MonitorError) -> None:
            context.err_console.print(Text.assemble(("round failed: ", "yellow"), str(error)))

        try:
            monitoring.watch(
                settings,
                stop,
                lambda result: _print_round(context, result),
                monitor=monitor,
                interval_s=namespace.interval,
                on_error=report_error,
            )
        except KeyboardInterrupt:
            stop.set()
        return EXIT_OK
    finally:
        close = getattr(monitor, "close", None)
        if close is not None:
            close()


# --- status ---------------------------------------------------------------------------------------


def status_table(report: StatusReport) -> Table:
    """The pipeline's row first, then each phase; every suggestion is the whole state's (`ops.status.weigh`)."""
    table = Table(show_edge=False, pad_edge=False, box=None)
    for name in ("", "phase", "state", "summary", "next"):
        table.add_column(name, no_wrap=name == "next")
    for item in report.rows:
        glyph, style = PHASE_GLYPHS[item.state.value]
        summary = Text(item.summary + (f" ({item.error})" if item.error else ""))
        table.add_row(
            Text(glyph, style=style), item.phase, Text(item.state.value, style=style), summary, item.next_step
        )
    return table


def status_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.status import collect

    report = collect(context.settings)
    if context.json_output:
        context.emit_json(report.to_json())
        return EXIT_OK
    context.console.print(status_table(report))
    pipeline = report.pipeline.details if report.pipeline is not None else {}
    if pipeline.get("events_file"):
        context.console.print(Text.assemble(("pipeline events: ", "dim"), str(pipeline["events_file"])), soft_wrap=True)
    if report.next_step:
        context.console.print(Text.assemble(("next: ", "bold"), report.next_step), soft_wrap=True)
    return EXIT_OK


__all__ = ["add_parser", "history_table", "rules_table", "status_table"]
