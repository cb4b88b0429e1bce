"""What every command shares: settings, output in text or JSON, errors → exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from arsl_tui.config import ConfigError, Settings, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3
EXIT_INTERRUPTED = 130


class CommandFailed(Exception):
    """A command ends with this exit code and message (no traceback)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class CommandContext:
    config_path: str | None
    backend: str | None
    json_output: bool
    stdout: TextIO = sys.stdout
    stderr: TextIO = sys.stderr

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> CommandContext:
        return cls(config_path=getattr(namespace, "config", None), backend=getattr(namespace, "backend", None),
                   json_output=bool(getattr(namespace, "json", False)))

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path, cli_overrides={"backend": self.backend})

    @cached_property
    def console(self) -> Console:
        """Human output: stdout normally, stderr when stdout carries JSON."""
        return Console(file=self.stderr if self.json_output else self.stdout, highlight=False)

    @cached_property
    def err_console(self) -> Console:
        return Console(file=self.stderr, highlight=False)

    def emit_json(self, payload: Any) -> None:
        self.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")
        self.stdout.flush()

    def require_writable(self, action: str) -> None:
        """Central read-only gate for every command that changes something."""
        if self.settings.read_only:
            raise CommandFailed(f"read-only mode is on (read_only = true in {self.settings.source}); "
                                f"refusing to {action}", EXIT_USAGE)


Handler = Callable[[CommandContext, argparse.Namespace], int]


def run_command(handler: Handler, context: CommandContext, namespace: argparse.Namespace) -> int:
    """Run a handler, turning known failures into a one-line message and an exit code."""
    from arsl_tui.domain.ports import StoreError

    try:
        return handler(context, namespace)
    except CommandFailed as failure:
        _report(context, str(failure), failure.exit_code)
        return failure.exit_code
    except ConfigError as error:
        _report(context, f"config error: {error}", EXIT_USAGE)
        return EXIT_USAGE
    except StoreError as error:
        _report(context, f"storage error: {error}", EXIT_BACKEND)
        return EXIT_BACKEND
    except KeyboardInterrupt:
        _report(context, "interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED


def _report(context: CommandContext, message: str, exit_code: int) -> None:
    if context.json_output:
        context.emit_json({"error": message, "exit_code": exit_code})
    context.err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
