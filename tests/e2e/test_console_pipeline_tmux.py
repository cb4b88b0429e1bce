"""The real console in a real terminal (tmux, 80×24) on an empty home: the demo key starts the real
`arsl pipeline run --demo` as a detached process, the pipeline line follows its real events, and X
cancels it.

Kept short: a small demo data set is put where the demo looks for its data (24 images a class), so
the run skips generating 9,600 images and reaches the champion's training within seconds; the run is
cancelled there. At that size the training needs half a minute or more (early stopping waits five
epochs), a wide margin for the two key presses that cancel it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arsl_tui.ops.pipeline import DEMO_DIR, DEMO_SEED
from arsl_tui.ops.pipeline_log import PipelineLogReader, read_holder
from arsl_tui.ops.synth import synthesize
from arsl_tui.providers.local.jobs import LocalTrainingPlatform
from arsl_tui.state.pipeline_store import PipelineStore
from tests.e2e.test_console_tmux import Tmux, console_command, exit_written

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    # the pipeline process trains with torch; this one never imports it
    pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed"),
]

RUN_TIMEOUT_S = 60.0


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie (ended, not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state == "Z"


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling interval of a bounded wait on a condition


@pytest.fixture
def terminal(arsl_home: Path) -> Iterator[Tmux]:
    session = Tmux()
    try:
        yield session
    finally:
        session.kill_server()
        holder = read_holder(arsl_home)  # a pipeline the test did not get to cancel: end it and its training
        if holder is not None and not process_gone(holder.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(holder.pgid, signal.SIGKILL)
        if (arsl_home / "arsl.db").exists():
            platform = LocalTrainingPlatform(arsl_home, grace_s=2)
            try:
                for job in platform.list():
                    if not job.terminal:
                        platform.stop(job.job_id)
            finally:
                platform.close()


def test_the_demo_key_starts_a_detached_pipeline_the_line_follows_it_and_X_cancels_it(
    terminal: Tmux, arsl_home: Path, tmp_path: Path
) -> None:
    synthesize(arsl_home / DEMO_DIR / "data", per_class=24, seed=DEMO_SEED)
    exit_file = tmp_path / "exit-code"
    terminal.start(console_command(arsl_home, exit_file, "xterm-256color"))
    screen = terminal.wait_text("○ pipeline: nothing yet — press d on Overview (1) for the demo")
    assert "First run: nothing here yet" in screen and "About 3 minutes on two CPU cores" in screen

    terminal.keys("d")
    terminal.wait_text("Start the demo pipeline?")
    terminal.keys("y")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not re.search(r"pipeline p\d{4}…[0-9a-f]{4} ► champion", screen := terminal.screen()):
        assert time.monotonic() < deadline, f"the line never reached the champion phase:\n{screen}"
        assert "did not start" not in screen, screen
        time.sleep(0.1)  # polling interval of a bounded wait on the screen
    assert "↷ data  ✓ upload  ► champion" in screen, screen  # the Overview's phase list, from the real events
    holder = read_holder(arsl_home)
    assert holder is not None and holder.pgid == holder.pid  # its own session: the console's signals miss it
    assert holder.pid != int(terminal.run("display-message", "-p", "-t", "console", "#{pane_pid}").strip())

    terminal.keys("X")
    terminal.wait_text("Cancel pipeline run")
    terminal.keys("y")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while "■ cancelled in champion" not in (screen := terminal.screen()):
        assert time.monotonic() < deadline, f"the run was not reported cancelled:\n{screen}"
        time.sleep(0.1)  # polling interval of a bounded wait on the screen
    wait_until(lambda: process_gone(holder.pid), f"the pipeline process {holder.pid} to end")

    view = PipelineLogReader(arsl_home).read()
    assert (view.run_id, view.outcome, view.alive) == (holder.run_id, "cancelled", False)
    store = PipelineStore.open(arsl_home)
    try:
        assert [(run["run_id"], run["outcome"]) for run in store.runs()] == [(holder.run_id, "cancelled")]
    finally:
        store.close()
    platform = LocalTrainingPlatform(arsl_home)
    try:
        jobs = platform.list()
        assert all(job.terminal for job in jobs), [(job.job_id, job.phase) for job in jobs]
    finally:
        platform.close()
    assert not list((arsl_home / "store").rglob("versions/*.json"))  # nothing registered, nothing promoted

    terminal.keys("q")
    terminal.wait_for(lambda _: exit_written(exit_file), "the console to exit")
    assert exit_file.read_text().strip() == "exit=0"
