"""A pipeline run started with SIGINT ignored (as `nohup` or `cmd &` in a script start it) still stops on
`arsl pipeline cancel`, whose only means is SIGINT to the run's process group."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fixtures.cli import arsl

pytestmark = pytest.mark.e2e
LINE_TIMEOUT_S = 120.0


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_a_run_started_with_sigint_ignored_is_cancelled(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    env.update(ARSL_HOME=str(tmp_path / "home"), COLUMNS="120")
    run = subprocess.Popen(
        [sys.executable, "-m", "arsl_tui", "pipeline", "run", "--demo", "--yes", "--json", "--per-class", "20"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=_ignore_sigint,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert run.stdout is not None
        for line in run.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        seen: list[str] = []
        while True:  # until the run is training its champion: a long phase, started by a live runner
            line = lines.get(timeout=LINE_TIMEOUT_S)
            assert line is not None, f"the run ended before training: {seen} {run.stderr.read() if run.stderr else ''}"
            seen.append(line)
            event = json.loads(line)
            if event.get("event") == "PipelinePhase" and event.get("phase") == "champion":
                break
        status = Path(f"/proc/{run.pid}/status").read_text()
        ignored = int(next(row for row in status.splitlines() if row.startswith("SigIgn:")).split()[1], 16)
        assert not ignored & (1 << (signal.SIGINT - 1))  # the runner listens again, though started deaf

        cancelled = arsl(env, tmp_path, "pipeline", "cancel", "--yes")
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancelled in champion" in cancelled.stdout
        assert run.wait(LINE_TIMEOUT_S) == 130
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(LINE_TIMEOUT_S)
        for stream in (run.stdout, run.stderr):
            if stream is not None:
                stream.close()
