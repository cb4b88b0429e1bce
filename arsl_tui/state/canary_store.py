"""The canary controller's records in the state file (component "canary", `state/db.py`), and the lock
that makes each of its decisions one critical section: the `CanaryStateStore` of the local backend.

Kept here: the run record (with its pending actions), a journal of every decision, every action's outcome,
the alarms raised, and (on every backend) the versions API Gateway published. SQLite because the controller
reads and writes it every second or so and needs transactions. One controller per home: a file lock
(`<home>/canary.lock`, `HomeLock`) serialises decisions across threads and processes, so a `watch`, the
console and a CLI command can run at once without acting twice. Where operators share a release from
several hosts, the records live in the object store instead (`state.object_canary_store`), which takes the
same home lock before its controller lease.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arsl_tui.domain.canary import Action, CanaryError, CanaryRun, Transition
from arsl_tui.state.db import Migrations, StateDB, open_state

if TYPE_CHECKING:
    from arsl_tui.domain.ports import LeaseHolder

LOCK_FILE = "canary.lock"
LOCK_TIMEOUT_S = 120.0

MIGRATIONS = Migrations(
    "canary",
    steps=(
        """
    CREATE TABLE canary_runs (
        run_id TEXT PRIMARY KEY,
        record TEXT NOT NULL,
        started_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE canary_current (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        run_id TEXT NOT NULL REFERENCES canary_runs (run_id)
    );
    CREATE TABLE canary_journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        run_seq INTEGER NOT NULL,
        time REAL NOT NULL,
        event TEXT NOT NULL,
        from_phase TEXT NOT NULL,
        to_phase TEXT NOT NULL,
        reason TEXT NOT NULL,
        actions TEXT NOT NULL
    );
    CREATE TABLE canary_actions (
        action_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        outcome TEXT NOT NULL,
        time REAL NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE canary_alarms (
        action_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        time REAL NOT NULL,
        champion TEXT NOT NULL,
        challenger TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE gateway_publications (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        api_id TEXT NOT NULL,
        env_id TEXT NOT NULL,
        publish_id TEXT NOT NULL,
        version_id TEXT NOT NULL,
        url TEXT NOT NULL
    );
    """,
    ),
)


class ControllerBusy(CanaryError):
    """Another controller held the canary lock for too long, or holds the release's lease."""


class LeaseHeld(ControllerBusy):
    """Another controller holds the release's lease; `holder` says who (host, pid, user) and since when."""

    def __init__(self, message: str, holder: LeaseHolder) -> None:
        super().__init__(message)
        self.holder = holder


class CanaryStateUnavailable(CanaryError):
    """The canary's records cannot be read (the store is unreachable, or refuses these credentials)."""


class HomeLock:
    """The home's canary lock: a thread lock and an `flock` on `<home>/canary.lock`, so the threads and
    processes of one home decide one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Exclusive across threads and processes; decisions and their actions run inside it."""
        deadline = time.monotonic() + timeout_s
        if not self._thread_lock.acquire(timeout=timeout_s):
            raise ControllerBusy(f"another part of this program held the canary for {timeout_s:g} s")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise ControllerBusy(
                                f"{self.path}: another canary controller held the lock for {timeout_s:g} s"
                            ) from None
                        time.sleep(0.02)  # another process holds it; flock has no timed wait
                yield
            finally:
                os.close(descriptor)  # closing releases the lock
        finally:
            self._thread_lock.release()


class CanaryStore:
    """The controller's records in the state file, and the lock that serialises decisions."""

    def __init__(self, db: StateDB, lock_path: Path) -> None:
        self.db = db
        self.lock_path = lock_path
        db.ensure_schema(MIGRATIONS)
        self._home_lock = HomeLock(lock_path)

    @classmethod
    def open(cls, home: Path) -> CanaryStore:
        return cls(open_state(home), Path(home) / LOCK_FILE)

    @property
    def where(self) -> str:
        return str(self.db.path)

    def close(self) -> None:
        self.db.close()

    def lock(self, timeout_s: float = LOCK_TIMEOUT_S) -> contextlib.AbstractContextManager[None]:
        """Exclusive across threads and processes; decisions and their actions run inside it."""
        return self._home_lock.hold(timeout_s)

    def holder(self) -> LeaseHolder | None:
        """None: one home's controller is whichever of its processes holds the file lock at the moment."""
        return None

    def current(self) -> CanaryRun | None:
        row = (
            self.db.connection()
            .execute("SELECT r.record FROM canary_current c JOIN canary_runs r ON r.run_id = c.run_id WHERE c.id = 1")
            .fetchone()
        )
        if row is None:
            return None
        return CanaryRun.from_json(json.loads(row[0]), f"{self.db.path}: canary_runs")

    def runs(self, limit: int = 20) -> list[CanaryRun]:
        rows = (
            self.db.connection()
            .execute("SELECT record FROM canary_runs ORDER BY started_at DESC LIMIT ?", (limit,))
            .fetchall()
        )
        return [CanaryRun.from_json(json.loads(row[0]), f"{self.db.path}: canary_runs") for row in rows]

    @staticmethod
    def _upsert(connection: Any, run: CanaryRun) -> None:
        connection.execute(
            "INSERT INTO canary_runs (run_id, record, started_at, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(run_id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
            (run.run_id, json.dumps(run.to_json(), sort_keys=True), run.started_at, run.updated_at),
        )

    def save(self, run: CanaryRun) -> None:
        with self.db.transaction() as connection:
            self._upsert(connection, run)

    def _write_transition(self, connection: Any, transition: Transition, make_current: bool) -> None:
        run = transition.run
        event = transition.log.event if transition.log is not None else "hold"
        actions = [action.to_json() for action in transition.actions]
        self._upsert(connection, run)
        if make_current:
            connection.execute(
                "INSERT INTO canary_current (id, run_id) VALUES (1, ?) "
                "ON CONFLICT(id) DO UPDATE SET run_id = excluded.run_id",
                (run.run_id,),
            )
        connection.execute(
            "INSERT INTO canary_journal (run_id, run_seq, time, event, from_phase, to_phase, reason, actions) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.run_id,
                run.seq,
                run.updated_at,
                event,
                transition.previous.value,
                run.phase.value,
                run.reason,
                json.dumps({"actions": actions, "cancelled": [item.id for item in transition.cancelled]}),
            ),
        )
        for cancelled in transition.cancelled:
            connection.execute(
                "INSERT OR IGNORE INTO canary_actions (action_id, run_id, kind, outcome, time, "
                "detail) VALUES (?, ?, ?, 'cancelled', ?, ?)",
                (cancelled.id, run.run_id, cancelled.kind.value, run.updated_at, f"superseded by {event}"),
            )

    def save_transition(self, transition: Transition, *, make_current: bool = False) -> None:
        """The run after a decision and its journal line, in one transaction (the intent, before acting)."""
        with self.db.transaction() as connection:
            self._write_transition(connection, transition, make_current)

    def finish_action(self, after: CanaryRun | Transition, action: Action, outcome: str, detail: str) -> None:
        """Record `action`'s outcome and save the run without it (and any decision that follows), atomically."""
        run = after.run if isinstance(after, Transition) else after
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO canary_actions (action_id, run_id, kind, outcome, time, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (action.id, run.run_id, action.kind.value, outcome, run.updated_at, detail),
            )
            if isinstance(after, Transition):
                self._write_transition(connection, after, False)
            else:
                self._upsert(connection, run)

    def action_outcome(self, action_id: str) -> str | None:
        row = (
            self.db.connection()
            .execute("SELECT outcome FROM canary_actions WHERE action_id = ?", (action_id,))
            .fetchone()
        )
        return str(row[0]) if row else None

    def actions(self, run_id: str) -> list[dict[str, Any]]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT action_id, kind, outcome, time, detail FROM canary_actions WHERE run_id = ? ORDER BY time, "
                "action_id",
                (run_id,),
            )
            .fetchall()
        )
        return [{"id": row[0], "kind": row[1], "outcome": row[2], "time": row[3], "detail": row[4]} for row in rows]

    def raise_alarm(self, action: Action, run: CanaryRun, now: float) -> bool:
        """Record the alarm of `action`; False if it was raised already (a retry after a crash)."""
        with self.db.transaction() as connection:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO canary_alarms (action_id, run_id, time, champion, challenger, reason) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (action.id, run.run_id, now, run.champion, run.challenger, action.reason),
            )
            return bool(cursor.rowcount)

    def alarms(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT action_id, run_id, time, champion, challenger, reason FROM canary_alarms ORDER BY time DESC "
                "LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [
            {"id": row[0], "run_id": row[1], "time": row[2], "champion": row[3], "challenger": row[4], "reason": row[5]}
            for row in rows
        ]

    def record_publication(self, api_id: str, env_id: str, publish_id: str, version_id: str, url: str) -> None:
        """Remember a version API Gateway published, for a gateway-level rollback (skipped if it is the last)."""
        with self.db.transaction() as connection:
            last = connection.execute(
                "SELECT api_id, env_id, version_id FROM gateway_publications ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            if last != (api_id, env_id, version_id):
                connection.execute(
                    "INSERT INTO gateway_publications (time, api_id, env_id, publish_id, version_id, "
                    "url) VALUES (?, ?, ?, ?, ?, ?)",
                    (time.time(), api_id, env_id, publish_id, version_id, url),
                )

    def publications(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT time, api_id, env_id, publish_id, version_id, url FROM gateway_publications ORDER BY seq DESC "
                "LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [
            {
                "time": row[0],
                "api_id": row[1],
                "env_id": row[2],
                "publish_id": row[3],
                "version_id": row[4],
                "url": row[5],
            }
            for row in rows
        ]

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT run_seq, time, event, from_phase, to_phase, reason FROM canary_journal WHERE run_id = ? "
                "ORDER BY seq",
                (run_id,),
            )
            .fetchall()
        )
        return [
            {"seq": row[0], "time": row[1], "event": row[2], "from": row[3], "to": row[4], "reason": row[5]}
            for row in rows
        ]


__all__ = [
    "LOCK_FILE",
    "LOCK_TIMEOUT_S",
    "MIGRATIONS",
    "CanaryStateUnavailable",
    "CanaryStore",
    "ControllerBusy",
    "HomeLock",
    "LeaseHeld",
]
