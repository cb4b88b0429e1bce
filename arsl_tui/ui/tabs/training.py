"""The Training tab: the job list, and for the selected job its live curves, progress, resources and log.

Everything goes through `ops.training` on the platform `services.open_training_platform` gives (the
same code as `arsl train …`). A thread worker polls at most once per `refresh_s` while the tab is
visible: the selected job's status, its new metric records (a `JobWatcher` keeps the byte cursor,
so metrics.jsonl is read incrementally), resources and new log bytes; the job list every
`JOB_LIST_EVERY_S`. Workers never touch widgets: they post messages, handled here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Static

from arsl_tui.backends import backend_for
from arsl_tui.config import Settings
from arsl_tui.domain.jobs import (
    BestEpoch,
    JobResources,
    JobSpec,
    JobStatus,
    MetricRecord,
    TrainingProgress,
    best_epoch,
)
from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.curves import TrainingCurves
from arsl_tui.ui.formatting import error_text, phase_word
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.form import FormField, FormScreen, FormValues
from arsl_tui.ui.screens.log_view import LogViewScreen
from arsl_tui.ui.services import ConsoleServices
from arsl_tui.ui.tabs.live import LiveTab, poll_interval
from arsl_tui.ui.widgets.plot_slot import PlotSlot
from arsl_tui.ui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from arsl_tui.domain.ports import TrainingPlatform
    from arsl_tui.ops.training import JobWatcher

JOBS_SHOWN = 20
JOB_LIST_EVERY_S = 5.0
"""The job list (one platform call per job on ModelArts) is re-read this often; the selected job every tick."""
LOG_TAIL_LINES = 200
FULL_LOG_MAX_BYTES = 16 << 20
CLOUD_MIN_REFRESH_S = 5.0
"""Slowest a cloud backend is polled: each tick is several ModelArts and OBS calls."""


@dataclass
class JobFeed:
    """What the worker keeps between polls of one job (only the worker thread touches it)."""

    watcher: JobWatcher
    log_cursor: int = 0
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))
    partial_line: str = ""


class JobTable(DataTable[str | Text]):
    """Jobs newest first: id, status (glyph and word), duration, best validation accuracy, epochs."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id=id)
        self.shown: tuple[tuple[str, ...], ...] = ()

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column, key=column)

    def show_jobs(
        self,
        jobs: list[JobStatus],
        best: Mapping[str, float | None],
        done: Mapping[str, int],
        now: float,
        selected: str | None,
    ) -> None:
        rows = tuple(
            (
                job.job_id,
                fmt.status_text(phase_word(job)),
                fmt.duration(job.duration_s(now)),
                fmt.metric(best.get(job.job_id)),
                f"{done.get(job.job_id, 0)}/{job.epochs or '?'}",
            )
            for job in jobs
        )
        if rows == self.shown:
            return
        same_jobs = [row[0] for row in rows] == [row[0] for row in self.shown]
        previous, self.shown = self.shown, rows
        if same_jobs:
            # Only values changed: update those cells, so the cursor (the user's selection) stays put.
            for row, old in zip(rows, previous, strict=True):
                for column, cell, old_cell in zip(COLUMNS[1:], row[1:], old[1:], strict=True):
                    if cell != old_cell:
                        # update_width: a running job's duration grows from `58 s` to `1 min 25 s`; a column
                        # sized for the first would cut the unit off the second.
                        self.update_cell(row[0], column, _cell(column, cell), update_width=True)
            return
        self.clear()
        for row in rows:
            self.add_row(*(_cell(column, cell) for column, cell in zip(COLUMNS, row, strict=True)), key=row[0])
        if selected is not None and selected in {row[0] for row in rows}:
            self.move_cursor(row=[row[0] for row in rows].index(selected), animate=False)


COLUMNS = ("job", "status", "duration", "best val", "epochs")


def _cell(column: str, text: str) -> str | Text:
    return Text(text, justify="right") if column in ("duration", "best val", "epochs") else text


