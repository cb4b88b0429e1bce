"""Following the whole pipeline from the console: read its files, start its process, signal it.

The pipeline runs as a separate, detached process (`arsl pipeline run`, started here or in a terminal);
`PipelineFollow` reads the files it writes in a thread worker, every second while a run is live and at
the Overview's pace otherwise. It is a widget without a face, mounted by the Overview, and it tells what it
found by messages: `Changed` to the App (the line under the header, the Overview's panel, which keys are
offered) and `Logged` lines for its log panel; `RunEnded` to the Overview (the workflow changed).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.message import Message
from textual.timer import Timer
from textual.widget import Widget

from arsl_tui.domain.pipeline_run import (
    CANCEL_PATIENCE_S,
    CancelTarget,
    cancel_target,
    end_line,
    end_severity,
    overdue_line,
)
from arsl_tui.ui.formatting import error_text
from arsl_tui.ui.messages import Logged
from arsl_tui.ui.services import ConsoleServices, LaunchedProcess, PipelineLaunch
from arsl_tui.ui.widgets.pipeline_line import LineState

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.domain.pipeline_run import PipelineView
    from arsl_tui.ops.pipeline_log import PipelineLogReader

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


class PipelineFollow(Widget):
    """The pipeline's state as this console knows it, and the one place that starts and signals its process."""

    DEFAULT_CSS = """
    PipelineFollow { display: none; }
    """

    class Read(Message, bubble=False):
        """What a read of `$ARSL_HOME/pipeline/` found (posted by the worker; handled on the UI thread)."""

        def __init__(
            self,
            view: PipelineView | None,
            error: str,
            launched: Launched | None,
            exit_code: int | None,
            output_tail: str,
        ) -> None:
            super().__init__()
            self.view = view
            self.error = error
            self.launched = launched
            self.exit_code = exit_code
            self.output_tail = output_tail

    class Changed(Message):
        """What the pipeline line and the Overview show changed (posted after every read, launch and cancel)."""

        def __init__(self, state: LineState, first_run: bool, offers_changed: bool) -> None:
            super().__init__()
            self.state = state
            self.first_run = first_run
            self.offers_changed = offers_changed
            """What d, S and X do changed: the keys offered must be asked again."""

    class RunEnded(Message):
        """A run followed here ended: what was read of the workflow is stale (for the Overview, the parent)."""

    def __init__(self, settings: Settings, services: ConsoleServices, *, read_only: bool, idle_read_s: float) -> None:
        super().__init__()
        self.settings = settings
        self.services = services
        self.read_only = read_only
        self.idle_read_s = idle_read_s
        """How often the files are read while no run is live."""
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
        return self.home_empty and view is not None and not view.exists and self.launched is None

    def home_read(self, empty: bool) -> None:
        """The Overview read the home: whether it is empty decides the first-run offer."""
        if empty != self.home_empty:
            self.home_empty = empty
            self._show()

    # ----- start and cancel ---------------------------------------------------------------------

    def start(self, launch: PipelineLaunch) -> None:
        """Start the confirmed launch as a detached process, and follow it."""
        view = self.view
        try:
            process = self.services.launch_pipeline(launch)
        except OSError as error:
            text = f"cannot start the pipeline: {error_text(error)}"
            self._log("error", text)
            self.notify(text, severity="error", timeout=8)
            return
        self.launched = Launched(launch, process, view.run_id if view is not None else "")
        self._log(
            "info",
            f"pipeline started as process {process.pid}: {' '.join(launch.command)} (output in {launch.log_path})",
        )
        self.notify(f"Pipeline started (process {process.pid}); it goes on if you quit the console.")
        self._show()
        self.read_now()

    def cancel_target(self) -> CancelTarget | None:
        """The live run's process group (or the starting process's); None: nothing to cancel."""
        return cancel_target(self.view, self.starting_pid)

    def cancel(self, target: CancelTarget) -> None:
        """SIGINT the confirmed target's process group, as Ctrl-C in its terminal would."""
        try:
            where = self.services.signal_pipeline(target.pid, target.pgid, signal.SIGINT)
        except ProcessLookupError:
            self.notify("The pipeline had already ended.", severity="information")
            self.read_now()
            return
        except PermissionError:
            text = f"not allowed to signal process {target.pid} (another user's run?)"
            self._log("error", text)
            self.notify(text, severity="error", timeout=8)
            return
        self._cancel_sent[target.key] = self.services.clock()
        self._log("info", f"SIGINT sent to {where} to cancel {target.name}")
        self.notify(f"Cancelling {target.name}: SIGINT sent; waiting for it to stop …")
        self.read_now()

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
        self.run_worker(
            partial(self._read, self.launched), name="pipeline_read", group="pipeline", thread=True, exit_on_error=False
        )

    def _read(self, launched: Launched | None) -> None:
        """The worker thread: read the files and poll the launched process, then post what was found."""
        view: PipelineView | None = None
        error = ""
        try:
            if self._reader is None:
                self._reader = self.services.open_pipeline_log(self.settings)
            view = self._reader.read()
        except Exception as failure:  # an unreadable file is shown in the log; the console goes on
            error = error_text(failure)
        exit_code = launched.process.poll() if launched is not None else None  # also reaps the ended child
        tail = ""
        if launched is not None and exit_code is not None:
            from arsl_tui.ops.pipeline_log import last_line

            tail = last_line(launched.launch.log_path)
        self.post_message(self.Read(view, error, launched, exit_code, tail))

    def on_pipeline_follow_read(self, message: Read) -> None:
        """On the UI thread: take in a read, announce what ended, schedule the next read."""
        self._reading = False
        if message.error:
            self._log("warning", f"cannot read the pipeline's files: {message.error}")
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
            self.call_later(self.read_now)
            return
        live = (view is not None and view.alive) or self.launched is not None
        self._timer = self.set_timer(LIVE_PIPELINE_READ_S if live else self.idle_read_s, self.read_now)

    def _launch_ended(self, launched: Launched, view: PipelineView | None, exit_code: int, tail: str) -> None:
        self.launched = None
        ran = view is not None and view.exists and view.run_id != launched.earlier_run
        if ran:
            if view is not None and view.ended and not launched.seen_live:
                self._watched_runs.add(view.run_id)  # it ran and ended between two reads
            return
        key = f"pid:{launched.process.pid}"
        cancelled = self._cancel_sent.pop(key, None) is not None
        text = (
            f"the pipeline (process {launched.process.pid}) ended with exit code {exit_code} before it "
            f"started a run" + (f": {tail}" if tail else "") + f" (output: {launched.launch.log_path})"
        )
        self._log("info" if cancelled else "error", text)
        self.notify(
            ("Cancelled before it started." if cancelled else f"The pipeline did not start: {tail or text}"),
            severity="information" if cancelled else "error",
            timeout=10,
        )

    def _announce_end(self, view: PipelineView) -> None:
        self._cancel_sent.pop(view.run_id, None)
        detail = end_line(view)
        severity = end_severity(view)
        self._log({"information": "info"}.get(severity, severity), detail)
        self.notify(detail, severity=severity, timeout=10)
        self.post_message(self.RunEnded())

    def _check_cancel(self, view: PipelineView) -> None:
        sent = self._cancel_sent.get(view.run_id)
        if sent is not None and self.services.clock() - sent > CANCEL_PATIENCE_S:
            del self._cancel_sent[view.run_id]
            text = overdue_line(view, "X sends it again")
            self._log("warning", text)
            self.notify(text, severity="warning", timeout=10)

    def _show(self) -> None:
        view = self.view
        cancelling = view is not None and view.alive and view.run_id in self._cancel_sent
        state = LineState(
            view=view,
            first_run=self.first_run,
            starting_pid=self.starting_pid,
            cancelling=cancelling,
            read_only=self.read_only,
        )
        offered = (self.first_run, bool(state.starting_pid), view is not None and view.alive)
        offers_changed = offered != self._offered
        self._offered = offered
        self.app.post_message(self.Changed(state, self.first_run, offers_changed))

    def _log(self, level: str, text: str) -> None:
        self.app.post_message(Logged(level, text))
