"""Quitting the real console (tmux, 80×24) while a pipeline run goes on: one line says where it continues
and how to follow it; with no run going on, nothing is added."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_console_tmux import Tmux, console_command, exit_written
from tests.ui.fakes import DEMO_RUN, PipelineHolder, pipeline_events

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


def printed(terminal: Tmux) -> str:
    """Everything the pane shows and scrolled past, its wrapped lines joined again."""
    return terminal.run("capture-pane", "-p", "-J", "-S", "-", "-t", "console", check=False)


@pytest.fixture
def terminal() -> Iterator[Tmux]:
    session = Tmux()
    yield session
    session.kill_server()


def test_quitting_while_a_run_goes_on_says_how_to_follow_it(terminal: Tmux, arsl_home: Path, tmp_path: Path) -> None:
    holder = PipelineHolder(arsl_home, events=pipeline_events())
    try:
        exit_file = tmp_path / "exit-code"
        terminal.start(console_command(arsl_home, exit_file, "xterm-256color"))
        terminal.run("set-option", "-t", "console", "remain-on-exit", "on")  # keep what is printed on exit
        terminal.wait_text("► champion")  # the console follows the run
        terminal.keys("q")
        terminal.wait_for(lambda _: exit_written(exit_file), "the console to exit")
        assert exit_file.read_text().strip() == "exit=0"
        screen = printed(terminal)
        assert (
            f"pipeline {DEMO_RUN} goes on in the background (process {holder.pid}); follow it with "
            "`arsl pipeline watch`, stop it with `arsl pipeline cancel`"
        ) in screen
        assert holder.process.poll() is None  # quitting the console left the run alone
    finally:
        holder.close()

    exit_file = tmp_path / "exit-again"
    terminal.kill_server()
    terminal.start(console_command(arsl_home, exit_file, "xterm-256color"))
    terminal.run("set-option", "-t", "console", "remain-on-exit", "on")
    terminal.wait_text("interrupted in champion")  # the run is over (killed): nothing goes on
    terminal.keys("q")
    terminal.wait_for(lambda _: exit_written(exit_file), "the console to exit")
    assert "goes on in the background" not in printed(terminal)
