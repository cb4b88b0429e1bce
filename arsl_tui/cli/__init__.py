"""`arsl` command line: argument parsing → ops, `--json` output, exit codes.

Exit codes: 0 ok, 1 the thing checked failed, 2 usage or config error, 3 backend/cloud error.
Each command group lives in its own module and registers itself through `add_parser`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from arsl_tui import __version__
from arsl_tui.cli import (
    commands_alarms,
    commands_canary,
    commands_console,
    commands_data,
    commands_doctor,
    commands_drift,
    commands_gate,
    commands_gateway_versions,
    commands_models,
    commands_pipeline,
    commands_serve,
    commands_train,
    commands_upload,
)
from arsl_tui.cli.common import EXIT_USAGE, CommandContext, CommandFailed, run_command, safe_text

_GROUPS = (
    commands_console,
    commands_data,
    commands_upload,
    commands_train,
    commands_gate,
    commands_models,
    commands_serve,
    commands_canary,
    commands_gateway_versions,
    commands_alarms,
    commands_drift,
    commands_pipeline,
    commands_doctor,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"arsl: error: {safe_text(message)}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (else $ARSL_CONFIG, else ./config.toml, else defaults)",
    )
    common.add_argument(
        "--backend",
        choices=("local", "huawei"),
        default=argparse.SUPPRESS,
        help="which backend to use (overrides config)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output on stdout; logs go to stderr",
    )
    parser = _Parser(
        prog="arsl", parents=[common], description="ArSL Ops Console: data → training → gate → canary → alarms."
    )
    parser.add_argument("--version", action="version", version=f"arsl {__version__}")
    commands_console.add_top_level_options(parser)
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for group in _GROUPS:
        group.add_parser(subcommands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    namespace = parser.parse_args(arguments)
    commands_console.check_top_level(parser, namespace)
    if getattr(namespace, "handler", None) is None:
        if namespace.command is None:
            namespace = parser.parse_args([*arguments, "console"])
        else:  # a group without its action (`arsl data`): its help, as a usage error on stderr
            with contextlib.redirect_stdout(sys.stderr), contextlib.suppress(SystemExit):
                parser.parse_args([*arguments, "--help"])
            chosen = [
                value
                for name, value in vars(namespace).items()
                if (name == "command" or name.endswith("_command")) and isinstance(value, str)
            ]
            sys.stderr.write(f"arsl: error: `arsl {' '.join(chosen)}` needs an action (listed above)\n")
            return EXIT_USAGE
    context = CommandContext.from_namespace(namespace)
    return run_command(namespace.handler, context, namespace)


__all__ = ["CommandFailed", "build_parser", "main"]
