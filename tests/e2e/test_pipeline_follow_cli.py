"""`arsl pipeline status|watch|cancel` and `arsl status` as a user runs them, against a live run.

The run is a real process that holds the pipeline lock and writes the run's event file as `arsl
pipeline run` does (`tests.ui.fakes.PipelineHolder`: SIGINT ends it as a cancelled run); the test
appends the run's later events to that file, as the runner would. Nothing trains.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.config import Settings
from arsl_tui.ops.pipeline_log import EventLog, events_path
from arsl_tui.ops.registry import ModelRegistry
from tests.fixtures.cli import arsl
from tests.fixtures.registry_checks import register
from tests.ui.fakes import DEMO_RUN, PipelineHolder, pipeline_events

pytestmark = pytest.mark.e2e
LINE_TIMEOUT_S = 30.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    environment.update(ARSL_HOME=str(tmp_path / "home"), COLUMNS="120")
    return environment


@pytest.fixture
def home(env: dict[str, str]) -> Path:
    return Path(env["ARSL_HOME"])


@pytest.fixture
def holder(home: Path) -> Iterator[PipelineHolder]:
    """A live demo run, training the champion (epoch 4 of 10)."""
    running = PipelineHolder(home, events=pipeline_events())
    yield running
    running.close()


def later_events(*, outcome: str = "promoted") -> list[dict[str, Any]]:
    """What the run writes after `pipeline_events()`: the rest of a promoted demo."""
    whole = pipeline_events(through="promoted")
    return [
        {
            "event": "PipelineProgress",
            "phase": "champion",
            "detail": "job-20260101-100012-3f2a epoch 5/10: val_acc 0.934",
        },
        *whole[len(pipeline_events()) :],
    ]


class Watcher:
    """`arsl pipeline watch` running in its own session, its output read line by line in a thread."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "arsl_tui", "pipeline", "watch", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, text: str) -> None:
        """Read lines (bounded) until one holds `text`."""
        while True:
            try:
                line = self.lines.get(timeout=LINE_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} within {LINE_TIMEOUT_S} s; seen: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the watch ended before a line with {text!r}; seen: {self.seen}")
            self.seen.append(line)
            if text in line:
                return

    def finish(self) -> tuple[int, str, str]:
        """Its exit status, everything it printed, and its stderr."""
        code = self.process.wait(LINE_TIMEOUT_S)
        while (line := self.lines.get(timeout=LINE_TIMEOUT_S)) is not None:
            self.seen.append(line)
        assert self.process.stderr is not None
        errors = self.process.stderr.read()
        self.process.stderr.close()
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code, "\n".join(self.seen), errors

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(LINE_TIMEOUT_S)


def test_status_shows_the_live_run_first_and_every_hint_says_to_follow_it(
    env: dict[str, str], home: Path, tmp_path: Path, holder: PipelineHolder
) -> None:
    # A champion exists and nothing serves: alone, the service would say `arsl deploy champion`.
    register(ModelRegistry.from_settings(Settings(home=str(home))), tmp_path / "scratch", 1)

    shown = arsl(env, tmp_path, "pipeline", "status")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"► pipeline {DEMO_RUN} (demo): running ")
    assert lines[0].endswith(": champion (job-20260101-100012-3f2a epoch 4/10: val_acc 0.912)")
    assert f"process {holder.pid} (group {holder.pid})" in lines[1]
    assert str(events_path(home, DEMO_RUN)) in lines[1]
    phases = [line.split()[:3] for line in lines[2:10]]
    assert phases == [
        ["✓", "data", "done"],
        ["✓", "upload", "done"],
        ["►", "champion", "running"],
        ["○", "train", "pending"],
        ["○", "gate", "pending"],
        ["○", "deploy", "pending"],
        ["○", "canary", "pending"],
        ["○", "alarms", "pending"],
    ]
    assert lines[-1] == "next: arsl pipeline watch (or `arsl pipeline cancel` to stop it)"

    run = json.loads(arsl(env, tmp_path, "pipeline", "status", "--json").stdout)
    assert (run["run_id"], run["state"], run["current_phase"], run["pid"]) == (
        DEMO_RUN,
        "running",
        "champion",
        holder.pid,
    )
    assert run["events_file"] == str(events_path(home, DEMO_RUN)) and run["elapsed_s"] >= 0
    assert [phase["state"] for phase in run["phases"]][:3] == ["done", "done", "running"]

    text = arsl(env, tmp_path, "status")
    assert text.returncode == 0, text.stderr
    rows = [line.split() for line in text.stdout.splitlines()[1:]]
    assert rows[0][:3] == ["◐", "pipeline", "running"] and rows[0][-3:] == ["arsl", "pipeline", "watch"]
    assert "arsl deploy champion" not in text.stdout and "arsl gate" not in text.stdout
    assert text.stdout.splitlines()[-1] == "next: arsl pipeline watch"

    status = json.loads(arsl(env, tmp_path, "status", "--json").stdout)
    assert next(iter(status)) == "pipeline" and status["pipeline"]["state"] == "running"
    assert status["pipeline"]["details"]["run_id"] == DEMO_RUN
    assert [phase["phase"] for phase in status["phases"]] == [
        "data",
        "training",
        "models",
        "service",
        "canary",
        "alarms",
    ]
    assert [phase["next"] for phase in status["phases"]] == [None] * 6
    assert status["next"] == "arsl pipeline watch"

    log = EventLog(home, DEMO_RUN)
    for payload in later_events():
        log.write(payload)
    log.close()
    holder.process.stdin.close()  # type: ignore[union-attr]  # the runner exits after its last event
    assert holder.wait() == 0
    after = json.loads(arsl(env, tmp_path, "status", "--json").stdout)
    assert (after["pipeline"]["state"], after["pipeline"]["details"]["version"]) == ("done", "v2")
    # The run is over: each phase suggests what its own state calls for again.
    assert {phase["phase"]: phase["next"] for phase in after["phases"]}["service"] == "arsl deploy champion"


