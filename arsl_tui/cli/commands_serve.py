"""`arsl deploy`, `arsl service status|start|stop`, `arsl gateway keys …`, `arsl predict`, `arsl api-test`.

    arsl deploy VERSION [--canary PERCENT]   start the local gateway with VERSION (or an alias), or change the
                                             running one: alone, or as the canary at PERCENT beside the stable
                                             version (loaded beside it, no restart, no dropped request)
    arsl service status | start | stop       status: pid, endpoint, weights, health; start: again with the
                                             weights it had; a second start is refused (exit 1)
    arsl gateway keys create NAME            prints the key once (`--json`: name, key); only its hash is kept
    arsl gateway keys revoke NAME | list
    arsl predict IMAGE… [--endpoint URL] [--key KEY]
    arsl api-test [--requests N] [--concurrency C] [--data DIR] [--feedback] [--drift [invert|blur]]

`--json` output: deploy → `version`, `endpoint`, `weights`, `stable`, `canary`, `started`, `pid`.
Keys for predict / api-test come from `--key` or $ARSL_APP_CODE; against the local gateway without
either, a throw-away key is made for the call and deleted after it.
Exit codes: 0 ok; 1 refused or failed check (already running, a prediction failed, api-test over the
[canary] error-rate or p95 thresholds); 2 usage (unknown version, bad weights, bad key name,
read-only); 3 the gateway cannot be started or reached.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from arsl_tui.cli.common import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandContext,
    CommandFailed,
    Handler,
    confirm,
    safe_text,
    whole_number,
)


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    deploy = subcommands.add_parser(
        "deploy",
        parents=[common],
        help="serve a model version with the local gateway (start or update it)",
        description="Start the local inference gateway with VERSION, or update the running one. With --canary P, "
        "VERSION serves P %% of requests beside the stable version.",
    )
    deploy.add_argument("version", metavar="VERSION", help="v1, v2, … or champion / challenger")
    deploy.add_argument(
        "--canary", type=whole_number(1, 99), metavar="PERCENT", help="serve VERSION as a canary at PERCENT (1-99)"
    )
    deploy.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    deploy.set_defaults(handler=_errors(deploy_command))

    service = subcommands.add_parser("service", parents=[common], help="the local gateway process")
    actions = service.add_subparsers(dest="service_command", metavar="ACTION")
    status = actions.add_parser("status", parents=[common], help="pid, endpoint, weights and health")
    status.set_defaults(handler=_errors(status_command))
    start = actions.add_parser("start", parents=[common], help="start again with the deployment it last served")
    start.set_defaults(handler=_errors(start_command))
    stop = actions.add_parser("stop", parents=[common], help="stop the gateway (it answers what it holds first)")
    stop.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    stop.set_defaults(handler=_errors(stop_command))

    gateway = subcommands.add_parser("gateway", parents=[common], help="gateway credentials")
    gateway_actions = gateway.add_subparsers(dest="gateway_command", metavar="ACTION")
    keys = gateway_actions.add_parser("keys", parents=[common], help="app codes for the X-Apig-AppCode header")
    key_actions = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    create = key_actions.add_parser("create", parents=[common], help="make a key (printed once)")
    create.add_argument("name", metavar="NAME")
    create.set_defaults(handler=_errors(key_create_command))
    revoke = key_actions.add_parser("revoke", parents=[common], help="revoke a key (refused from the next call on)")
    revoke.add_argument("name", metavar="NAME")
    revoke.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    revoke.set_defaults(handler=_errors(key_revoke_command))
    listing = key_actions.add_parser("list", parents=[common], help="key names, when made, whether revoked")
    listing.set_defaults(handler=_errors(key_list_command))

    predict = subcommands.add_parser(
        "predict",
        parents=[common],
        help="classify images with the gateway",
        description="Send each IMAGE to the gateway's /v1/predict and print its label, confidence, the version that "
        "answered and the request id. Images are named by their path below the folder they share.",
    )
    predict.add_argument("images", nargs="+", metavar="IMAGE", type=Path, help="JPEG or PNG files")
    predict.add_argument("--endpoint", metavar="URL", help="gateway URL (default: the local gateway)")
    predict.add_argument(
        "--key",
        metavar="KEY",
        help="app code (default: $ARSL_APP_CODE; against the local gateway without either, a "
        "temporary key is made for this call and deleted after it — not in read-only mode)",
    )
    predict.set_defaults(handler=_errors(predict_command))

    api_test = subcommands.add_parser(
        "api-test",
        parents=[common],
        help="availability, latency, error rate and accuracy of the gateway",
        description="Send labelled test images (a data set's test split, or synthetic ones) to /v1/predict and "
        "report availability, latency percentiles, error rate and accuracy. Fails (exit 1) over the "
        "[canary] max_error_rate or max_p95_latency_ms.",
    )
    api_test.add_argument(
        "--requests", type=whole_number(1, 1_000_000), default=200, metavar="N", help="requests to send (default 200)"
    )
    api_test.add_argument(
        "--concurrency", type=whole_number(1, 256), default=8, metavar="C", help="requests in flight (default 8)"
    )
    api_test.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="a validated data set folder: use its manifest's test split (default: synthetic)",
    )
    api_test.add_argument("--feedback", action="store_true", help="also send each true label to /v1/feedback")
    api_test.add_argument(
        "--drift",
        nargs="?",
        const="invert",
        choices=("invert", "blur"),
        metavar="invert|blur",
        help="send the images shifted away from the training data (inverted, or with --drift blur heavily "
        "blurred), so the input-drift alarm can be seen to fire (`arsl drift status`, the Alarms tab)",
    )
    api_test.add_argument("--endpoint", metavar="URL", help="gateway URL (default: the local gateway)")
    api_test.add_argument("--key", metavar="KEY", help="app code (default: $ARSL_APP_CODE or a throw-away key)")
    api_test.set_defaults(handler=_errors(api_test_command))


def _errors(handler: Handler) -> Handler:
    """Serving, registry and key errors → a one-line message and the contract's exit code."""

    @functools.wraps(handler)
    def run(context: CommandContext, namespace: argparse.Namespace) -> int:
        from arsl_tui.domain.registry import RegistryError, VersionFormatError
        from arsl_tui.domain.serving import DeploymentError
        from arsl_tui.ops.dataset import DatasetError
        from arsl_tui.ops.registry import VersionNotFound
        from arsl_tui.ops.serving import AlreadyRunning, ServingError, WrongBackend
        from arsl_tui.serving.auth import GatewayKeyError

        try:
            return handler(context, namespace)
        except AlreadyRunning as error:
            raise CommandFailed(str(error), EXIT_FAILED) from None
        except (
            DeploymentError,
            VersionFormatError,
            VersionNotFound,
            GatewayKeyError,
            DatasetError,
            WrongBackend,
        ) as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None
        except (ServingError, RegistryError) as error:
            raise CommandFailed(str(error), EXIT_BACKEND) from None

    return run


