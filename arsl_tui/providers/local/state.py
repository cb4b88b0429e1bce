"""The local state database: one SQLite file (`arsl.db` under the home folder) in WAL mode.

Each part of the program that keeps state (the upload journal now; jobs, registry and canary
records later) owns a *component* with its own numbered migrations. `StateDB.ensure_schema`
applies the steps a file has not seen yet, inside one write transaction, so two processes
opening the same file at once cannot apply a step twice. Components never share a version
counter, so adding one cannot disturb another.

Connections are per thread (SQLite connections must not be shared between threads that use
them at once); `StateDB.close` closes every connection it handed out.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATE_FILE_NAME = "arsl.db"
BUSY_TIMEOUT_MS = 15_000

_VERSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_versions (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    applied_at REAL NOT NULL
)"""


class StateError(Exception):
    """The state file cannot be opened or migrated; the message names the file."""


class StateWriteError(StateError, sqlite3.OperationalError):
    """A write to the state file failed (disk full, I/O error, read-only file); the message names the file.

    Also an `sqlite3.OperationalError`, so code that handles SQLite's own errors keeps handling it.
    """

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.detail = detail


@dataclass(frozen=True)
class Migrations:
    """Ordered schema steps of one component; step i (0-based) brings it to version i + 1.

    Steps are append-only: never edit a released step, add a new one.
    """

    component: str
    steps: Sequence[str]

    @property
    def version(self) -> int:
        return len(self.steps)


class StateDB:
    """A SQLite state file shared by threads (one connection each) and processes (WAL, busy timeout)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._ready: set[tuple[str, int]] = set()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateError(f"{path.parent}: cannot create the state folder ({error.strerror})") from None
        with self.transaction() as connection:
            connection.execute(_VERSIONS_TABLE)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so writers never deadlock
                # upgrading a read lock.
                connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                             check_same_thread=False)
                connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                connection.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode survives a process crash (kill -9); only a power cut can lose the
                # last commits, and every consumer re-checks the store after a restart.
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as error:
                raise StateError(f"{self.path}: cannot open the state database ({error})") from None
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT, rolled back on any exception)."""
        connection = self.connection()
        if connection.in_transaction:
            # A signal (Ctrl-C) landed between an earlier BEGIN and its `try`: that transaction never ran
            # its block, so nothing of it is worth keeping.
            connection.execute("ROLLBACK")
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            connection.execute("COMMIT")
        except sqlite3.OperationalError as error:
            self._roll_back(connection)
            if isinstance(error, StateWriteError):
                raise
            raise StateWriteError(self.path, str(error)) from None
        except BaseException:
            self._roll_back(connection)
            raise

    @staticmethod
    def _roll_back(connection: sqlite3.Connection) -> None:
        if connection.in_transaction:
            # The failure being raised says more than a failed rollback would.
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")

    def ensure_schema(self, migrations: Migrations) -> None:
        """Apply the component's steps this file lacks; refuse a file written by a newer program."""
        if (migrations.component, migrations.version) in self._ready:
            return
        try:
            self._migrate(migrations)
        except sqlite3.Error as error:
            detail = error.detail if isinstance(error, StateWriteError) else str(error)
            raise StateError(f"{self.path}: cannot migrate {migrations.component!r} to schema version "
                             f"{migrations.version} ({detail})") from None
        self._ready.add((migrations.component, migrations.version))

    def _migrate(self, migrations: Migrations) -> None:
        with self.transaction() as connection:
            row = connection.execute("SELECT version FROM schema_versions WHERE component = ?",
                                     (migrations.component,)).fetchone()
            current = int(row[0]) if row else 0
            if current > migrations.version:
                raise StateError(f"{self.path}: component {migrations.component!r} is at schema version {current}, "
                                 f"newer than this program knows ({migrations.version}); upgrade arsl")
            for step in migrations.steps[current:]:
                for statement in _statements(step):
                    connection.execute(statement)
            if current != migrations.version:
                connection.execute(
                    "INSERT INTO schema_versions (component, version, applied_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version = excluded.version, applied_at = excluded.applied_at",
                    (migrations.component, migrations.version, time.time()))

    def schema_version(self, component: str) -> int:
        row = self.connection().execute("SELECT version FROM schema_versions WHERE component = ?",
                                        (component,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _statements(script: str) -> list[str]:
    """Split a migration step into statements (`executescript` would commit our transaction)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise StateError(f"incomplete SQL statement in migration: {buffer.strip()[:60]!r}")
    return statements


def state_path(home_dir: Path) -> Path:
    return home_dir / STATE_FILE_NAME


def open_state(home_dir: Path) -> StateDB:
    """The state database under `home_dir` (created if absent)."""
    return StateDB(state_path(home_dir))
