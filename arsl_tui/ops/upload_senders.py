"""Sending processes: files mode's transfers spread over child processes, each with its own store.

In files mode every image is one request, and the OBS SDK spends 0.7–0.8 ms of CPU on each (signing,
http.client, parsing the answer). In one process all of that runs behind one GIL: 108,098 requests cost
at least ~85 s of one core, however many threads wait on the network, and the threads' queueing for the
GIL lengthens every round trip. Each child here has its own interpreter, its own SDK client and its own
sending threads, and runs whole transfers (`ops.upload_transfer`: head, put, check, retry) with the
engine's policy. The engine keeps the journal, the progress and the decisions; per object it only
pickles an `UploadItem` out and an answer back.

Between the engine and each child, one duplex socket (a `multiprocessing.connection.Connection`):

* engine → child: its import path, then `(settings, threads)`, then `("transfer", id, item, recheck)`,
  `("halt",)` (stop every transfer: the run is cancelled or failed) and `("resume",)`;
* child → engine: `("done", id, sent)`, `("stop", id)`, `("failure", id, message)`, `("error", id, text)`
  (a bug, in words), and `("retried", key, attempt, error, delay)` as each retry happens.

The engine shutting its end for writing tells the child to finish what it has in flight, answer it, and
exit; so does the engine's death (a `kill -9` closes the socket with it). A child that dies mid-transfer
is not an error of the upload: its unanswered items go again, headed first, to another child, or with
none left to the engine's own threads.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from arsl_tui.config import Settings
from arsl_tui.ops.processes import available_cpus
from arsl_tui.ops.upload_sources import UploadItem
from arsl_tui.ops.upload_transfer import Failure, RetryListener, Stop, Transfer

SENDER_MODULE = "arsl_tui.ops.upload_sender_child"
AUTO_MIN_OBJECTS = 1_000
"""Below this many objects a child's start (importing the SDK: about half a second) costs more than it saves."""
AUTO_MAX_PROCESSES = 4
_EXIT_GRACE_S = 60.0
"""How long a child has to answer what it has in flight and exit once its work is done."""


def sending_process_count(settings: Settings, objects: int, *, store_from_settings: bool) -> int:
    """How many sending processes an upload of `objects` objects in files mode uses; 1 means none (the
    engine's own threads send). A store handed to the engine cannot be rebuilt in a child: none then."""
    if not store_from_settings:
        return 1
    configured = settings.upload.sender_processes
    if configured:
        return configured
    # Only a remote store's requests cost enough CPU to be worth a process; the local store is a file copy.
    if settings.backend == "local" or objects < AUTO_MIN_OBJECTS:
        return 1
    return min(available_cpus(), AUTO_MAX_PROCESSES)


# -- the child ------------------------------------------------------------------------------------------


def sender_main(descriptor: int) -> None:
    """A child's whole life (`python -m arsl_tui.ops.upload_sender_child FD`)."""
    # Ctrl-C in the terminal is the engine's to handle: it halts the transfers through the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    connection = Connection(descriptor)
    try:
        # The engine's import path first, as multiprocessing's spawn does: what it pickles must import here.
        sys.path[:] = connection.recv()
        settings, threads = connection.recv()
    except (EOFError, OSError):  # the engine ended before it said what to do
        return
    answering = threading.Lock()

    def answer(message: tuple[Any, ...]) -> None:
        with answering, contextlib.suppress(OSError):  # the engine is gone: nobody to answer
            connection.send(message)

    halt = threading.Event()
    transfer = _open_transfer(settings, halt, lambda *retry: answer(("retried", *retry)))

    def run(request_id: int, item: UploadItem, recheck: bool) -> None:
        try:
            answer(("done", request_id, transfer(item, recheck)))
        except Stop:
            answer(("stop", request_id))
        except Failure as failure:
            answer(("failure", request_id, str(failure)))
        except Exception as error:  # a bug: reported in words, never as a pickled traceback
            answer(("error", request_id, f"{type(error).__name__}: {error}"))

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="arsl-sender") as pool:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                break
            if message[0] == "transfer":
                pool.submit(run, *message[1:])
            elif message[0] == "halt":
                halt.set()
            elif message[0] == "resume":
                halt.clear()
    connection.close()


def _open_transfer(
    settings: Settings, halt: threading.Event, on_retry: RetryListener
) -> Callable[[UploadItem, bool], bool]:
    """The child's transfer over its own store; a store that cannot be opened fails each transfer saying why."""
    from arsl_tui.backends import backend_for

    try:
        store = backend_for(settings).object_store()
    except Exception as error:
        problem = f"the sending process could not open the store: {error}"

        def refuse(_item: UploadItem, _recheck: bool) -> bool:
            raise Failure(problem)

        return refuse
    return Transfer(store, settings.upload, halt, on_retry)


# -- the engine's side ----------------------------------------------------------------------------------