def _weights(weights: dict[str, int]) -> str:
    return " / ".join(f"{version} {percent}%" for version, percent in weights.items())


# --- deploy and service ---------------------------------------------------------------------------


def deploy_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.serving import deploy

    context.require_writable("deploy a model version")
    what = (
        f"{namespace.version} as a canary at {namespace.canary}%"
        if namespace.canary is not None
        else f"{namespace.version} to take all traffic"
    )
    confirm(context, f"Deploy {what}?", namespace.yes)
    outcome = deploy(context.settings, namespace.version, namespace.canary)
    if context.json_output:
        context.emit_json(outcome.to_json())
        return EXIT_OK
    verb = "started the gateway with" if outcome.started else "the gateway now serves"
    context.console.print(
        f"{verb} {_weights(dict(outcome.deployment.weights))} at {outcome.process.endpoint} "
        f"(pid {outcome.process.pid})",
        markup=False,
        soft_wrap=True,
    )
    return EXIT_OK


def start_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.serving import start

    context.require_writable("start the gateway")
    outcome = start(context.settings)
    if context.json_output:
        context.emit_json(outcome.to_json())
        return EXIT_OK
    context.console.print(
        f"started the gateway with {_weights(dict(outcome.deployment.weights))} at "
        f"{outcome.process.endpoint} (pid {outcome.process.pid})",
        markup=False,
        soft_wrap=True,
    )
    return EXIT_OK


def stop_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.serving import stop

    context.require_writable("stop the gateway")
    confirm(context, "Stop the gateway?", namespace.yes)
    record = stop(context.settings)
    if context.json_output:
        context.emit_json({"stopped": record is not None, "pid": record.pid if record else None})
    elif record is None:
        context.console.print("the gateway is not running")
    else:
        context.console.print(f"stopped the gateway (pid {record.pid})")
    return EXIT_OK


