"""The upload engine in a process of its own, driven from another process (the console).

`run_upload_in_child` has `run_upload`'s signature, answers and exceptions, but the engine — its
sending threads, the journal writes, the decoding and packing pools below it — runs in a
child at a lower scheduling priority. The caller's process only reads what the child reports, so a
console's UI thread never competes with the engine's threads for the GIL.

Between the two, one duplex pipe:

* child → parent: every event except progress as it happens; progress coalesced to the newest one
  every `PROGRESS_INTERVAL_S`, with how many events it stands for (the engine emits one per confirmed
  object: 108,098 for the full data set); then one closing message (the outcome, a refusal with its
  findings, or an error by kind and text);
* parent → child: `pause`, `resume`, `cancel`, mirrored from the caller's `UploadControl`. The pipe's
  end means the parent died (a console killed, an SSH session dropped): the child stops at once, as the
  engine did when it ran in the console's process, and the run reads as interrupted and resumable.

A child that ends without its closing message (killed, out of memory) becomes a `failed` outcome that
says so: the journal's lock died with it, so the run reads as interrupted and resumes like any other.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from arsl_tui.config import Settings
from arsl_tui.domain.events import (
    Event,
    EventSink,
    UploadFinished,
    UploadProgressed,
    UploadStarted,
    ignore_events,
)
from arsl_tui.domain.manifest import Manifest
from arsl_tui.domain.ports import ObjectStore, StoreError
from arsl_tui.ops.dataset import DatasetError, ValidationReport
from arsl_tui.ops.upload import UploadBusy, UploadControl, UploadOutcome, UploadRefused, UploadRequest, run_upload
from arsl_tui.state.db import StateError

CHILD_MODULE = "arsl_tui.ops.upload_child"
PROGRESS_INTERVAL_S = 0.1
"""How often the child reports progress at most; the console renders it at 0.25 s at most anyway."""
CHILD_NICENESS = 10
"""How much lower the child (and the pools it starts, which inherit it) is scheduled than its parent."""
_CONTROL_POLL_S = 0.05
"""How soon a pause, resume or cancel on the caller's control reaches the child."""
_CANCEL_GRACE_S = 60.0
"""How long a child that closed its end, or was cancelled by a caller that stops waiting, has to exit."""

StoreFactory = Callable[[], ObjectStore]
"""Builds the store in the child (picklable: a module-level callable or a `functools.partial` of one)."""


class ControlLike(Protocol):
    """What the runner reads of the caller's control (`UploadControl`, or the console's)."""

    @property
    def paused(self) -> bool: ...

    @property
    def cancelled(self) -> bool: ...


@runtime_checkable
class ProgressCounter(Protocol):
    """A sink that keeps count of coalesced progress (the console's `UploadFeed`): it gets the newest
    progress with the number of engine events it stands for, instead of one call."""

    def add_progress(self, event: UploadProgressed, count: int) -> None: ...


@dataclass(frozen=True)
class _Start:
    """What the child runs: the parent's second message."""

    settings: Settings
    request: UploadRequest
    store_factory: StoreFactory | None


@dataclass(frozen=True)
class _Closing:
    """The child's last message."""

    outcome: UploadOutcome | None = None
    refused_message: str = ""
    refused_report: ValidationReport | None = None
    error_kind: str = ""
    error: str = ""


_ERRORS: dict[str, Callable[[str], Exception]] = {
    "dataset": DatasetError,
    "busy": UploadBusy,
    "state": StateError,
    "store": StoreError,
}


class UploadProcessFailed(RuntimeError):
    """The child could not run the engine for a reason the engine does not name (a bug, a failed start)."""


# -- the child ------------------------------------------------------------------------------------------


