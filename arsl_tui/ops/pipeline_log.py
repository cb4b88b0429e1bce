"""What a pipeline run leaves under `$ARSL_HOME/pipeline/` for whoever follows it, and the reader of it.

- `lock`: an exclusive `flock` held for the whole of `run_pipeline`, so two runs never fight over the
  canary; while held it says who holds it (`{"pid", "pgid", "run_id", "started_at"}`).
- `<run id>.events.jsonl`: every event of the run, one JSON object a line, as `--json` prints it
  (`{"event": kind, **fields}`) plus `at` (epoch seconds). A run that ends by an exception gets a last
  `PipelineEnded` here (outcome `failed`, or `cancelled` on SIGINT) that the terminal never prints;
  a runner killed outright leaves no end: the reader calls that run `interrupted`.

The reader keeps its place in the event file and reads only the bytes added since its last call; a
line still being written (no newline yet) waits for the next call. Standard library only: the console
imports this.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arsl_tui.domain.events import Event
from arsl_tui.domain.pipeline import PHASE_TITLES, PHASES, PhaseName
from arsl_tui.domain.pipeline_run import RESUME_HINT, PhaseView, PipelineView
from arsl_tui.ops import file_locks

PIPELINE_DIR = "pipeline"
LOCK_FILE = "lock"
EVENTS_SUFFIX = ".events.jsonl"
_LOCK_TRIES = 10
"""A reader probing the lock holds it for an instant; only a lock held across these tries means a live run."""
_READ_LIMIT = 4 << 20
"""Most bytes one `read` takes from an event file (a long backlog is caught up over a few calls)."""


def pipeline_dir(home: Path) -> Path:
    return home / PIPELINE_DIR


def events_path(home: Path, run_id: str) -> Path:
    return pipeline_dir(home) / f"{run_id}{EVENTS_SUFFIX}"


def event_payload(event: Event) -> dict[str, Any]:
    """The dict `arsl pipeline run --json` prints for an event."""
    return {"event": event.kind, **dataclasses.asdict(event)}


# --- the lock -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockHolder:
    pid: int
    pgid: int
    run_id: str
    started_at: float


class LockHeld(Exception):
    """Another live process holds the pipeline lock; `holder` is what it wrote (None if not yet)."""

    def __init__(self, holder: LockHolder | None) -> None:
        super().__init__(describe_holder(holder))
        self.holder = holder


def describe_holder(holder: LockHolder | None) -> str:
    if holder is None:
        return "its process id is not written yet"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.started_at))
    return f"pipeline run {holder.run_id} (process {holder.pid}, started {started})"


def _parse_holder(data: bytes) -> LockHolder | None:
    try:
        values = json.loads(data.decode("utf-8"))
        return LockHolder(
            pid=int(values["pid"]),
            pgid=int(values.get("pgid", values["pid"])),
            run_id=str(values.get("run_id", "")),
            started_at=float(values.get("started_at", 0.0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class PipelineLock:
    """The exclusive lock of one running pipeline (released by `release`, or by the kernel when the process dies)."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, home: Path, run_id: str) -> PipelineLock:
        """Take the lock now or raise `LockHeld` naming the holder; never waits for a live run."""
        folder = pipeline_dir(home)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_FILE
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(_LOCK_TRIES):
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt < _LOCK_TRIES - 1:
                    time.sleep(0.02)  # a reader's probe lasts microseconds
        else:
            holder = _parse_holder(os.pread(descriptor, 4096, 0))
            os.close(descriptor)
            raise LockHeld(holder)
        payload = {"pid": os.getpid(), "pgid": os.getpgrp(), "run_id": run_id, "started_at": time.time()}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(payload) + "\n").encode(), 0)
        return cls(path, descriptor)

    def release(self) -> None:
        if self._descriptor is not None:
            os.ftruncate(self._descriptor, 0)
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None


def read_holder(home: Path) -> LockHolder | None:
    """Who wrote the lock file last (it may have died since: see `holder_alive`)."""
    try:
        data = (pipeline_dir(home) / LOCK_FILE).read_bytes()
    except OSError:
        return None
    return _parse_holder(data) if data.strip() else None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def lock_is_held(home: Path) -> bool:
    """Whether a live process holds the pipeline lock of `home` (a lock held in this very process counts)."""
    return file_locks.lock_is_held(pipeline_dir(home) / LOCK_FILE)


def holder_alive(home: Path, holder: LockHolder | None) -> bool:
    """The holder's process exists and the lock is held (a reused process id alone does not count)."""
    if holder is None:
        return lock_is_held(home)
    return _process_exists(holder.pid) and lock_is_held(home)


