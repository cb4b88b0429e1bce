"""The local gateway's process and state: start it detached, find it, stop it, talk to its admin API.

Files under `<home>/serving/`:

    models/<version>/   the model packages it serves (fetched from the registry, checked by MD5)
    admin.token         the admin API's bearer token, mode 0600, made on first start
    gateway.lock        held (flock) by the running gateway: a second one cannot start
    gateway.log         the gateway's output

State in the SQLite file (component "serving"): the deployment (stable, canary, weights) the gateway
serves or will serve when started, every change to it with a reason (like ModelArts' service update
log), and the running process (pid, its start time in clock ticks so a reused pid is not mistaken for
it, host, port).

Start: `python -m arsl_tui.serving --detach` forks at once and its parent exits, so the gateway is
nobody's child, in its own session, and outlives the console or shell that started it. It reports on
a pipe when it is serving (or why it could not start); `start` waits for that line.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arsl_tui.domain.serving import AlreadyRunning, Deployment, DeploymentError, ServingError, WrongBackend
from arsl_tui.state.db import Migrations, StateDB, open_state
from arsl_tui.state.gateway_files import log_path, models_dir, serving_dir

if TYPE_CHECKING:
    from arsl_tui.config import Settings

TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret
LOCK_FILE = "gateway.lock"
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 15.0
MODULE = "arsl_tui.serving"

MIGRATIONS = Migrations(
    "serving",
    steps=(
        """
    CREATE TABLE serving_deployment (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        deployment TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE serving_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        deployment TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE serving_process (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pid INTEGER NOT NULL,
        start_ticks INTEGER NOT NULL,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        started_at REAL NOT NULL
    );
    """,
    ),
)


# --- the admin token ------------------------------------------------------------------------------


def ensure_admin_token(home: Path) -> str:
    """The admin token, made (0600, exclusive create) if there is none yet."""
    import secrets

    path = serving_dir(home) / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_admin_token(home)
    token = secrets.token_urlsafe(32)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    return token


def read_admin_token(home: Path) -> str:
    path = serving_dir(home) / TOKEN_FILE
    try:
        mode = path.stat().st_mode
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ServingError(f"{path}: no admin token (it is made when the gateway first starts)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ServingError(f"{path}: cannot read the admin token ({error})") from None
    if mode & 0o077:
        raise ServingError(
            f"{path}: the admin token is readable by others (mode {mode & 0o777:o}); run `chmod 600 {path}`"
        )
    if len(token) < 32:
        raise ServingError(f"{path}: the admin token is too short; delete the file to make a new one")
    return token


# --- process identity -----------------------------------------------------------------------------


def process_start_ticks(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot, or None if it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start_ticks: int
    host: str
    port: int
    started_at: float

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def alive(self) -> bool:
        return process_start_ticks(self.pid) == self.start_ticks

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": self.host,
            "port": self.port,
            "endpoint": self.endpoint,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
        }


# --- state ----------------------------------------------------------------------------------------


class ServingState:
    """The deployment, its change log and the process record, in the state file."""

    def __init__(self, db: StateDB) -> None:
        self.db = db
        db.ensure_schema(MIGRATIONS)

    @classmethod
    def open(cls, home: Path) -> ServingState:
        return cls(open_state(home))

    def close(self) -> None:
        self.db.close()

    def deployment(self) -> Deployment | None:
        row = self.db.connection().execute("SELECT deployment FROM serving_deployment WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            return Deployment.from_json(json.loads(row[0]), f"{self.db.path}: serving_deployment")
        except (json.JSONDecodeError, DeploymentError) as error:
            raise ServingError(f"{self.db.path}: the stored deployment is unreadable ({error}); deploy again") from None

    def save_deployment(self, deployment: Deployment, reason: str) -> None:
        text = json.dumps(deployment.to_json(), sort_keys=True)
        now = time.time()
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO serving_deployment (id, deployment, updated_at) VALUES (1, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET deployment = excluded.deployment, "
                "updated_at = excluded.updated_at",
                (text, now),
            )
            connection.execute(
                "INSERT INTO serving_changes (time, deployment, reason) VALUES (?, ?, ?)", (now, text, reason)
            )

    def changes(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = (
            self.db.connection()
            .execute("SELECT seq, time, deployment, reason FROM serving_changes ORDER BY seq DESC LIMIT ?", (limit,))
            .fetchall()
        )
        return [
            {
                "seq": seq,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
                **json.loads(text),
                "reason": reason,
            }
            for seq, at, text, reason in reversed(rows)
        ]

    def process(self) -> ProcessRecord | None:
        row = (
            self.db.connection()
            .execute("SELECT pid, start_ticks, host, port, started_at FROM serving_process WHERE id = 1")
            .fetchone()
        )
        return ProcessRecord(int(row[0]), int(row[1]), str(row[2]), int(row[3]), float(row[4])) if row else None

    def record_process(self, record: ProcessRecord) -> None:
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO serving_process (id, pid, start_ticks, host, port, started_at) VALUES (1, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET pid = excluded.pid, start_ticks = excluded.start_ticks, "
                "host = excluded.host, port = excluded.port, started_at = excluded.started_at",
                (record.pid, record.start_ticks, record.host, record.port, record.started_at),
            )

    def clear_process(self, pid: int) -> None:
        with self.db.transaction() as connection:
            connection.execute("DELETE FROM serving_process WHERE id = 1 AND pid = ?", (pid,))


# --- control --------------------------------------------------------------------------------------


class LocalServingControl:
    """Start, find and stop the gateway of one home folder, and call its admin API."""

    def __init__(
        self,
        home: Path,
        *,
        config_path: str | None = None,
        python: str = sys.executable,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.home = Path(home)
        self.config_path = config_path
        self.python = python
        self.environment = dict(os.environ if environment is None else environment)
        self.state = ServingState.open(self.home)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalServingControl:
        source = None if settings.source == "defaults" else str(Path(settings.source).resolve())
        return cls(settings.home_dir, config_path=source)

    def close(self) -> None:
        self.state.close()

    def running(self) -> ProcessRecord | None:
        """The live gateway's record, or None (a record of a process that is gone is dropped)."""
        record = self.state.process()
        if record is None:
            return None
        if record.alive:
            return record
        if not self.state.db.read_only:  # a read-only reader leaves the stale record to the next writer
            self.state.clear_process(record.pid)
        return None

    def start(self) -> ProcessRecord:
        """Start the gateway on the stored deployment and wait until it answers; AlreadyRunning if one does."""
        existing = self.running()
        if existing is not None:
            raise AlreadyRunning(
                f"the gateway is running already (pid {existing.pid}, {existing.endpoint}); "
                "`arsl deploy VERSION` changes what it serves, `arsl service stop` stops it"
            )
        if self.state.deployment() is None:
            raise ServingError("nothing is deployed yet: `arsl deploy VERSION` starts the gateway with a version")
        ensure_admin_token(self.home)
        log = log_path(self.home)
        log.parent.mkdir(parents=True, exist_ok=True)
        read_end, write_end = os.pipe()
        command = [self.python, "-m", MODULE, "--home", str(self.home), "--ready-fd", str(write_end), "--detach"]
        if self.config_path:
            command += ["--config", self.config_path]
        environment = {**self.environment, "PYTHONUNBUFFERED": "1"}
        try:
            with log.open("ab") as output:
                launcher = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_end,),
                    start_new_session=True,
                    cwd=serving_dir(self.home),
                    env=environment,
                )
        finally:
            os.close(write_end)
        try:
            launcher.wait(timeout=60)  # the launcher forks the gateway off and exits at once
            message = self._read_ready(read_end, START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            launcher.kill()
            raise ServingError(f"the gateway launcher hung; its log {log} ends with:\n{self._log_tail()}") from None
        finally:
            os.close(read_end)
        if message is None:
            raise ServingError(
                f"the gateway did not start (exit {launcher.returncode}); its log {log} ends with:\n{self._log_tail()}"
            )
        if not message.get("ok"):
            error = str(message.get("error") or "unknown error")
            if message.get("reason") == "already_running":
                raise AlreadyRunning(error)
            raise ServingError(f"the gateway did not start: {error}")
        record = self.running()
        if record is None:
            raise ServingError(f"the gateway reported ready but is gone; see {log}:\n{self._log_tail()}")
        return record

    @staticmethod
    def _read_ready(descriptor: int, timeout_s: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        buffer = b""
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([descriptor], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(descriptor, 4096)
            if not chunk:
                break
            buffer += chunk
        line = buffer.split(b"\n", 1)[0]
        try:
            message = json.loads(line) if line else None
        except json.JSONDecodeError:
            return None
        return message if isinstance(message, dict) else None

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = log_path(self.home).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, grace_s: float = STOP_GRACE_S) -> ProcessRecord | None:
        """SIGTERM (the gateway answers what it holds, then exits); SIGKILL after `grace_s`. None if none ran."""
        record = self.running()
        if record is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
        if not self._wait_gone(record, grace_s):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
            if not self._wait_gone(record, 5.0):
                raise ServingError(f"the gateway (pid {record.pid}) did not end after SIGKILL")
        self.state.clear_process(record.pid)
        return record

    @staticmethod
    def _wait_gone(record: ProcessRecord, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while record.alive:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)  # polling another session's process: there is nothing to wait on
        return True

    # --- admin API --------------------------------------------------------------------------------

    def admin(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float = 120.0,
    ) -> Any:
        """Call the running gateway's admin API; ServingError with its message on failure."""
        import httpx

        record = self.running()
        if record is None:
            raise ServingError("the gateway is not running (`arsl deploy VERSION` starts it)")
        token = read_admin_token(self.home)
        try:
            response = httpx.request(
                method,
                record.endpoint + path,
                json=payload,
                params=params,
                headers={"Authorization": f"Bearer {token}"},
                timeout=timeout_s,
                trust_env=False,
            )
        except httpx.HTTPError as error:
            raise ServingError(
                f"cannot reach the gateway at {record.endpoint} ({type(error).__name__}: {error})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            raise ServingError(f"the gateway refused {method} {path}: {response.status_code} {message or body}")
        return body


__all__ = [
    "MIGRATIONS",
    "AlreadyRunning",
    "LocalServingControl",
    "ProcessRecord",
    "ServingError",
    "ServingState",
    "WrongBackend",
    "ensure_admin_token",
    "log_path",
    "models_dir",
    "process_start_ticks",
    "read_admin_token",
    "serving_dir",
]
