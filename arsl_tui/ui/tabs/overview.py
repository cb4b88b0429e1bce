"""The Overview tab, the console's home: the pipeline, the workflow as a row of phases, the last event of
each, what next; and the doctor (`D`), the read-only preflight `arsl doctor` prints, in a modal.

First the whole pipeline: on a first run (an empty home) the offer to run the demo; once a pipeline
run exists, that run phase by phase, as its `PipelineFollow` reads it from the run's files.

Then `ops.status.collect` (what `arsl status` prints), run in a thread worker at most once per
`refresh_s` while the tab is visible (no faster than `CLOUD_MIN_REFRESH_S` on the huawei backend,
where each phase is a cloud call); a read still in flight skips the next tick instead of piling
up. Its suggestions are weighed again against each newer read of the pipeline (`ops.status.with_pipeline`),
so the table and the "Next" line never suggest a step a running pipeline is about to take. The recent
upload runs from the journal are listed below.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Static

from arsl_tui.backends import backend_for
from arsl_tui.config import Settings
from arsl_tui.domain.pipeline_run import OUTCOME_GLYPHS, cancel_effects, clock_time, outcome_words
from arsl_tui.domain.pipeline_run import PHASE_GLYPHS as RUN_PHASE_GLYPHS
from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.formatting import STATUS_GLYPHS, error_text
from arsl_tui.ui.pipeline_follow import PipelineFollow
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.doctor import DoctorScreen
from arsl_tui.ui.screens.form import FormField, FormScreen
from arsl_tui.ui.services import ConsoleServices, EngineUnavailable, PipelineLaunch, UploadRunLike, pipeline_launch
from arsl_tui.ui.tabs.live import LiveTab, poll_interval
from arsl_tui.ui.tabs.upload import UploadTab
from arsl_tui.ui.widgets.pipeline_line import LineState
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
    "data": ("Upload", "2"),
    "training": ("Training", "3"),
    "models": ("Gate", "4"),
    "service": ("Canary", "5"),
    "canary": ("Canary", "5"),
    "alarms": ("Alarms", "6"),
}
"""Each phase's console tab and its key; Enter on a phase's row opens it."""
_TIME_KEYS = ("ended_at", "uploaded_at", "created_at")
DEMO_MINUTES_ON_TWO_CORES = "3"
"""Measured for the whole demo (two trainings to the 95 % gate, shadow, the canary) on two CPU cores: 164 s on
a quiet machine, 224 s beside other work (load 2.5)."""
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
    text.append(
        f" the demo: generates {images:,} synthetic images ({DEMO_PER_CLASS} a class, about "
        f"{fmt.size(images * DEMO_BYTES_PER_IMAGE)}) and runs the whole pipeline on them: upload → train → "
        f"gate → serve → canary → alarms. About {DEMO_MINUTES_ON_TWO_CORES} minutes on two CPU cores, in "
        "its own process (it goes on if you quit).\n"
    )
    text.append(" S ", style="bold reverse")
    text.append(" the same on your own data set folder (the Upload tab (2) validates one).")
    return text


def start_form_lines(settings: Settings) -> list[str]:
    return [
        f"Backend {backend_for(settings).name}, home {settings.home_dir}.",
        "Type a folder of class folders (validated on the Upload tab, it is filled in), or demo for the "
        "synthetic demo data set. The next screen shows exactly what runs.",
    ]


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
        data = (
            f"Data set: the demo — {images:,} synthetic images (about {fmt.size(images * DEMO_BYTES_PER_IMAGE)}) "
            f"generated under {settings.home_dir / 'demo' / 'data'} unless they are there already; settings "
            f"you did not configure are sized for two CPU cores (about {DEMO_MINUTES_ON_TWO_CORES} minutes)."
        )
    else:
        data = f"Data set: {launch.dataset} (not the demo)."
    return [
        f"Backend {backend_for(settings).name}, home {settings.home_dir}, config {settings.source}.",
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
    lines.append(
        Text.assemble(("Pipeline ", "bold"), (view.run_id, "bold"), demo, " · ", (status, "bold"), (keys, "dim"))
    )
    strip = Text()
    for index, phase in enumerate(view.phases):
        if index:
            strip.append("  ")
        strip.append(
            f"{RUN_PHASE_GLYPHS.get(phase.state, '?')} {phase.name}",
            style="bold" if phase.state in ("running", "failed", "stopped") else "",
        )
    lines.append(strip)
    current = view.current
    if view.alive:
        lines.append(
            Text(
                f"► {current.name}: {view.progress or current.detail or current.title}"
                if current
                else "► between phases"
            )
        )
    else:
        lines.append(Text(f"{OUTCOME_GLYPHS.get(view.outcome, '?')} {view.outcome_detail}"))
    finished = view.last_finished
    if finished is not None:
        lines.append(
            Text(f"{RUN_PHASE_GLYPHS.get(finished.state, '?')} {finished.name}: {finished.detail}", style="dim")
        )
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


def where_to_act(phase: PhaseStatus, *, with_key: bool = True) -> str:
    """What to do next in this phase: the command, and the key of the console tab that does it."""
    tab, key = PHASE_TABS.get(phase.phase, ("", ""))
    if not phase.next_step:
        return "–"
    return f"{phase.next_step} ({key})" if tab and with_key else phase.next_step


def next_text(phase: PhaseStatus | None, *, read_only: bool) -> str:
    """The "Next" line: the command the report's rows suggest first (`StatusReport.next_phase`), and where
    in the console to do it; with no suggestion anywhere, that nothing waits."""
    if phase is None:
        return "Nothing waits on you: every phase is done or running."
    if phase.phase == "pipeline":
        if phase.state.value == "running":
            return f"Next (pipeline): {phase.next_step} — it runs the next steps" + ("" if read_only else "; X cancels")
        if phase.next_step.startswith("arsl pipeline run"):
            return f"Next (pipeline): {phase.next_step}" + ("" if read_only else " — or S on this tab")
        if phase.next_step == "arsl canary status":
            return f"Next (pipeline): {phase.next_step} — or the Canary tab (5)"
        return f"Next (pipeline): {phase.next_step} — the phases above say why"
    tab, key = PHASE_TABS.get(phase.phase, ("", ""))
    where = f" — or the {tab} tab ({key})" if tab else ""
    return f"Next ({phase.phase}): {phase.next_step}{where}"


def phase_strip(report: StatusReport) -> Text:
    """The workflow on one line: each phase with its glyph, joined by arrows; attention in bold."""
    strip = Text(no_wrap=True, overflow="ellipsis")
    for index, phase in enumerate(report.phases):
        if index:
            strip.append(" → ", style="dim")
        style = (
            "bold reverse" if phase.state.value == "attention" else ("bold" if phase.state.value == "running" else "")
        )
        strip.append(f"{PHASE_GLYPHS.get(phase.state.value, '·')} {phase.phase}", style=style)
    return strip


PHASE_WIDTH, STATE_WIDTH, MIN_EVENT_WIDTH, MAX_NEXT_WIDTH = 8, 11, 24, 48
"""Column widths: the next column is as wide as its longest suggestion (up to what leaves the last event
`MIN_EVENT_WIDTH`) and the last event takes the rest; a suggestion wider than its column wraps at a
space onto more lines, never cut. The tab keys (`(3)`) go first when room is short: Enter on a row
opens its tab."""


def column_widths(width: int, suggestions: Sequence[str]) -> tuple[int, ...]:
    """The four columns' widths for a table `width` cells wide (each column also has a cell of padding
    either side)."""
    longest = max((len(text) for text in suggestions), default=4)
    next_width = max(4, min(longest, MAX_NEXT_WIDTH, next_room(width)))
    return PHASE_WIDTH, STATE_WIDTH, max(MIN_EVENT_WIDTH, event_room(width) - next_width), next_width


def event_room(width: int) -> int:
    """What the last event and next columns share."""
    return max(0, width - 4 * 2 - PHASE_WIDTH - STATE_WIDTH)


def next_room(width: int) -> int:
    return event_room(width) - MIN_EVENT_WIDTH


def wrapped_lines(text: str, width: int) -> list[str]:
    """`text` broken at spaces into lines of at most `width` (a word longer than that alone on its lines)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += f" {word}"
            continue
        while len(word) > width:
            lines.append(word[:width])
            word = word[width:]
        lines.append(word)
    return lines


