"""The whole pipeline from the console: start it, cancel it, follow it.

The pipeline runs as a separate, detached process (`arsl pipeline run`, started here or in a terminal);
the console follows it from the files it writes, in a thread worker every second while a run is live and
at the Overview's pace otherwise, and shows it in the line under the header and on the Overview.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message
from textual.timer import Timer

from arsl_tui.domain.pipeline_run import (
    CANCEL_PATIENCE_S,
    cancel_effects,
    cancel_target,
    end_line,
    end_severity,
    overdue_line,
)
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.form import FormField, FormScreen
from arsl_tui.ui.services import LaunchedProcess, PipelineLaunch, pipeline_launch
from arsl_tui.ui.tabs.overview import (
    OverviewTab,
    check_dataset_field,
    describe_launch,
    refresh_interval,
    start_form_lines,
)
from arsl_tui.ui.tabs.training import error_text
from arsl_tui.ui.widgets.pipeline_line import LineState, PipelineLine

if TYPE_CHECKING:
    from arsl_tui.domain.pipeline_run import PipelineView
    from arsl_tui.ops.pipeline_log import PipelineLogReader
    from arsl_tui.ui.app import ArslApp

LIVE_PIPELINE_READ_S = 1.0
"""How often the pipeline's files are read while a run is live (otherwise at the Overview's pace)."""


@dataclass
class Launched:
    """A pipeline this console started, until its process ends."""

    launch: PipelineLaunch
    process: LaunchedProcess
    earlier_run: str
    """The latest run before the launch (a different one is this launch's)."""
    seen_live: bool = False


class PipelineRead(Message):
    """What a read of `$ARSL_HOME/pipeline/` found (posted by the worker; handled on the UI thread)."""

    def __init__(self, view: PipelineView | None, error: str, launched: Launched | None, exit_code: int | None,
                 output_tail: str) -> None:
        super().__init__()
        self.view = view
        self.error = error
        self.launched = launched
        self.exit_code = exit_code
        self.output_tail = output_tail


class PipelineFollow:
    """The App's pipeline controller. The App runs its start and cancel (only through `check_action`)
    and hands it each `PipelineRead`; it keeps the state, schedules the reads and updates the pipeline
    line, the Overview and the bindings."""

    def __init__(self, app: ArslApp) -> None:
        self.app = app
        self.view: PipelineView | None = None
        """The latest read of the pipeline's files (None before the first)."""
        self.launched: Launched | None = None
        self.home_empty = False
        """The Overview found nothing done in this home (no upload, job or model version)."""
        self._reader: PipelineLogReader | None = None
        """Created and used by the worker thread only."""
        self._reading = False
        self._read_again = False
        self._timer: Timer | None = None
        self._watched_runs: set[str] = set()
        """Runs seen live (or started) in this console: their end is announced."""
        self._cancel_sent: dict[str, float] = {}
        """Run id (or `pid:N` before it has one) → when SIGINT was sent."""
        self._offered: tuple[bool, bool, bool] | None = None

    @property
    def starting_pid(self) -> int:
        """The process of a pipeline started here that has not shown up as a live run yet."""
        launched = self.launched
        return launched.process.pid if launched is not None and not launched.seen_live else 0

    @property
    def first_run(self) -> bool:
        """Nothing was ever done in this home, the pipeline included (known only once both were read)."""
        view = self.view
        return (self.home_empty and view is not None and not view.exists and self.launched is None)

    # ----- start and cancel ---------------------------------------------------------------------

    def start_demo(self) -> None:
        """The first run's offer: the demo, after the same confirmation as every other run."""
        app = self.app
        launch = pipeline_launch(app.settings, None, app.services.clock())

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._start(launch)

        app.push_screen(ConfirmScreen("Start the demo pipeline?", describe_launch(app.settings, launch), "Start"),
                        answered)

    def ask_start(self) -> None:
        """Ask for the data set folder (the Upload tab's validated one, else the demo), then confirm."""
        app = self.app
        validated = getattr(app.upload_tab, "validated", None)
        folder = str(Path(validated.typed).expanduser().absolute()) if validated is not None and validated.ok \
            else "demo"

        def submitted(values: Mapping[str, str] | None) -> None:
            if values is None:
                return
            typed = values["dataset"]
            dataset = None if typed.lower() == "demo" else Path(typed).expanduser().absolute()
            launch = pipeline_launch(app.settings, dataset, app.services.clock())

            def answered(confirmed: bool | None) -> None:
                if confirmed:
                    self._start(launch)

            app.push_screen(ConfirmScreen("Start the pipeline?", describe_launch(app.settings, launch), "Start"),
                            answered)

        app.push_screen(FormScreen("Run the whole pipeline", start_form_lines(app.settings),
                                   [FormField("dataset", "data set folder", folder, "a folder of class folders, "
                                              "or demo")], "Review", check=check_dataset_field), submitted)

    def _start(self, launch: PipelineLaunch) -> None:
        app = self.app
        view = self.view
        try:
            process = app.services.launch_pipeline(launch)
        except OSError as error:
            text = f"cannot start the pipeline: {error_text(error)}"
            app.write_log("error", text)
            app.notify(text, severity="error", timeout=8)
            return
        self.launched = Launched(launch, process, view.run_id if view is not None else "")
        app.write_log("info", f"pipeline started as process {process.pid}: {' '.join(launch.command)} "
                              f"(output in {launch.log_path})")
        app.notify(f"Pipeline started (process {process.pid}); it goes on if you quit the console.")
        self._show()
        self.read_now()

    def ask_cancel(self) -> None:
        """Confirm, then SIGINT the live run's process group (or the starting process's)."""
        app = self.app
        target = cancel_target(self.view, self.starting_pid)
        if target is None:
            return

        def answered(confirmed: bool | None) -> None:
            if not confirmed:
                return
            try:
                where = app.services.signal_pipeline(target.pid, target.pgid, signal.SIGINT)
            except ProcessLookupError:
                app.notify("The pipeline had already ended.", severity="information")
                self.read_now()
                return
            except PermissionError:
                text = f"not allowed to signal process {target.pid} (another user's run?)"
                app.write_log("error", text)
                app.notify(text, severity="error", timeout=8)
                return
            self._cancel_sent[target.key] = app.services.clock()
            app.write_log("info", f"SIGINT sent to {where} to cancel {target.name}")
            app.notify(f"Cancelling {target.name}: SIGINT sent; waiting for it to stop …")
            self.read_now()

        app.push_screen(ConfirmScreen(f"Cancel {target.name}?", cancel_effects(target), "Cancel the run",
                                      refuse_label="Keep it running"), answered)

    # ----- following ----------------------------------------------------------------------------

    def read_now(self) -> None:
        """Read the pipeline's files now (in the worker); the next read is scheduled when this one ends."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._reading:
            self._read_again = True
            return
        self._reading = True
        self.app.run_worker(partial(self._read, self.launched), name="pipeline_read", group="pipeline",
                            thread=True, exit_on_error=False)

    def _read(self, launched: Launched | None) -> None:
        """The worker thread: read the files and poll the launched process, then post what was found."""
        view: PipelineView | None = None
        error = ""
        try:
            if self._reader is None:
                self._reader = self.app.services.open_pipeline_log(self.app.settings)
            view = self._reader.read()
        except Exception as failure:  # an unreadable file is shown in the log; the console goes on
            error = error_text(failure)
        exit_code = launched.process.poll() if launched is not None else None  # also reaps the ended child
        tail = ""
        if launched is not None and exit_code is not None:
            from arsl_tui.ops.pipeline_log import last_line

            tail = last_line(launched.launch.log_path)
        self.app.post_message(PipelineRead(view, error, launched, exit_code, tail))

    def read_done(self, message: PipelineRead) -> None:
        """On the UI thread: take in a read, announce what ended, schedule the next read."""
        app = self.app
        self._reading = False
        if message.error:
            app.write_log("warning", f"cannot read the pipeline's files: {message.error}")
        view = message.view
        if view is not None:
            self.view = view
            if view.alive:
                self._watched_runs.add(view.run_id)
        launched = self.launched
        if launched is not None and launched is message.launched:
            if view is not None and view.alive and view.pid == launched.process.pid:
                launched.seen_live = True
                sent = self._cancel_sent.pop(f"pid:{launched.process.pid}", None)
                if sent is not None:  # cancelled while it started: the run now has its id
                    self._cancel_sent[view.run_id] = sent
            if message.exit_code is not None:
                self._launch_ended(launched, view, message.exit_code, message.output_tail)
        if view is not None and view.ended and view.run_id in self._watched_runs:
            self._watched_runs.discard(view.run_id)
            self._announce_end(view)
        elif view is not None and view.alive:
            self._check_cancel(view)
        self._show()
        if self._read_again:  # asked for while this read ran
            self._read_again = False
            app.call_later(self.read_now)
            return
        live = (view is not None and view.alive) or self.launched is not None
        self._timer = app.set_timer(LIVE_PIPELINE_READ_S if live else refresh_interval(app.settings), self.read_now)

    def status_read(self) -> None:
        """The Overview read the home: whether it is empty decides the first-run offer."""
        empty = any(overview.home_empty for overview in self.app.query(OverviewTab))
        if empty != self.home_empty:
            self.home_empty = empty
            self._show()

    def _launch_ended(self, launched: Launched, view: PipelineView | None, exit_code: int, tail: str) -> None:
        app = self.app
        self.launched = None
        ran = view is not None and view.exists and view.run_id != launched.earlier_run
        if ran:
            if view is not None and view.ended and not launched.seen_live:
                self._watched_runs.add(view.run_id)  # it ran and ended between two reads
            return
        key = f"pid:{launched.process.pid}"
        cancelled = self._cancel_sent.pop(key, None) is not None
        text = (f"the pipeline (process {launched.process.pid}) ended with exit code {exit_code} before it "
                f"started a run" + (f": {tail}" if tail else "") + f" (output: {launched.launch.log_path})")
        app.write_log("info" if cancelled else "error", text)
        app.notify(("Cancelled before it started." if cancelled else f"The pipeline did not start: {tail or text}"),
                   severity="information" if cancelled else "error", timeout=10)

    def _announce_end(self, view: PipelineView) -> None:
        self._cancel_sent.pop(view.run_id, None)
        detail = end_line(view)
        severity = end_severity(view)
        app = self.app
        app.write_log({"information": "info"}.get(severity, severity), detail)
        app.notify(detail, severity=severity, timeout=10)
        for overview in app.query(OverviewTab):
            overview.reload()  # the workflow changed under it

    def _check_cancel(self, view: PipelineView) -> None:
        sent = self._cancel_sent.get(view.run_id)
        if sent is not None and self.app.services.clock() - sent > CANCEL_PATIENCE_S:
            del self._cancel_sent[view.run_id]
            text = overdue_line(view, "X sends it again")
            self.app.write_log("warning", text)
            self.app.notify(text, severity="warning", timeout=10)

    def _show(self) -> None:
        app = self.app
        view = self.view
        cancelling = view is not None and view.alive and view.run_id in self._cancel_sent
        state = LineState(view=view, first_run=self.first_run, starting_pid=self.starting_pid,
                          cancelling=cancelling, read_only=app.read_only)
        try:
            app.query_one("#pipeline-line", PipelineLine).show(state)
        except Exception:  # closing: the widgets are gone
            return
        for overview in app.query(OverviewTab):
            overview.show_pipeline(state, self.first_run)
        offered = (self.first_run, bool(state.starting_pid), view is not None and view.alive)
        if offered != self._offered:  # what d, S and X do changed
            self._offered = offered
            app.refresh_bindings()
