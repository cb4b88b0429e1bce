"""The local state database: one SQLite file (`arsl.db` under the home folder) in WAL mode.

Each part of the program that keeps state (the upload journal now; jobs, registry and canary
records later) owns a *component* with its own numbered migrations. `StateDB.ensure_schema`
applies the steps a file has not seen yet, inside one write transaction, so two processes
opening the same file at once cannot apply a step twice. Components never share a version
counter, so adding one cannot disturb another.

Connections are per thread (SQLite connections must not be shared between threads that use
them at once); `StateDB.close` closes every connection it handed out.

Read-only mode (`StateDB(path, read_only=True)`, or every file under a home passed to
`read_only_under`, as a read-only console does) writes nothing: the file is opened with the URI
`mode=ro`, neither it nor its folder is ever created, and a missing file is `StateMissing` ("no state
here yet") rather than an empty database. A component the file has never held reads as empty: its
tables are made in a private in-memory database that the file's own tables take precedence over
(the connection is reopened once a writer adds them).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

STATE_FILE_NAME = "arsl.db"
BUSY_TIMEOUT_MS = 15_000

_VERSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_versions (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    applied_at REAL NOT NULL
)"""


NO_STATE_YET = "no state here yet"

_READ_ONLY_HOMES: set[str] = set()
_READ_ONLY_HOMES_LOCK = threading.Lock()


class StateError(Exception):
    """The state file cannot be opened or migrated; the message names the file."""


class StateMissing(StateError):
    """Read-only mode and the state file is not there: nothing was written yet, or its home was removed."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{NO_STATE_YET} ({path} does not exist; read-only mode creates nothing)")
        self.path = path


class StateWriteError(StateError, sqlite3.OperationalError):
    """A write to the state file failed (disk full, I/O error, read-only file); the message names the file.

    Also an `sqlite3.OperationalError`, so code that handles SQLite's own errors keeps handling it.
    """

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.detail = detail


class StateReadOnlyError(StateWriteError):
    """A write asked of a state file opened read-only; nothing was written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "not written: read-only mode writes nothing")


def read_only_under(home_dir: Path) -> None:
    """From now on this process opens every state file in `home_dir` read-only (a read-only console).

    Process-wide on purpose: readers open state files lazily, in any thread, long after being asked to.
    """
    with _READ_ONLY_HOMES_LOCK:
        _READ_ONLY_HOMES.add(os.path.abspath(home_dir))


def opens_read_only(path: Path) -> bool:
    """Whether a state file at `path` is opened read-only when nobody says otherwise."""
    with _READ_ONLY_HOMES_LOCK:
        return os.path.dirname(os.path.abspath(path)) in _READ_ONLY_HOMES


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


@dataclass(eq=False)
class _Reader:
    """One thread's read-only connection and what it knows of the file it attached."""

    connection: sqlite3.Connection
    identity: tuple[int, int]
    """(device, inode) of the file when attached: a different file at the same path is reopened."""
    checked: set[str] = field(default_factory=set)
    """Components whose schema version this connection has checked."""
    stand_ins: set[str] = field(default_factory=set)
    """Components the file does not hold, read from empty in-memory tables."""
    data_version: int = -1


