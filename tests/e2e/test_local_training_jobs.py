"""Local training jobs through the real torchrun and the real trainer on a tiny synthetic data set.

Waiting is done by polling the platform with a deadline (what the console does at 1 Hz), never by
sleeping a guessed amount of time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from arsl_tui.domain.events import Event
from arsl_tui.domain.jobs import JobEnded, JobEpochReported, JobPhase, JobSpec, JobStatus, MetricRecord
from arsl_tui.ops.synth import synthesize
from arsl_tui.ops.training import watch_job
from arsl_tui.providers.local.jobs import LocalTrainingPlatform, job_processes, scan_processes
from tests.fixtures.cli import arsl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
DEADLINE_S = 120.0


def poll(read: Callable[[], T], done: Callable[[T], bool], what: str, timeout_s: float = DEADLINE_S) -> T:
    """Read until `done`; fails the test with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {value!r}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    synthesize(out, per_class=4, seed=3)
    return out


def spec(data: Path, epochs: int, processes: int = 1) -> JobSpec:
    return JobSpec(
        dataset=str(data), epochs=epochs, batch_size=32, learning_rate=0.003, seed=1, processes_per_node=processes
    )


def test_a_job_runs_to_completion_with_live_metrics_and_a_restart_reattaches(tiny_set: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = LocalTrainingPlatform(home)
    job_id = platform.submit(spec(tiny_set, epochs=2))
    phases = [platform.status(job_id).phase]
    assert phases == [JobPhase.CREATING]

    running = poll(lambda: platform.status(job_id), lambda s: s.phase is not JobPhase.CREATING, "the job to start")
    phases.append(running.phase)
    assert running.phase is JobPhase.RUNNING and running.started_at is not None

    # The console restarts: a fresh platform object over the same home folder finds the job.
    platform.close()
    restarted = LocalTrainingPlatform(home)
    assert [status.job_id for status in restarted.list()] == [job_id]

    cursor = 0
    records: list[MetricRecord] = []
    seen_while_running: list[JobStatus] = []

    def read() -> JobStatus:
        nonlocal cursor
        status = restarted.status(job_id)
        chunk = restarted.metrics(job_id, cursor)
        cursor = chunk.cursor
        records.extend(chunk.records)
        if status.phase is JobPhase.RUNNING and any(r.type == "epoch" for r in chunk.records):
            seen_while_running.append(status)
        if status.phase is not phases[-1]:
            phases.append(status.phase)
        return status

    final = poll(read, lambda s: s.terminal, "the job to end")
    assert final.phase is JobPhase.COMPLETED, final.reason
    assert phases == [JobPhase.CREATING, JobPhase.RUNNING, JobPhase.COMPLETED]
    assert seen_while_running, "an epoch record should be readable while the job still runs"
    assert [r.epoch for r in records if r.type == "epoch"] == [1, 2]
    assert records[-1].type == "final"
    assert final.ended_at is not None and final.started_at is not None and final.ended_at > final.started_at

    job_dir = home / "jobs" / job_id
    assert (job_dir / "output" / "metrics.jsonl").is_file() and (job_dir / "output" / "model").is_dir()
    assert "epoch 2/2" in restarted.logs(job_id).text
    assert restarted.resources(job_id).processes == 0

    # The use case the CLI's `watch` and the console run: on an ended job it reports every epoch, then the end.
    events: list[Event] = []
    assert watch_job(restarted, job_id, events.append, sleep=lambda _s: None).phase is JobPhase.COMPLETED
    epochs = [event for event in events if isinstance(event, JobEpochReported)]
    assert [event.record.epoch for event in epochs] == [1, 2]
    assert epochs[-1].progress.epochs_done == 2 and epochs[-1].progress.eta_s == 0.0
    [ended] = [event for event in events if isinstance(event, JobEnded)]
    assert ended.phase == "Completed" and ended.final is not None


def test_stop_ends_the_whole_process_tree(tiny_set: Path, tmp_path: Path) -> None:
    platform = LocalTrainingPlatform(tmp_path / "home", grace_s=10.0)
    job_id = platform.submit(spec(tiny_set, epochs=200, processes=2))
    poll(lambda: platform.status(job_id), lambda s: s.phase is JobPhase.RUNNING, "the job to run")
    pgid = platform._row(job_id).pgid
    assert pgid is not None
    # torchrun's two workers live in process groups of their own: the job is a tree, not one group.
    tree = poll(lambda: job_processes(pgid), lambda found: len({p.pgid for p in found}) >= 3, "both workers")
    sample = platform.resources(job_id)
    assert sample.processes is not None and sample.processes >= 4
    assert sample.memory_mb is not None and sample.memory_mb > 50

    stopped = platform.stop(job_id)
    assert stopped.phase is JobPhase.TERMINATED and "stopped on request" in stopped.reason
    alive = scan_processes()
    assert [p.pid for p in tree if p.pid in alive] == []
    assert platform.stop(job_id).phase is JobPhase.TERMINATED  # stopping an ended job changes nothing


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    env["ARSL_HOME"] = str(tmp_path / "home")
    return env


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cli_submit_wait_on_a_crashing_trainer_exits_1_and_says_why(tmp_path: Path, cli_env: dict[str, str]) -> None:
    broken = tmp_path / "broken"
    (broken / "ain").mkdir(parents=True)  # a class folder with no images: the trainer refuses the data set

    result = arsl(
        cli_env,
        tmp_path,
        "--json",
        "train",
        "submit",
        str(broken),
        "--epochs",
        "1",
        "--gpus",
        "1",
        "--wait",
        "--interval",
        "0.2",
        "--yes",
    )
    assert result.returncode == 1, result.stderr
    lines = json_lines(result.stdout)
    job_id = lines[0]["job_id"]
    assert all(line["job_id"] == job_id for line in lines)
    assert lines[0]["phase"] == "Creating" and lines[0]["spec"]["epochs"] == 1
    ended = lines[-1]
    assert ended["event"] == "ended" and ended["phase"] == "Failed"
    assert "class 'ain' has no images" in ended["reason"]

    status = arsl(cli_env, tmp_path, "--json", "train", "status", job_id)
    assert status.returncode == 0
    payload = json.loads(status.stdout)
    assert (payload["job_id"], payload["phase"]) == (job_id, "Failed") and "has no images" in payload["reason"]
    logs = arsl(cli_env, tmp_path, "--json", "train", "logs", job_id)
    assert "has no images" in json.loads(logs.stdout)["log"]


def test_cli_refuses_without_a_data_set_and_in_read_only_mode(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = arsl(cli_env, tmp_path, "train", "submit", "--yes")
    assert result.returncode == 2
    assert "none has been uploaded to the local backend yet" in result.stderr and "arsl upload" in result.stderr

    read_only = arsl({**cli_env, "ARSL_READ_ONLY": "true"}, tmp_path, "train", "submit", str(tmp_path), "--yes")
    assert read_only.returncode == 2 and "read-only" in read_only.stderr

    missing = arsl(cli_env, tmp_path, "--json", "train", "status", "job-00000000-000000-dead")
    assert missing.returncode == 2 and "no local training job" in json.loads(missing.stdout)["error"]
    assert not (tmp_path / "home" / "jobs").exists() or list((tmp_path / "home" / "jobs").iterdir()) == []


def test_cli_resume_continues_an_ended_job_on_its_output_and_refuses_what_it_cannot(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    broken = tmp_path / "broken"
    (broken / "ain").mkdir(parents=True)
    first = arsl(
        cli_env,
        tmp_path,
        "--json",
        "train",
        "submit",
        str(broken),
        "--epochs",
        "1",
        "--gpus",
        "1",
        "--wait",
        "--interval",
        "0.2",
        "--yes",
    )
    assert first.returncode == 1, first.stderr
    job_id = json_lines(first.stdout)[0]["job_id"]

    read_only = arsl({**cli_env, "ARSL_READ_ONLY": "true"}, tmp_path, "train", "resume", job_id, "--yes")
    assert read_only.returncode == 2 and "read-only" in read_only.stderr

    resumed = arsl(cli_env, tmp_path, "--json", "train", "resume", job_id, "--wait", "--interval", "0.2", "--yes")
    assert resumed.returncode == 1, resumed.stderr  # the data is still broken: the new job fails the same way
    lines = json_lines(resumed.stdout)
    new_id = lines[0]["job_id"]
    assert new_id != job_id and lines[0]["resumes"] == job_id
    assert lines[-1]["phase"] == "Failed" and "has no images" in lines[-1]["reason"]

    unknown = arsl(cli_env, tmp_path, "train", "resume", "job-00000000-000000-dead", "--yes")
    assert unknown.returncode == 2 and "no local training job" in unknown.stderr