class PhasesTable(DataTable[str | Text]):
    """The workflow's phases; the pipeline's run is shown above the table."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id=id)
        self.shown: tuple[tuple[str, str, str, str], ...] = ()
        self.widths: tuple[int, ...] = ()
        self.report: StatusReport | None = None

    def on_resize(self) -> None:
        if self.report is not None:
            self.show_report(self.report)

    def show_report(self, report: StatusReport) -> None:
        """Build the table for `report` at the current width (only when the rows or the width changed)."""
        self.report = report
        width = self.size.width or 80
        keyed = [where_to_act(phase) for phase in report.phases]
        with_keys = max(len(text) for text in keyed) <= next_room(width) if keyed else True
        rows = tuple(
            (
                phase.phase,
                phase_state(phase),
                last_event(phase),
                suggestion if with_keys else where_to_act(phase, with_key=False),
            )
            for phase, suggestion in zip(report.phases, keyed, strict=True)
        )
        widths = column_widths(width, [row[3] for row in rows])
        if rows == self.shown and widths == self.widths:
            return
        cursor = self.cursor_row
        self.shown, self.widths = rows, widths
        self.clear(columns=True)
        for label, column_width in zip(("phase", "state", "last event", "next"), widths, strict=True):
            self.add_column(label, width=column_width)
        height = 1
        for phase, state, event, suggestion in rows:
            lines = wrapped_lines(suggestion, widths[3])
            self.add_row(
                phase,
                state,
                Text(event, no_wrap=True, overflow="ellipsis"),
                Text("\n".join(lines)),
                key=phase,
                height=len(lines),
            )
            height += len(lines)
        self.styles.height = height  # every row whole: a wrapped suggestion makes its row taller
        if rows:
            self.move_cursor(row=min(cursor, len(rows) - 1))


class OverviewTab(LiveTab):
    """The workflow and the whole pipeline, and the `overview` actions: run the demo, run the pipeline, cancel it,
    check the backend (the doctor).

    Its `PipelineFollow` reads the pipeline's files and starts and signals the pipeline's process; the App
    shows what it found here and in the line under the header at once (`show_pipeline`).
    """

    scope = "overview"
    focus_id = "phases-table"

    class StatusRead(Message):
        def __init__(
            self,
            report: StatusReport | None,
            runs: Sequence[UploadRunLike],
            error: str,
            journal_error: str,
            home_empty: bool = False,
        ) -> None:
            super().__init__()
            self.report = report
            self.runs = runs
            self.error = error
            self.journal_error = journal_error
            self.home_empty = home_empty
            """No upload run, job or model version (the pipeline's own runs are the follower's to add)."""

    def __init__(self, settings: Settings, services: ConsoleServices) -> None:
        super().__init__(settings, services, id="overview-body")
        self.report: StatusReport | None = None
        self.loads = 0
        """Reads handled so far (the timer's only work)."""
        self.read_seconds = 0.0
        """How long the last `collect` took (shown in the log once, for slow backends)."""
        self.home_empty = False
        """The last read found no upload run, job or model version (`ops.status.is_first_run`, pipeline aside)."""
        self.first_run = False
        self.pipeline_busy = False
        """A pipeline run is live, or starting from this console."""
        self.pipeline_run_id = ""
        self.status_error = ""
        self._offer_shown = False
        self._panel_text = ""
        self._strip_text = ""
        self._pipeline_state: LineState | None = None
        """The follower's latest read of the pipeline (None before the first): the report is weighed with it."""

    def compose(self) -> ComposeResult:
        yield Static("", id="first-run")
        yield Static("", id="pipeline-panel")
        yield Static("Workflow", classes="section-title")
        yield Static("○ reading where each phase stands …", id="phase-strip", markup=False)
        yield PhasesTable(id="phases-table")
        yield StatusLine("", id="next-step")
        yield Static(RUNS_TITLE, classes="section-title", id="runs-title", markup=False)
        yield RunsTable(id="runs-table")
        settings = self.settings
        yield Static(
            f"config {settings.source} · backend {self.backend.name} · state {settings.home_dir}",
            id="overview-config",
            markup=False,
        )
        yield PipelineFollow(settings, self.services, read_only=self.read_only, idle_read_s=refresh_interval(settings))

    def on_mount(self) -> None:
        self.query_one("#first-run", Static).display = False
        self.query_one("#pipeline-panel", Static).display = False
        # A suggestion too long for the line wraps onto the next one instead of being cut.
        self.query_one("#next-step", StatusLine).styles.height = "auto"
        self.start_timer(refresh_interval(self.settings), self.reload)

    @property
    def read_only(self) -> bool:
        return bool(getattr(self.app, "read_only", False))

    @property
    def follower(self) -> PipelineFollow:
        return self.query_one(PipelineFollow)

    def read(self) -> None:
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

    # ----- what the console's gate asks ---------------------------------------------------------

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
        upload = self._upload_tab()
        return upload.current_id() if upload is not None else ""

    def _upload_tab(self) -> UploadTab | None:
        return next(iter(self.app.query(UploadTab)), None)

    # ----- the whole pipeline: start, cancel ----------------------------------------------------

    def action_pipeline_demo(self) -> None:
        """The first run's offer: the demo, after the same confirmation as every other run."""
        launch = pipeline_launch(self.settings, None, self.services.clock())

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.follower.start(launch)

        self.app.push_screen(
            ConfirmScreen("Start the demo pipeline?", describe_launch(self.settings, launch), "Start"), answered
        )

    def action_pipeline_start(self) -> None:
        """Ask for the data set folder (the Upload tab's validated one, else the demo), then confirm."""
        upload = self._upload_tab()
        validated = upload.validated if upload is not None else None
        folder = (
            str(Path(validated.typed).expanduser().absolute()) if validated is not None and validated.ok else "demo"
        )

        def submitted(values: Mapping[str, str] | None) -> None:
            if values is None:
                return
            typed = values["dataset"]
            dataset = None if typed.lower() == "demo" else Path(typed).expanduser().absolute()
            launch = pipeline_launch(self.settings, dataset, self.services.clock())

            def answered(confirmed: bool | None) -> None:
                if confirmed:
                    self.follower.start(launch)

            self.app.push_screen(
                ConfirmScreen("Start the pipeline?", describe_launch(self.settings, launch), "Start"), answered
            )

        self.app.push_screen(
            FormScreen(
                "Run the whole pipeline",
                start_form_lines(self.settings),
                [FormField("dataset", "data set folder", folder, "a folder of class folders, or demo")],
                "Review",
                check=check_dataset_field,
            ),
            submitted,
        )

    def action_pipeline_cancel(self) -> None:
        """Confirm, then SIGINT the live run's process group (or the starting process's)."""
        target = self.follower.cancel_target()
        if target is None:
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.follower.cancel(target)

        self.app.push_screen(
            ConfirmScreen(
                f"Cancel {target.name}?", cancel_effects(target), "Cancel the run", refuse_label="Keep it running"
            ),
            answered,
        )

    # ----- the doctor ---------------------------------------------------------------------------

    def action_run_doctor(self) -> None:
        """`arsl doctor` in a modal; its checks run in the screen's worker, never on the UI thread. A read-only
        console runs it read-only too (the conditional-create probe, which writes a key, is left out)."""
        import dataclasses

        from arsl_tui.ops.doctor import run_doctor

        settings = dataclasses.replace(self.settings, read_only=True) if self.read_only else self.settings
        backend = backend_for(settings)
        title = f"Doctor · {backend.name} backend · config {settings.source}"
        self.app.push_screen(DoctorScreen(title, lambda: run_doctor(backend)))

    def on_pipeline_follow_run_ended(self, message: PipelineFollow.RunEnded) -> None:
        message.stop()
        self.reload()  # the workflow changed under it

    def show_pipeline(self, state: LineState, first_run: bool) -> None:
        """The follower read the pipeline's files (or decided a first run): show the offer or the run, and weigh
        the workflow's suggestions again."""
        view = state.view
        self._pipeline_state = state
        if self.report is not None and view is not None:
            self._show_report(self.report)
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

    def _weighed(self, report: StatusReport) -> StatusReport:
        """`report` with the follower's read of the pipeline, newer than the report's own while a run is live."""
        state = self._pipeline_state
        if state is None or state.view is None:
            return report
        from arsl_tui.ops.status import with_pipeline

        return with_pipeline(report, state.view, self.settings.home_dir, starting_pid=state.starting_pid)

    def _show_report(self, report: StatusReport) -> None:
        self.report = report = self._weighed(report)
        strip = phase_strip(report)
        if strip.plain != self._strip_text:  # shown again each second while a run is live
            self._strip_text = strip.plain
            self.query_one("#phase-strip", Static).update(strip)
        self.query_one("#phases-table", PhasesTable).show_report(report)
        self._show_next_step()

    def _show_next_step(self) -> None:
        next_line = self.query_one("#next-step", StatusLine)
        if self.status_error:
            next_line.say("error", "error", f"Cannot read the workflow's status: {self.status_error}")
            return
        report = self.report
        if report is None:
            return
        phase = report.next_phase
        text = next_text(phase, read_only=self.read_only)
        if phase is None:
            level, status = "ok", "done"
        elif phase.state.value == "attention":
            level, status = "warning", "attention"
        else:
            level, status = "info", "running" if phase.state.value == "running" else "none"
        if next_line.message != f"{STATUS_GLYPHS.get(status, '·')} {text}":
            next_line.say(level, status, text)

    def on_overview_tab_status_read(self, message: StatusRead) -> None:
        self.read_ended()
        self.loads += 1
        self.status_error = message.error if message.report is None else ""
        if message.report is not None:
            self.home_empty = message.home_empty
            self.follower.home_read(self.home_empty)
            self._show_report(message.report)
        else:
            self._show_next_step()
        title = RUNS_TITLE if not message.journal_error else f"{RUNS_TITLE}: ▲ {message.journal_error}"
        self.query_one("#runs-title", Static).update(title)
        self.query_one(RunsTable).show_runs(message.runs)