class TrainingTab(LiveTab):
    """The training view's state and the `training` actions: submit, stop, open the full log."""

    scope = "training"
    focus_id = "jobs-table"

    class Polled(Message):
        """One poll's result; fields are None when not read this time."""

        def __init__(
            self,
            *,
            jobs: list[JobStatus] | None,
            best: dict[str, float | None],
            epochs_done: dict[str, int],
            job_id: str | None,
            status: JobStatus | None,
            records: tuple[MetricRecord, ...],
            reset: bool,
            progress: TrainingProgress | None,
            resources: JobResources | None,
            log_lines: tuple[str, ...],
            error: str,
            best_epoch: BestEpoch | None = None,
        ) -> None:
            super().__init__()
            self.jobs = jobs
            self.best = best
            self.epochs_done = epochs_done
            self.job_id = job_id
            self.status = status
            self.records = records
            self.reset = reset
            self.progress = progress
            self.resources = resources
            self.log_lines = log_lines
            self.error = error
            self.best_epoch = best_epoch
            """The selected job's best epoch, as the trainer picks it."""

    class SpecReady(Message):
        def __init__(self, values: FormValues, spec: JobSpec | None, error: str) -> None:
            super().__init__()
            self.values = values
            self.spec = spec
            self.error = error

    class ActionDone(Message):
        """A submit or stop ended; `job_id` is the job it concerned."""

        def __init__(self, verb: str, job_id: str, status: JobStatus | None, error: str) -> None:
            super().__init__()
            self.verb = verb
            self.job_id = job_id
            self.status = status
            self.error = error

    def __init__(self, settings: Settings, services: ConsoleServices) -> None:
        super().__init__(settings, services, id="training-body")
        self.jobs: list[JobStatus] = []
        self.selected: str | None = None
        self.status: JobStatus | None = None
        self.progress: TrainingProgress | None = None
        self.best_epoch: BestEpoch | None = None
        self.resources: JobResources | None = None
        self.curves = TrainingCurves()
        self.log_tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.polls = 0
        """Polls handled so far (tests wait on it)."""
        self.busy = ""
        """'submitting' or 'stopping' while that worker runs."""
        self.form_values: FormValues | None = None
        self._list_read_at = -JOB_LIST_EVERY_S
        self._best: dict[str, float | None] = {}
        self._epochs_done: dict[str, int] = {}
        # Worker-side state (one poll worker at a time).
        self._feeds: dict[str, JobFeed] = {}
        self._summary_cache: dict[str, tuple[float | None, int, bool]] = {}
        """Job id → (best val acc, epochs done, read after the job ended)."""
        self._poll_error = ""

    def compose(self) -> ComposeResult:
        yield JobTable(id="jobs-table")
        yield Static(
            "○ No job selected. S submits one; jobs started with `arsl train submit` appear here too.",
            id="training-facts",
            markup=False,
        )
        with Horizontal(id="training-curves"):
            yield PlotSlot(id="loss-plot")
            yield PlotSlot(id="accuracy-plot")
        yield Static("", id="training-log", markup=False)
        yield StatusLine("", id="training-status")

    def on_mount(self) -> None:
        self.query_one("#training-status", StatusLine).display = False
        self.start_timer(poll_interval(self.settings, CLOUD_MIN_REFRESH_S), self.poll)

    # ----- visibility and polling ---------------------------------------------------------------

    def reload(self) -> None:
        self.poll(list_jobs=True)

    def poll(self, list_jobs: bool = False) -> None:
        """Start a poll unless one is still running (a slow backend never piles up workers)."""
        if not self.begin_read():
            return
        now = time.monotonic()
        want_list = list_jobs or now - self._list_read_at >= JOB_LIST_EVERY_S
        if want_list:
            self._list_read_at = now
        self._poll_worker(self.selected, want_list)

    def _open_platform(self) -> TrainingPlatform:
        return self.adapter("platform", lambda: self.services.open_training_platform(self.settings))

    @work(thread=True, group="training-poll", exit_on_error=False)
    def _poll_worker(self, job_id: str | None, want_list: bool) -> None:
        from arsl_tui.domain.jobs import TrainingError
        from arsl_tui.ops.training import JobWatcher, read_logs

        jobs: list[JobStatus] | None = None
        best: dict[str, float | None] = {}
        done: dict[str, int] = {}
        try:
            platform = self._open_platform()
            if want_list:
                jobs = platform.list(limit=JOBS_SHOWN)
                best, done = self._summaries(platform, jobs)
                if job_id is None and jobs:
                    job_id = jobs[0].job_id
            if job_id is None:
                self.post_message(
                    self.Polled(
                        jobs=jobs,
                        best=best,
                        epochs_done=done,
                        job_id=None,
                        status=None,
                        records=(),
                        reset=False,
                        progress=None,
                        resources=None,
                        log_lines=(),
                        error="",
                    )
                )
                return
            feed = self._feeds.get(job_id)
            if feed is None:
                feed = JobFeed(JobWatcher(platform, job_id, clock=self.services.clock))
                self._feeds = {job_id: feed}  # curves and cursors of one job at a time
            watcher = feed.watcher
            before = len(watcher.records)
            update = watcher.poll()
            reset = len(watcher.records) < before + len(update.new_records)
            records = tuple(watcher.records) if reset or before == 0 else tuple(update.new_records)
            resources: JobResources | None = None
            if not update.status.terminal:
                try:
                    resources = platform.resources(job_id)
                except TrainingError:
                    resources = None  # resource metrics are a nicety; the job's own state still shows
            chunk = read_logs(platform, job_id, feed.log_cursor)
            if chunk.cursor < feed.log_cursor:
                feed.log_tail.clear()
                feed.partial_line = ""
            feed.log_cursor = chunk.cursor
            text = feed.partial_line + chunk.text
            lines = text.split("\n")
            feed.partial_line = lines.pop()
            feed.log_tail.extend(line.rstrip("\r") for line in lines)
            tail = [*feed.log_tail, feed.partial_line] if feed.partial_line else list(feed.log_tail)
            self.post_message(
                self.Polled(
                    jobs=jobs,
                    best=best,
                    epochs_done=done,
                    job_id=job_id,
                    status=update.status,
                    records=records,
                    reset=reset or before == 0,
                    progress=update.progress,
                    resources=resources,
                    log_lines=tuple(tail[-LOG_TAIL_LINES:]),
                    error="",
                    best_epoch=best_epoch(watcher.records),
                )
            )
        except TrainingError as error:
            self.post_message(self._failed_poll(jobs, best, done, job_id, error_text(error)))
        except Exception as error:  # a provider bug is shown, never a traceback
            self.post_message(self._failed_poll(jobs, best, done, job_id, f"{type(error).__name__}: {error}"))

    def _failed_poll(
        self,
        jobs: list[JobStatus] | None,
        best: dict[str, float | None],
        done: dict[str, int],
        job_id: str | None,
        error: str,
    ) -> Polled:
        return self.Polled(
            jobs=jobs,
            best=best,
            epochs_done=done,
            job_id=job_id,
            status=None,
            records=(),
            reset=False,
            progress=None,
            resources=None,
            log_lines=(),
            error=error,
        )

    def _summaries(
        self, platform: TrainingPlatform, jobs: list[JobStatus]
    ) -> tuple[dict[str, float | None], dict[str, int]]:
        """The best epoch's validation accuracy and epochs done per job; an ended job's metrics are read once."""
        from arsl_tui.domain.jobs import TrainingError, derive_progress

        best: dict[str, float | None] = {}
        done: dict[str, int] = {}
        for job in jobs:
            known = self._summary_cache.get(job.job_id)
            if known is not None and known[2]:
                best[job.job_id], done[job.job_id] = known[0], known[1]
                continue
            feed = self._feeds.get(job.job_id)
            if feed is not None and feed.watcher.status is not None:
                # The selected job: its watcher has every record so far (read incrementally).
                progress = feed.watcher.progress()
                best[job.job_id] = best_epoch(feed.watcher.records).val_acc
                done[job.job_id] = progress.epochs_done
                continue
            try:
                records = platform.metrics(job.job_id, 0).records
            except TrainingError:
                best[job.job_id], done[job.job_id] = None, 0
                continue
            progress = derive_progress(records, job.epochs)
            best[job.job_id], done[job.job_id] = best_epoch(records).val_acc, progress.epochs_done
            self._summary_cache[job.job_id] = (best[job.job_id], progress.epochs_done, job.terminal)
        return best, done

    # ----- poll results (UI thread) -------------------------------------------------------------

    def on_training_tab_polled(self, message: Polled) -> None:
        self.read_ended()
        self.polls += 1
        now = self.services.clock()
        if message.jobs is not None:
            self.jobs = message.jobs
            self._best.update(message.best)
            self._epochs_done.update(message.epochs_done)
        if message.error:
            self._say("error", "error", message.error)
            if message.error != self._poll_error:  # an outage is logged once, not once a second
                self._log("error", f"training: {message.error}")
        elif self._poll_error:
            self._log("ok", "training: the platform answers again")
            self.query_one("#training-status", StatusLine).display = False
        self._poll_error = message.error
        if message.job_id is not None and message.job_id != self.selected and self.selected is None:
            self.selected = message.job_id
        if message.job_id is not None and message.job_id == self.selected and message.status is not None:
            if message.reset:
                self.curves = TrainingCurves()
            changed = self.curves.add(message.records) or message.reset
            self.status = message.status
            self.progress = message.progress
            self.best_epoch = message.best_epoch
            self.resources = message.resources
            if message.best_epoch is not None and message.best_epoch.val_acc is not None:
                self._best[message.job_id] = message.best_epoch.val_acc
            if message.progress is not None and message.progress.epochs_done:
                self._epochs_done[message.job_id] = message.progress.epochs_done
            if message.status.job_id in {job.job_id for job in self.jobs}:
                self.jobs = [message.status if job.job_id == message.status.job_id else job for job in self.jobs]
            if changed:
                self._show_curves()
            self.log_tail = deque(message.log_lines, maxlen=LOG_TAIL_LINES)
            self._show_log()
            self._show_facts(now)
            if not message.error and message.status.phase.value in ("Failed", "Abnormal") and message.status.reason:
                self._say(
                    "error", "failed", f"{message.status.job_id} failed: {message.status.reason.splitlines()[-1]}"
                )
        self.query_one("#jobs-table", JobTable).show_jobs(self.jobs, self._best, self._epochs_done, now, self.selected)
        if not self.jobs and not message.error:
            self.query_one("#training-facts", Static).update(
                "○ No training jobs yet. S submits one (form prefilled from [train]); "
                "`arsl train submit` jobs appear here too."
            )
        self.app.refresh_bindings()

    @on(DataTable.RowHighlighted, "#jobs-table")
    def _job_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != event.data_table.cursor_row:
            return  # a highlight the table passed through while it was rebuilt
        job_id = event.row_key.value if event.row_key is not None else None
        if job_id is None or job_id == self.selected:
            return
        self.selected = job_id
        self.status = next((job for job in self.jobs if job.job_id == job_id), None)
        self.progress = None
        self.best_epoch = None
        self.resources = None
        self.curves = TrainingCurves()
        self.log_tail.clear()
        self._show_curves()
        self._show_log()
        self._show_facts(self.services.clock())
        self.query_one("#training-status", StatusLine).display = False
        self.app.refresh_bindings()
        self.poll()

    def _show_curves(self) -> None:
        self.query_one("#loss-plot", PlotSlot).show(self.curves.loss_chart())
        self.query_one("#accuracy-plot", PlotSlot).show(self.curves.accuracy_chart())

    def _show_log(self) -> None:
        lines = [line for line in self.log_tail if line.strip()][-3:]
        self.query_one("#training-log", Static).update(
            Text("\n".join(lines) or "(no log output yet)", no_wrap=True, overflow="ellipsis")
        )

    def _show_facts(self, now: float) -> None:
        status = self.status
        if status is None:
            return
        progress = self.progress
        first = [status.job_id, fmt.status_text(phase_word(status)) + " " + fmt.duration(status.duration_s(now))]
        if progress is not None:
            total = progress.epochs_total or status.epochs
            first.append(f"epoch {progress.epochs_done}/{total or '?'}")
            if not status.terminal:
                first.append(f"ETA {fmt.duration(progress.eta_s)}")
            if progress.images_per_s is not None:
                first.append(f"{progress.images_per_s:,.0f} img/s")
            if progress.seconds_per_epoch is not None:
                first.append(f"{fmt.duration(progress.seconds_per_epoch)}/epoch")
        # Validation first, resources last: at 80 columns the end of the line is what gets cut.
        second = []
        if progress is not None and progress.last_epoch is not None:
            last = progress.last_epoch
            second.append(f"val loss {fmt.metric(last.val_loss)} acc {fmt.metric(last.val_acc)}")
            best = self.best_epoch
            if best is not None and best.epoch is not None:
                second.append(f"best epoch {best.epoch} (val acc {fmt.metric(best.val_acc)})")
        second.append(describe_resources(self.resources, status))
        self.query_one("#training-facts", Static).update(
            Text(
                " · ".join(first) + "\n" + " · ".join(part for part in second if part),
                no_wrap=True,
                overflow="ellipsis",
            )
        )

    # ----- what the console's gate asks ---------------------------------------------------------

    def availability(self, action: str) -> bool | None:
        if action == "training_submit":
            return None if self.busy else True
        if action == "training_stop":
            return bool(self.status is not None and not self.status.terminal and not self.busy) or None
        if action == "training_open_log":
            return True if self.selected is not None else None
        return True

    def current_id(self) -> str:
        return self.selected or ""

    # ----- submit -------------------------------------------------------------------------------

    def action_training_submit(self, error: str = "") -> None:
        self.app.push_screen(
            FormScreen(
                "Submit a training job",
                submit_explanation(self.settings),
                hyperparameter_fields(self.settings, self.form_values),
                "Review",
                check=check_hyperparameters,
                error=error,
            ),
            self._form_answered,
        )

    def _form_answered(self, values: FormValues | None) -> None:
        if values is None:
            self._log("info", "training job not submitted (form cancelled)")
            return
        self.form_values = values
        self._spec_worker(values)

    @work(thread=True, group="training-spec", exit_on_error=False)
    def _spec_worker(self, values: FormValues) -> None:
        from arsl_tui.domain.jobs import JobSpecError
        from arsl_tui.ops.training import build_spec, resolve_dataset

        try:
            dataset = resolve_dataset(self.settings, values.get("dataset") or None)
            spec = build_spec(
                self.settings,
                dataset,
                epochs=int(values["epochs"]),
                batch_size=int(values["batch_size"]),
                learning_rate=float(values["learning_rate"]),
                seed=int(values["seed"]),
                model=values["model"],
                nodes=int(values["nodes"]),
                gpus=int(values["processes"]),
                name=values.get("name", ""),
            )
        except (JobSpecError, ValueError) as error:
            self.post_message(self.SpecReady(values, None, error_text(error)))
        except Exception as error:  # the upload journal unreadable, …: a message, never a traceback
            self.post_message(self.SpecReady(values, None, f"{type(error).__name__}: {error}"))
        else:
            self.post_message(self.SpecReady(values, spec, ""))

    def on_training_tab_spec_ready(self, message: SpecReady) -> None:
        if message.spec is None:
            self._log("error", f"training job spec: {message.error}")
            self.action_training_submit(error=message.error)
            return
        spec = message.spec

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.busy = "submitting"
                self._say("info", "running", "Submitting the job …")
                self._log("info", f"submitting a training job: {describe_spec(spec)}")
                self.app.refresh_bindings()
                self._submit_worker(spec)
            else:
                self._log("info", "training job not submitted (cancelled in the confirmation dialog)")

        self.app.push_screen(
            ConfirmScreen("Submit this training job?", spec_lines(self.settings, spec), "Submit"), answered
        )

    @work(thread=True, group="training-action", exit_on_error=False)
    def _submit_worker(self, spec: JobSpec) -> None:
        from arsl_tui.domain.jobs import TrainingError
        from arsl_tui.ops.training import submit_job

        try:
            status = submit_job(self._open_platform(), spec)
        except TrainingError as error:
            self.post_message(self.ActionDone("submit", "", None, error_text(error)))
        except Exception as error:
            self.post_message(self.ActionDone("submit", "", None, f"{type(error).__name__}: {error}"))
        else:
            self.post_message(self.ActionDone("submit", status.job_id, status, ""))

    # ----- stop and log -------------------------------------------------------------------------

    def action_training_stop(self) -> None:
        status = self.status
        if status is None or status.terminal:
            return
        progress = self.progress
        where = f", epoch {progress.epochs_done}/{progress.epochs_total or '?'}" if progress is not None else ""
        lines = [
            f"Stop job {status.job_id} ({status.phase.value}{where}).",
            f"How: {self.backend.job_stop_how}.",
            "Its output so far (metrics, log, checkpoints) stays; the job ends Terminated.",
            "A stopped job cannot be resumed from the console; submit a new one.",
        ]

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.busy = "stopping"
                self._say("warning", "cancelling", f"Stopping {status.job_id} …")
                self._log("warning", f"stopping training job {status.job_id}")
                self.app.refresh_bindings()
                self._stop_worker(status.job_id)

        self.app.push_screen(ConfirmScreen("Stop the training job?", lines, "Stop job"), answered)

    @work(thread=True, group="training-action", exit_on_error=False)
    def _stop_worker(self, job_id: str) -> None:
        from arsl_tui.domain.jobs import TrainingError
        from arsl_tui.ops.training import stop_job

        try:
            status = stop_job(self._open_platform(), job_id)
        except TrainingError as error:
            self.post_message(self.ActionDone("stop", job_id, None, error_text(error)))
        except Exception as error:
            self.post_message(self.ActionDone("stop", job_id, None, f"{type(error).__name__}: {error}"))
        else:
            self.post_message(self.ActionDone("stop", job_id, status, ""))

    def on_training_tab_action_done(self, message: ActionDone) -> None:
        self.busy = ""
        if message.error:
            what = "Not submitted" if message.verb == "submit" else f"Stop of {message.job_id} failed"
            self._say("error", "error", f"{what}: {message.error}")
            self._log("error", f"training {message.verb}: {message.error}")
        elif message.status is not None:
            status = message.status
            if message.verb == "submit":
                self._say(
                    "ok",
                    "done",
                    f"Submitted {status.job_id} ({status.phase.value}); its curves appear as it reports epochs.",
                )
                self._log("ok", f"submitted training job {status.job_id} ({status.phase.value})")
                self.selected = status.job_id
                self.status = status
                self.curves = TrainingCurves()
                self._show_curves()
            else:
                self._say("warning", phase_word(status), f"{status.job_id} is {status.phase.value}.")
                self._log("warning", f"training job {status.job_id} is {status.phase.value} after the stop request")
        self.app.refresh_bindings()
        self.poll(list_jobs=True)

    def action_training_open_log(self) -> None:
        job_id = self.selected
        if job_id is None:
            return

        def load() -> str:
            from arsl_tui.ops.training import read_logs

            platform = self._open_platform()
            parts: list[str] = []
            cursor, total = 0, 0
            while total < FULL_LOG_MAX_BYTES:
                chunk = read_logs(platform, job_id, cursor)
                if not chunk.text or chunk.cursor <= cursor:
                    break
                parts.append(chunk.text)
                total += chunk.cursor - cursor
                cursor = chunk.cursor
            text = "".join(parts)
            if total >= FULL_LOG_MAX_BYTES:
                text += f"\n… cut at {fmt.size(FULL_LOG_MAX_BYTES)}: `arsl train logs {job_id}` prints it all"
            return text or "(the log is empty)"

        self.app.push_screen(LogViewScreen(f"Log of {job_id}", load))

    # ----- helpers ------------------------------------------------------------------------------

    def _say(self, level: str, status: str, text: str) -> None:
        line = self.query_one("#training-status", StatusLine)
        line.say(level, status, text)
        line.display = True


