"""The `TrainingPlatform` port on this machine: each job a detached `torchrun` process group.

A job lives in `<home>/jobs/<id>/`: `log.txt` (torchrun's and the trainer's output), `output/` (the
trainer's metrics.jsonl and model package), `launch.json` and `exit.json`. Its record (spec, process
group, times, final phase) is in the SQLite state file, so a restarted console finds it again.

Launch: this module, run as a program, is a small wrapper. It forks away at once (so the job is
nobody's child and survives whoever launched it), starts torchrun in its own session, writes
`launch.json`, waits, and writes torchrun's exit status to `exit.json`. The phase is then derived
from the record, whether the group still has live processes, and that file:
Creating (torchrun starting) → Running (trainer processes exist) → Completed / Failed / Terminated.
A group that vanished without `exit.json` was killed from outside: Failed, unless a stop was asked.

Stop: SIGTERM to the whole group (torchrun passes it to its workers), SIGKILL after a grace period.

Resume: a job that ended without completing (a rank killed, the machine restarted, stopped on request)
is continued by a new job on the same output folder with the trainer's `--resume`: it carries on
after the last epoch checkpointed, and the trainer makes metrics.jsonl agree with that checkpoint,
so the resumed run ends exactly as an uninterrupted one. The new job's record names the job it resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arsl_tui.domain.jobs import (
    JobNotFound,
    JobPhase,
    JobResources,
    JobSpec,
    JobSpecError,
    JobStatus,
    LogChunk,
    MetricsChunk,
    TrainingError,
    failure_reason,
    parse_metrics,
)
from arsl_tui.state.db import Migrations, StateDB, StateError, state_path

if TYPE_CHECKING:
    from arsl_tui.config import Settings

LOG_FILE = "log.txt"
OUTPUT_DIR = "output"
LAUNCH_FILE = "launch.json"
EXIT_FILE = "exit.json"
METRICS_FILE = "metrics.jsonl"
DEFAULT_GRACE_S = 10.0
LOG_CHUNK_LIMIT = 1 << 20
"""Most bytes of log one `logs` call returns (the cursor carries on from there)."""
REASON_LOG_BYTES = 64 * 1024

MIGRATIONS = Migrations(
    "jobs",
    steps=(
        """
    CREATE TABLE local_jobs (
        job_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        job_dir TEXT NOT NULL,
        output_dir TEXT NOT NULL,
        pgid INTEGER,
        phase TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        stop_requested_at REAL,
        exit_code INTEGER
    );
    CREATE INDEX local_jobs_by_creation ON local_jobs (created_at);
    """,
        """
    ALTER TABLE local_jobs ADD COLUMN resumes TEXT NOT NULL DEFAULT '';
    """,
    ),
)
_COLUMNS = (
    "job_id, name, spec, job_dir, output_dir, pgid, phase, reason, created_at, started_at, ended_at, "
    "stop_requested_at, exit_code, resumes"
)

_TERMINAL_NAMES = tuple(phase.value for phase in JobPhase if phase.terminal)


# --- /proc ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    ppid: int
    pgid: int
    state: str
    cpu_ticks: int
    start_ticks: int
    rss_pages: int


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def scan_processes() -> dict[int, ProcessSample]:
    """Every live (not zombie) process, from /proc."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue  # the process ended while we looked
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            continue
        pid = int(entry.name)
        found[pid] = ProcessSample(
            pid=pid,
            ppid=int(fields[1]),
            pgid=int(fields[2]),
            state=fields[0],
            cpu_ticks=int(fields[11]) + int(fields[12]),
            start_ticks=int(fields[19]),
            rss_pages=int(fields[21]),
        )
    return found


