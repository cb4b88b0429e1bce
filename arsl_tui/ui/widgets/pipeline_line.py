"""The pipeline's state in one line under the header, on every tab; and the words both it and the Overview use.

Hidden while no run ever happened here, except on a first run, when it points at the demo.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widget import Widget

from arsl_tui.domain.pipeline_run import (
    OUTCOME_GLYPHS,
    RESUMABLE,
    RESUME_HINT,
    clock_time,
    outcome_words,
)

if TYPE_CHECKING:
    from arsl_tui.domain.pipeline_run import PipelineView

_JOB_ID = re.compile(r"\bjob-\d{8}-\d{6}-([0-9a-f]{4})\b")


def short_run_id(run_id: str) -> str:
    """`p2026…ab12`: the year and the random end tell runs apart on one line; the Overview shows it whole."""
    return run_id if len(run_id) <= 11 else f"{run_id[:5]}…{run_id[-4:]}"


def shorten_job_ids(text: str) -> str:
    return _JOB_ID.sub(lambda match: f"job…{match.group(1)}", text)


@dataclass(frozen=True)
class LineState:
    """Everything the line shows, decided by the App."""

    view: PipelineView | None = None
    first_run: bool = False
    starting_pid: int = 0
    """A pipeline the console started that has not taken the lock yet."""
    cancelling: bool = False
    read_only: bool = False


def line_text(state: LineState, width: int) -> Text | None:
    """The line, fitted to `width` (the detail is cut, never the elapsed time); None hides it."""
    view = state.view
    line = Text(no_wrap=True, overflow="ellipsis")
    if state.starting_pid and (view is None or not view.alive):
        line.append("► pipeline ", style="bold")
        line.append(f"starting (process {state.starting_pid}) …")
        return line
    if view is None or not view.exists:
        if not state.first_run:
            return None
        line.append("○ pipeline: ", style="bold")
        if state.read_only:
            line.append("nothing yet (read-only: `arsl pipeline run --demo` runs the demo)")
        else:
            line.append("nothing yet — press d on Overview (1) for the demo")
        return line
    head = f"pipeline {short_run_id(view.run_id)} "
    if view.alive:
        current = view.current
        glyph, what = ("■", "cancelling") if state.cancelling else ("►", current.name if current else "starting")
        detail = shorten_job_ids(view.progress or (current.detail if current else ""))
        tail = f" · {clock_time(view.elapsed_s)}"
        line.append(head, style="bold")
        line.append(f"{glyph} {what}", style="bold")
        room = width - len(head) - len(glyph) - 1 - len(what) - len(tail)
        if detail and room > 4:
            shown = f": {detail}"
            line.append(shown if len(shown) <= room else shown[: room - 1] + "…")
        line.append(tail, style="dim")
        return line
    words = f"{OUTCOME_GLYPHS.get(view.outcome, '?')} {outcome_words(view)}"
    took = f" · {clock_time(view.elapsed_s)}"
    hint = f" — {RESUME_HINT}" if view.outcome in RESUMABLE and not state.read_only else ""
    ended = f" · ended {time.strftime('%H:%M', time.localtime(view.last_at))}" if view.last_at else ""
    line.append(head, style="bold")
    line.append(words, style="bold")
    line.append(took, style="dim")
    if len(head) + len(words) + len(took) + len(ended) + len(hint) <= width:
        line.append(ended, style="dim")
    line.append(hint)
    return line


class PipelineLine(Widget):
    """One line; the App sets its state after each read of the pipeline's files."""

    DEFAULT_CSS = """
    PipelineLine { height: 1; background: $panel; color: $foreground; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = LineState()
        self.display = False
        self.text = ""
        """The plain text shown now (what a test reads)."""

    def show(self, state: LineState) -> None:
        self.state = state
        rendered = line_text(state, self.size.width or 80)
        self.display = rendered is not None
        self.text = rendered.plain if rendered is not None else ""
        self.refresh()

    def render(self) -> Text:
        return line_text(self.state, self.size.width or 80) or Text()