def test_a_home_without_runs_says_so(env: dict[str, str], tmp_path: Path, home: Path) -> None:
    shown = arsl(env, tmp_path, "pipeline", "status")
    assert shown.returncode == 0 and shown.stdout.strip() == (
        f"no pipeline run in {home} yet (`arsl pipeline run --demo` runs the demo)"
    )
    assert json.loads(arsl(env, tmp_path, "pipeline", "status", "--json").stdout)["state"] == "none"
    watched = arsl(env, tmp_path, "pipeline", "watch")
    assert watched.returncode == 2 and "no pipeline run in" in watched.stderr and watched.stdout == ""
    refused = arsl(env, tmp_path, "pipeline", "cancel", "--yes")
    assert refused.returncode == 1 and f"no pipeline run is going on in {home}" in refused.stderr
    assert not home.exists()  # looking created nothing


def test_watch_prints_each_new_event_and_exits_0_on_a_promotion(
    env: dict[str, str], home: Path, tmp_path: Path, holder: PipelineHolder
) -> None:
    watcher = Watcher(env, tmp_path)
    try:
        watcher.until("next: arsl pipeline watch")  # the run so far
        log = EventLog(home, DEMO_RUN)
        for payload in later_events():
            log.write(payload)
        log.close()
        watcher.until("PROMOTED v2")
        holder.process.stdin.close()  # type: ignore[union-attr]
        code, out, errors = watcher.finish()
    finally:
        watcher.close()
    assert code == 0, errors
    assert "  … champion: job-20260101-100012-3f2a epoch 5/10: val_acc 0.934" in out
    assert "✓ champion  done: v1 from job job-20260101-100012-3f2a is champion (250 s)" in out
    assert out.splitlines()[-1] == "PROMOTED v2 in 662 s — v2 promoted to champion"
    assert "epoch 1/10" not in out  # the backlog is summed up, not replayed


def test_ctrl_c_stops_the_watch_only_and_the_runs_own_end_decides_the_exit(
    env: dict[str, str], home: Path, tmp_path: Path, holder: PipelineHolder
) -> None:
    watcher = Watcher(env, tmp_path)
    try:
        watcher.until("next: arsl pipeline watch")
        watcher.process.send_signal(signal.SIGINT)
        code, _out, errors = watcher.finish()
    finally:
        watcher.close()
    assert code == 130
    assert errors.strip() == (
        f"stopped watching; pipeline run {DEMO_RUN} goes on (process {holder.pid}): "
        "`arsl pipeline watch` follows it again"
    )
    assert holder.process.poll() is None  # the run goes on

    watcher = Watcher(env, tmp_path, "--json")
    try:
        watcher.until('"PipelineProgress"')
        os.kill(holder.pid, signal.SIGINT)  # Ctrl-C in the run's own terminal
        assert holder.wait() == 130
        code, out, errors = watcher.finish()
    finally:
        watcher.close()
    assert code == 1, errors
    events = [json.loads(line) for line in out.splitlines()]
    assert [event["event"] for event in events[-2:]] == ["PipelineEnded", "PipelineStatus"]
    assert events[-1]["state"] == "cancelled" and events[-1]["current_phase"] == "champion"
    assert events[0]["event"] == "PipelinePhase" and events[0]["at"] > 0  # the file's lines, from the start


def test_a_run_killed_outright_ends_the_watch_as_interrupted(
    env: dict[str, str], tmp_path: Path, holder: PipelineHolder
) -> None:
    watcher = Watcher(env, tmp_path)
    try:
        watcher.until("next: arsl pipeline watch")
        os.kill(holder.pid, signal.SIGKILL)
        code, out, _errors = watcher.finish()
    finally:
        watcher.close()
    assert code == 1
    assert out.splitlines()[-1] == (
        "INTERRUPTED its process ended without finishing during champion (killed?); run it again to resume"
    )


def test_cancel_signals_the_runs_process_group_and_reports_how_it_ended(
    env: dict[str, str], home: Path, tmp_path: Path, holder: PipelineHolder
) -> None:
    config = tmp_path / "read-only.toml"
    config.write_text("read_only = true\n", encoding="utf-8")
    refused = arsl(env, tmp_path, "--config", str(config), "pipeline", "cancel", "--yes")
    assert refused.returncode == 2 and "read-only mode is on" in refused.stderr
    assert holder.process.poll() is None

    cancelled = arsl(env, tmp_path, "pipeline", "cancel", "--yes")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.splitlines() == [
        f"SIGINT sent to process group {holder.pid} to cancel pipeline run {DEMO_RUN}; waiting up to 30 s for it "
        "to stop …",
        f"Pipeline {DEMO_RUN}: cancelled in champion — interrupted (SIGINT); run it again to resume",
    ]
    assert holder.wait() == 130  # ended by the SIGINT, as Ctrl-C in its terminal would

    again = arsl(env, tmp_path, "pipeline", "cancel", "--yes")
    assert again.returncode == 1
    assert f"no pipeline run is going on in {home}; the latest, {DEMO_RUN}, cancelled in champion" in again.stderr
    status = json.loads(arsl(env, tmp_path, "status", "--json").stdout)
    assert status["pipeline"]["state"] == "attention"
    assert status["next"] == "arsl pipeline run --demo  (resumes)"