class StateDB:
    """A SQLite state file shared by threads (one connection each) and processes (WAL, busy timeout)."""

    def __init__(self, path: Path, *, read_only: bool | None = None) -> None:
        self.path = path
        self.read_only = opens_read_only(path) if read_only is None else read_only
        """Open the file with `mode=ro`: never create it or its folder, refuse every write."""
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._ready: set[tuple[str, int]] = set()
        self._wanted: dict[str, Migrations] = {}
        """Read-only mode: the components readers asked for, checked on each thread's connection."""
        if self.read_only:
            return  # the file is looked at on first use, and never created
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateError(f"{path.parent}: cannot create the state folder ({error.strerror})") from None
        with self.transaction() as connection:
            connection.execute(_VERSIONS_TABLE)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        if self.read_only:
            return self._reader().connection
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so writers never deadlock
                # upgrading a read lock.
                connection = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
                )
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
        if self.read_only:
            raise StateReadOnlyError(self.path)
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
        if self.read_only:
            with self._lock:
                self._wanted[migrations.component] = migrations
            self._reader()  # a missing file or a schema this program cannot read is reported now
            self._ready.add((migrations.component, migrations.version))
            return
        try:
            self._migrate(migrations)
        except sqlite3.Error as error:
            detail = error.detail if isinstance(error, StateWriteError) else str(error)
            raise StateError(
                f"{self.path}: cannot migrate {migrations.component!r} to schema version "
                f"{migrations.version} ({detail})"
            ) from None
        self._ready.add((migrations.component, migrations.version))

    def _migrate(self, migrations: Migrations) -> None:
        with self.transaction() as connection:
            row = connection.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (migrations.component,)
            ).fetchone()
            current = int(row[0]) if row else 0
            if current > migrations.version:
                raise StateError(
                    f"{self.path}: component {migrations.component!r} is at schema version {current}, "
                    f"newer than this program knows ({migrations.version}); upgrade arsl"
                )
            for step in migrations.steps[current:]:
                for statement in _statements(step):
                    connection.execute(statement)
            if current != migrations.version:
                connection.execute(
                    "INSERT INTO schema_versions (component, version, applied_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version = excluded.version, applied_at = excluded.applied_at",
                    (migrations.component, migrations.version, time.time()),
                )

    def schema_version(self, component: str) -> int:
        if self.read_only:
            return _file_versions(self._reader().connection).get(component, 0)
        row = (
            self.connection()
            .execute("SELECT version FROM schema_versions WHERE component = ?", (component,))
            .fetchone()
        )
        return int(row[0]) if row else 0

    # ----- read-only mode -----------------------------------------------------------------------

    def _reader(self) -> _Reader:
        """This thread's read-only connection, reopened when the file was replaced or gained a component
        that an in-memory stand-in hides; `StateMissing` when the file is gone."""
        reader: _Reader | None = getattr(self._local, "reader", None)
        try:
            found = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            if reader is not None:  # the home was removed: never read the unlinked file any more
                self._forget(reader)
            raise StateMissing(self.path) from None
        except OSError as error:
            raise StateError(f"{self.path}: cannot read the state database ({error.strerror})") from None
        identity = (found.st_dev, found.st_ino)
        try:
            if reader is not None and (reader.identity != identity or self._stand_in_outdated(reader)):
                self._forget(reader)
                reader = None
            if reader is None:
                reader = self._open_reader(identity)
            with self._lock:
                unchecked = [migrations for name, migrations in self._wanted.items() if name not in reader.checked]
            if unchecked:
                self._check_components(reader, unchecked)
        except sqlite3.Error as error:
            raise StateError(f"{self.path}: cannot read the state database ({error})") from None
        return reader

    def _open_reader(self, identity: tuple[int, int]) -> _Reader:
        uri = f"{self.path.absolute().as_uri()}?mode=ro"
        # The file is attached as `state` to a private in-memory main database, which holds the stand-ins.
        connection = sqlite3.connect(
            "file::memory:", uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("ATTACH DATABASE ? AS state", (uri,))
            connection.execute("SELECT count(*) FROM state.sqlite_master").fetchone()
            connection.execute("PRAGMA query_only = ON")
        except sqlite3.Error as error:
            connection.close()
            if not self.path.exists():
                raise StateMissing(self.path) from None
            raise StateError(f"{self.path}: cannot open the state database read-only ({error})") from None
        reader = _Reader(connection, identity, data_version=_data_version(connection))
        self._local.reader = reader
        with self._lock:
            self._connections.append(connection)
        return reader

    def _check_components(self, reader: _Reader, wanted: list[Migrations]) -> None:
        """Refuse a schema this program cannot read; give a component the file lacks empty tables."""
        connection = reader.connection
        versions = _file_versions(connection)
        for migrations in wanted:
            current = versions.get(migrations.component, 0)
            if current > migrations.version:
                raise StateError(
                    f"{self.path}: component {migrations.component!r} is at schema version {current}, "
                    f"newer than this program knows ({migrations.version}); upgrade arsl"
                )
            if 0 < current < migrations.version:
                raise StateError(
                    f"{self.path}: component {migrations.component!r} is at schema version {current}; "
                    f"this program reads version {migrations.version}, and read-only mode cannot "
                    "upgrade the file (any arsl command that writes does)"
                )
            if current == 0:
                # Unqualified names resolve to the in-memory main database first: these stand-ins are empty
                # tables of the right shape, dropped (with the connection) once the file has its own.
                connection.execute("PRAGMA query_only = OFF")
                try:
                    for step in migrations.steps:
                        for statement in _statements(step):
                            connection.execute(statement)
                finally:
                    connection.execute("PRAGMA query_only = ON")
                reader.stand_ins.add(migrations.component)
            reader.checked.add(migrations.component)

    @staticmethod
    def _stand_in_outdated(reader: _Reader) -> bool:
        """A writer added a component this connection stands in for (checked only after the file changed)."""
        if not reader.stand_ins:
            return False
        version = _data_version(reader.connection)
        if version == reader.data_version:
            return False
        reader.data_version = version
        versions = _file_versions(reader.connection)
        return any(versions.get(component, 0) for component in reader.stand_ins)

    def _forget(self, reader: _Reader) -> None:
        with self._lock:
            if reader.connection in self._connections:
                self._connections.remove(reader.connection)
        self._local.reader = None
        reader.connection.close()

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


def _file_versions(connection: sqlite3.Connection) -> dict[str, int]:
    """component → schema version, as the attached file records them (none in a file never migrated)."""
    try:
        rows = connection.execute("SELECT component, version FROM state.schema_versions").fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return {}
        raise
    return {str(component): int(version) for component, version in rows}


def _data_version(connection: sqlite3.Connection) -> int:
    """Changes whenever another connection commits to the attached file."""
    return int(connection.execute("PRAGMA state.data_version").fetchone()[0])


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


def open_state(home_dir: Path, *, read_only: bool | None = None) -> StateDB:
    """The state database under `home_dir` (created if absent, unless opened read-only)."""
    return StateDB(state_path(home_dir), read_only=read_only)
