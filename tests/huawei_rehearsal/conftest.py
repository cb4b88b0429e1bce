"""Fixtures of the Huawei rehearsal: the stand-in stack in this process or as the launcher's subprocess.

- `make_stack(serving=..., output_sync_s=...)`: a started `Stack` in a temporary folder, stopped after the
  test, which fails if any call broke the documented contract (`server.violations`).
- `stack_process`: `python -m tests.huawei_rehearsal --port-file F` as a subprocess, ready when it prints
  `ready F`; the port file's content is handed to the test; SIGTERM at the end, which must exit 0.
- `loopback`: `*.myhuaweicloud.com` resolves to 127.0.0.1 in this process while the test runs (the in-process
  twin of `loopback_site/sitecustomize.py`).
- `rehearsal_settings(stack, home)` / `rehearsal_credentials(stack)`: what an `arsl` process configured by the
  stack's config file and environment would load.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.providers.huawei.credentials import Credentials
from tests.fixtures.obs_contract import loopback_dns
from tests.huawei_rehearsal.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0

StackFactory = Callable[..., Stack]


def rehearsal_credentials(stack: Stack) -> Credentials:
    fixed = stack.credentials
    return Credentials(
        access_key=fixed.access_key, secret_key=fixed.secret_key, project_id=fixed.project_id, source="rehearsal"
    )


def rehearsal_settings(stack: Stack, home: Path, **overrides: Any) -> Settings:
    """The settings an `arsl` process started with the stack's environment loads (ARSL_CONFIG = its config)."""
    return load_settings(
        environ={"ARSL_CONFIG": str(stack.config_path)},
        cwd=home.parent,
        cli_overrides={"home": str(home), **overrides},
    )


@pytest.fixture
def loopback() -> Iterator[None]:
    with loopback_dns():
        yield


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    stacks: list[Stack] = []

    def make(*, serving: bool = False, output_sync_s: float | None = 0.5, **options: Any) -> Stack:
        stack = Stack(tmp_path / f"stack-{len(stacks)}", serving=serving, output_sync_s=output_sync_s, **options)
        stacks.append(stack)
        return stack.start()

    yield make
    violations: list[str] = []
    for stack in stacks:
        if stack.server is not None:
            violations += stack.server.violations
        stack.stop()
    assert violations == [], "calls broke the documented contract"


def _read_ready_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The launcher's first stdout line, waited for on the pipe itself (no polling of the port file)."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise TimeoutError(f"the rehearsal launcher printed nothing within {timeout_s:g} s")
    return process.stdout.readline().strip()


@pytest.fixture
def stack_process(tmp_path: Path) -> Iterator[dict[str, Any]]:
    port_file = tmp_path / "ports.json"
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), environment.get("PYTHONPATH", ""))))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.huawei_rehearsal",
            "--port-file",
            str(port_file),
            "--workdir",
            str(tmp_path / "stack"),
            "--output-sync-s",
            "1",
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = time.monotonic()
        line = _read_ready_line(process, READY_TIMEOUT_S)
        if line != f"ready {port_file}":
            process.kill()
            _, errors = process.communicate(timeout=30)
            raise AssertionError(f"launcher said {line!r}, not ready; stderr:\n{errors}")
        description = json.loads(port_file.read_text(encoding="utf-8"))
        description["_process"] = process
        description["_port_file"] = str(port_file)
        description["_ready_after_s"] = time.monotonic() - started
        yield description
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


__all__ = ["StackFactory", "rehearsal_credentials", "rehearsal_settings"]
