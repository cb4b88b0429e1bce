"""The upload journal: what each upload job has confirmed in the store, and a record of every run.

A *job* is one data set (manifest id) in one mode to one destination; its objects carry a state:
`pending` (not yet asked for), `sent` (a request may have reached the store: re-checked with a
head on resume), `confirmed` (the store reported the right MD5 and size). A *run* is one attempt at
a job; a job's journal outlives its runs, so any later run resumes where the last one stopped.

Whether a run is still alive is told by an advisory lock (`flock`) that the running process holds
on the job's lock file: the kernel drops it when the process dies, even by `kill -9`, so a run that
says `running` while its lock is free was interrupted — no guessing from PIDs, which get reused.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arsl_tui.ops.file_locks import lock_is_held
from arsl_tui.state.db import Migrations, StateDB

LIVE_STATUSES = ("running", "paused")
_LOCK_TRIES = 10

MIGRATIONS = Migrations(
    "upload",
    steps=(
        """
    CREATE TABLE upload_runs (
        run_id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        dataset_dir TEXT NOT NULL,
        manifest_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        destination TEXT NOT NULL,
        status TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        objects_total INTEGER NOT NULL DEFAULT 0,
        objects_confirmed INTEGER NOT NULL DEFAULT 0,
        bytes_total INTEGER NOT NULL DEFAULT 0,
        bytes_confirmed INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX upload_runs_by_start ON upload_runs (started_at);
    CREATE INDEX upload_runs_by_job ON upload_runs (job_id, started_at);
    CREATE TABLE upload_objects (
        job_id TEXT NOT NULL,
        key TEXT NOT NULL,
        md5 TEXT NOT NULL,
        size INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'confirmed')),
        updated_at REAL NOT NULL,
        PRIMARY KEY (job_id, key)
    ) WITHOUT ROWID;
    """,
    ),
)


class UploadBusy(Exception):
    """Another live process is uploading the same data set to the same place."""


@dataclass(frozen=True)
class UploadRunRecord:
    run_id: str
    dataset_dir: str
    manifest_id: str
    mode: str
    destination: str
    status: str
    """running | paused | done | cancelled | failed | interrupted (was running, process gone)."""
    objects_total: int
    objects_confirmed: int
    bytes_total: int
    bytes_confirmed: int
    started_at: float
    updated_at: float
    error: str


@dataclass(frozen=True)
class PlannedObject:
    key: str
    md5: str
    size: int


_RUN_COLUMNS = (
    "run_id, job_id, dataset_dir, manifest_id, mode, destination, status, objects_total, "
    "objects_confirmed, bytes_total, bytes_confirmed, started_at, updated_at, error"
)


class UploadJournal:
    """Run records and per-object states in the state database; every method is one transaction."""

    def __init__(self, db: StateDB, locks_dir: Path) -> None:
        self.db = db
        self.locks_dir = locks_dir
        db.ensure_schema(MIGRATIONS)

    # -- runs ----------------------------------------------------------------------------------------

    def start_run(
        self, run_id: str, job_id: str, dataset_dir: str, manifest_id: str, mode: str, destination: str
    ) -> None:
        now = time.time()
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO upload_runs (run_id, job_id, dataset_dir, manifest_id, mode, destination, status, pid, "
                "host, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (
                    run_id,
                    job_id,
                    dataset_dir,
                    manifest_id,
                    mode,
                    destination,
                    os.getpid(),
                    socket.gethostname(),
                    now,
                    now,
                ),
            )

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        error: str | None = None,
        objects_total: int | None = None,
        objects_confirmed: int | None = None,
        bytes_total: int | None = None,
        bytes_confirmed: int | None = None,
        connection: sqlite3.Connection | None = None,
    ) -> None:
        fields = {
            "status": status,
            "error": error,
            "objects_total": objects_total,
            "objects_confirmed": objects_confirmed,
            "bytes_total": bytes_total,
            "bytes_confirmed": bytes_confirmed,
        }
        chosen = {name: value for name, value in fields.items() if value is not None}
        assignments = ", ".join(f"{name} = ?" for name in chosen)
        statement = f"UPDATE upload_runs SET {assignments}{', ' if chosen else ''}updated_at = ? WHERE run_id = ?"  # noqa: S608
        values = (*chosen.values(), time.time(), run_id)
        if connection is not None:
            connection.execute(statement, values)
            return
        with self.db.transaction() as own:
            own.execute(statement, values)

    def runs(self, limit: int) -> list[UploadRunRecord]:
        rows = (
            self.db.connection()
            .execute(
                f"SELECT {_RUN_COLUMNS} FROM upload_runs ORDER BY started_at DESC, rowid DESC LIMIT ?",  # noqa: S608
                (limit,),
            )
            .fetchall()
        )
        return [self._record(row) for row in rows]

    def latest_attempts(self) -> list[UploadRunRecord]:
        """The newest run of every job, newest first."""
        rows = (
            self.db.connection()
            .execute(
                f"SELECT {_RUN_COLUMNS} FROM upload_runs AS r WHERE r.run_id = (SELECT run_id FROM upload_runs "  # noqa: S608
                "WHERE job_id = r.job_id ORDER BY started_at DESC LIMIT 1) ORDER BY started_at DESC"
            )
            .fetchall()
        )
        return [self._record(row) for row in rows]

    def newest_done(self) -> UploadRunRecord | None:
        row = (
            self.db.connection()
            .execute(
                f"SELECT {_RUN_COLUMNS} FROM upload_runs WHERE status = 'done' "  # noqa: S608
                "ORDER BY started_at DESC LIMIT 1"
            )
            .fetchone()
        )
        return self._record(row) if row else None

    def _record(self, row: tuple[Any, ...]) -> UploadRunRecord:
        (
            run_id,
            job_id,
            dataset_dir,
            manifest_id,
            mode,
            destination,
            status,
            objects_total,
            objects_confirmed,
            bytes_total,
            bytes_confirmed,
            started_at,
            updated_at,
            error,
        ) = row
        if status in LIVE_STATUSES and not lock_is_held(self.lock_path(str(job_id))):
            status = "interrupted"
        return UploadRunRecord(
            run_id=str(run_id),
            dataset_dir=str(dataset_dir),
            manifest_id=str(manifest_id),
            mode=str(mode),
            destination=str(destination),
            status=str(status),
            objects_total=int(objects_total),
            objects_confirmed=int(objects_confirmed),
            bytes_total=int(bytes_total),
            bytes_confirmed=int(bytes_confirmed),
            started_at=float(started_at),
            updated_at=float(updated_at),
            error=str(error),
        )

    # -- objects -------------------------------------------------------------------------------------

    def plan(self, job_id: str, objects: Iterable[PlannedObject], *, forget_others: bool = True) -> dict[str, str]:
        """Record the objects this job needs; returns key → state (of the objects given).

        A key whose MD5 or size changed since an earlier run (e.g. shards rebuilt at another size) starts
        over as pending; keys the job no longer needs are forgotten — unless `forget_others` is False,
        for a plan that arrives in parts (shards, as each is packed).
        """
        now = time.time()
        planned: set[str] = set()

        def rows() -> Iterable[tuple[str, str, str, int, float]]:
            for item in objects:
                planned.add(item.key)
                yield job_id, item.key, item.md5, item.size, now

        with self.db.transaction() as connection:
            connection.executemany(
                "INSERT INTO upload_objects (job_id, key, md5, size, state, updated_at) VALUES (?, ?, ?, ?, "
                "'pending', ?) ON CONFLICT (job_id, key) DO UPDATE SET md5 = excluded.md5, size = excluded.size, "
                "state = 'pending', updated_at = excluded.updated_at "
                "WHERE upload_objects.md5 != excluded.md5 OR upload_objects.size != excluded.size",
                rows(),
            )
            states: dict[str, str] = {}
            stale: list[tuple[str, str]] = []
            for key, state in connection.execute("SELECT key, state FROM upload_objects WHERE job_id = ?", (job_id,)):
                if key in planned:
                    states[key] = state
                elif forget_others:
                    stale.append((job_id, key))
            connection.executemany("DELETE FROM upload_objects WHERE job_id = ? AND key = ?", stale)
        return states

    def planned_keys(self, job_id: str) -> set[str]:
        rows = self.db.connection().execute("SELECT key FROM upload_objects WHERE job_id = ?", (job_id,)).fetchall()
        return {str(key) for (key,) in rows}

    def discard_job(self, job_id: str) -> None:
        """Forget a job and every run of it, as if none had happened (its objects were removed from the store)."""
        with self.db.transaction() as connection:
            connection.execute("DELETE FROM upload_objects WHERE job_id = ?", (job_id,))
            connection.execute("DELETE FROM upload_runs WHERE job_id = ?", (job_id,))

    def set_states(self, connection: sqlite3.Connection, job_id: str, keys: Iterable[str], state: str) -> None:
        """Within the caller's transaction."""
        now = time.time()
        connection.executemany(
            "UPDATE upload_objects SET state = ?, updated_at = ? WHERE job_id = ? AND key = ?",
            ((state, now, job_id, key) for key in keys),
        )

    def counts(self, job_id: str) -> dict[str, int]:
        rows = (
            self.db.connection()
            .execute("SELECT state, COUNT(*) FROM upload_objects WHERE job_id = ? GROUP BY state", (job_id,))
            .fetchall()
        )
        return {str(state): int(count) for state, count in rows}

    # -- liveness ------------------------------------------------------------------------------------

    def lock_path(self, job_id: str) -> Path:
        return self.locks_dir / f"upload-{job_id}.lock"

    def acquire(self, job_id: str) -> JobLock:
        return JobLock.acquire(self.lock_path(job_id))


class JobLock:
    """An exclusive `flock` on a job's lock file, held for the life of a run."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, path: Path) -> JobLock:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(_LOCK_TRIES):
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # A status reader holds a shared lock for an instant; only a lock that stays means a live run.
                if attempt < _LOCK_TRIES - 1:
                    time.sleep(0.02)
        else:
            holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise UploadBusy(
                f"this data set is already being uploaded to this destination by process {holder}; "
                "wait for it or stop it first"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
        return cls(path, descriptor)

    def release(self) -> None:
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None
