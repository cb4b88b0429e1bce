"""The Overview tab, the console's home: the workflow as a row of phases, the last event of each, what next.

`ops.status.collect` (what `arsl status` prints) runs in a thread worker at most once per
`refresh_s` while the tab is visible (no faster than `CLOUD_MIN_REFRESH_S` on the huawei backend,
where each phase is a cloud call); a read still in flight skips the next tick instead of piling
up. The recent upload runs from the journal are listed below.

Below the phases, the whole pipeline: on a first run (an empty home) the offer to run the demo; once
a pipeline run exists, that run phase by phase, as the App reads it from the run's files.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable, Static

from arsl_tui.config import Settings
from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.services import ConsoleServices, EngineUnavailable, PipelineLaunch, UploadRunLike
from arsl_tui.ui.tabs.live import LiveTab
from arsl_tui.ui.tabs.training import error_text, poll_interval
from arsl_tui.ui.widgets.pipeline_line import (
    OUTCOME_GLYPHS,
    LineState,
    clock_time,
    outcome_words,
)
from arsl_tui.ui.widgets.pipeline_line import PHASE_GLYPHS as RUN_PHASE_GLYPHS
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
DEMO_MINUTES_ON_TWO_CORES = 11
"""Measured for the whole demo (two trainings to the 95 % gate, the canary) on two CPU cores."""
DEMO_BYTES_PER_IMAGE = 1_650
"""The synthetic images average this size (9,600 of them measured 15.9 MB)."""


def refresh_interval(settings: Settings) -> float:
    """How often the Overview reads the workflow (and the console the pipeline's files, when no run is live)."""
    return max(poll_interval(settings, CLOUD_MIN_REFRESH_S), LOCAL_MIN_REFRESH_S)


def first_run_text(read_only: bool) -> Text:
    """The offer on an empty home: what the demo is, how big, how long, and the one key that starts it."""
    from arsl_tui.domain.classes import ARSL_CLASSES
    from arsl_tui.ops.pipeline import DEMO_PER_CLASS

    images = DEMO_PER_CLASS * len(ARSL_CLASSES)
    text = Text()
    text.append("First run: nothing here yet (no upload, no model version, no pipeline run).\n", style="bold")
    text.append(" d " if not read_only else " d (off: read-only) ", style="bold reverse")
    text.append(f" the demo: generates {images:,} synthetic images ({DEMO_PER_CLASS} a class, about "
                f"{fmt.size(images * DEMO_BYTES_PER_IMAGE)}) and runs the whole pipeline on them: upload → train → "
                f"gate → serve → canary → alarms. About {DEMO_MINUTES_ON_TWO_CORES} minutes on two CPU cores, in "
                "its own process (it goes on if you quit).\n")
    text.append(" S ", style="bold reverse")
    text.append(" the same on your own data set folder (the Upload tab (2) validates one).")
    return text


def start_form_lines(settings: Settings) -> list[str]:
    return [f"Backend {settings.backend}, home {settings.home_dir}.",
            "Type a folder of class folders (validated on the Upload tab, it is filled in), or demo for the "
            "synthetic demo data set. The next screen shows exactly what runs."]


def check_dataset_field(values: Mapping[str, str]) -> str:
    """The form's check: `demo`, or an existing folder; the message names the field and the value."""
    typed = values.get("dataset", "")
    if not typed:
        return "data set folder: empty; type a folder, or demo"
    if typed.lower() == "demo":
        return ""
    folder = Path(typed).expanduser()
    if not folder.is_dir():
        return f"data set folder: {typed!r} is not a folder"
    return ""


def describe_launch(settings: Settings, launch: PipelineLaunch) -> list[str]:
    """The confirmation's lines: where it acts, on what, what runs, how long, where its output goes."""
    from arsl_tui.domain.classes import ARSL_CLASSES
    from arsl_tui.ops.pipeline import DEMO_PER_CLASS

    if launch.dataset is None:
        images = DEMO_PER_CLASS * len(ARSL_CLASSES)
        data = (f"Data set: the demo — {images:,} synthetic images (about {fmt.size(images * DEMO_BYTES_PER_IMAGE)}) "
                f"generated under {settings.home_dir / 'demo' / 'data'} unless they are there already; settings "
                f"you did not configure are sized for two CPU cores (about {DEMO_MINUTES_ON_TWO_CORES} minutes).")
    else:
        data = f"Data set: {launch.dataset} (not the demo)."
    return [
        f"Backend {settings.backend}, home {settings.home_dir}, config {settings.source}.",
        data,
        "Phases: upload → a first version (champion) if there is none → train → gate → serve → canary → promote "
        "or roll back → alarms; phases a run with the same data and code finished are skipped.",
        f"Runs as its own process: arsl pipeline run {'--demo' if launch.dataset is None else launch.dataset} "
        f"--yes. It goes on if you quit the console; output in {launch.log_path}. X on this tab cancels it.",
    ]


def pipeline_panel(state: LineState) -> Text:
    """Four lines: the run and its state, every phase with its glyph, what runs now (or how it ended), the
    last phase finished."""
    view = state.view
    lines: list[Text] = []
    if state.starting_pid and (view is None or not view.alive):
        lines.append(Text.assemble(("Pipeline", "bold"), f" starting: process {state.starting_pid} …"))
        lines.append(Text("its first events appear here in a second or two", style="dim"))
        return Text("\n").join(lines)
    assert view is not None and view.exists
    demo = " (demo)" if view.demo else ""
    if view.alive:
        status = "■ cancelling (SIGINT sent)" if state.cancelling else f"► running {clock_time(view.elapsed_s)}"
        keys = "" if state.read_only else " · X cancels"
    else:
        status = f"{OUTCOME_GLYPHS.get(view.outcome, '?')} {outcome_words(view)} in {clock_time(view.elapsed_s)}"
        keys = "" if state.read_only else " · S runs again"
    lines.append(Text.assemble(("Pipeline ", "bold"), (view.run_id, "bold"), demo, " · ", (status, "bold"),
                               (keys, "dim")))
    strip = Text()
    for index, phase in enumerate(view.phases):
        if index:
            strip.append("  ")
        strip.append(f"{RUN_PHASE_GLYPHS.get(phase.state, '?')} {phase.name}",
                     style="bold" if phase.state in ("running", "failed", "stopped") else "")
    lines.append(strip)
    current = view.current
    if view.alive:
        lines.append(Text(f"► {current.name}: {view.progress or current.detail or current.title}" if current
                          else "► between phases"))
    else:
        lines.append(Text(f"{OUTCOME_GLYPHS.get(view.outcome, '?')} {view.outcome_detail}"))
    finished = view.last_finished
    if finished is not None:
        lines.append(Text(f"{RUN_PHASE_GLYPHS.get(finished.state, '?')} {finished.name}: {finished.detail}",
                          style="dim"))
    return Text("\n").join(lines)


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
                     journal_error: str, home_empty: bool = False) -> None:
            super().__init__()
            self.report = report
            self.runs = runs
            self.error = error
            self.journal_error = journal_error
            self.home_empty = home_empty
            """No upload run, job or model version (the pipeline's own runs are the App's to add)."""

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
        self.home_empty = False
        """The last read found no upload run, job or model version (`ops.status.is_first_run`, pipeline aside)."""
        self.first_run = False
        self.pipeline_busy = False
        """A pipeline run is live, or starting from this console."""
        self.pipeline_run_id = ""
        self.status_error = ""
        self._offer_shown = False
        self._panel_text = ""

    def compose(self) -> ComposeResult:
        yield Static("Workflow", classes="section-title")
        yield Static("○ reading where each phase stands …", id="phase-strip", markup=False)
        yield PhasesTable(id="phases-table")
        yield StatusLine("", id="next-step")
        yield Static("", id="first-run")
        yield Static("", id="pipeline-panel")
        yield Static(RUNS_TITLE, classes="section-title", id="runs-title", markup=False)
        yield RunsTable(id="runs-table")
        settings = self.settings
        yield Static(f"config {settings.source} · backend {settings.backend} · state {settings.home_dir}",
                     id="overview-config", markup=False)

    def on_mount(self) -> None:
        self.query_one("#first-run", Static).display = False
        self.query_one("#pipeline-panel", Static).display = False
        self.start_timer(refresh_interval(self.settings), self.reload)

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
        home_empty = False
        if report is not None and not journal_error:
            from arsl_tui.ops.status import is_first_run

            home_empty = is_first_run(report, upload_runs=len(runs), pipeline_runs=0)
        self.read_seconds = time.monotonic() - started
        self.post_message(self.StatusRead(report, runs, error, journal_error, home_empty))

    # ----- what the App's gate asks -------------------------------------------------------------

    def availability(self, action: str) -> bool | None:
        """True: runnable; False: not offered now (hidden)."""
        if action == "pipeline_demo":
            return self.first_run and not self.pipeline_busy
        if action == "pipeline_start":
            return not self.pipeline_busy
        if action == "pipeline_cancel":
            return self.pipeline_busy
        return True

    def current_id(self) -> str:
        """The pipeline run's id, else what the Upload tab would copy."""
        if self.pipeline_run_id:
            return self.pipeline_run_id
        upload = getattr(self.app, "upload_tab", None)
        return upload.current_id() if upload is not None else ""

    def show_pipeline(self, state: LineState, first_run: bool) -> None:
        """The App read the pipeline's files (or decided a first run): show the offer or the run."""
        view = state.view
        self.first_run = first_run
        self.pipeline_busy = bool(state.starting_pid) or (view is not None and view.alive)
        self.pipeline_run_id = view.run_id if view is not None else ""
        offer = self.query_one("#first-run", Static)
        offer.display = first_run and not self.pipeline_busy
        if offer.display and not self._offer_shown:
            offer.update(first_run_text(state.read_only))
        self._offer_shown = offer.display
        panel = self.query_one("#pipeline-panel", Static)
        panel.display = bool(state.starting_pid) or (view is not None and view.exists)
        if panel.display:
            text = pipeline_panel(state)
            if text.plain != self._panel_text:  # every second while a run is live: only a relayout if it grew
                panel.update(text, layout=text.plain.count("\n") != self._panel_text.count("\n"))
                self._panel_text = text.plain
        for widget_id in ("#runs-title", "#runs-table"):  # an empty journal on a first run: room for the offer
            self.query_one(widget_id).display = not offer.display

    @on(DataTable.RowSelected, "#phases-table")
    async def _phase_chosen(self, event: DataTable.RowSelected) -> None:
        phase = event.row_key.value if event.row_key is not None else None
        tab = PHASE_TABS.get(phase or "")
        if tab is not None:
            await self.app.run_action(f"show_tab('{tab[0].lower()}')")

    def _show_next_step(self) -> None:
        next_line = self.query_one("#next-step", StatusLine)
        if self.status_error:
            next_line.say("error", "error", f"Cannot read the workflow's status: {self.status_error}")
            return
        report = self.report
        if report is None:
            return
        phase = next_step(report)
        if phase is None:
            next_line.say("ok", "done", "Nothing waits on you: every phase is done or running.")
        else:
            level = "warning" if phase.state.value == "attention" else "info"
            tab, key = PHASE_TABS.get(phase.phase, ("", ""))
            where = f" — or the {tab} tab ({key})" if tab else ""
            next_line.say(level, "attention" if level == "warning" else "none",
                          f"Next ({phase.phase}): {phase.next_step}{where}")

    def on_overview_tab_status_read(self, message: StatusRead) -> None:
        self._reading = False
        self.loads += 1
        self.status_error = message.error if message.report is None else ""
        if message.report is not None:
            report = message.report
            self.report = report
            self.home_empty = message.home_empty
            self.query_one("#phase-strip", Static).update(phase_strip(report))
            self.query_one("#phases-table", PhasesTable).show_report(report)
        self._show_next_step()
        title = RUNS_TITLE if not message.journal_error else f"{RUNS_TITLE}: ▲ {message.journal_error}"
        self.query_one("#runs-title", Static).update(title)
        self.query_one(RunsTable).show_runs(message.runs)
