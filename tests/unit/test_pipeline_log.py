"""The pipeline's lock and event file, and their reader: a second run is refused, a follower reads only
what is new, tolerates a torn last line, and calls a run whose process died without an end `interrupted`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arsl_tui.config import Settings
from arsl_tui.ops.pipeline import PipelineBusy, PipelineError, PipelineRequest, run_pipeline
from arsl_tui.ops.pipeline_log import (
    EventLog,
    LockHeld,
    PipelineLock,
    PipelineLogReader,
    events_path,
    lock_is_held,
    read_holder,
)
from tests.ui.fakes import DEMO_RUN, PipelineHolder, pipeline_events


def states(view: object) -> dict[str, str]:
    return {phase.name: phase.state for phase in view.phases}  # type: ignore[attr-defined]


def test_a_home_without_runs_reads_as_none_and_looking_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    view = PipelineLogReader(home).read()
    assert (view.exists, view.alive, view.runs) == (False, False, 0)
    assert not home.exists()


def test_the_reader_follows_a_live_run_reading_only_new_bytes_and_waits_for_a_torn_line(tmp_path: Path) -> None:
    lock = PipelineLock.acquire(tmp_path, DEMO_RUN)  # held in this process: the reader sees a live run
    log = EventLog(tmp_path, DEMO_RUN)
    try:
        events = pipeline_events()
        for payload in events[:5]:  # through the upload
            log.write(payload)
        reader = PipelineLogReader(tmp_path)
        view = reader.read()
        assert (view.run_id, view.alive, view.pid, view.demo) == (DEMO_RUN, True, os.getpid(), True)
        assert states(view) == {
            "data": "done",
            "upload": "done",
            "champion": "pending",
            "train": "pending",
            "gate": "pending",
            "deploy": "pending",
            "canary": "pending",
            "alarms": "pending",
        }
        size = events_path(tmp_path, DEMO_RUN).stat().st_size
        assert reader.bytes_read == size

        for payload in events[5:]:  # the champion starts training; epoch 4 of 10
            log.write(payload)
        with open(events_path(tmp_path, DEMO_RUN), "ab") as raw:  # the next line, half written
            raw.write(b'{"event": "PipelineProgress", "phase": "champion", "detail": "job-20260101-100012-3f2a ep')
        view = reader.read()
        assert reader.bytes_read == events_path(tmp_path, DEMO_RUN).stat().st_size  # each byte read once
        assert view.current is not None and view.current.name == "champion" and view.current.state == "running"
        assert view.progress == "job-20260101-100012-3f2a epoch 4/10: val_acc 0.912"  # the torn line waits
        assert view.skipped_lines == 0 and view.outcome == ""

        with open(events_path(tmp_path, DEMO_RUN), "ab") as raw:
            raw.write(b'och 5/10: val_acc 0.934"}\n')
        assert reader.read().progress == "job-20260101-100012-3f2a epoch 5/10: val_acc 0.934"
    finally:
        log.close()
        lock.release()


def test_a_run_killed_outright_is_interrupted_and_its_torn_last_line_ignored(tmp_path: Path) -> None:
    holder = PipelineHolder(tmp_path, events=pipeline_events(), torn='{"event": "PipelineProg')
    try:
        reader = PipelineLogReader(tmp_path)
        assert reader.read().alive
        os.kill(holder.pid, signal.SIGKILL)  # no PipelineEnded, the lock freed by the kernel
        holder.wait()
        view = reader.read()
    finally:
        holder.close()
    assert read_holder(tmp_path) is not None and read_holder(tmp_path).pid == holder.pid  # type: ignore[union-attr]
    assert (view.alive, view.outcome) == (False, "interrupted")
    assert view.outcome_detail == (
        "its process ended without finishing during champion (killed?); run it again to resume"
    )
    assert states(view)["champion"] == "stopped" and states(view)["upload"] == "done"
    assert view.skipped_lines == 1  # the torn line, once its writer is known dead
    assert view.elapsed_s >= 0 and view.runs == 1


def test_a_second_run_is_refused_at_once_naming_the_process_that_holds_the_lock(tmp_path: Path) -> None:
    home = tmp_path / "home"
    holder = PipelineHolder(home, events=pipeline_events())
    try:
        with pytest.raises(LockHeld) as held:
            PipelineLock.acquire(home, "p20260101-100500-cd34")
        assert held.value.holder is not None and held.value.holder.pid == holder.pid

        settings = Settings(home=str(home))
        started = time.monotonic()
        with pytest.raises(PipelineBusy, match=f"process {holder.pid}") as busy:
            run_pipeline(settings, PipelineRequest(demo=True))
        assert time.monotonic() - started < 5
        assert f"kill -INT {holder.pid}" in str(busy.value) and DEMO_RUN in str(busy.value)
        assert not (home / "demo").exists()  # refused before the demo data is generated

        environment = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
        cli = subprocess.run(
            [sys.executable, "-m", "arsl_tui", "pipeline", "run", "--demo", "--yes"],
            env={**environment, "ARSL_HOME": str(home)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert cli.returncode == 1, cli.stderr
        assert f"another pipeline run is going on in {home}" in cli.stderr
        assert f"process {holder.pid}" in cli.stderr and "Traceback" not in cli.stderr
        assert not (home / "demo").exists()
    finally:
        holder.close()
    lock = PipelineLock.acquire(home, "p20260101-100600-ef56")  # free once the holder is gone
    lock.release()


def test_a_run_that_fails_or_is_interrupted_ends_its_event_file_and_frees_the_lock(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path / "home"))
    with pytest.raises(PipelineError, match="not a folder"):
        run_pipeline(settings, PipelineRequest(dataset=tmp_path / "missing"))
    assert not lock_is_held(settings.home_dir) and read_holder(settings.home_dir) is None
    view = PipelineLogReader(settings.home_dir).read()
    assert (view.outcome, view.alive) == ("failed", False)
    assert view.outcome_detail == f"{tmp_path / 'missing'}: not a folder"

    folder = tmp_path / "data"
    folder.mkdir()

    def interrupted(event: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the first phase is announced

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(settings, PipelineRequest(dataset=folder), on_event=interrupted)
    reader = PipelineLogReader(settings.home_dir)
    view = reader.read()
    assert (view.outcome, view.runs) == ("cancelled", 2)
    assert view.outcome_detail == "interrupted (SIGINT); run it again to resume"
    lines = [json.loads(line) for line in events_path(settings.home_dir, view.run_id).read_text().splitlines()]
    assert [line["event"] for line in lines] == ["PipelinePhase", "PipelineEnded"]
    assert lines[0] == {
        "event": "PipelinePhase",
        "phase": "data",
        "title": "generate the demo data set",
        "state": "not needed",
        "detail": f"using {folder}",
        "elapsed_s": lines[0]["elapsed_s"],
        "at": lines[0]["at"],
    }
    assert not lock_is_held(settings.home_dir)
