"""`arsl canary status|watch|start|promote|pause|resume|rollback` and `arsl gateway setup`.

    arsl canary status                  the run: phase, step, weights, time left, the judge's last verdicts
    arsl canary watch                   run the controller until the canary is promoted or rolled back:
                                        judge each window, step up, roll back on a failed window
    arsl canary start [VERSION]         release VERSION (default: the challenger) beside the champion
    arsl canary promote [--full]        next step now (--full: all traffic, champion at once)
    arsl canary pause | resume          stop / restart judging (traffic stays where it is)
    arsl canary rollback [--reason T]   champion 100 %, challenger 0 %, at once
    arsl canary shadow status           the shadow step: how this backend mirrors, the window's copies
                                        sent/dropped, agreement with the champion, both latencies
    arsl canary shadow start [VERSION]  start a canary with the shadow step ([canary] shadow aside)
    arsl canary shadow skip [--reason]  leave the shadow step now: the first traffic step starts
    arsl gateway setup                  (huawei) API group, API with APP auth in front of the service,
                                        app + app code, throttling policy, publish; idempotent

Every command that changes something asks first on a terminal, naming the versions and weights,
and takes `--yes`; `--json` prints the status object (`phase`, `champion`, `challenger`, `weights`,
`step`, `time_left_s`, `judgements`, …). Exit codes: 0 ok; 1 the canary is (or ended) rolled back
or failed, or the command is not allowed now; 2 usage / config / read-only; 3 backend error.
"""

from __future__ import annotations

