"""A pipeline run as its event file tells it, and what that means: its state, its end, the command a
user runs next, and what cancelling it does.

`ops.pipeline_log` reads the file into a `PipelineView`; the console (its pipeline line, the Overview,
`X`) and `arsl pipeline status|watch|cancel` put it in these words, so a run reads the same everywhere
and a cancel from either does the same thing: SIGINT to the run's process group, as Ctrl-C in its
terminal would; the run then stops the training job it started and writes its end (`cancelled`).
Pure description, standard library only.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Literal

PHASE_GLYPHS = {
    "pending": "○",
    "running": "►",
    "done": "✓",
    "skipped": "↷",
    "not needed": "·",
    "failed": "✗",
    "stopped": "✗",
}
OUTCOME_GLYPHS = {
    "promoted": "✓",
    "rolled_back": "▲",
    "gate_failed": "▲",
    "failed": "✗",
    "cancelled": "■",
    "interrupted": "▲",
}
RESUMABLE = frozenset({"cancelled", "interrupted", "failed"})
"""Outcomes after which running again resumes after the last finished phase."""
FINISHED = frozenset({"promoted", "rolled_back", "gate_failed"})
"""Outcomes of a run that went through its phases (the verdict may still be no)."""
RESUME_HINT = "run it again to resume"
WATCH_COMMAND = "arsl pipeline watch"
CANCEL_COMMAND = "arsl pipeline cancel"
CANCEL_PATIENCE_S = 30.0
"""After this long without the run ending, a cancel is reported as not (yet) effective."""


@dataclass(frozen=True)
class PhaseView:
    name: str
    title: str
    state: str
    """pending, running, done, skipped, not needed, failed, or stopped (running when the run ended)."""
    detail: str = ""


@dataclass(frozen=True)
class PipelineView:
    """The current run if one is live, else the latest; `run_id` empty when no run ever happened here."""

    run_id: str = ""
    alive: bool = False
    """Its process still holds the lock."""
    pid: int = 0
    pgid: int = 0
    dataset: str = ""
    demo: bool = False
    resumed_from: str = ""
    phases: tuple[PhaseView, ...] = ()
    progress: str = ""
    """The latest progress line of the phase running now (an epoch, a canary step)."""
    outcome: str = ""
    """Empty while running; promoted, rolled_back, gate_failed, failed, cancelled, or interrupted."""
    outcome_detail: str = ""
    version: str | None = None
    started_at: float = 0.0
    last_at: float = 0.0
    elapsed_s: float = 0.0
    runs: int = 0
    """Runs with an event file in this home."""
    skipped_lines: int = 0
    """Lines that were not JSON events (a torn line left by a killed writer counts once it is whole or dead)."""

    @property
    def exists(self) -> bool:
        return bool(self.run_id)

    @property
    def ended(self) -> bool:
        return bool(self.run_id) and not self.alive

    @property
    def current(self) -> PhaseView | None:
        """The phase running now; for an ended run, the one it stopped in (if any)."""
        return next((phase for phase in self.phases if phase.state in ("running", "stopped")), None)

    @property
    def last_finished(self) -> PhaseView | None:
        finished = [phase for phase in self.phases if phase.state in ("done", "skipped", "not needed", "failed")]
        return finished[-1] if finished else None


# --- a run in words -------------------------------------------------------------------------------


def clock_time(seconds: float) -> str:
    """`41s`, `3m12s`, `1h02m`: short enough for one line."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def outcome_words(view: PipelineView) -> str:
    """`promoted v2`, `rolled back v3`, `cancelled in champion`."""
    word = view.outcome.replace("_", " ")
    if view.outcome in ("promoted", "rolled_back"):
        return f"{word} {view.version or ''}".rstrip()
    stopped = view.current
    return f"{word} in {stopped.name}" if stopped is not None else word


def run_state(view: PipelineView) -> str:
    """none, running, done (it went through: `outcome` says the verdict), failed, cancelled or interrupted."""
    if not view.exists:
        return "none"
    if view.alive:
        return "running"
    return "done" if view.outcome in FINISHED else view.outcome or "interrupted"


def exit_status(view: PipelineView) -> int:
    """0 for a promotion; 1 for every other end (rolled back, gate failed, failed, cancelled, interrupted)."""
    return 0 if view.outcome == "promoted" else 1


def resume_command(view: PipelineView) -> str:
    """The command that runs the same pipeline again (it skips the phases already done)."""
    if view.demo:
        return "arsl pipeline run --demo"
    if view.dataset:
        return f"arsl pipeline run {shlex.quote(view.dataset)}"
    return "arsl pipeline run DIR"