def _descendants(roots: set[int], processes: dict[int, ProcessSample]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, sample in processes.items():
        children.setdefault(sample.ppid, []).append(pid)
    found: set[int] = set()
    pending = list(roots)
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found and child not in roots:
                found.add(child)
                pending.append(child)
    return found


def job_processes(pgid: int, processes: dict[int, ProcessSample] | None = None) -> list[ProcessSample]:
    """The live processes of a job: its process group and every descendant of it.

    Descendants matter: torchrun starts each worker in a session (and group) of its own.
    """
    processes = scan_processes() if processes is None else processes
    members = {pid for pid, sample in processes.items() if sample.pgid == pgid}
    members |= _descendants(members, processes)
    return [processes[pid] for pid in sorted(members)]


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    """Adopt orphaned descendants (workers whose torchrun died), so they can be found and reaped."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: orphans go to init, and `stop` still finds them through the groups it saw


# --- the wrapper that runs as the job's first process ------------------------------------------------


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload), encoding="utf-8")
    os.replace(temporary, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_wrapper(job_dir: Path, command: Sequence[str]) -> int:
    """Fork away, run `command` (torchrun) in this session, record its exit status in exit.json."""
    if os.fork() > 0:
        os._exit(0)  # the launcher waits for this: the job is now an orphan, independent of it
    signalled: list[int] = []

    def remember(signum: int, _frame: object) -> None:
        # The group got the signal too; torchrun shuts its workers down, and we wait to record how it ended.
        signalled.append(signum)

    signal.signal(signal.SIGTERM, remember)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _become_subreaper()
    started = time.time()
    try:
        child = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, cwd=job_dir)
    except OSError as error:
        print(f"error: cannot start {command[0]}: {error}", flush=True)
        _write_json(job_dir / EXIT_FILE, {"returncode": 127, "ended_at": time.time(), "signalled": False})
        return 127
    _write_json(
        job_dir / LAUNCH_FILE,
        {"wrapper_pid": os.getpid(), "pgid": os.getpgid(0), "torchrun_pid": child.pid, "started_at": started},
    )
    returncode = child.wait()
    _end_leftovers()
    _write_json(job_dir / EXIT_FILE, {"returncode": returncode, "ended_at": time.time(), "signalled": bool(signalled)})
    return 0


def _end_leftovers() -> None:
    """Kill and reap whatever torchrun left behind (it was killed before it could end its workers)."""
    for pid in sorted(_descendants({os.getpid()}, scan_processes())):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


# --- the platform -----------------------------------------------------------------------------------


def torchrun_command() -> list[str]:
    """torchrun beside this interpreter (a venv's bin), else the same entry point as a module."""
    script = Path(sys.executable).with_name("torchrun")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "torch.distributed.run"]


def _local_path(location: str) -> Path:
    return Path(location.removeprefix("local:")).expanduser()


@dataclass(frozen=True)
class _Row:
    job_id: str
    name: str
    spec: JobSpec
    job_dir: Path
    output_dir: Path
    pgid: int | None
    phase: JobPhase
    reason: str
    created_at: float
    started_at: float | None
    ended_at: float | None
    stop_requested_at: float | None
    exit_code: int | None
    resumes: str


class LocalTrainingPlatform:
    """Jobs as detached torchrun process groups; records in the state file under the home folder."""

    backend = "local"

    def __init__(
        self,
        home_dir: Path,
        *,
        grace_s: float = DEFAULT_GRACE_S,
        launcher: Sequence[str] | None = None,
        trainer_module: str = "trainer.train",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._home = Path(home_dir)
        self._jobs_dir = self._home / "jobs"
        self._grace_s = grace_s
        self._launcher = list(launcher) if launcher is not None else torchrun_command()
        self._trainer_module = trainer_module
        self._clock = clock
        self._cpu_samples: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        try:
            self._db = StateDB(state_path(self._home))
            self._db.ensure_schema(MIGRATIONS)
        except StateError as error:
            raise TrainingError(str(error)) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalTrainingPlatform:
        return cls(settings.home_dir)

    def close(self) -> None:
        self._db.close()

    # --- records ------------------------------------------------------------------------------

    def _row(self, job_id: str) -> _Row:
        found = (
            self._db.connection()
            .execute(
                f"SELECT {_COLUMNS} FROM local_jobs WHERE job_id = ?",  # noqa: S608
                (job_id,),
            )
            .fetchone()
        )
        if found is None:
            raise JobNotFound(f"no local training job {job_id!r} (see `arsl train status` for the list)")
        return self._to_row(found)

    @staticmethod
    def _to_row(found: Sequence[Any]) -> _Row:
        (
            job_id,
            name,
            spec,
            job_dir,
            output_dir,
            pgid,
            phase,
            reason,
            created_at,
            started_at,
            ended_at,
            stop_requested_at,
            exit_code,
            resumes,
        ) = found
        return _Row(
            job_id,
            name,
            JobSpec.from_json(json.loads(spec)),
            Path(job_dir),
            Path(output_dir),
            pgid,
            JobPhase.parse(phase),
            reason,
            created_at,
            started_at,
            ended_at,
            stop_requested_at,
            exit_code,
            str(resumes or ""),
        )

    def _update(self, job_id: str, **values: Any) -> None:
        """Update a job's record; a record already in a terminal phase is never changed."""
        columns = ", ".join(f"{name} = ?" for name in values)
        placeholders = ", ".join("?" for _ in _TERMINAL_NAMES)
        with self._db.transaction() as connection:
            connection.execute(
                f"UPDATE local_jobs SET {columns} WHERE job_id = ? "  # noqa: S608 - names are ours
                f"AND phase NOT IN ({placeholders})",
                (*values.values(), job_id, *_TERMINAL_NAMES),
            )

    def _record_derived(self, job_id: str, **values: Any) -> None:
        """Keep what a read derived from the processes; a read-only reader derives the same again next time."""
        if not self._db.read_only:
            self._update(job_id, **values)

    # --- submit -------------------------------------------------------------------------------

    def _new_job_id(self) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self._clock()))
        return f"job-{stamp}-{secrets.token_hex(2)}"

    def _command(self, spec: JobSpec, data: Path, output: Path, resume: bool = False) -> list[str]:
        command = [
            *self._launcher,
            "--standalone",
            "--nnodes=1",
            f"--nproc_per_node={spec.processes_per_node}",
            "-m",
            self._trainer_module,
            "--data",
            str(data),
            "--output",
            str(output),
        ]
        for flag, value in spec.hyperparameters():
            command += [f"--{flag}", value]
        return [*command, "--resume"] if resume else command

    def submit(self, spec: JobSpec) -> str:
        return self._launch(spec, resumes="")

    def resume(self, job_id: str) -> str:
        """A new job that continues `job_id` on its output folder from its last checkpoint; returns its id.

        Only an ended job that did not complete can be resumed, and only while no other job is
        writing to the same output folder.
        """
        status = self.status(job_id)
        if not status.terminal:
            raise JobSpecError(
                f"job {job_id} is {status.phase.value}: only an ended job can be resumed "
                f"(`arsl train stop {job_id}` first)"
            )
        if status.phase is JobPhase.COMPLETED:
            raise JobSpecError(f"job {job_id} completed: there is nothing to resume")
        row = self._row(job_id)
        for other in self._live_rows():
            if other.output_dir == row.output_dir:
                raise JobSpecError(
                    f"job {other.job_id} is {other.phase.value} on {row.output_dir} already: wait for "
                    "it or stop it before resuming"
                )
        spec = JobSpec.from_json({**row.spec.to_json(), "output": str(row.output_dir)})
        return self._launch(spec, resumes=job_id)

    def _live_rows(self) -> list[_Row]:
        placeholders = ", ".join("?" for _ in _TERMINAL_NAMES)
        found = (
            self._db.connection()
            .execute(
                f"SELECT {_COLUMNS} FROM local_jobs WHERE phase NOT IN ({placeholders})",  # noqa: S608 - names are ours
                _TERMINAL_NAMES,
            )
            .fetchall()
        )
        rows = [self._to_row(entry) for entry in found]
        return [row for row in rows if not self._derive(row).terminal]

    def _launch(self, spec: JobSpec, *, resumes: str) -> str:
        spec.validate()
        if spec.nodes != 1:
            raise JobSpecError(f"nodes = {spec.nodes}: the local backend runs on this one machine (nodes = 1)")
        if spec.dataset.startswith("obs://"):
            raise JobSpecError(f"dataset {spec.dataset!r}: the local backend trains on a local folder")
        data = _local_path(spec.dataset).absolute()
        if not data.is_dir():
            raise JobSpecError(f"dataset {spec.dataset!r}: {data} is not a folder")
        job_id = self._new_job_id()
        job_dir = self._jobs_dir / job_id
        output = _local_path(spec.output).absolute() if spec.output else job_dir / OUTPUT_DIR
        try:
            job_dir.mkdir(parents=True)
            output.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrainingError(f"cannot create the job folder {job_dir}: {error.strerror}") from None
        created = self._clock()
        with self._db.transaction() as connection:
            connection.execute(
                "INSERT INTO local_jobs (job_id, name, spec, job_dir, output_dir, phase, created_at, resumes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    spec.name or job_id,
                    json.dumps(spec.to_json()),
                    str(job_dir),
                    str(output),
                    JobPhase.CREATING.value,
                    created,
                    resumes,
                ),
            )
        command = self._command(spec, data, output, resume=bool(resumes))
        (job_dir / "command.json").write_text(json.dumps(command), encoding="utf-8")
        environment = dict(os.environ)
        environment["PYTHONUNBUFFERED"] = "1"
        # Ranks talk over loopback: gloo would otherwise listen on the host's outward interface. (torchrun's
        # rendezvous store still binds every interface; PyTorch has no option for its address.)
        environment.setdefault("GLOO_SOCKET_IFNAME", "lo")
        environment["ARSL_JOB_ID"] = job_id  # the trainer records it in the model package (lineage)
        trainer_parent = self._trainer_parent()
        if trainer_parent:
            environment["PYTHONPATH"] = os.pathsep.join(
                part for part in (trainer_parent, environment.get("PYTHONPATH", "")) if part
            )
        try:
            with (job_dir / LOG_FILE).open("ab") as log:
                launcher = subprocess.Popen(
                    [sys.executable, "-m", __name__, str(job_dir), "--", *command],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=job_dir,
                    env=environment,
                    start_new_session=True,
                )
            # The wrapper forks and its first process exits at once; reaping it leaves no zombie behind.
            launcher.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired) as error:
            self._update(
                job_id,
                phase=JobPhase.FAILED.value,
                ended_at=self._clock(),
                reason=f"the job could not be started: {error}",
            )
            raise TrainingError(f"cannot start the job's wrapper process: {error}") from None
        self._update(job_id, pgid=launcher.pid)
        return job_id

    @staticmethod
    def _trainer_parent() -> str:
        import importlib.util

        spec = importlib.util.find_spec("trainer")
        if spec is None or not spec.submodule_search_locations:
            return ""
        return str(Path(next(iter(spec.submodule_search_locations))).parent)

    # --- phase ------------------------------------------------------------------------------------

    def _log_tail(self, row: _Row) -> str:
        path = row.job_dir / LOG_FILE
        try:
            with path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - REASON_LOG_BYTES))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _derive(self, row: _Row) -> JobStatus:
        if row.phase.terminal:
            return self._status(row, row.phase, row.reason, row.started_at, row.ended_at)
        exit_status = _read_json(row.job_dir / EXIT_FILE)
        members = job_processes(row.pgid) if row.pgid else []
        launch = _read_json(row.job_dir / LAUNCH_FILE) or {}
        started_at = row.started_at
        # Terminal only once the wrapper itself is gone, so an ended job never holds a process.
        if exit_status is not None and not members:
            returncode = int(exit_status.get("returncode", -1))
            ended = float(exit_status.get("ended_at") or self._clock())
            if row.stop_requested_at is not None and (returncode != 0 or exit_status.get("signalled")):
                phase, reason = JobPhase.TERMINATED, "stopped on request"
            elif returncode == 0:
                phase, reason = JobPhase.COMPLETED, ""
            else:
                how = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
                tail = failure_reason(self._log_tail(row))
                reason = f"torchrun ended with {how}" + (f": {tail}" if tail else "")
                phase = JobPhase.FAILED
            started_at = started_at or launch.get("started_at")
            self._record_derived(
                row.job_id,
                phase=phase.value,
                reason=reason,
                ended_at=ended,
                exit_code=returncode,
                started_at=started_at,
            )
            return self._status(row, phase, reason, started_at, ended)
        if members:
            if row.stop_requested_at is not None:
                return self._status(row, JobPhase.TERMINATING, "stop requested", started_at, None)
            launcher_pids = {launch.get("wrapper_pid"), launch.get("torchrun_pid")}
            workers = [member for member in members if member.pid not in launcher_pids]
            # Once running, a job stays Running while torchrun winds down after its workers have exited.
            if launch and (workers or started_at is not None or (row.output_dir / METRICS_FILE).exists()):
                if started_at is None:
                    started_at = (
                        _boot_time() + min(worker.start_ticks for worker in workers) / _clock_ticks()
                        if workers
                        else float(launch.get("started_at") or self._clock())
                    )
                    self._record_derived(row.job_id, phase=JobPhase.RUNNING.value, started_at=started_at)
                return self._status(row, JobPhase.RUNNING, "", started_at, None)
            return self._status(row, JobPhase.CREATING, "", started_at, None)
        if row.pgid is None and self._clock() - row.created_at < 60:
            return self._status(row, JobPhase.CREATING, "", started_at, None)
        ended = self._clock()
        if row.stop_requested_at is not None:
            phase, reason = JobPhase.TERMINATED, "stopped on request (killed after the grace period)"
        else:
            tail = failure_reason(self._log_tail(row))
            phase = JobPhase.FAILED
            reason = "the job's processes ended without recording an exit status (killed from outside?)" + (
                f": {tail}" if tail else ""
            )
        self._record_derived(row.job_id, phase=phase.value, reason=reason, ended_at=ended, started_at=started_at)
        return self._status(row, phase, reason, started_at, ended)

    def _status(
        self, row: _Row, phase: JobPhase, reason: str, started_at: float | None, ended_at: float | None
    ) -> JobStatus:
        return JobStatus(
            job_id=row.job_id,
            name=row.name,
            phase=phase,
            backend=self.backend,
            created_at=row.created_at,
            started_at=started_at,
            ended_at=ended_at,
            reason=reason,
            dataset=row.spec.dataset,
            output=str(row.output_dir),
            epochs=row.spec.epochs,
        )

    # --- the port ---------------------------------------------------------------------------------

    def status(self, job_id: str) -> JobStatus:
        return self._derive(self._row(job_id))

    def list(self, limit: int = 20) -> list[JobStatus]:
        found = (
            self._db.connection()
            .execute(
                f"SELECT {_COLUMNS} FROM local_jobs ORDER BY created_at DESC, job_id DESC LIMIT ?",  # noqa: S608
                (limit,),
            )
            .fetchall()
        )
        return [self._derive(self._to_row(entry)) for entry in found]

    def stop(self, job_id: str) -> JobStatus:
        status = self.status(job_id)
        if status.terminal:
            return status
        row = self._row(job_id)
        if row.stop_requested_at is None:
            self._update(job_id, stop_requested_at=self._clock())
        if row.pgid:
            # The job's group, and the groups torchrun put its workers in, all get the signal at once.
            groups = {row.pgid} | {member.pgid for member in job_processes(row.pgid)}
            self._signal(groups, signal.SIGTERM)
            if not self._wait_for_exit(row.pgid, groups, self._grace_s):
                groups |= {member.pgid for member in job_processes(row.pgid)}
                self._signal(groups, signal.SIGKILL)
                self._wait_for_exit(row.pgid, groups, 5.0)
        return self.status(job_id)

    @staticmethod
    def _signal(groups: set[int], signum: signal.Signals) -> None:
        for pgid in sorted(groups):
            try:
                os.killpg(pgid, signum)
            except ProcessLookupError:
                pass  # already gone
            except PermissionError:
                raise TrainingError(f"not allowed to signal process group {pgid} (another user's job?)") from None

    @staticmethod
    def _wait_for_exit(pgid: int, groups: set[int], timeout_s: float) -> bool:
        """Wait until no process of the job or its groups lives; False if one still does after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            processes = scan_processes()
            if not job_processes(pgid, processes) and not any(p.pgid in groups for p in processes.values()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def logs(self, job_id: str, since: int = 0) -> LogChunk:
        row = self._row(job_id)
        try:
            with (row.job_dir / LOG_FILE).open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                since = since if 0 <= since <= size else 0
                handle.seek(since)
                data = handle.read(LOG_CHUNK_LIMIT)
        except FileNotFoundError:
            return LogChunk(text="", cursor=0, start=0)
        except OSError as error:
            raise TrainingError(f"cannot read {row.job_dir / LOG_FILE}: {error.strerror}") from None
        # Never cut a UTF-8 character in two: leave its first bytes for the next call.
        for cut in range(min(3, len(data)) + 1):
            try:
                text = data[: len(data) - cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            return LogChunk(text=text, cursor=since + len(data) - cut, start=since)
        return LogChunk(text=data.decode("utf-8", "replace"), cursor=since + len(data), start=since)

    def metrics(self, job_id: str, since: int = 0) -> MetricsChunk:
        status = self.status(job_id)
        path = Path(status.output) / METRICS_FILE
        try:
            with path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                if not 0 <= since <= size:
                    since = 0  # the file was rewritten shorter (a resumed run reconciles it): start over
                handle.seek(since)
                data = handle.read()
        except FileNotFoundError:
            return MetricsChunk(records=(), cursor=0)
        except OSError as error:
            raise TrainingError(f"cannot read {path}: {error.strerror}") from None
        chunk = parse_metrics(data, final=status.terminal)
        return MetricsChunk(records=chunk.records, cursor=since + chunk.cursor, skipped=chunk.skipped)

    def resources(self, job_id: str) -> JobResources:
        row = self._row(job_id)
        now = self._clock()
        members = job_processes(row.pgid) if row.pgid else []
        if not members:
            return JobResources(sampled_at=now, cpu_percent=0.0, memory_mb=0.0, processes=0)
        ticks = sum(member.cpu_ticks for member in members)
        hertz = _clock_ticks()
        with self._lock:
            previous = self._cpu_samples.get(job_id)
            self._cpu_samples[job_id] = (now, ticks)
        if previous is not None and now > previous[0] and ticks >= previous[1]:
            cpu = (ticks - previous[1]) / hertz / (now - previous[0]) * 100
        else:
            # First sample: the average since the oldest process started.
            oldest = _boot_time() + min(member.start_ticks for member in members) / hertz
            cpu = ticks / hertz / max(now - oldest, 1e-3) * 100
        memory = sum(member.rss_pages for member in members) * os.sysconf("SC_PAGE_SIZE") / 1e6
        return JobResources(
            sampled_at=now, cpu_percent=round(cpu, 1), memory_mb=round(memory, 1), processes=len(members)
        )


def _wrapper_main(arguments: Iterator[str]) -> int:
    job_dir = Path(next(arguments))
    if next(arguments, None) != "--":
        print("usage: python -m arsl_tui.providers.local.jobs JOB_DIR -- COMMAND...", file=sys.stderr)
        return 2
    return run_wrapper(job_dir, list(arguments))


if __name__ == "__main__":
    sys.exit(_wrapper_main(iter(sys.argv[1:])))


__all__ = ["LocalTrainingPlatform", "job_processes", "run_wrapper", "scan_processes", "torchrun_command"]
