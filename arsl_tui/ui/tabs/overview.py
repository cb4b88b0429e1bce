"""The Overview tab, the console's home: the workflow as a row of phases, the last event of each, what next.

`ops.status.collect` (what `arsl status` prints) runs in a thread worker at most once per
`refresh_s` while the tab is visible (no faster than `CLOUD_MIN_REFRESH_S` on the huawei backend,
where each phase is a cloud call); a read still in flight skips the next tick instead of piling
up. The recent upload runs from the journal are listed below.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable, Static

from arsl_tui.config import Settings
from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.services import ConsoleServices, EngineUnavailable, UploadRunLike
from arsl_tui.ui.tabs.live import LiveTab
from arsl_tui.ui.tabs.training import error_text, poll_interval
from arsl_tui.ui.widgets.runs_table import RunsTable
from arsl_tui.ui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from arsl_tui.ops.status import PhaseStatus, StatusReport

RUNS_SHOWN = 20
RUNS_TITLE = "Recent upload runs (journal, newest first)"
CLOUD_MIN_REFRESH_S = 15.0
LOCAL_MIN_REFRESH_S = 5.0
"""The summary reads every phase (SQLite, the store, the gateway): every 5 s keeps an idle console under 1 % CPU."""
PHASE_GLYPHS = {"none": "○", "running": "►", "done": "✓", "attention": "▲", "unknown": "?"}
PHASE_TABS: dict[str, tuple[str, str]] = {
    "data": ("Upload", "2"), "training": ("Training", "3"), "models": ("Gate", "4"), "service": ("Canary", "5"),
    "canary": ("Canary", "5"), "alarms": ("Alarms", "6"),
}
"""Each phase's console tab and its key; Enter on a phase's row opens it."""
_TIME_KEYS = ("ended_at", "uploaded_at", "created_at")


def phase_state(phase: PhaseStatus) -> str:
    """`✓ done`, `▲ attention`: glyph and word."""
    return f"{PHASE_GLYPHS.get(phase.state.value, '·')} {phase.state.value}"


def last_event(phase: PhaseStatus) -> str:
    """The phase's summary (its last event), with when it happened if the phase says."""
    if phase.error:
        return f"{phase.summary}: {phase.error}"
    for key in _TIME_KEYS:
        at = phase.details.get(key)
        if isinstance(at, int | float) and at > 0:
            return f"{phase.summary} ({fmt.timestamp(at)[5:]})"
    return phase.summary


def where_to_act(phase: PhaseStatus) -> str:
    """What to do next in this phase: the command, and the console tab that does it."""
    tab, key = PHASE_TABS.get(phase.phase, ("", ""))
    if not phase.next_step:
        return "–"
    return f"{phase.next_step} ({key})" if tab else phase.next_step


def next_step(report: StatusReport) -> PhaseStatus | None:
    """The phase whose suggestion comes first: one needing attention, then one not started, in order."""
    for wanted in ("attention", "none"):
        for phase in report.phases:
            if phase.state.value == wanted and phase.next_step:
                return phase
    return None


def phase_strip(report: StatusReport) -> Text:
    """The workflow on one line: each phase with its glyph, joined by arrows; attention in bold."""
    strip = Text(no_wrap=True, overflow="ellipsis")
    for index, phase in enumerate(report.phases):
        if index:
            strip.append(" → ", style="dim")
        style = "bold reverse" if phase.state.value == "attention" else ("bold" if phase.state.value == "running"
                                                                           else "")
        strip.append(f"{PHASE_GLYPHS.get(phase.state.value, '·')} {phase.phase}", style=style)
    return strip


class PhasesTable(DataTable[str | Text]):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id=id)
        self.shown: tuple[tuple[str, str, str, str], ...] = ()

    def on_mount(self) -> None:
        # Fixed widths: cells are updated in place, which never widens a column.
        for label, width in (("phase", 8), ("state", 11), ("last event", 30), ("next", 36)):
            self.add_column(label, width=width)

    def show_report(self, report: StatusReport) -> None:
        rows = tuple((phase.phase, phase_state(phase), last_event(phase), where_to_act(phase))
                     for phase in report.phases)
        if rows == self.shown:
            return
        same = [row[0] for row in rows] == [row[0] for row in self.shown]
        previous, self.shown = self.shown, rows
        if same:
            for row_index, (row, old) in enumerate(zip(rows, previous, strict=True)):
                for column_index, (cell, old_cell) in enumerate(zip(row, old, strict=True)):
                    if cell != old_cell:
                        self.update_cell_at(Coordinate(row_index, column_index), cell)
            return
        self.clear()
        for row in rows:
            self.add_row(*row, key=row[0])