def describe(view: PipelineView) -> str:
    """One line: `running 3m12s: champion (job-… epoch 4/10: val_acc 0.912)`, `promoted v2 in 11m02s`."""
    if not view.exists:
        return "no pipeline run yet"
    if view.alive:
        current = view.current
        now = f": {current.name}" if current is not None else ": between phases"
        detail = view.progress or (current.detail if current is not None else "")
        return f"running {clock_time(view.elapsed_s)}{now}" + (f" ({detail})" if detail else "")
    return f"{outcome_words(view)} in {clock_time(view.elapsed_s)}"


def next_command(view: PipelineView) -> str:
    """What to do about this run: follow a live one (it does the next steps itself), resume a stopped one."""
    if not view.exists or view.outcome == "promoted":
        return ""
    if view.alive:
        return WATCH_COMMAND
    if view.outcome == "rolled_back":
        return "arsl canary status"
    if view.outcome == "gate_failed":
        return "arsl pipeline status"
    return f"{resume_command(view)}  (resumes)"


def end_line(view: PipelineView) -> str:
    """How a run ended, as announced: `Pipeline p…: cancelled in champion — interrupted (SIGINT); …`."""
    words = f"Pipeline {view.run_id}: {outcome_words(view)}"
    return f"{words} — {view.outcome_detail}" if view.outcome_detail else words


Severity = Literal["information", "warning", "error"]


def end_severity(view: PipelineView) -> Severity:
    """information (promoted), warning (a verdict, or stopped on purpose or by a kill) or error (failed)."""
    if view.outcome == "promoted":
        return "information"
    if view.outcome in ("cancelled", "interrupted", "rolled_back", "gate_failed"):
        return "warning"
    return "error"


def background_line(view: PipelineView) -> str:
    """Said when the console closes while a run goes on: where it continues and how to follow it."""
    if not view.alive:
        return ""
    return (
        f"pipeline {view.run_id} goes on in the background (process {view.pid}); follow it with "
        f"`{WATCH_COMMAND}`, stop it with `{CANCEL_COMMAND}`"
    )


# --- cancelling -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelTarget:
    """The process group a cancel signals, and how to name it."""

    pid: int
    pgid: int
    name: str
    """`pipeline run p…`, or `the starting pipeline (process N)` before it has a run id."""
    key: str
    """The run id, or `pid:N` before it has one."""
    phase: str
    """The phase it is in (`starting` before it has one)."""


def cancel_target(view: PipelineView | None, starting_pid: int = 0) -> CancelTarget | None:
    """The live run's process group, else that of a pipeline process started but not running yet; None:
    nothing to cancel."""
    if view is not None and view.alive:
        current = view.current
        return CancelTarget(
            view.pid,
            view.pgid or view.pid,
            f"pipeline run {view.run_id}",
            view.run_id,
            current.name if current is not None else "starting",
        )
    if starting_pid:  # a session leader: its group has its id
        return CancelTarget(
            starting_pid,
            starting_pid,
            f"the starting pipeline (process {starting_pid})",
            f"pid:{starting_pid}",
            "starting",
        )
    return None


def cancel_effects(target: CancelTarget) -> list[str]:
    """What a cancel does, in the words both the console's confirmation and `arsl pipeline cancel` show."""
    return [
        f"Sends SIGINT to process group {target.pgid} ({target.name}), as Ctrl-C in its terminal would.",
        f"The phase in progress ({target.phase}) stops: a training job is stopped, an upload keeps what the "
        "store confirmed; finished phases stay recorded.",
        "Running the pipeline again with the same data and code resumes after the last finished phase.",
    ]


def overdue_line(view: PipelineView, again: str) -> str:
    """A run still live `CANCEL_PATIENCE_S` after SIGINT; `again` says how to send it again."""
    return (
        f"pipeline run {view.run_id} is still running {CANCEL_PATIENCE_S:.0f} s after SIGINT (process "
        f"{view.pid}); {again}, or `kill -TERM -{view.pgid or view.pid}` ends it harder"
    )


__all__ = [
    "CANCEL_COMMAND",
    "CANCEL_PATIENCE_S",
    "FINISHED",
    "OUTCOME_GLYPHS",
    "PHASE_GLYPHS",
    "RESUMABLE",
    "RESUME_HINT",
    "WATCH_COMMAND",
    "CancelTarget",
    "PhaseView",
    "PipelineView",
    "Severity",
    "background_line",
    "cancel_effects",
    "cancel_target",
    "clock_time",
    "describe",
    "end_line",
    "end_severity",
    "exit_status",
    "next_command",
    "outcome_words",
    "overdue_line",
    "resume_command",
    "run_state",
]
