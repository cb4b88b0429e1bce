"""The SQLite state file: WAL, a connection per thread, numbered migrations per component."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from arsl_tui.state.db import Migrations, StateDB, StateError, StateWriteError

V1 = Migrations("jobs", ("CREATE TABLE jobs (id TEXT PRIMARY KEY);",))
V2 = Migrations(
    "jobs",
    (
        *V1.steps,
        "ALTER TABLE jobs ADD COLUMN phase TEXT NOT NULL DEFAULT 'Pending';\n"
        "CREATE INDEX jobs_by_phase ON jobs (phase);",
    ),
)


def columns(db: StateDB, table: str) -> list[str]:
    return [row[1] for row in db.connection().execute(f"PRAGMA table_info({table})")]


def test_migrations_apply_in_order_once_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "arsl.db"
    with StateDB(path) as db:
        assert db.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.ensure_schema(V1)
        assert db.schema_version("jobs") == 1 and columns(db, "jobs") == ["id"]
        with db.transaction() as connection:
            connection.execute("INSERT INTO jobs (id) VALUES ('a')")
    with StateDB(path) as db:
        db.ensure_schema(V1)  # nothing to do: the file is already at version 1
        db.ensure_schema(V2)
        assert db.schema_version("jobs") == 2 and columns(db, "jobs") == ["id", "phase"]
        assert db.connection().execute("SELECT id, phase FROM jobs").fetchall() == [("a", "Pending")]
        other = Migrations("alarms", ("CREATE TABLE alarms (name TEXT);",))
        db.ensure_schema(other)
        assert (db.schema_version("alarms"), db.schema_version("jobs")) == (1, 2), "components are independent"


def test_a_file_from_a_newer_program_is_refused(tmp_path: Path) -> None:
    with StateDB(tmp_path / "arsl.db") as db:
        db.ensure_schema(V2)
    with StateDB(tmp_path / "arsl.db") as db, pytest.raises(StateError, match="newer than this program"):
        db.ensure_schema(V1)


def test_a_failed_step_rolls_back_completely(tmp_path: Path) -> None:
    broken = Migrations(
        "jobs", (*V1.steps, "ALTER TABLE jobs ADD COLUMN ok TEXT;\nALTER TABLE nope ADD COLUMN x TEXT;")
    )
    with StateDB(tmp_path / "arsl.db") as db:
        with pytest.raises(StateError, match=r"cannot migrate 'jobs' to schema version 2 \(no such table: nope\)"):
            db.ensure_schema(broken)
        assert db.schema_version("jobs") == 0
        assert columns(db, "jobs") == [], "not even step 1 is kept: the whole migration is one transaction"


def test_each_thread_gets_its_own_connection(tmp_path: Path) -> None:
    with StateDB(tmp_path / "arsl.db") as db:
        db.ensure_schema(V1)
        seen: list[int] = []

        def work(index: int) -> None:
            seen.append(id(db.connection()))
            for number in range(50):
                with db.transaction() as connection:
                    connection.execute("INSERT INTO jobs (id) VALUES (?)", (f"{index}-{number}",))

        threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(seen)) == 4
        assert db.connection().execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 200


def test_a_transaction_interrupted_right_after_begin_does_not_wedge_the_connection(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "arsl.db")
    connection = db.connection()
    connection.execute("CREATE TABLE t (x INTEGER)")
    connection.execute("BEGIN IMMEDIATE")  # as if Ctrl-C arrived before the `with` block started
    connection.execute("INSERT INTO t VALUES (1)")
    with db.transaction() as inner:
        inner.execute("INSERT INTO t VALUES (2)")
    assert [row[0] for row in db.connection().execute("SELECT x FROM t")] == [2]


def test_a_full_state_file_is_a_state_error_naming_it_and_keeps_what_was_committed(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "arsl.db")
    with db.transaction() as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
        connection.execute("INSERT INTO notes VALUES ('kept')")
    pages = db.connection().execute("PRAGMA page_count").fetchone()[0]
    db.connection().execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: as on a full disk
    with (
        pytest.raises(StateWriteError, match=r"arsl\.db: database or disk is full") as raised,
        db.transaction() as connection,
    ):
        connection.execute("INSERT INTO notes VALUES (?)", ("x" * 100_000,))
    assert isinstance(raised.value, StateError) and isinstance(raised.value, sqlite3.OperationalError)
    assert not db.connection().in_transaction
    assert db.connection().execute("SELECT body FROM notes").fetchall() == [("kept",)]
    db.close()