class OverviewTab(LiveTab):
    focus_id = "phases-table"

    class StatusRead(Message):
        def __init__(self, report: StatusReport | None, runs: Sequence[UploadRunLike], error: str,
                     journal_error: str) -> None:
            super().__init__()
            self.report = report
            self.runs = runs
            self.error = error
            self.journal_error = journal_error

    def __init__(self, settings: Settings, services: ConsoleServices) -> None:
        super().__init__(id="overview-body")
        self.settings = settings
        self.services = services
        self.report: StatusReport | None = None
        self.loads = 0
        """Reads handled so far (the timer's only work)."""
        self.read_seconds = 0.0
        """How long the last `collect` took (shown in the log once, for slow backends)."""
        self._reading = False

    def compose(self) -> ComposeResult:
        yield Static("Workflow", classes="section-title")
        yield Static("○ reading where each phase stands …", id="phase-strip", markup=False)
        yield PhasesTable(id="phases-table")
        yield StatusLine("", id="next-step")
        yield Static(RUNS_TITLE, classes="section-title", id="runs-title", markup=False)
        yield RunsTable(id="runs-table")
        settings = self.settings
        yield Static(f"config {settings.source} · backend {settings.backend} · state {settings.home_dir}",
                     id="overview-config", markup=False)

    def on_mount(self) -> None:
        self.start_timer(max(poll_interval(self.settings, CLOUD_MIN_REFRESH_S), LOCAL_MIN_REFRESH_S), self.reload)


    def reload(self) -> None:
        if not self._reading:
            self._reading = True
            self._load_worker()

    @work(thread=True, group="overview", exit_on_error=False)
    def _load_worker(self) -> None:
        started = time.monotonic()
        report: StatusReport | None = None
        error = ""
        try:
            report = self.services.collect_status(self.settings)
        except Exception as failure:  # collect reports each phase's own errors; this is a bug in it
            error = error_text(failure)
        runs: Sequence[UploadRunLike] = []
        journal_error = ""
        try:
            runs = self.services.list_upload_runs(self.settings, RUNS_SHOWN)
        except EngineUnavailable as failure:
            journal_error = str(failure)
        except Exception as failure:
            journal_error = f"cannot read the upload journal: {error_text(failure)}"
        self.read_seconds = time.monotonic() - started
        self.post_message(self.StatusRead(report, runs, error, journal_error))

    @on(DataTable.RowSelected, "#phases-table")
    async def _phase_chosen(self, event: DataTable.RowSelected) -> None:
        phase = event.row_key.value if event.row_key is not None else None
        tab = PHASE_TABS.get(phase or "")
        if tab is not None:
            await self.app.run_action(f"show_tab('{tab[0].lower()}')")

    def on_overview_tab_status_read(self, message: StatusRead) -> None:
        self._reading = False
        self.loads += 1
        next_line = self.query_one("#next-step", StatusLine)
        if message.report is None:
            next_line.say("error", "error", f"Cannot read the workflow's status: {message.error}")
        else:
            report = message.report
            self.report = report
            self.query_one("#phase-strip", Static).update(phase_strip(report))
            self.query_one("#phases-table", PhasesTable).show_report(report)
            phase = next_step(report)
            if phase is None:
                next_line.say("ok", "done", "Nothing waits on you: every phase is done or running.")
            else:
                level = "warning" if phase.state.value == "attention" else "info"
                tab, key = PHASE_TABS.get(phase.phase, ("", ""))
                where = f" — or the {tab} tab ({key})" if tab else ""
                next_line.say(level, "attention" if level == "warning" else "none",
                              f"Next ({phase.phase}): {phase.next_step}{where}")
        title = RUNS_TITLE if not message.journal_error else f"{RUNS_TITLE}: ▲ {message.journal_error}"
        self.query_one("#runs-title", Static).update(title)
        self.query_one(RunsTable).show_runs(message.runs)
