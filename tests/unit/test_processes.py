"""Pool workers end with their parent, even when the parent is SIGKILLed and cannot shut the pool down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PARENT = """
import os, sys, time
from arsl_tui.ops.processes import process_pool

def pid_of_worker(_):
    return os.getpid()

if __name__ == "__main__":
    pool = process_pool(2)
    pids = set(pool.map(pid_of_worker, range(8)))
    print(" ".join(str(pid) for pid in sorted(pids)), flush=True)
    time.sleep(600)  # held until the test kills this parent
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_workers_exit_once_their_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2]
    )
    workers: list[int] = []
    try:
        assert parent.stdout is not None
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert workers and all(_alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the condition, bounded by the deadline
        assert not any(_alive(pid) for pid in workers), "pool workers outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