class _Child:
    """One sending process and the transfers it has not answered yet."""

    def __init__(self, settings: Settings, threads: int, on_retry: RetryListener) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", SENDER_MODULE, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        self._socket = ours
        # A duplicate, so that `_socket.shutdown` can end the child's input while the reader still reads.
        self._connection = Connection(os.dup(ours.fileno()))
        self._on_retry = on_retry
        self._lock = threading.Lock()
        self._sending = threading.Lock()
        self._pending: dict[int, tuple[UploadItem, Future[bool]]] = {}
        self._ids = itertools.count()
        self.alive = True
        try:
            self._send(list(sys.path))
            self._send((settings, threads))
        except BaseException:  # it died at once: reaped here, since nobody else knows of it
            self.process.kill()
            self.process.wait()
            self._connection.close()
            self._socket.close()
            raise
        self._reader = threading.Thread(target=self._read, name=f"arsl-sender-{self.process.pid}", daemon=True)

    def start_reading(self, on_end: Callable[[list[tuple[UploadItem, Future[bool]]]], None]) -> None:
        """Read the child's answers in a thread of its own; once it has ended, `on_end` gets what it had not
        answered."""
        self._on_end = on_end
        self._reader.start()

    def submit(self, item: UploadItem, recheck: bool, future: Future[bool]) -> bool:
        """Hand `item` over; False if the child has ended (the caller routes it elsewhere)."""
        with self._lock:
            if not self.alive:
                return False
            request_id = next(self._ids)
            self._pending[request_id] = (item, future)
        try:
            self._send(("transfer", request_id, item, recheck))
        except OSError:
            with self._lock:
                taken = self._pending.pop(request_id, None)
            # Taken back here, or already among the orphans the reader hands on: never both.
            return taken is None
        return True

    def order(self, message: str) -> None:
        with contextlib.suppress(OSError):
            self._send((message,))

    def _send(self, message: Any) -> None:
        with self._sending:
            self._connection.send(message)

    def _read(self) -> None:
        try:
            while True:
                try:
                    message = self._connection.recv()
                except (EOFError, OSError):
                    break
                self._take(message)
        finally:
            # Also if taking an answer failed (a bug): nothing the engine waits for may be left without an answer.
            with self._lock:
                self.alive = False
                orphaned = list(self._pending.values())
                self._pending.clear()
            self._on_end(orphaned)

    def _take(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "retried":
            self._on_retry(*message[1:])
            return
        with self._lock:
            _, future = self._pending.pop(message[1])
        if kind == "done":
            future.set_result(message[2])
        elif kind == "stop":
            future.set_exception(Stop())
        elif kind == "failure":
            future.set_exception(Failure(message[2]))
        else:
            future.set_exception(RuntimeError(f"in sending process {self.process.pid}: {message[2]}"))

    def close(self) -> None:
        """Let the child answer what it has in flight and exit; kill it if it does not."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_WR)
        try:
            self.process.wait(_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._reader.ident is not None:  # started
            self._reader.join()
        self._connection.close()
        self._socket.close()


class SendingProcesses:
    """Transfers run by `processes` child processes with `threads` sending threads each. `in_process` is the
    engine's own transfer: it takes over the items of a child that ends, once no child is left."""

    def __init__(
        self, settings: Settings, in_process: Transfer, *, processes: int, threads: int, on_retry: RetryListener
    ) -> None:
        self._in_process = in_process
        self._threads = threads * processes
        self._fallback: ThreadPoolExecutor | None = None
        self._fallback_lock = threading.Lock()
        self._turns = itertools.count()
        self._closing = False
        self._children: list[_Child] = []
        try:
            for _ in range(processes):
                self._children.append(_Child(settings, threads, on_retry))
        except BaseException:
            self.close()
            raise
        for child in self._children:
            child.start_reading(self._ended)

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [child.process for child in self._children]

    def submit(self, item: UploadItem, recheck: bool) -> Future[bool]:
        future: Future[bool] = Future()
        # Running from the start, as an executor's task that has begun: `cancel()` cannot pull it back.
        future.set_running_or_notify_cancel()
        self._route(item, recheck, future)
        return future

    def _route(self, item: UploadItem, recheck: bool, future: Future[bool]) -> None:
        alive = [child for child in self._children if child.alive]
        start = next(self._turns)
        for offset in range(len(alive)):
            if alive[(start + offset) % len(alive)].submit(item, recheck, future):
                return
        self._run_here(item, recheck, future)

    def _run_here(self, item: UploadItem, recheck: bool, future: Future[bool]) -> None:
        with self._fallback_lock:
            if self._fallback is None:
                self._fallback = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="arsl-upload")
            inner = self._fallback.submit(self._in_process, item, recheck)
        inner.add_done_callback(lambda done: _copy(done, future))

    def _ended(self, orphaned: list[tuple[UploadItem, Future[bool]]]) -> None:
        """In the reader of a child that ended: its unanswered items go again, headed first (it may have
        stored them)."""
        for item, future in orphaned:
            if self._closing:  # the engine waited for every answer before closing: nobody waits for these
                future.set_exception(Stop())
            else:
                self._route(item, True, future)

    def halt(self) -> None:
        for child in self._children:
            child.order("halt")

    def resume(self) -> None:
        for child in self._children:
            child.order("resume")

    def close(self) -> None:
        self._closing = True
        for child in self._children:
            child.close()
        if self._fallback is not None:
            self._fallback.shutdown(wait=True)

    def __enter__(self) -> SendingProcesses:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _copy(source: Future[bool], target: Future[bool]) -> None:
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


__all__ = ["SendingProcesses", "sender_main", "sending_process_count"]
