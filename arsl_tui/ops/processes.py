"""Worker processes for CPU-bound data set work (decoding, packing): how many, and how they start.

Workers are started with `spawn`, not `fork`: the console and the upload engine run threads (sending,
the UI), and a forked child of a threaded process can inherit a lock some other thread held. Workers
ignore SIGINT: Ctrl-C reaches the whole process group, and only the parent decides how to stop
(it cancels what is queued and waits for the few tasks in flight).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

WORKER_DIED = (
    "a worker process stopped abruptly ({detail}): killed, out of memory, or started from a script "
    'whose top-level code is not under `if __name__ == "__main__":` (spawned workers import the main '
    "script, as Python's multiprocessing documents)"
)


class WorkerProcessFailed(RuntimeError):
    """A worker process died instead of returning; the message says what to look at."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


PARENT_CHECK_S = 1.0


def _exit_with_parent(parent: int) -> None:
    # PR_SET_PDEATHSIG fires when the *thread* that started the worker ends, and pools here are started
    # from worker threads that may end first; polling the parent's pid is cheap and exact.
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(1)


def _worker_setup(parent: int) -> None:
    """In each pool worker: Ctrl-C is the parent's to handle, and a worker ends when its parent is gone
    (a SIGKILLed upload or console would otherwise leave its decoders running)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()


def process_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_setup,
        initargs=(os.getpid(),),
    )
