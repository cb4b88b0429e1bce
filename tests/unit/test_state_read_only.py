"""Read-only state files: opened with `mode=ro`, never created, "no state here yet" when absent."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from arsl_tui.state.db import (
    NO_STATE_YET,
    Migrations,
    StateDB,
    StateError,
    StateMissing,
    StateReadOnlyError,
    open_state,
    opens_read_only,
    read_only_under,
)

JOBS = Migrations("jobs", ("CREATE TABLE jobs (id TEXT PRIMARY KEY);",))
JOBS_V2 = Migrations("jobs", (*JOBS.steps, "ALTER TABLE jobs ADD COLUMN phase TEXT NOT NULL DEFAULT 'Pending';"))
CANARY = Migrations(
    "canary",
    (
        "CREATE TABLE canary_current (id INTEGER PRIMARY KEY, run_id TEXT);\n"
        "CREATE INDEX canary_by_run ON canary_current (run_id);",
    ),
)


def write_jobs(home: Path, *ids: str) -> None:
    with open_state(home) as db:
        db.ensure_schema(JOBS)
        with db.transaction() as connection:
            connection.executemany("INSERT INTO jobs (id) VALUES (?)", [(job_id,) for job_id in ids])


def test_a_missing_file_is_no_state_here_yet_and_nothing_is_created(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = open_state(home, read_only=True)
    with pytest.raises(StateMissing, match=NO_STATE_YET) as raised:
        db.ensure_schema(JOBS)
    assert str(home / "arsl.db") in str(raised.value)
    with pytest.raises(StateMissing):
        db.connection()
    assert not home.exists(), "neither the home nor the file may be created"
    db.close()


def test_reads_see_the_file_and_every_write_is_refused(tmp_path: Path) -> None:
    write_jobs(tmp_path, "a", "b")
    before = (tmp_path / "arsl.db").read_bytes()
    with StateDB(tmp_path / "arsl.db", read_only=True) as db:
        db.ensure_schema(JOBS)
        assert db.schema_version("jobs") == 1
        assert db.connection().execute("SELECT id FROM jobs ORDER BY id").fetchall() == [("a",), ("b",)]
        with pytest.raises(StateReadOnlyError, match="read-only mode writes nothing"), db.transaction():
            pass
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # nor SQL outside `transaction()`
            db.connection().execute("INSERT INTO jobs (id) VALUES ('c')")
    assert (tmp_path / "arsl.db").read_bytes() == before


def test_a_component_the_file_lacks_reads_as_empty_until_a_writer_adds_it(tmp_path: Path) -> None:
    write_jobs(tmp_path, "a")
    with StateDB(tmp_path / "arsl.db", read_only=True) as db:
        db.ensure_schema(CANARY)
        assert db.connection().execute("SELECT run_id FROM canary_current").fetchall() == []
        assert db.schema_version("canary") == 0, "the stand-in is not recorded as the file's"
        with open_state(tmp_path) as writer:
            writer.ensure_schema(CANARY)
            with writer.transaction() as connection:
                connection.execute("INSERT INTO canary_current (id, run_id) VALUES (1, 'run-1')")
        assert db.connection().execute("SELECT run_id FROM canary_current").fetchall() == [("run-1",)]
        assert db.schema_version("canary") == 1


def test_a_removed_home_is_no_state_here_yet_and_stays_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_jobs(home, "a")
    db = open_state(home, read_only=True)
    db.ensure_schema(JOBS)
    db.ensure_schema(CANARY)
    assert db.connection().execute("SELECT count(*) FROM jobs").fetchone() == (1,)
    shutil.rmtree(home)
    with pytest.raises(StateMissing, match=NO_STATE_YET):
        db.connection()  # not the unlinked file the open connection could still read
    seen: list[BaseException] = []
    thread = threading.Thread(target=lambda: seen.extend(_error_of(db.connection)))
    thread.start()
    thread.join()
    assert len(seen) == 1 and isinstance(seen[0], StateMissing), "a new thread's connection as well"
    assert not home.exists()
    write_jobs(home, "z")  # a writer starts afresh: the reader follows the new file
    assert db.connection().execute("SELECT id FROM jobs").fetchall() == [("z",)]
    db.close()


def test_a_schema_older_than_the_reader_is_explained_not_migrated(tmp_path: Path) -> None:
    write_jobs(tmp_path, "a")
    with (
        StateDB(tmp_path / "arsl.db", read_only=True) as db,
        pytest.raises(
            StateError, match="schema version 1; this program reads version 2, and read-only mode cannot upgrade"
        ),
    ):
        db.ensure_schema(JOBS_V2)
    with open_state(tmp_path) as writer:
        assert writer.schema_version("jobs") == 1


def test_a_home_declared_read_only_opens_its_files_read_only(tmp_path: Path) -> None:
    home = tmp_path / "read-only-home"
    other = tmp_path / "other-home"
    assert not opens_read_only(home / "arsl.db")
    read_only_under(home)
    assert opens_read_only(home / "arsl.db") and not opens_read_only(other / "arsl.db")
    with pytest.raises(StateMissing):
        open_state(home).ensure_schema(JOBS)
    assert not home.exists()
    with open_state(other) as writable:
        writable.ensure_schema(JOBS)
    assert (other / "arsl.db").is_file(), "other homes stay writable"


def _error_of(call: Callable[[], object]) -> list[BaseException]:
    try:
        call()
    except BaseException as error:  # handed to the test's thread to assert on
        return [error]
    return []


def _pid_of_an_ended_process() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_read_only_reader_of_a_dead_gateway_says_none_and_leaves_the_record(tmp_path: Path) -> None:
    from arsl_tui.providers.local.serving_control import LocalServingControl, ProcessRecord, ServingState

    home = tmp_path / "home"
    writer = ServingState.open(home)
    writer.record_process(ProcessRecord(_pid_of_an_ended_process(), 1, "127.0.0.1", 8765, 1.0))
    writer.close()
    before = (home / "arsl.db").read_bytes()
    read_only_under(home)
    control = LocalServingControl(home)
    try:
        assert control.running() is None
    finally:
        control.close()
    assert (home / "arsl.db").read_bytes() == before  # the stale record is the next writer's to drop


def test_a_read_only_reader_derives_a_job_that_ended_without_recording_it(tmp_path: Path) -> None:
    from arsl_tui.domain.jobs import JobSpec
    from arsl_tui.providers.local.jobs import LocalTrainingPlatform

    home = tmp_path / "home"
    data = tmp_path / "data"
    data.mkdir()
    writer = LocalTrainingPlatform(home, launcher=[sys.executable, "-c", "raise SystemExit(3)"])
    try:
        job_id = writer.submit(JobSpec(dataset=str(data), epochs=1, batch_size=8, learning_rate=0.001))
    finally:
        writer.close()
    read_only_under(home)
    reader = LocalTrainingPlatform(home)
    try:
        deadline = time.monotonic() + 60
        while not (status := reader.status(job_id)).terminal:  # each read derives it from the processes
            assert time.monotonic() < deadline, status
            time.sleep(0.05)  # polling interval of a bounded wait on a real process
    finally:
        reader.close()
    assert "exit code 3" in status.reason, status
    with StateDB(home / "arsl.db", read_only=True) as db:
        stored = db.connection().execute("SELECT phase FROM local_jobs WHERE job_id = ?", (job_id,)).fetchone()
    assert stored is not None and stored[0] != status.phase.value  # derived, shown, not written
