"""`arsl gateway versions` and `arsl gateway rollback VERSION_ID` (huawei backend): the gateway-level rollback.

    arsl gateway versions [--json]                    the published versions of the prediction API, newest
                                                      first, the one in effect marked
    arsl gateway rollback VERSION_ID [--yes] [--json] make that published version the one in effect again

The API and environment are those `arsl gateway setup` recorded last. This switches API Gateway's API
definition (the service URL and the backend credential it calls with), not model traffic: that is
`arsl canary rollback`. Exit codes: 0 done (or already in effect), 1 nothing published or an unknown
version (the versions are listed), 2 usage or the local backend, 3 API Gateway refused or failed.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text

from arsl_tui.backends import backend_for
from arsl_tui.cli.common import EXIT_BACKEND, EXIT_OK, EXIT_USAGE, CommandContext, CommandFailed, confirm
from arsl_tui.domain.errors import BackendCallError
from arsl_tui.ops.gateway_versions import (
    GatewayVersionsError,
    PublishedVersions,
    list_versions,
    published_api,
    rollback,
)

Handler = Callable[[CommandContext, argparse.Namespace], int]


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    # `arsl gateway` belongs to the serving commands (keys); these join it, or make it where it is absent.
    gateway = subcommands.choices.get("gateway")
    if gateway is None:
        gateway = subcommands.add_parser("gateway", parents=[common], help="API Gateway")
        actions = gateway.add_subparsers(dest="gateway_command", metavar="ACTION")
    else:
        actions = next(action for action in gateway._actions if isinstance(action, argparse._SubParsersAction))
    versions = actions.add_parser(
        "versions",
        parents=[common],
        help="(huawei) published versions of the prediction API, the one in effect marked",
        description="List the versions API Gateway published of the API `arsl gateway setup` set up last, newest "
        "first, and which one is in effect in its environment.",
    )
    versions.set_defaults(handler=_errors(versions_command))
    back = actions.add_parser(
        "rollback",
        parents=[common],
        help="(huawei) make an earlier published version of the prediction API the one in effect",
        description="Switch the API back to VERSION_ID (one of `arsl gateway versions`): API Gateway serves that "
        "published definition again (its service URL and backend credential). Model traffic is unchanged; "
        "for that see `arsl canary rollback`.",
    )
    back.add_argument("version_id", metavar="VERSION_ID", help="a version id from `arsl gateway versions`")
    back.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    back.set_defaults(handler=_errors(rollback_command))


def _errors(handler: Handler) -> Handler:
    """What nothing published / an unknown version / API Gateway's refusals mean for the exit code."""

    @functools.wraps(handler)
    def run(context: CommandContext, namespace: argparse.Namespace) -> int:
        try:
            return handler(context, namespace)
        except GatewayVersionsError as error:
            raise CommandFailed(str(error)) from None
        except BackendCallError as error:
            raise CommandFailed(str(error), EXIT_BACKEND) from None

    return run


def _gateway(context: CommandContext) -> PublishedVersions:
    backend = backend_for(context.settings)
    if backend.runs_here:
        raise CommandFailed(
            "the local gateway keeps no published API versions: it serves what `arsl deploy` gave it "
            "(use --backend huawei for API Gateway)",
            EXIT_USAGE,
        )
    return backend.api_gateway()


def versions_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    gateway = _gateway(context)
    api = published_api(context.settings.home_dir)
    items = list_versions(gateway, api)
    if context.json_output:
        context.emit_json({"api_id": api.api_id, "env_id": api.env_id, "versions": items})
        return EXIT_OK
    if not items:
        context.console.print(f"API {api.api_id} has no published version in environment {api.env_id}")
        return EXIT_OK
    table = Table(show_edge=False, pad_edge=False, box=None)
    for column in ("", "version_id", "version_no", "published"):
        table.add_column(column)
    for item in items:
        table.add_row(
            "*" if item.get("effective") else "",
            Text(str(item["version_id"])),
            Text(str(item.get("version_no") or "—")),
            Text(str(item.get("publish_time") or "—")),
        )
    context.console.print(f"API {api.api_id} in environment {api.env_id} (* = in effect):", markup=False)
    context.console.print(table)
    return EXIT_OK


def rollback_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    context.require_writable("switch the API Gateway version")
    gateway = _gateway(context)
    home = context.settings.home_dir
    api = published_api(home)
    confirm(
        context,
        f"Make version {namespace.version_id} of API {api.api_id} the one in effect in {api.env_id}?",
        namespace.yes,
    )
    outcome = rollback(home, gateway, api, namespace.version_id)
    if context.json_output:
        context.emit_json(outcome.to_json())
    elif outcome.changed:
        context.console.print(
            f"API {outcome.api_id} now serves version {outcome.version_id} in {outcome.env_id} "
            f"(was {outcome.previous_version_id or 'none'})",
            markup=False,
        )
    else:
        context.console.print(f"version {outcome.version_id} is already in effect; nothing changed", markup=False)
    return EXIT_OK


__all__ = ["add_parser"]
