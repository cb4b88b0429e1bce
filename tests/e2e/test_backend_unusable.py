"""`--backend huawei` on a machine without the huawei extra, or without credentials: the real `arsl` says so
once, names the extra to install, exits 3 and shows nothing of this machine's own (local) state.

The SDKs are installed in the test environment; a `sitecustomize` on PYTHONPATH hides them from the
`arsl` processes started here, as an install of `.[local]` alone would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.local.store import LocalObjectStore
from tests.e2e.test_console_tmux import Tmux, exit_written
from tests.fixtures.registry_checks import register

pytestmark = pytest.mark.e2e

ARSL = Path(sys.executable).with_name("arsl")
INSTALL_HINT = "pip install -e '.[huawei]'"
NO_CREDENTIALS = "no Huawei Cloud credentials found"
HIDE_SDKS = '''
import sys


class HideHuaweiSdks:
    """As if the huawei extra were not installed: its modules are not found."""

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top == "obs" or top.startswith("huaweicloudsdk"):
            raise ModuleNotFoundError(f"No module named {top!r}", name=top)
        return None


sys.meta_path.insert(0, HideHuaweiSdks())
'''


@pytest.fixture
def home_with_local_state(tmp_path: Path) -> Path:
    """A home whose local registry holds v1 (the champion), to be kept out of the huawei backend's view."""
    home = tmp_path / "home"
    registry = ModelRegistry(LocalObjectStore(home / "store" / "arsl-ml"), "models/")
    register(registry, tmp_path / "scratch", seed=7)  # the first version passing its gate: champion
    assert registry.aliases()["champion"] == "v1"
    return home


def environment(tmp_path: Path, home: Path, *, hide_sdks: bool) -> dict[str, str]:
    """No ARSL_* setting and no Huawei credential from the caller; the SDKs hidden when asked."""
    dropped = ("ARSL_", "HUAWEICLOUD_", "OBS_", "PYTHONPATH")
    env = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    env.update(ARSL_HOME=str(home), HOME=str(tmp_path / "user-home"), NO_COLOR="1", COLUMNS="200")
    if hide_sdks:
        hider = tmp_path / "hide-sdks"
        hider.mkdir(exist_ok=True)
        (hider / "sitecustomize.py").write_text(HIDE_SDKS, encoding="utf-8")
        env["PYTHONPATH"] = str(hider)
    return env


def arsl(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ARSL), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


COMMANDS = [
    ["status"],
    ["models", "list"],
    ["canary", "status"],
    ["train", "status"],
    ["alarms", "list"],
    ["upload", "DATASET", "--yes"],
    ["pipeline", "run", "DATASET", "--yes"],
]


def test_without_the_huawei_sdks_every_backend_command_says_once_what_to_install(
    tmp_path: Path, home_with_local_state: Path, tiny_dataset: Path
) -> None:
    env = environment(tmp_path, home_with_local_state, hide_sdks=True)
    local = arsl(env, tmp_path, "models", "list", "--backend", "local")
    assert local.returncode == 0 and "v1" in local.stdout, local  # the local state a wrong view would show
    for command in COMMANDS:
        args = [str(tiny_dataset) if word == "DATASET" else word for word in command]
        run = arsl(env, tmp_path, *args, "--backend", "huawei")
        label = " ".join(command)
        assert run.returncode == 3, (label, run)
        assert run.stdout == "", (label, run.stdout)  # no row at all, local or otherwise
        assert run.stderr.count(INSTALL_HINT) == 1 and len(run.stderr.strip().splitlines()) == 1, (label, run)
        assert "No module named" not in run.stderr and "Traceback" not in run.stderr, (label, run.stderr)
    as_json = arsl(env, tmp_path, "status", "--json", "--backend", "huawei")
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout) == {"error": as_json.stderr.strip().removeprefix("error: "), "exit_code": 3}
    # The same refusal when the backend comes from the environment rather than the flag.
    chosen_by_env = arsl({**env, "ARSL_BACKEND": "huawei"}, tmp_path, "models", "list")
    assert chosen_by_env.returncode == 3 and INSTALL_HINT in chosen_by_env.stderr


def test_commands_that_use_no_backend_still_run_without_the_sdks(
    tmp_path: Path, home_with_local_state: Path, tiny_dataset: Path
) -> None:
    env = environment(tmp_path, home_with_local_state, hide_sdks=True)
    run = arsl(env, tmp_path, "data", "validate", str(tiny_dataset), "--backend", "huawei")
    assert run.returncode == 0, run
    assert INSTALL_HINT not in run.stdout + run.stderr
    # A pipeline run's lock and events live under $ARSL_HOME: following one needs no backend.
    pipeline = arsl(env, tmp_path, "pipeline", "status", "--json", "--backend", "huawei")
    assert pipeline.returncode == 0 and json.loads(pipeline.stdout)["state"] == "none", pipeline
    assert INSTALL_HINT not in pipeline.stdout + pipeline.stderr


def test_without_credentials_the_message_comes_once(tmp_path: Path, home_with_local_state: Path) -> None:
    env = environment(tmp_path, home_with_local_state, hide_sdks=False)
    for command in (["status"], ["models", "list"], ["canary", "status"]):
        run = arsl(env, tmp_path, *command, "--backend", "huawei")
        assert run.returncode == 3, (command, run)
        assert run.stdout == "" and run.stderr.count(NO_CREDENTIALS) == 1, (command, run)
        assert "HUAWEICLOUD_SDK_AK" in run.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_console_shows_one_notice_and_no_local_rows(tmp_path: Path, home_with_local_state: Path) -> None:
    env = environment(tmp_path, home_with_local_state, hide_sdks=True)
    exit_file = tmp_path / "exit-code"
    session = Tmux()
    try:
        # After the console, the pane keeps what the shell shows (`cat` holds it open until the server goes).
        session.start(
            f"env -u COLORTERM TERM=xterm-256color ESCDELAY=25 ARSL_HOME={home_with_local_state} "
            f"PYTHONPATH={env['PYTHONPATH']} HOME={env['HOME']} {ARSL} --backend huawei; "
            f"echo exit=$? > {exit_file}; exec cat"
        )
        screen = session.wait_text("cannot be used on this machine")
        assert screen.count(INSTALL_HINT) == 1, screen
        assert "Overview" not in screen and "v1" not in screen and "champion v1" not in screen, screen
        session.keys("1")
        session.keys("5")
        session.keys("q")
        session.wait_for(lambda _: exit_written(exit_file), "the console to exit")
        assert exit_file.read_text().strip() == "exit=3"
        shell = session.screen()
        assert shell.count(INSTALL_HINT) == 1, shell  # the console's screen is gone: said once in the shell
    finally:
        session.kill_server()