class _CoalescingSender:
    """The child's EventSink: other events go at once, progress at most every PROGRESS_INTERVAL_S."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._progress: UploadProgressed | None = None
        self._count = 0
        self._closed = False
        self._flusher = threading.Thread(target=self._flush_regularly, name="arsl-upload-progress", daemon=True)
        self._flusher.start()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, UploadProgressed):
                self._progress = event
                self._count += 1
                return
            self._send_progress()  # keep the order: progress reported before what followed it
            self._send(("event", event))

    def close(self) -> None:
        with self._lock:
            self._send_progress()
            self._closed = True
            self._wakeup.notify_all()
        self._flusher.join()

    def send_closing(self, closing: _Closing) -> None:
        with self._lock:
            self._send(("closing", closing))

    def _flush_regularly(self) -> None:
        with self._lock:
            while not self._closed:
                self._wakeup.wait(PROGRESS_INTERVAL_S)
                self._send_progress()

    def _send_progress(self) -> None:
        if self._progress is not None:
            self._send(("progress", self._progress, self._count))
            self._progress, self._count = None, 0

    def _send(self, message: tuple[Any, ...]) -> None:
        # A parent that went away cannot be told anything; the reader thread has cancelled the run.
        with contextlib.suppress(OSError, EOFError):
            self._connection.send(message)


def _follow_parent(connection: Connection, control: UploadControl) -> None:
    """In the child: apply the parent's pause, resume and cancel; the pipe's end stops the child."""
    while True:
        try:
            order = connection.recv()
        except (EOFError, OSError):
            # Nobody is left to show the run or to resume it from a cancel: end as a killed engine does. The
            # journal confirms an object only after its put, and its lock dies with this process, so the run
            # reads as interrupted at once and resumes like any other; no user asked for a cancel.
            os._exit(PARENT_GONE_EXIT)
        if order == "pause":
            control.pause()
        elif order == "resume":
            control.resume()
        elif order == "cancel":
            control.cancel()


PARENT_GONE_EXIT = 75
"""The child's exit status when its parent went away (EX_TEMPFAIL: the run can be resumed)."""


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.nice(CHILD_NICENESS)


def child_main(descriptor: int) -> None:
    """The child's whole life (`python -m arsl_tui.ops.upload_child FD`): read its orders from the socket
    `descriptor`, run the engine, report, exit."""
    # Ctrl-C in the console's terminal is the console's to handle: it cancels through the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _lower_priority()
    connection = Connection(descriptor)
    # The parent's import path first, as multiprocessing's spawn does: what it pickles must import here.
    sys.path[:] = connection.recv()
    start: _Start = connection.recv()
    control = UploadControl()
    threading.Thread(target=_follow_parent, args=(connection, control), name="arsl-upload-orders", daemon=True).start()
    sender = _CoalescingSender(connection)
    closing: _Closing
    try:
        store = start.store_factory() if start.store_factory is not None else None
        outcome = run_upload(start.settings, start.request, store=store, on_event=sender, control=control)
        closing = _Closing(outcome=outcome)
    except UploadRefused as refused:
        closing = _Closing(refused_message=str(refused), refused_report=_findings_only(refused.report))
    except DatasetError as error:
        closing = _Closing(error_kind="dataset", error=str(error))
    except UploadBusy as error:
        closing = _Closing(error_kind="busy", error=str(error))
    except StateError as error:
        closing = _Closing(error_kind="state", error=str(error))
    except StoreError as error:
        closing = _Closing(error_kind="store", error=str(error))
    except Exception as error:  # a bug is reported to the parent in words, never as a pickled traceback
        closing = _Closing(error_kind="internal", error=f"{type(error).__name__}: {error}")
    sender.close()
    sender.send_closing(closing)
    connection.close()


def _findings_only(report: ValidationReport) -> ValidationReport:
    """The refusal's report without its manifest (up to ~100 MB of records for 100k images): the parent
    shows the findings only."""
    return ValidationReport(
        root=report.root,
        manifest=Manifest(split=report.manifest.split, images=()),
        problems=report.problems,
        notes=report.notes,
        files_scanned=report.files_scanned,
    )


# -- the parent -----------------------------------------------------------------------------------------


class _Mirror:
    """Sends the caller's control state to the child whenever it changes."""

    def __init__(self, connection: Connection, control: ControlLike) -> None:
        self._connection = connection
        self._control = control
        self._paused = False
        self.cancel_sent = False

    def sync(self) -> None:
        if self._control.cancelled and not self.cancel_sent:
            self.cancel()
        elif not self.cancel_sent and self._control.paused != self._paused:
            self._paused = not self._paused
            self._send("pause" if self._paused else "resume")

    def cancel(self) -> None:
        self.cancel_sent = True
        self._send("cancel")

    def _send(self, order: str) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._connection.send(order)


