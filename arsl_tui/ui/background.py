"""Run blocking work in a thread the OS schedules after the console's own thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def lower_this_threads_priority(niceness: int) -> None:
    """Raise this thread's nice value; on Linux nice is per thread and threads started from here inherit
    it, so the upload engine's pool yields the CPU to the UI thread. Elsewhere this is a no-op."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        thread_id = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread_id, os.getpriority(os.PRIO_PROCESS, thread_id) + niceness)
    except OSError:
        return


def run_in_low_priority_thread(function: Callable[[], _T], niceness: int) -> _T:
    """Call `function` in a fresh thread with lowered priority, wait for it, return or raise what it did.

    A fresh thread, because a raised nice value cannot be lowered again without privileges and the
    calling thread (a Textual worker) is pooled and reused.
    """
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        lower_this_threads_priority(niceness)
        try:
            outcome.append(function())
        except BaseException as error:  # handed to the caller's thread below
            failure.append(error)

    thread = threading.Thread(target=run, name="arsl-console-upload", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
