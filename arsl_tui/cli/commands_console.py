"""`arsl console` (also what plain `arsl` runs)."""

from __future__ import annotations

import argparse
from typing import Any

from arsl_tui.cli.common import EXIT_OK, CommandContext


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    console = subcommands.add_parser("console", parents=[common], help="the full-screen console (default)")
    console.add_argument("--read-only", action="store_true", help="disable every action that changes something")
    console.add_argument("--theme", metavar="NAME", help="theme name or file in themes/")
    console.set_defaults(handler=console_command)


def console_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ui.app import run_console

    return run_console(context.settings, read_only=namespace.read_only, theme=namespace.theme) or EXIT_OK
