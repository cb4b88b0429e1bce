"""`arsl console` (also what plain `arsl` runs); `arsl --read-only` and `arsl --theme NAME` start it too.

A pipeline run outlives the console (its own process): closing the console while one goes on prints
one line saying so and how to follow it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from arsl_tui.cli.common import EXIT_OK, CommandContext

_TOP_LEVEL_DESTS = {"console_read_only": "--read-only", "console_theme": "--theme"}


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    console = subcommands.add_parser("console", parents=[common], help="the full-screen console (default)")
    console.add_argument("--read-only", action="store_true", help="disable every action that changes something")
    console.add_argument("--theme", metavar="NAME", help="theme name or file in themes/")
    console.set_defaults(handler=console_command)


def add_top_level_options(parser: argparse.ArgumentParser) -> None:
    """The console's options before any command (`arsl --read-only`), kept apart so `check_top_level`
    can refuse them in front of another command, where they would be silently ignored."""
    parser.add_argument(
        "--read-only",
        dest="console_read_only",
        action="store_true",
        default=argparse.SUPPRESS,
        help="start the console with every action that changes something disabled",
    )
    parser.add_argument(
        "--theme",
        dest="console_theme",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="start the console with this theme (name or file in themes/)",
    )


def check_top_level(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> None:
    """A usage error for `arsl --read-only upload …`: those options belong to the console alone."""
    used = [option for dest, option in _TOP_LEVEL_DESTS.items() if hasattr(namespace, dest)]
    if used and namespace.command not in (None, "console"):
        parser.error(
            f"{' and '.join(used)} before a command only start the console; `arsl {namespace.command}` "
            "does not take them there (read-only for every command: read_only = true in config.toml)"
        )


def console_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ui.app import run_console

    read_only = bool(namespace.read_only or getattr(namespace, "console_read_only", False))
    theme = namespace.theme or getattr(namespace, "console_theme", None)
    settings = context.settings
    if read_only and not settings.read_only:  # the flag reaches the state readers as the setting does
        settings = dataclasses.replace(settings, read_only=True)
    status = run_console(settings, read_only=read_only, theme=theme) or EXIT_OK
    line = pipeline_goes_on(context.settings.home_dir)
    if line:
        context.console.print(line, markup=False, soft_wrap=True)
    return status


def pipeline_goes_on(home: Path) -> str:
    """One line if a pipeline run is still going on now that the console closed (it runs in its own process)."""
    from arsl_tui.domain.pipeline_run import background_line
    from arsl_tui.ops.pipeline_log import PipelineLogReader

    try:
        return background_line(PipelineLogReader(home).read())
    except OSError:  # the run's files cannot be read: nothing to say about it
        return ""
