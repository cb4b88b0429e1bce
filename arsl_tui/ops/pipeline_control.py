"""Cancelling and following a pipeline run from outside its process: the signal a cancel sends, the loop
`arsl pipeline watch` and `arsl pipeline cancel` read the run's event file with, and the JSON shape of a
run. The words a run is shown in are `domain.pipeline_run`'s, shared with the console.

Standard library only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from arsl_tui.domain.pipeline_run import PipelineView, next_command, run_state
from arsl_tui.ops.pipeline_log import PipelineLogReader, events_path

FOLLOW_INTERVAL_S = 0.5
"""How often a follower reads the event file while the run is live."""


def signal_run(pid: int, pgid: int, signum: int) -> str:
    """Signal the run's process group, as Ctrl-C in its terminal would; never the caller's own group.
    What was signalled, in words."""
    if pgid > 1 and pgid != os.getpgrp():
        os.killpg(pgid, signum)
        return f"process group {pgid}"
    os.kill(pid, signum)
    return f"process {pid}"


def status_json(view: PipelineView, home: Path) -> dict[str, Any]:
    """`arsl pipeline status --json`, and `pipeline` in `arsl status --json`."""
    if not view.exists:
        return {"run_id": None, "state": "none", "runs": 0, "events_file": None, "next": None}
    current = view.current
    return {
        "run_id": view.run_id,
        "state": run_state(view),
        "outcome": view.outcome or None,
        "outcome_detail": view.outcome_detail or None,
        "version": view.version,
        "alive": view.alive,
        "pid": view.pid or None,
        "pgid": view.pgid or None,
        "current_phase": current.name if current is not None else None,
        "progress": view.progress or None,
        "phases": [
            {"name": phase.name, "title": phase.title, "state": phase.state, "detail": phase.detail}
            for phase in view.phases
        ],
        "dataset": view.dataset or None,
        "demo": view.demo,
        "resumed_from": view.resumed_from or None,
        "started_at": view.started_at or None,
        "last_event_at": view.last_at or None,
        "elapsed_s": round(view.elapsed_s, 1),
        "runs": view.runs,
        "events_file": str(events_path(home, view.run_id)),
        "next": next_command(view) or None,
    }


def follow(
    reader: PipelineLogReader,
    on_read: Callable[[PipelineView, Sequence[dict[str, Any]]], None],
    *,
    timeout_s: float | None = None,
    interval_s: float = FOLLOW_INTERVAL_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PipelineView:
    """Read one run until it is no longer live, or `timeout_s` passed; the last view.

    The first read picks the run (the live one, else the latest) and the reader stays on it, so a run
    started meanwhile is not taken for it. `on_read(view, new events)` sees every read, the first
    with the events written so far.
    """
    deadline = None if timeout_s is None else clock() + timeout_s
    while True:
        view = reader.read()
        if view.exists and not reader.run_id:
            reader.run_id = view.run_id
        on_read(view, list(reader.new_events))
        if not view.alive or (deadline is not None and clock() >= deadline):
            return view
        sleep(interval_s)


__all__ = ["FOLLOW_INTERVAL_S", "follow", "signal_run", "status_json"]