import argparse
import functools
import threading
from collections.abc import Callable
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
    from arsl_tui.domain.canary import CanaryRun, Command
    from arsl_tui.ops.canary import CanaryController, CanaryStatus


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    canary = subcommands.add_parser(
        "canary",
        parents=[common],
        help="release the challenger step by step; promote or roll back",
        description="Canary releases: the challenger serves a growing share of traffic ([canary] steps); at each "
        "window's end the judge compares it with the champion and the controller steps up, holds, or "
        "rolls back automatically.",
    )
    actions = canary.add_subparsers(dest="canary_command", metavar="ACTION")
    status = actions.add_parser("status", parents=[common], help="the current canary (exit 1 if rolled back)")
    status.set_defaults(handler=_errors(status_command))
    watch = actions.add_parser(
        "watch", parents=[common], help="drive the canary until it is promoted (exit 0) or rolled back (exit 1)"
    )
    watch.add_argument("--observe", action="store_true", help="only show progress; take no action")
    watch.set_defaults(handler=_errors(watch_command))
    start = actions.add_parser("start", parents=[common], help="release VERSION beside the champion")
    start.add_argument("version", nargs="?", metavar="VERSION", help="v3, … or challenger (default: the challenger)")
    start.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    start.add_argument(
        "--no-shadow", action="store_true", help="no shadow step: the first traffic step at once ([canary] shadow)"
    )
    start.set_defaults(handler=_errors(start_command))
    shadow = actions.add_parser(
        "shadow",
        parents=[common],
        help="the shadow step: copies of live requests to the challenger before any user sees it",
        description="Step 0 of the canary plan: the champion answers every request; a share of them is also "
        "sent to the challenger after the answer is on its way and compared ([canary] shadow, shadow_share, "
        "shadow_window_s, shadow_min_samples, min_agreement).",
    )
    shadow_actions = shadow.add_subparsers(dest="shadow_command", metavar="ACTION")
    shadow_status = shadow_actions.add_parser("status", parents=[common], help="the shadow window")
    shadow_status.set_defaults(handler=_errors(shadow_status_command))
    shadow_start = shadow_actions.add_parser("start", parents=[common], help="start a canary with the shadow step")
    shadow_start.add_argument("version", nargs="?", metavar="VERSION", help="default: the challenger")
    shadow_start.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    shadow_start.set_defaults(handler=_errors(shadow_start_command))
    skip = shadow_actions.add_parser("skip", parents=[common], help="leave the shadow step: first traffic step now")
    skip.add_argument("--reason", default="", metavar="TEXT", help="why (goes into the promotion log)")
    skip.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    skip.set_defaults(handler=_errors(shadow_skip_command))
    promote = actions.add_parser("promote", parents=[common], help="go to the next step now")
    promote.add_argument("--full", action="store_true", help="skip the remaining steps: promote at once")
    promote.add_argument("--reason", default="", metavar="TEXT", help="why (goes into the promotion log)")
    promote.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    promote.set_defaults(handler=_errors(promote_command))
    for name, text in (("pause", "stop judging; traffic stays where it is"), ("resume", "judge again")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("--reason", default="", metavar="TEXT", help="why (goes into the promotion log)")
        action.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        action.set_defaults(handler=_errors(functools.partial(simple_command, name)))
    rollback = actions.add_parser("rollback", parents=[common], help="champion 100 %%, challenger 0 %%, now")
    rollback.add_argument("--reason", default="", metavar="TEXT", help="why (goes into the promotion log)")
    rollback.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    rollback.set_defaults(handler=_errors(rollback_command))

    # `arsl gateway` belongs to the serving commands (keys); `setup` joins it when it exists.
    gateway = subcommands.choices.get("gateway")
    if gateway is None:
        gateway = subcommands.add_parser("gateway", parents=[common], help="API Gateway")
        gateway_actions = gateway.add_subparsers(dest="gateway_command", metavar="ACTION")
    else:
        gateway_actions = next(action for action in gateway._actions if isinstance(action, argparse._SubParsersAction))
    setup = gateway_actions.add_parser(
        "setup",
        parents=[common],
        help="(huawei) publish the service behind API Gateway with app-code auth",
        description="Create or update, idempotently: an API group, an API with APP authentication backed by the "
        "ModelArts service URL, an app and its app code, a throttling policy ([gateway] limits) bound "
        "to the API, and publish it to the environment; records the published version.",
    )
    setup.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    setup.set_defaults(handler=_errors(gateway_setup_command))


def _errors(handler: Handler) -> Handler:
    """Canary, platform and registry errors → a one-line message and the contract's exit code.

    State file errors are mapped once for every command, by `common.run_command`.
    """

    @functools.wraps(handler)
    def run(context: CommandContext, namespace: argparse.Namespace) -> int:
        from arsl_tui.domain.canary import CanaryError
        from arsl_tui.domain.ports import ServingPlatformError
        from arsl_tui.domain.registry import RegistryError
        from arsl_tui.ops.canary_wiring import GatewaySetupError
        from arsl_tui.state.canary_store import CanaryStateUnavailable, ControllerBusy, LeaseHeld

        try:
            return handler(context, namespace)
        except LeaseHeld as error:
            # Another controller drives the release (it names the holder and since when): not allowed now.
            raise CommandFailed(str(error), EXIT_FAILED) from None
        except (ControllerBusy, CanaryStateUnavailable, GatewaySetupError) as error:
            raise CommandFailed(str(error), EXIT_BACKEND) from None
        except CanaryError as error:
            raise CommandFailed(str(error), EXIT_FAILED) from None
        except (ServingPlatformError, RegistryError) as error:
            raise CommandFailed(str(error), EXIT_BACKEND) from None

    return run


def _controller(context: CommandContext) -> CanaryController:
    from arsl_tui.ops.canary_wiring import open_controller

    return open_controller(context.settings)


def _weights(weights: Any) -> str:
    from arsl_tui.ops.canary import describe_weights

    return describe_weights(dict(weights))


def _exit_for(status: CanaryStatus) -> int:
    return EXIT_FAILED if status.rolled_back else EXIT_OK


# --- output ---------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def print_shadow(context: CommandContext, status: CanaryStatus) -> None:
    """The shadow step: how this backend mirrors, how the step ended, and the window's figures."""
    data = status.shadow_json()
    facts = Table(show_header=False, show_edge=False, pad_edge=False, box=None, title="shadow")
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("how", Text(data["how"]))
    if not data["planned"]:
        facts.add_row("step", Text("none in this run" if status.run is not None else "no canary started"))
    else:
        facts.add_row("plan", Text(f"copies of {data['share']}% for {data['window_s']:g} s windows"))
        facts.add_row("state", Text("running" if data["active"] else (data["result"] or "not started")))
    window = data["window"]
    if window is not None:
        facts.add_row("copies", Text(f"{window['sent']} sent, {window['dropped']} dropped of {window['offered']}"))
        facts.add_row("agreement", Text(f"{_percent(window['agreement'])} of {window['compared']}"))
        facts.add_row("errors", Text(f"{window['errors']} ({_percent(window['error_rate'])})"))
        facts.add_row(
            "latency p50",
            Text(f"champion {_ms(window['champion_p50_ms'])}, challenger {_ms(window['challenger_p50_ms'])}"),
        )
        if window["feedback"]:
            champion = window["champion_correct"] / window["feedback"]
            challenger = window["challenger_correct"] / window["feedback"]
            facts.add_row(
                "accuracy",
                Text(f"champion {_percent(champion)}, challenger {_percent(challenger)} of {window['feedback']}"),
            )
    for verdict in data["verdicts"][-3:]:
        facts.add_row("verdict", Text(f"{verdict['judgement']['outcome']}: {verdict['judgement']['reason']}"))
    context.console.print(facts)


def print_status(context: CommandContext, status: CanaryStatus) -> None:
    from arsl_tui.ops.canary import stats_rows

    run = status.run
    if run is None:
        if not status.state_unavailable:
            context.console.print("no canary has been started (`arsl canary start [VERSION]`)")
        for problem in status.problems:
            context.console.print(Text(f"unavailable: {problem}", style="yellow"), soft_wrap=True)
        return
    facts = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    facts.add_column(style="bold")
    facts.add_column()
    colour = {"promoted": "green", "rolled_back": "red", "failed": "red", "paused": "yellow"}.get(
        run.phase.value, "cyan"
    )
    facts.add_row("canary", Text(f"{run.challenger} vs champion {run.champion}  ({run.run_id})"))
    facts.add_row("phase", Text(run.phase.value, style=f"bold {colour}"))
    steps = "  ".join(
        f"[{step.weight}%]" if index == run.step and run.phase.active else f"{step.weight}%"
        for index, step in enumerate(run.plan.steps)
    )
    if run.plan.shadow is not None:
        shadow = f"shadow {run.plan.shadow.share}%"
        steps = (f"[{shadow}]" if run.phase.value == "shadowing" else shadow) + "  " + steps
    facts.add_row("plan", Text(steps))
    facts.add_row(
        "weights",
        Text(_weights(status.platform.weights) if status.platform else _weights(run.target_weights) + " (target)"),
    )
    left = run.time_left(status.now)
    if left is not None:
        facts.add_row("window ends", Text(f"in {left:.0f} s" + (f" (held {run.holds}×)" if run.holds else "")))
    facts.add_row("why", Text(run.reason))
    if run.alarm:
        facts.add_row("alarm", Text(run.alarm, style="bold red"))
    if run.error:
        facts.add_row("last error", Text(run.error, style="yellow"))
    if status.controller is not None:
        facts.add_row("controller", Text(status.controller_text()))
    for problem in status.problems:
        facts.add_row("unavailable", Text(problem, style="yellow"))
    context.console.print(facts)
    rows = stats_rows(status)
    if any(item is not None for _version, item in rows):
        table = Table(show_edge=False, pad_edge=False)
        for column in ("version", "requests", "error rate", "p50", "p95", "online accuracy"):
            table.add_column(column)
        for version, item in rows:
            if item is None:
                table.add_row(version, "—", "—", "—", "—", "—")
                continue
            table.add_row(
                version,
                str(item.requests),
                _percent(item.error_rate if item.requests else None),
                _ms(item.percentile_ms(50)),
                _ms(item.percentile_ms(95)),
                f"{_percent(item.online_accuracy)} of {item.feedback}",
            )
        context.console.print(table)
    if run.judgements:
        verdicts = Table(show_edge=False, pad_edge=False, title="windows judged")
        for column in ("step", "verdict", "score", "metrics"):
            verdicts.add_column(column)
        for record in run.judgements[-5:]:
            judgement = record["judgement"]
            metrics = ", ".join(f"{metric['name']} {metric['classification']}" for metric in judgement["metrics"])
            score = judgement.get("score")
            verdicts.add_row(
                "shadow" if record.get("phase") == "shadow" else f"{record['weight']}%",
                judgement["outcome"],
                "—" if score is None else f"{score:.0f}",
                Text(metrics),
            )
        context.console.print(verdicts)
    if run.plan.shadow is not None:
        print_shadow(context, status)


# --- commands -------------------------------------------------------------------------------------


def status_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    controller = _controller(context)
    try:
        status = controller.status()
    finally:
        controller.close()
    if context.json_output:
        context.emit_json(status.to_json())
    else:
        print_status(context, status)
    if status.state_unavailable:
        return EXIT_BACKEND  # the release's records (in the bucket) could not be read: not "no canary"
    return _exit_for(status)


def watch_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    drive = not namespace.observe and not context.settings.read_only
    controller = _controller(context)

    def report(status: CanaryStatus) -> None:
        run = status.run
        if context.json_output:
            context.emit_json(status.to_json())
        elif run is not None:
            weights = _weights(status.platform.weights) if status.platform else _weights(run.target_weights)
            left = run.time_left(status.now)
            when = f", window ends in {left:.0f} s" if left is not None else ""
            context.console.print(
                Text.assemble((f"{run.phase.value}", "bold"), f" [{weights}{when}] {run.reason}"), soft_wrap=True
            )
            if run.error:
                context.console.print(Text(f"  retrying: {run.error}", style="yellow"), soft_wrap=True)

    try:
        run = controller.watch(stop=threading.Event(), on_update=report, drive=drive)
        status = controller.status(live=False)
    finally:
        controller.close()
    if run is None:
        if not context.json_output:
            context.console.print("no canary has been started (`arsl canary start [VERSION]`)")
        return EXIT_OK
    if run.alarm and not context.json_output:
        context.console.print(Text(f"ALARM: {run.alarm}", style="bold red"), soft_wrap=True)
    return _exit_for(status)


def start_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    context.require_writable("start a canary")
    controller = _controller(context)
    try:
        aliases = controller.registry.state().aliases
        seen = controller.current()
        version = namespace.version or aliases.get("challenger") or "?"
        version = aliases.get(version, version)
        first = context.settings.canary.steps[0]
        shadow = getattr(namespace, "shadow_forced", None)
        if shadow is None and getattr(namespace, "no_shadow", False):
            shadow = False
        in_shadow = (context.settings.canary.shadow if shadow is None else shadow) and controller.may_shadow
        after = ", after a shadow step (copies only, no client traffic)" if in_shadow else ""
        confirm(
            context,
            f"Release {version} beside champion {aliases.get('champion', '?')} at {first}% "
            f"({', '.join(f'{weight}%' for weight in context.settings.canary.steps)}){after}?",
            namespace.yes,
        )
        controller.start(namespace.version, expect_seq=seen.seq if seen else 0, shadow=shadow)
        status = controller.status()
    finally:
        controller.close()
    return _finish(context, status)


def _finish(context: CommandContext, status: CanaryStatus) -> int:
    if context.json_output:
        context.emit_json(status.to_json())
    else:
        print_status(context, status)
    return EXIT_OK


def _apply(
    context: CommandContext, command: Command, question: Callable[[CanaryRun], str], assume_yes: bool, reason: str = ""
) -> CanaryStatus:
    """Ask (naming versions and weights), then apply `command` to the run that was shown — only to it."""
    controller = _controller(context)
    try:
        run = controller.current()
        if run is None:
            raise CommandFailed("no canary has been started (`arsl canary start [VERSION]`)", EXIT_FAILED)
        confirm(context, question(run), assume_yes)
        controller.command(command, reason=reason, expect_seq=run.seq)
        return controller.status()
    finally:
        controller.close()


def promote_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.domain.canary import Command

    context.require_writable("promote the canary")

    def question(run: CanaryRun) -> str:
        if namespace.full or run.step >= run.plan.last:
            return (
                f"Promote {run.challenger} now: {run.challenger} 100% / {run.champion} 0%, and make "
                f"{run.challenger} the champion?"
            )
        weight = run.plan.steps[run.step + 1].weight
        return (
            f"Step {run.challenger} from {run.plan.steps[run.step].weight}% to {weight}% "
            f"({run.champion} {100 - weight}% / {run.challenger} {weight}%) without waiting for the judge?"
        )

    command = Command.PROMOTE_FULL if namespace.full else Command.PROMOTE
    return _finish(context, _apply(context, command, question, namespace.yes, namespace.reason))


def simple_command(name: str, context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.domain.canary import Command

    context.require_writable(f"{name} the canary")

    def question(run: CanaryRun) -> str:
        weight = run.plan.steps[run.step].weight
        verb = "Pause judging" if name == "pause" else "Resume judging"
        return f"{verb} {run.challenger} at {weight}% ({run.champion} {100 - weight}% / {run.challenger} {weight}%)?"

    return _finish(context, _apply(context, Command(name), question, namespace.yes, namespace.reason))


def rollback_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.domain.canary import Command

    context.require_writable("roll the canary back")

    def question(run: CanaryRun) -> str:
        return f"Roll back {run.challenger}: {run.champion} 100% / {run.challenger} 0%, now?"

    status = _apply(context, Command.ROLLBACK, question, namespace.yes, namespace.reason)
    if context.json_output:
        context.emit_json(status.to_json())
    else:
        print_status(context, status)
    # The rollback did what was asked; a rollback that could not restore traffic fails the run.
    return EXIT_FAILED if status.phase.value == "failed" else EXIT_OK


def shadow_status_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    controller = _controller(context)
    try:
        status = controller.status()
    finally:
        controller.close()
    if context.json_output:
        run = status.run
        context.emit_json(
            {
                "run_id": run.run_id if run is not None else None,
                "phase": status.phase.value,
                "champion": run.champion if run is not None else None,
                "challenger": run.challenger if run is not None else None,
                "shadow": status.shadow_json(),
            }
        )
    else:
        print_shadow(context, status)
    return _exit_for(status)


def shadow_start_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    namespace.shadow_forced = True
    return start_command(context, namespace)


def shadow_skip_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.domain.canary import Command

    context.require_writable("skip the shadow step")

    def question(run: CanaryRun) -> str:
        weight = run.plan.steps[0].weight
        return (
            f"Skip the shadow step of {run.challenger} without a verdict: {run.champion} {100 - weight}% / "
            f"{run.challenger} {weight}% now?"
        )

    return _finish(context, _apply(context, Command.SKIP_SHADOW, question, namespace.yes, namespace.reason))


def gateway_setup_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.canary_wiring import gateway_setup

    context.require_writable("set up API Gateway")
    settings = context.settings
    if backend_for(settings).runs_here:
        raise CommandFailed(
            "the local gateway needs no setup: `arsl deploy VERSION` serves it and "
            "`arsl gateway keys create NAME` makes a key (use --backend huawei for API Gateway)",
            EXIT_USAGE,
        )
    confirm(
        context,
        f"Publish service {settings.huawei.service_name!r} through API Gateway instance "
        f"{settings.huawei.apig_instance_id or '(unset)'} ({settings.huawei.apig_environment})?",
        namespace.yes,
    )
    report = gateway_setup(settings)
    payload = report.to_json()
    if context.json_output:
        context.emit_json(payload)
        return EXIT_OK
    facts = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    facts.add_column(style="bold")
    facts.add_column()
    for name in ("group_id", "api_id", "app_id", "throttle_id", "environment", "publish_id", "version_id", "url"):
        facts.add_row(name, Text(str(payload.get(name) or "—")))
    facts.add_row("changed", Text(", ".join(payload["changed"]) or "nothing (already set up)"))
    context.console.print(facts)
    for warning in payload.get("warnings", []):
        context.err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)
    if payload.get("key"):
        context.console.print("app code (shown only now; send it as X-Apig-AppCode):", markup=False)
        context.stdout.write(str(payload["key"]) + "\n")
    return EXIT_OK