def status_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.serving import status

    current = status(context.settings)
    if context.json_output:
        context.emit_json(current.to_json())
        return EXIT_OK
    facts = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    facts.add_column(style="bold")
    facts.add_column()
    state = Text("running", style="bold green") if current.running else Text("stopped", style="bold yellow")
    facts.add_row("state", state)
    if current.process is not None:
        facts.add_row("endpoint", current.process.endpoint)
        facts.add_row("pid", str(current.process.pid))
        facts.add_row("started", current.process.to_json()["started_at"])
    if current.deployment is not None:
        label = "weights" if current.running else "weights (on start)"
        facts.add_row(label, _weights(dict(current.deployment.weights)))
        facts.add_row("canary", current.deployment.canary or "—")
    else:
        facts.add_row("deployment", "nothing deployed yet (`arsl deploy VERSION`)")
    if current.health is not None:
        facts.add_row("health", str(current.health.get("status")))
    facts.add_row("log", str(current.log))
    context.console.print(facts)
    return EXIT_OK


# --- keys -----------------------------------------------------------------------------------------


def key_create_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.serving import create_key

    context.require_writable("create a gateway key")
    key = create_key(context.settings, namespace.name)
    if context.json_output:
        context.emit_json({"name": namespace.name, "key": key})
        return EXIT_OK
    context.console.print(f"key {namespace.name} (shown only now; send it as X-Apig-AppCode):", markup=False)
    context.stdout.write(key + "\n")
    return EXIT_OK


def key_revoke_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.serving import revoke_key

    context.require_writable("revoke a gateway key")
    confirm(context, f"Revoke key {namespace.name}? Callers using it get 401 from the next request on.", namespace.yes)
    info = revoke_key(context.settings, namespace.name)
    if context.json_output:
        context.emit_json(info)
    else:
        context.console.print(f"revoked key {namespace.name}", markup=False)
    return EXIT_OK