# --- the writer -----------------------------------------------------------------------------------


class EventLog:
    """Appends a run's events to its file, one whole line per write, so a reader never sees half of one
    unless the writer dies mid-write."""

    def __init__(self, home: Path, run_id: str, clock: Callable[[], float] = time.time) -> None:
        self.path = events_path(home, run_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._descriptor: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._clock = clock

    def write(self, payload: Mapping[str, Any]) -> None:
        if self._descriptor is None:
            raise ValueError(f"{self.path}: the event log is closed")
        line = json.dumps({**payload, "at": round(self._clock(), 3)}, ensure_ascii=False, default=str) + "\n"
        os.write(self._descriptor, line.encode("utf-8"))

    def event(self, event: Event) -> None:
        self.write(event_payload(event))

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


# --- the reader -----------------------------------------------------------------------------------


@dataclass
class _RunState:
    """What the events of one run said so far (only the reader's thread touches it)."""

    run_id: str
    offset: int = 0
    pending: bytes = b""
    states: dict[str, str] = dataclasses.field(default_factory=dict)
    details: dict[str, str] = dataclasses.field(default_factory=dict)
    progress: str = ""
    progress_phase: str = ""
    dataset: str = ""
    resumed_from: str = ""
    ended: dict[str, Any] | None = None
    first_at: float = 0.0
    last_at: float = 0.0
    skipped_lines: int = 0

    def apply(self, line: bytes) -> dict[str, Any] | None:
        """Take in one whole line; the event it holds (None for a line that is not an event)."""
        try:
            payload = json.loads(line)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
            kind = str(payload.get("event", ""))
        except ValueError:
            self.skipped_lines += 1
            return None
        at = payload.get("at")
        if isinstance(at, int | float):
            self.first_at = self.first_at or float(at)
            self.last_at = float(at)
        if kind == "PipelineStarted":
            self.dataset = str(payload.get("dataset", ""))
            self.resumed_from = str(payload.get("resumed_from", ""))
        elif kind == "PipelinePhase":
            phase, state, detail = (
                str(payload.get("phase", "")),
                str(payload.get("state", "")),
                str(payload.get("detail", "")),
            )
            if state:
                self.states[phase] = state
                self.details[phase] = detail
            else:  # a phase began, or reports a step (the canary)
                self.states[phase] = "running"
                self.progress, self.progress_phase = detail, phase
                if detail or phase not in self.details:
                    self.details[phase] = detail
        elif kind == "PipelineProgress":
            self.progress, self.progress_phase = str(payload.get("detail", "")), str(payload.get("phase", ""))
        elif kind == "PipelineEnded":
            self.ended = payload
        else:
            self.skipped_lines += 1
            return None
        return payload


class PipelineLogReader:
    """Reads `$ARSL_HOME/pipeline/` incrementally; one instance per follower, used from one thread at a time.

    Never creates anything: a home with no `pipeline/` folder reads as "no run yet".
    """

    def __init__(self, home: Path, clock: Callable[[], float] = time.time, *, run_id: str = "") -> None:
        self.home = home
        self.folder = pipeline_dir(home)
        self.clock = clock
        self.run_id = run_id
        """The run followed; empty: the live run if there is one, else the latest."""
        self._run: _RunState | None = None
        self._listing: tuple[int, list[str]] | None = None
        self.bytes_read = 0
        """Event bytes read so far, over every call (for checking that a call reads only what is new)."""
        self.new_events: list[dict[str, Any]] = []
        """The events the last `read` found (in file order): what a follower prints."""

    def _run_ids(self) -> list[str]:
        """Every run with an event file, oldest first; listed again only when the folder changed."""
        try:
            changed = self.folder.stat().st_mtime_ns
        except OSError:
            self._listing = None
            return []
        if self._listing is None or self._listing[0] != changed:
            found: list[tuple[str, int, str]] = []
            with os.scandir(self.folder) as entries:
                for entry in entries:
                    if entry.name.endswith(EVENTS_SUFFIX):
                        run_id = entry.name[: -len(EVENTS_SUFFIX)]
                        with contextlib.suppress(OSError):
                            # Ids tell the second a run started; its file's age orders two in one second.
                            found.append((run_id.rsplit("-", 1)[0], entry.stat().st_mtime_ns, run_id))
            self._listing = (changed, [run_id for _, _, run_id in sorted(found)])
        return self._listing[1]

    def read(self) -> PipelineView:
        holder = read_holder(self.home)
        alive = holder_alive(self.home, holder) if holder is not None else False
        run_ids = self._run_ids()
        self.new_events = []
        if self.run_id:
            run_id = self.run_id
        elif alive and holder is not None and holder.run_id:
            run_id = holder.run_id
        elif run_ids:
            run_id = run_ids[-1]
        else:
            return PipelineView(runs=0)
        if self._run is None or self._run.run_id != run_id:
            self._run = _RunState(run_id)
        run = self._catch_up(self._run)
        live = alive and holder is not None and holder.run_id == run_id
        if not live and run.pending:
            # The writer is gone: a last line without its newline is whole or never will be.
            self._keep(run.apply(run.pending))
            run.pending = b""
        return self._view(run, holder if live else None, len(set(run_ids) | {run_id}))

    def _catch_up(self, run: _RunState) -> _RunState:
        path = events_path(self.home, run.run_id)
        try:
            with open(path, "rb") as events:
                size = os.fstat(events.fileno()).st_size
                if size < run.offset:  # replaced by a shorter file: start again
                    self._run = run = _RunState(run.run_id)
                if size == run.offset:
                    return run
                events.seek(run.offset)
                data = events.read(min(size - run.offset, _READ_LIMIT))
        except FileNotFoundError:
            return run
        run.offset += len(data)
        self.bytes_read += len(data)
        lines = (run.pending + data).split(b"\n")
        run.pending = lines.pop()
        for line in lines:
            if line.strip():
                self._keep(run.apply(line))
        return run

    def _keep(self, payload: dict[str, Any] | None) -> None:
        if payload is not None:
            self.new_events.append(payload)

    def _view(self, run: _RunState, holder: LockHolder | None, runs: int) -> PipelineView:
        alive = holder is not None
        ended = run.ended
        phases = []
        for name in PHASES:
            state = run.states.get(name.value, "pending")
            if state == "running" and not alive:
                state = "stopped"
            phases.append(PhaseView(name.value, PHASE_TITLES[PhaseName(name)], state, run.details.get(name.value, "")))
        current = next((phase for phase in phases if phase.state == "running"), None)
        progress = (
            run.progress
            if current is not None and run.progress_phase == current.name
            else (current.detail if current is not None else "")
        )
        started_at = holder.started_at if holder is not None and holder.started_at else run.first_at
        outcome, detail, version = "", "", None
        if ended is not None:
            outcome, detail = str(ended.get("outcome", "")), str(ended.get("detail", ""))
            version = ended.get("version") if isinstance(ended.get("version"), str) else None
            elapsed = float(ended.get("elapsed_s") or 0.0) or max(0.0, run.last_at - started_at)
        elif alive:
            elapsed = max(0.0, self.clock() - started_at) if started_at else 0.0
        else:
            stopped = next((phase.name for phase in phases if phase.state == "stopped"), "")
            outcome = "interrupted"
            detail = (
                f"its process ended without finishing{f' during {stopped}' if stopped else ''} (killed?); {RESUME_HINT}"
            )
            elapsed = max(0.0, run.last_at - started_at)
        data_state = run.states.get(PhaseName.DATA.value, "")
        return PipelineView(
            run_id=run.run_id,
            alive=alive,
            pid=holder.pid if holder else 0,
            pgid=holder.pgid if holder else 0,
            dataset=run.dataset,
            demo=data_state in ("done", "skipped"),
            resumed_from=run.resumed_from,
            phases=tuple(phases),
            progress=progress if alive else "",
            outcome=outcome,
            outcome_detail=detail,
            version=version,
            started_at=started_at,
            last_at=run.last_at,
            elapsed_s=elapsed,
            runs=runs,
            skipped_lines=run.skipped_lines,
        )


def live_holder(home: Path) -> LockHolder | None:
    """The holder of the lock if its process is alive, else None."""
    holder = read_holder(home)
    return holder if holder is not None and holder_alive(home, holder) else None


def last_line(path: Path, limit: int = 4096) -> str:
    """The last non-empty line of a (log) file, read from its end; empty if there is none."""
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - limit))
        lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
        return lines[-1] if lines else ""
    return ""


__all__ = [
    "EVENTS_SUFFIX",
    "LOCK_FILE",
    "PIPELINE_DIR",
    "RESUME_HINT",
    "EventLog",
    "LockHeld",
    "LockHolder",
    "PhaseView",
    "PipelineLock",
    "PipelineLogReader",
    "PipelineView",
    "describe_holder",
    "event_payload",
    "events_path",
    "holder_alive",
    "last_line",
    "live_holder",
    "lock_is_held",
    "pipeline_dir",
    "read_holder",
]