# ----- pure helpers (tested directly) ---------------------------------------------------------------


def describe_resources(resources: JobResources | None, status: JobStatus) -> str:
    if status.terminal:
        return f"ended {fmt.timestamp(status.ended_at)}" if status.ended_at else "ended"
    if resources is None:
        return "resources: –"
    parts = []
    if resources.cpu_percent is not None:
        parts.append(f"CPU {resources.cpu_percent:.0f} %")
    if resources.memory_mb is not None:
        parts.append(f"memory {fmt.size(resources.memory_mb * 1e6)}")
    elif resources.memory_percent is not None:
        parts.append(f"memory {resources.memory_percent:.0f} %")
    if resources.gpu_percent is not None:
        parts.append(f"GPU {resources.gpu_percent:.0f} %")
    if resources.gpu_memory_percent is not None:
        parts.append(f"GPU memory {resources.gpu_memory_percent:.0f} %")
    if resources.processes is not None:
        parts.append(f"{resources.processes} processes")
    return " · ".join(parts) or "resources: –"


HYPERPARAMETER_KEYS = (
    "dataset",
    "epochs",
    "batch_size",
    "learning_rate",
    "model",
    "nodes",
    "processes",
    "seed",
    "name",
)


def hyperparameter_fields(settings: Settings, last: FormValues | None = None) -> list[FormField]:
    """The form's fields, prefilled from `[train]` (or what was typed last time)."""
    train = settings.train
    backend = backend_for(settings)
    defaults = {
        "dataset": "",
        "epochs": str(train.epochs),
        "batch_size": str(train.batch_size),
        "learning_rate": repr(float(train.learning_rate)),
        "model": train.model,
        "nodes": str(backend.default_nodes()),
        "processes": str(backend.default_processes()),
        "seed": "0",
        "name": "",
    }
    values = {**defaults, **(last or {})}
    labels = {
        "dataset": "data set",
        "epochs": "epochs",
        "batch_size": "batch size",
        "learning_rate": "learning rate",
        "model": "model",
        "nodes": "nodes",
        "processes": "processes/node" if backend.runs_here else "GPUs/node",
        "seed": "seed",
        "name": "job name",
    }
    placeholders = {
        "dataset": "empty: the data set uploaded last (or a folder, local:, obs://, manifest id)",
        "name": "empty: the platform picks one",
    }
    return [FormField(key, labels[key], values[key], placeholders.get(key, "")) for key in HYPERPARAMETER_KEYS]


