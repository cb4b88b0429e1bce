"""The real `arsl` entry point in a real terminal (tmux, 80×24): validate and upload a small data set."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

ARSL = Path(sys.executable).with_name("arsl")
SCREEN_TIMEOUT_S = 30.0


class Tmux:
    """One private tmux server (its own socket) holding one 80×24 session."""

    def __init__(self) -> None:
        self.socket = f"arsl-e2e-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str, check: bool = True) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=check, capture_output=True, text=True).stdout

    def start(self, command: str) -> None:
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "console", "-x", "80", "-y", "24", command)

    def screen(self, escapes: bool = False) -> str:
        return self.run("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "console", check=False)

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", "console", *(["-l"] if literal else []), *keys)

    def wait_for(self, predicate: Callable[[str], bool], what: str) -> str:
        """Poll the pane (bounded) until `predicate` holds for its text."""
        deadline = time.monotonic() + SCREEN_TIMEOUT_S
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.05)  # polling interval of a bounded wait on the screen, not synchronisation by delay
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{screen}")

    def wait_text(self, text: str) -> str:
        return self.wait_for(lambda screen: text in screen, repr(text))

    def alive(self) -> bool:
        return (
            subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "console"], capture_output=True).returncode
            == 0
        )

    def kill_server(self) -> None:
        self.run("kill-server", check=False)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    session = Tmux()
    yield session
    session.kill_server()


def console_command(home: Path, exit_file: Path | None, term: str, extra_env: str = "") -> str:
    environment = f"env -u COLORTERM -u TEXTUAL_COLOR_SYSTEM TERM={term} ARSL_HOME={home} ESCDELAY=25 {extra_env}"
    if exit_file is None:
        return f"exec {environment} {ARSL}"  # the pane's process is the console itself
    return f"{environment} {ARSL}; echo exit=$? > {exit_file}"


def exit_written(exit_file: Path) -> bool:
    """The shell's `echo exit=$? > FILE` has finished: the file holds a whole line (`>` creates it empty first)."""
    try:
        return exit_file.read_text().endswith("\n")
    except FileNotFoundError:
        return False


def test_upload_a_small_data_set_from_the_real_console(
    tmux: Tmux, tiny_dataset: Path, arsl_home: Path, tmp_path: Path
) -> None:
    exit_file = tmp_path / "exit-code"
    tmux.start(console_command(arsl_home, exit_file, "xterm-256color"))
    tmux.wait_text("1 Overview")
    tmux.keys("2")
    tmux.wait_text("Data set folder")
    tmux.keys("Enter")  # opens the folder field
    tmux.wait_text("leave field")
    tmux.keys(str(tiny_dataset), literal=True)
    tmux.keys("Enter")
    tmux.wait_text("Valid: 96 images")
    tmux.keys("S")
    tmux.wait_text("Start the upload?")
    tmux.keys("y")
    screen = tmux.wait_text("✓ Uploaded:")
    assert "96 / 96" in screen and "✓ done" in screen
    colours = tmux.screen(escapes=True)
    assert "38;5;" in colours and not re.search(r"\x1b\[[0-9;]*38;2;", colours)  # 256 colours, no truecolor
    tmux.keys("q")
    tmux.wait_for(lambda _: exit_written(exit_file), "the console to exit")
    assert exit_file.read_text().strip() == "exit=0"
    manifests = list((arsl_home / "store" / "arsl-ml" / "datasets").glob("*/manifest.json"))
    assert len(manifests) == 1


def test_the_read_only_flag_on_an_empty_home_creates_nothing(tmux: Tmux, tmp_path: Path) -> None:
    home = tmp_path / "never-created"
    exit_file = tmp_path / "exit-code"
    tmux.start(console_command(home, exit_file, "xterm-256color").replace(f"{ARSL};", f"{ARSL} --read-only;"))
    tmux.wait_text("First run: nothing here yet")  # the Overview's readers have read the (absent) state
    for key, text in (("2", "Data set folder"), ("3", "no state here yet"), ("1", "First run")):
        tmux.keys(key)
        tmux.wait_text(text)
    tmux.keys("q")
    tmux.wait_for(lambda _: exit_written(exit_file), "the console to exit")
    assert exit_file.read_text().strip() == "exit=0"
    assert not home.exists(), sorted(str(path) for path in home.rglob("*"))


def test_plain_xterm_gets_the_16_colour_theme(tmux: Tmux, arsl_home: Path, tmp_path: Path) -> None:
    exit_file = tmp_path / "exit-code"
    tmux.start(console_command(arsl_home, exit_file, "xterm"))
    tmux.wait_text("1 Overview")
    colours = tmux.screen(escapes=True)
    assert not re.search(r"\x1b\[[0-9;]*38;[25];", colours)  # only the 16 standard colours
    tmux.keys("q")
    tmux.wait_for(lambda _: exit_written(exit_file), "the console to exit")
    assert exit_file.read_text().strip() == "exit=0"


def test_killed_mid_upload_the_reopened_console_offers_to_resume(
    tmux: Tmux, make_dataset: Callable[..., Path], arsl_home: Path, tmp_path: Path
) -> None:
    folder = make_dataset(per_class=15, name="medium")
    slow = "ARSL_UPLOAD_MODE=files ARSL_UPLOAD_CONCURRENCY=1"  # one object at a time: a window to kill in
    tmux.start(console_command(arsl_home, None, "xterm-256color", slow))
    tmux.wait_text("1 Overview")
    tmux.keys("2")
    tmux.wait_text("Data set folder")
    tmux.keys("Enter")  # opens the folder field
    tmux.wait_text("leave field")
    tmux.keys(str(folder), literal=True)
    tmux.keys("Enter")
    tmux.wait_text("Valid: 480 images")
    tmux.keys("S")
    tmux.wait_text("Start the upload?")
    tmux.keys("y")
    tmux.wait_for(lambda screen: re.search(r"objects [1-9][0-9]*/481", screen) is not None, "objects confirmed")
    pid = int(tmux.run("display-message", "-p", "-t", "console", "#{pane_pid}").strip())
    os.kill(pid, 9)  # the console we started, killed mid-upload
    tmux.wait_for(lambda _: not tmux.alive(), "the killed console's pane to close")

    exit_file = tmp_path / "exit-code"
    tmux.start(console_command(arsl_home, exit_file, "xterm-256color", slow.replace("=1", "=8")))
    tmux.wait_text("1 Overview")
    tmux.keys("2")
    banner = tmux.wait_text("r resumes")
    assert "interrupted upload run" in banner
    tmux.wait_text("r resume ")
    tmux.keys("r")
    tmux.wait_text("Resume the interrupted upload?")
    tmux.keys("y")
    screen = tmux.wait_text("✓ Uploaded:")
    assert re.search(r"[1-9][0-9,]* already there", screen), screen
    tmux.keys("q")
    tmux.wait_for(lambda _: exit_written(exit_file), "the console to exit")
    assert exit_file.read_text().strip() == "exit=0"
