"""What every command shares: settings, output in text or JSON, errors → exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from arsl_tui.backends import backend_for
from arsl_tui.config import ConfigError, Settings, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3
EXIT_INTERRUPTED = 130
READ_ONLY_ENV = "ARSL_READ_ONLY"


_MESSAGE_CHARS = 2000
"""Longer messages are cut in the middle: a 100 000-character argument must not flood the terminal."""
_PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.EACCES,
        errno.EPERM,
        errno.EEXIST,
        errno.EROFS,
        errno.EINVAL,
    }
)
"""OSErrors about a path the user gave (usage, exit 2); others (disk full, I/O error) are exit 3."""
_INVISIBLE = frozenset({0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF})
"""Bidirectional overrides, line separators and the BOM: they reorder or hide what a terminal shows."""


def safe_text(text: str, limit: int = _MESSAGE_CHARS) -> str:
    """`text` fit for one terminal line: control characters (ANSI escapes, newlines), bidi overrides and
    undecodable bytes (surrogate escapes) shown as Python escapes, never sent raw; cut to `limit` characters."""
    shown = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode: show the byte
            shown.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or code in _INVISIBLE:
            shown.append(repr(char)[1:-1] if code < 0x80 else f"\\u{code:04x}")
        else:
            shown.append(char)
    result = "".join(shown)
    if len(result) > limit:
        half = limit // 2
        result = f"{result[:half]}…[{len(result) - 2 * half} characters]…{result[-half:]}"
    return result


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high` (usage error, exit 2, otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip()) if text.strip().lstrip("+-").isdigit() and text.isascii() else None
        except ValueError:  # more digits than int() converts
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number between {low} and {high}, got '{safe_text(text, 80)}'"
            )
        return value

    return parse


def number(low: float, high: float, *, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number from `low` (or above it, with `above`) to `high`."""

    def parse(text: str) -> float:
        try:
            value = float(text) if text.isascii() else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value > high or value < low or (above and value == low):
            span = f"above {low:g} and at most {high:g}" if above else f"between {low:g} and {high:g}"
            raise argparse.ArgumentTypeError(f"expected a number {span}, got '{safe_text(text, 80)}'")
        return value

    return parse


def setting_range(section: type, key: str) -> tuple[int, int]:
    """The bounds a config key allows (its dataclass metadata), so a flag and its key agree."""
    metadata = {item.name: item.metadata for item in dataclasses.fields(section)}[key]
    return int(metadata["low"]), int(metadata["high"])


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
    # Looked up when a command starts, not at import: whoever redirects sys.stdout (tests, tools) gets the output.
    stdout: TextIO = dataclasses.field(default_factory=lambda: sys.stdout)
    stderr: TextIO = dataclasses.field(default_factory=lambda: sys.stderr)

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> CommandContext:
        return cls(
            config_path=getattr(namespace, "config", None),
            backend=getattr(namespace, "backend", None),
            json_output=bool(getattr(namespace, "json", False)),
        )

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
            variable = os.environ.get(READ_ONLY_ENV)
            where = (
                f"{READ_ONLY_ENV}={variable}" if variable is not None else f"read_only = true in {self.settings.source}"
            )
            raise CommandFailed(f"read-only mode is on ({safe_text(where)}); refusing to {action}", EXIT_USAGE)


Handler = Callable[[CommandContext, argparse.Namespace], int]

_WITHOUT_BACKEND = frozenset(
    {
        ("data",),
        ("console",),
        ("doctor",),
        ("deploy",),
        ("service",),
        ("gateway", "keys"),
        ("predict",),
        ("api-test",),
        ("pipeline", "status"),
        ("pipeline", "watch"),
        ("pipeline", "cancel"),
    }
)
"""Commands that never read the configured backend: a data set folder, the console (which shows the
backend's problem on its own screen), the local gateway's commands (which refuse another backend), and
following or cancelling a pipeline run (its lock and event file live under `$ARSL_HOME`)."""


def command_path(namespace: argparse.Namespace) -> tuple[str, ...]:
    """The command words chosen (`("models", "list")`), from the sub-parsers' `dest`s."""
    command = getattr(namespace, "command", None)
    if not isinstance(command, str):
        return ()
    action = getattr(namespace, f"{command.replace('-', '_')}_command", None)
    return (command, action) if isinstance(action, str) else (command,)


def check_backend(context: CommandContext, namespace: argparse.Namespace) -> None:
    """Refuse, once and before the command runs, a backend that cannot work here (its SDKs are not
    installed, it has no credentials): every part of a command would otherwise fail on its own, and
    parts kept on this machine (the upload journal, the canary state) would show as that backend's."""
    path = command_path(namespace)
    if path[:1] in _WITHOUT_BACKEND or path[:2] in _WITHOUT_BACKEND:
        return
    problem = backend_for(context.settings).unusable_reason()
    if problem is not None:
        raise CommandFailed(problem, EXIT_BACKEND)


def run_command(handler: Handler, context: CommandContext, namespace: argparse.Namespace) -> int:
    """Run a handler, turning known failures into a one-line message and an exit code."""
    from arsl_tui.domain.ports import StoreError
    from arsl_tui.state.db import StateError

    try:
        check_backend(context, namespace)
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
    except StateError as error:
        _report(context, f"state file error: {error}", EXIT_BACKEND)
        return EXIT_BACKEND
    except KeyboardInterrupt:
        _report(context, "interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except UnicodeEncodeError as error:  # an argument with bytes that are no UTF-8 (os.fsdecode's surrogates)
        text = error.object if isinstance(error.object, str) else ""
        _report(
            context,
            f"{safe_text(text, 200)!s}: not valid UTF-8; names, ids, notes and paths that arsl "
            "stores or sends must be UTF-8 text",
            EXIT_USAGE,
        )
        return EXIT_USAGE
    except OSError as error:  # a path given on the command line that cannot be used (too long, a loop, …)
        code = EXIT_USAGE if error.errno in _PATH_ERRNOS else EXIT_BACKEND
        where = f"{safe_text(str(error.filename), 200)}: " if error.filename is not None else ""
        _report(context, f"{where}{error.strerror or error}", code)
        return code


def _report(context: CommandContext, message: str, exit_code: int) -> None:
    if context.json_output:
        context.emit_json({"error": message, "exit_code": exit_code})
    context.err_console.print(Text.assemble(("error: ", "bold red"), safe_text(message)), soft_wrap=True)


def confirm(
    context: CommandContext, question: str, assume_yes: bool, refusal: str = "cancelled; nothing was changed"
) -> None:
    """Ask `question [y/N]` on a terminal (No unless y or yes is typed); never with --yes or without a terminal."""
    if assume_yes or not sys.stdin.isatty():
        return
    # markup=False: `[y/N]` and the names in the question are shown as written, not read as Rich style tags.
    # soft_wrap: the terminal wraps a long question; no newline is put inside a path a user may copy.
    context.err_console.print(f"{question} [y/N] ", markup=False, soft_wrap=True, end="")
    answer = context.err_console.input()
    if answer.strip().lower() not in ("y", "yes"):
        raise CommandFailed(refusal, EXIT_FAILED)