def check_hyperparameters(values: Mapping[str, str]) -> str:
    """The first value that is not a number of the right kind, named; '' when all parse."""
    for key, label in (
        ("epochs", "epochs"),
        ("batch_size", "batch size"),
        ("nodes", "nodes"),
        ("processes", "processes per node"),
        ("seed", "seed"),
    ):
        text = values.get(key, "")
        try:
            number = int(text)
        except ValueError:
            return f"{label} = {text!r}: expected a whole number"
        if number < (0 if key == "seed" else 1):
            return f"{label} = {number}: expected at least {0 if key == 'seed' else 1}"
    text = values.get("learning_rate", "")
    try:
        rate = float(text)
    except ValueError:
        return f"learning rate = {text!r}: expected a number such as 0.003"
    if not rate > 0 or rate != rate or rate == float("inf"):
        return f"learning rate = {text!r}: expected a positive number"
    if not values.get("model"):
        return "model: give a model name (e.g. compact)"
    return ""


def submit_explanation(settings: Settings) -> list[str]:
    where = backend_for(settings).training_where
    return [f"Runs {where}; values from [train]. Enter reviews the full job spec before anything starts."]


def describe_spec(spec: JobSpec) -> str:
    return (
        f"{spec.epochs} epochs, batch {spec.batch_size}, lr {spec.learning_rate:g}, model {spec.model}, "
        f"{spec.nodes}×{spec.processes_per_node} on {spec.dataset}"
    )


def spec_lines(settings: Settings, spec: JobSpec) -> list[str]:
    """The confirmation's lines: the job spec as it will be submitted."""
    flags = " ".join(f"--{name} {value}" for name, value in spec.hyperparameters())
    backend = backend_for(settings)
    return [
        f"Backend: {backend.training_label}; {spec.nodes} node(s) × {spec.processes_per_node} {backend.workers_label}.",
        f"Data set: {fmt.shorten_ids(spec.dataset)}",
        f"Epochs {spec.epochs} · batch {spec.batch_size} · learning rate {spec.learning_rate:g} · seed {spec.seed} · "
        f"model {spec.model}" + (f" · name {spec.name}" if spec.name else ""),
        f"Trainer flags: {flags}",
        "Output: metrics.jsonl, the log and the model package in the job's own output; nothing is deleted.",
    ]