class _Relay:
    """What the parent learned from the child so far, and handing events on to the caller's sink."""

    def __init__(self, on_event: EventSink) -> None:
        self._on_event = on_event
        self.started: UploadStarted | None = None
        self.closing: _Closing | None = None
        self.began = time.monotonic()

    def take(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "progress":
            event, count = message[1], message[2]
            if isinstance(self._on_event, ProgressCounter):
                self._on_event.add_progress(event, count)
            else:
                self._on_event(event)
        elif kind == "event":
            if isinstance(message[1], UploadStarted):
                self.started = message[1]
            self._on_event(message[1])
        elif kind == "closing":
            self.closing = message[1]

    def crashed(self, exit_code: int | None, pid: int, log_path: Path) -> UploadOutcome:
        """The outcome of a child that ended without saying how."""
        how = (
            f"was killed by {signal.Signals(-exit_code).name}"
            if exit_code is not None and exit_code < 0 and -exit_code in signal.valid_signals()
            else f"exited with status {exit_code}"
        )
        started = self.started
        error = (
            f"the upload process (pid {pid}) {how} before it finished (its output: {log_path}); the journal "
            "keeps every object it confirmed: resume to send the rest"
        )
        outcome = UploadOutcome(
            run_id=started.run_id if started else "",
            status="failed",
            manifest_id=started.manifest_id if started else "",
            destination=started.destination if started else "",
            objects_sent=0,
            objects_skipped=0,
            bytes_sent=0,
            elapsed_s=time.monotonic() - self.began,
            error=error,
        )
        if started is not None:
            self._on_event(
                UploadFinished(
                    run_id=outcome.run_id,
                    status="failed",
                    manifest_id=outcome.manifest_id,
                    destination=outcome.destination,
                    objects_sent=0,
                    objects_skipped=0,
                    bytes_sent=0,
                    elapsed_s=outcome.elapsed_s,
                    error=error,
                )
            )
        return outcome


def run_upload_in_child(
    settings: Settings,
    request: UploadRequest,
    *,
    on_event: EventSink = ignore_events,
    control: ControlLike | None = None,
    store_factory: StoreFactory | None = None,
    on_child_started: Callable[[int], None] | None = None,
) -> UploadOutcome:
    """Blocking. `run_upload` in a child process; same outcome, same exceptions (`UploadRefused` with
    the findings, `DatasetError`, `UploadBusy`, `StateError`, `StoreError`), `UploadProcessFailed` for
    anything else the child could not do. A child that dies is a "failed" outcome saying how.

    `on_event` is called from this thread only. `control` is read every few tens of milliseconds
    and its pause, resume and cancel are passed on. `store_factory` builds the store in the child (default:
    the backend's). `on_child_started(pid)` is told the child's process id once it runs. The child's own
    output (warnings, a crash's last words) goes to `process_log(settings)`, never to the caller's terminal.
    """
    control = control or UploadControl()
    ours, theirs = socket.socketpair()
    log_path = process_log(settings)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with theirs, open(log_path, "ab") as log:
        # A plain subprocess, not multiprocessing's spawn: that needs a file descriptor for stderr, which a
        # running Textual app has replaced with one that has none.
        child = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE, str(theirs.fileno())],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,  # a Ctrl-C or hang-up meant for the console reaches it through the pipe
        )
    connection = Connection(ours.detach())
    if on_child_started is not None:
        on_child_started(child.pid)
    mirror = _Mirror(connection, control)
    relay = _Relay(on_event)
    try:
        connection.send(list(sys.path))
        connection.send(_Start(settings, request, store_factory))
        while relay.closing is None:
            mirror.sync()
            if connection.poll(_CONTROL_POLL_S):
                relay.take(connection.recv())
    except (EOFError, OSError):
        pass  # the child is gone; its exit status says how
    except BaseException:  # the caller stopped waiting (an interrupt): the child stops sending too
        mirror.cancel()
        _wait_or_kill(child, _CANCEL_GRACE_S)
        connection.close()
        raise
    _wait_or_kill(child, None if relay.closing is not None else _CANCEL_GRACE_S)
    connection.close()
    return _answer(relay, child.returncode, child.pid, log_path)


def _wait_or_kill(child: subprocess.Popen[bytes], timeout_s: float | None) -> None:
    try:
        child.wait(timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def process_log(settings: Settings) -> Path:
    """Where the upload process's own output goes (appended)."""
    return settings.home_dir / "uploads" / "process.log"


def _answer(relay: _Relay, exit_code: int | None, pid: int, log_path: Path) -> UploadOutcome:
    closing = relay.closing
    if closing is None:
        return relay.crashed(exit_code, pid, log_path)
    if closing.outcome is not None:
        return closing.outcome
    if closing.refused_report is not None:
        raise UploadRefused(closing.refused_report, closing.refused_message)
    make = _ERRORS.get(closing.error_kind)
    if make is not None:
        raise make(closing.error)
    raise UploadProcessFailed(closing.error or "the upload process ended without a result")


__all__ = ["ProgressCounter", "UploadProcessFailed", "run_upload_in_child"]