def key_list_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.serving import list_keys

    keys = list_keys(context.settings)
    if context.json_output:
        context.emit_json({"keys": keys})
        return EXIT_OK
    if not keys:
        context.console.print("no keys yet (`arsl gateway keys create NAME`)")
        return EXIT_OK
    table = Table(show_edge=False, pad_edge=False)
    for column in ("name", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(Text(key["name"]), key["created_at"], key["revoked_at"] or "—")
    context.console.print(table)
    return EXIT_OK


# --- predict and api-test -------------------------------------------------------------------------


def predict_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.serving import caller, predict_files

    target = caller(context.settings, namespace.endpoint, namespace.key, "predict")
    try:
        results = predict_files(target.endpoint, target.key, namespace.images)
    finally:
        target.close()
    failed = [result for result in results if result.get("status") != 200]
    if context.json_output:
        context.emit_json({"endpoint": target.endpoint, "results": results})
        return EXIT_FAILED if failed else EXIT_OK
    folder, names = image_names([str(result["file"]) for result in results])
    if folder != os.getcwd():
        context.console.print(f"images in {safe_text(folder)}", markup=False, soft_wrap=True)
    table, with_ids = prediction_table(names, results, context.console.width)
    context.console.print(table)
    if not with_ids and len(failed) < len(results):
        context.console.print("(request ids, for /v1/feedback: run it with --json)")
    return EXIT_FAILED if failed else EXIT_OK


def prediction_table(names: list[str], results: list[dict[str, Any]], width: int) -> tuple[Table, bool]:
    """One row per image: its name whole, then label, confidence and version; the request id too where its
    32 characters fit beside them in `width` columns (whether they did is the second value)."""
    answered = [result for result in results if result.get("status") == 200]
    widths = {
        "image": max(map(len, names)),
        "label": max((len(str(item["label"])) for item in answered), default=0),
        "confidence": 5,
        "version": max((len(str(item["model_version"])) for item in answered), default=0),
    }
    needed = sum(max(len(header), cells) for header, cells in widths.items()) + 3 * len(widths)  # " │ " each
    with_ids = needed + max((len(str(item["request_id"])) for item in answered), default=10) <= width
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("image", no_wrap=True, min_width=widths["image"])  # what tells the rows apart: never cut
    table.add_column("label")  # a one-word label, or the error of an image that got none (that may wrap)
    for column in ("confidence", "version", *(("request id",) if with_ids else ())):
        table.add_column(column, no_wrap=True)
    for name, result in zip(names, results, strict=True):
        if result.get("status") == 200:
            cells: list[Text | str] = [
                Text(str(result["label"])),
                f"{result['confidence']:.3f}",
                Text(str(result["model_version"])),
            ]
            table.add_row(Text(name), *cells, *((Text(str(result["request_id"])),) if with_ids else ()))
        else:
            problem = safe_text(f"error {result.get('status') or ''}: {result['error']}")
            table.add_row(Text(name), Text(problem, style="red"), *([""] * (3 if with_ids else 2)))
    return table, with_ids


IMAGE_NAME_CHARS = 40
"""Longer image names keep their file name whole and lose the middle of their folders."""


def image_names(paths: list[str], limit: int = IMAGE_NAME_CHARS) -> tuple[str, list[str]]:
    """(the folder the images share, each image's path below it): `ain/ain_0001.jpg`, never a cut-off prefix.

    A name over `limit` characters keeps its file name and loses the middle of its folders (`ain/…/x/a.jpg`),
    unless that would make two names the same.
    """
    absolute = [os.path.abspath(path) for path in paths]
    folder = os.path.commonpath([os.path.dirname(path) for path in absolute]) if absolute else os.getcwd()
    full = [safe_text(os.path.relpath(path, folder)) for path in absolute]
    short = [_middle_cut(name, limit) for name in full]
    clashes = len(set(short)) < len(set(full))
    return folder, full if clashes else short


def _middle_cut(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    head, _, base = name.rpartition("/")
    room = limit - len(base) - 2  # "…/" before the file name
    if not head or room < 2:
        return f"…/{base}" if head else base
    return f"{head[: room // 2]}…{head[len(head) - (room - room // 2) :]}/{base}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def api_test_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.serving import api_test, caller, dataset_test_split, synthetic_images

    if namespace.requests < 1 or namespace.concurrency < 1:
        raise CommandFailed("--requests and --concurrency must be at least 1", EXIT_USAGE)
    # Cheap refusals first (a missing folder, no key, no gateway): rendering synthetic images takes seconds.
    labelled = dataset_test_split(namespace.data) if namespace.data is not None else None
    target = caller(context.settings, namespace.endpoint, namespace.key, "api-test")
    try:
        samples = labelled if labelled is not None else synthetic_images(min(namespace.requests, 256))
        if namespace.drift:
            from arsl_tui.ops.drift import shifted_samples

            samples = shifted_samples(samples, namespace.drift)
        report = api_test(
            target.endpoint,
            target.key,
            samples,
            requests=namespace.requests,
            concurrency=namespace.concurrency,
            send_feedback=namespace.feedback,
        )
    finally:
        target.close()
    canary = context.settings.canary
    summary = report.to_json()
    p95 = report.percentile(95)
    problems = []
    if report.error_rate > canary.max_error_rate:
        problems.append(f"error rate {report.error_rate:.2%} > {canary.max_error_rate:.2%}")
    if p95 is None or p95 > canary.max_p95_latency_ms:
        problems.append(f"p95 latency {_ms(p95)} > {canary.max_p95_latency_ms:.0f} ms")
    summary["passed"] = not problems
    summary["problems"] = problems
    summary["source"] = str(namespace.data) if namespace.data is not None else "synthetic"
    summary["shift"] = namespace.drift
    if context.json_output:
        context.emit_json(summary)
    else:
        latency = summary["latency_ms"]
        accuracy = "—" if report.accuracy is None else f"{report.accuracy:.1%} of {report.labelled}"
        rows = [
            ("endpoint", report.endpoint),
            ("requests", f"{report.requests} ({namespace.concurrency} in flight)"),
            ("availability", f"{report.availability:.2%}"),
            ("error rate", f"{report.error_rate:.2%}"),
            ("statuses", ", ".join(f"{code}: {count}" for code, count in sorted(report.statuses.items()))),
            ("latency", f"p50 {_ms(latency['p50'])}, p95 {_ms(latency['p95'])}, p99 {_ms(latency['p99'])}"),
            ("throughput", f"{summary['throughput_rps']:.0f} req/s"),
            ("accuracy", accuracy),
            ("versions", ", ".join(f"{name}: {count}" for name, count in sorted(report.versions.items())) or "—"),
        ]
        facts = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
        facts.add_column(style="bold")
        facts.add_column()
        for name, value in rows:
            facts.add_row(name, Text(value))
        context.console.print(facts)
        verdict = (
            Text("PASS", style="bold green") if not problems else Text("FAIL: " + "; ".join(problems), style="bold red")
        )
        context.console.print(verdict)
    return EXIT_OK if not problems else EXIT_FAILED
