"""The Upload tab: pick a folder, validate it, and run the same upload engine as `arsl upload`.

The folder field takes the focus only when asked (Enter, `/`, `e` or a click) and gives it back on
Enter or Esc: while it has the focus every printable key is text, and the digits must stay tab keys.

Threading: validation, the upload and journal reads run in thread workers that never touch a
widget; they post messages, and the handlers here own every state change. The upload worker only
waits on `services.run_upload`, which by default runs the engine in a process of its own
(`ops.upload_process`): this process renders progress, and a dead engine process comes back as a
failed run that says how it ended. Upload events reach the tab through an `UploadFeed`, which
coalesces progress, and the panel re-renders at most `progress_interval_s` apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static

from arsl_tui.backends import backend_for
from arsl_tui.config import Settings
from arsl_tui.domain.events import UploadFinished, UploadPhaseChanged, UploadRetried, UploadStarted
from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.background import run_in_low_priority_thread
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.services import (
    ConsoleServices,
    EngineUnavailable,
    UploadControlLike,
    UploadNotRun,
    UploadOrder,
    UploadOutcomeLike,
    UploadRefusedError,
    UploadRunLike,
)
from arsl_tui.ui.tabs.body import TabBody
from arsl_tui.ui.upload_feed import UploadFeed
from arsl_tui.ui.widgets.class_chart import ClassCountChart
from arsl_tui.ui.widgets.class_table import ClassCountTable
from arsl_tui.ui.widgets.path_input import PathInput
from arsl_tui.ui.widgets.problem_list import FindingLike, ProblemList
from arsl_tui.ui.widgets.status_line import StatusLine
from arsl_tui.ui.widgets.upload_progress import UploadProgressPanel, UploadView

if TYPE_CHECKING:
    from arsl_tui.ops.dataset import ValidationReport

MAX_RETRY_LINES_PER_BATCH = 5
IDLE_HINT = "○ Enter or / to type the folder; Enter validates it, Esc leaves the field."


class UploadRunEnded(Message):
    """An upload run ended in any way; the App refreshes what depends on the journal."""

    def __init__(self, status: str, run_id: str) -> None:
        super().__init__()
        self.status = status
        self.run_id = run_id


def describe_destination(settings: Settings, manifest_id: str = "") -> str:
    """Where an upload goes, in words, before the engine reports the exact place."""
    prefix = f"{settings.storage.datasets_prefix}{fmt.short_id(manifest_id) + '…' if manifest_id else '<manifest>'}/"
    return backend_for(settings).dataset_destination(prefix)


@dataclass(frozen=True)
class ValidatedDataset:
    """What the tab keeps of a validation: computed in the worker, because a manifest's id hashes the
    whole manifest (a second or more for 108,098 images) and must never run on the UI thread."""

    typed: str
    manifest_id: str
    images: int
    total_bytes: int
    counts: dict[str, dict[str, int]]
    class_totals: dict[str, int]
    problems: tuple[FindingLike, ...]
    notes: int

    @classmethod
    def from_report(cls, typed: str, report: ValidationReport) -> ValidatedDataset:
        counts = report.manifest.counts()
        return cls(
            typed=typed,
            manifest_id=report.manifest.id,
            images=len(report.manifest.images),
            total_bytes=report.manifest.total_bytes,
            counts=counts,
            class_totals={name: sum(per_split.values()) for name, per_split in counts.items()},
            problems=tuple(report.problems),
            notes=len(report.notes),
        )

    @property
    def ok(self) -> bool:
        return not self.problems


class UploadTab(TabBody):
    """The upload state, and the `upload` actions: edit the path, validate, start, pause, resume, cancel."""

    scope = "upload"

    engine_niceness = 10
    """How much lower the thread that drives the upload is scheduled than the UI thread (Linux); an engine run
    in this process (services that do so) runs its threads there."""

    class ValidationDone(Message):
        def __init__(self, generation: int, dataset: ValidatedDataset) -> None:
            super().__init__()
            self.generation = generation
            self.dataset = dataset

    class ValidationProgressed(Message):
        def __init__(self, generation: int, typed: str, scanned: int) -> None:
            super().__init__()
            self.generation = generation
            self.typed = typed
            self.scanned = scanned

    class ValidationFailed(Message):
        def __init__(self, generation: int, typed: str, error: str) -> None:
            super().__init__()
            self.generation = generation
            self.typed = typed
            self.error = error

    class FeedReady(Message):
        """The feed went from empty to holding events; drain it."""

    class WorkerEnded(Message):
        def __init__(self, outcome: UploadOutcomeLike | None, error: str, refused: UploadRefusedError | None) -> None:
            super().__init__()
            self.outcome = outcome
            self.error = error
            self.refused = refused

    class JournalRead(Message):
        def __init__(self, record: UploadRunLike | None, error: str) -> None:
            super().__init__()
            self.record = record
            self.error = error

    def __init__(self, settings: Settings, services: ConsoleServices, *, progress_interval_s: float = 0.25) -> None:
        super().__init__(settings, services, id="upload-body")
        self.progress_interval_s = progress_interval_s
        self.validated: ValidatedDataset | None = None
        self.validating = False
        self.phase = "idle"
        """idle | uploading | paused | cancelling: the state of this console's own upload run."""
        self.control: UploadControlLike | None = None
        self.feed: UploadFeed | None = None
        self.resumable: UploadRunLike | None = None
        self.view = UploadView()
        self.last_error = ""
        self.progress_events_received = 0
        self.progress_renders = 0
        self._generation = 0
        self._last_render = 0.0
        self._drain_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="path-row"):
            yield Static("Data set folder ", id="path-label")
            yield PathInput(id="path-input")
        yield StatusLine(IDLE_HINT, id="upload-status")
        yield StatusLine("", id="resume-banner")
        yield ProblemList(id="problems")
        with Horizontal(id="counts-row"):
            yield ClassCountTable(id="counts-table")
            yield ClassCountChart(id="counts-chart")
        yield UploadProgressPanel(id="upload-progress")

    def on_mount(self) -> None:
        self.query_one("#resume-banner", StatusLine).display = False
        self.read_journal()

    def on_unmount(self) -> None:
        # The console is closing: a running upload must stop, or its thread would hold the process open.
        if self.control is not None:
            self.control.cancel()

    # ----- what the console's gate asks ---------------------------------------------------------

    @property
    def active(self) -> bool:
        """An upload started from this console has not ended yet."""
        return self.phase in ("uploading", "paused", "cancelling")

    def availability(self, action: str) -> bool | None:
        """True: runnable; None: shown but off; False: not offered now."""
        if self.active and action in ("upload_validate", "upload_start"):
            return False  # hidden while uploading: the footer has room for pause, resume and cancel
        if action == "upload_validate":
            return None if self.validating else True
        if action == "upload_start":
            return True if (self.validated is not None and not self.validating) else None
        if action == "upload_pause":
            return self.phase == "uploading"
        if action == "upload_resume":
            return self.phase == "paused" or (not self.active and self.resumable is not None)
        if action == "upload_cancel":
            return self.phase in ("uploading", "paused")
        return True

    def current_id(self) -> str:
        """The id most worth copying: the run's, else the validated manifest's."""
        if self.view.run_id:
            return self.view.run_id
        if self.validated is not None:
            return self.validated.manifest_id
        return self.resumable.run_id if self.resumable is not None else ""

    # ----- actions --------------------------------------------------------------------------------
    # Nothing here takes the focus when the tab is shown: the digits switch tabs and the tab's letters work at once.

    def action_upload_edit_path(self) -> None:
        self.query_one("#path-input", PathInput).focus()

    def action_upload_validate(self) -> None:
        typed = self.query_one("#path-input", PathInput).value.strip()
        if not typed:
            self._say("error", "error", "Type the path of a data set folder first: Enter or / opens the field.")
            return
        self._generation += 1
        self.validating = True
        self.validated = None
        self._clear_report()
        self._say("info", "validating", f"Validating {typed} … every image is decoded; this reads the whole folder.")
        self._log("info", f"validating {typed}")
        self.app.refresh_bindings()
        self._validate_worker(self._generation, typed)

    def action_upload_start(self) -> None:
        validated = self.validated
        if validated is None:
            return
        settings = self.settings
        mode = settings.upload.mode
        problems = len(validated.problems)
        lines = [
            f"Upload {fmt.count(validated.images)} images ({fmt.size(validated.total_bytes)}) from {validated.typed}.",
            f"To: {describe_destination(settings, validated.manifest_id)}",
            (
                f"As shards (~{settings.upload.shard_size_mb} MB tar files)"
                if mode == "shards"
                else "As files (one object per image)"
            )
            + f", {settings.upload.concurrency} requests at a time.",
            "Skips objects an earlier run confirmed; writes the manifest last.",
            "Deletes nothing. p pauses, X cancels; a cancelled run can resume.",
        ]
        if problems:
            lines.append(f"{problems} problem(s): those files are left out and listed as quarantined.")
        # The journal keeps the folder for resuming later, so it gets an absolute path.
        order = UploadOrder(
            dataset_dir=Path(validated.typed).expanduser().absolute(), mode=mode, allow_problems=bool(problems)
        )

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._start(order)
            else:
                self._log("info", "upload not started (cancelled in the confirmation dialog)")

        self.app.push_screen(ConfirmScreen("Start the upload?", lines, "Upload"), answered)

    def action_upload_pause(self) -> None:
        if self.control is None or self.phase != "uploading":
            return
        self.control.pause()
        self.phase = "paused"
        self._show_view(self._with_status("paused"))
        self._say("warning", "paused", "Paused: objects in flight finish, nothing new is sent. r resumes, X cancels.")
        self._log("info", f"upload {fmt.short_id(self.view.run_id)} paused")
        self.app.refresh_bindings()

    def action_upload_resume(self) -> None:
        if self.phase == "paused" and self.control is not None:
            self.control.resume()
            self.phase = "uploading"
            self._show_view(self._with_status("sending"))
            self._say("info", "running", "Resumed.")
            self._log("info", f"upload {fmt.short_id(self.view.run_id)} resumed")
            self.app.refresh_bindings()
            return
        record = self.resumable
        if record is None or self.active:
            return
        remaining = max(0, record.bytes_total - record.bytes_confirmed)
        lines = [
            f"Resume upload run {fmt.short_id(record.run_id)} of {record.dataset_dir} "
            f"({fmt.status_text(record.status)}).",
            f"{fmt.count(record.objects_confirmed)} of {fmt.count(record.objects_total)} objects are already "
            f"confirmed; about {fmt.size(remaining)} remain.",
            f"To: {fmt.shorten_ids(record.destination) or describe_destination(self.settings)}",
            "The folder is validated again first; if it changed, a new manifest (and run) is uploaded.",
            "Nothing is deleted. Pause (p) or cancel (X) at any time.",
        ]
        order = UploadOrder(
            dataset_dir=Path(record.dataset_dir), mode=record.mode or self.settings.upload.mode, allow_problems=False
        )

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                path_input = self.query_one("#path-input", PathInput)
                if not path_input.value:
                    path_input.value = record.dataset_dir
                self._start(order)

        self.app.push_screen(ConfirmScreen("Resume the interrupted upload?", lines, "Resume"), answered)

    def action_upload_cancel(self) -> None:
        if not self.active or self.phase == "cancelling":
            return
        lines = [
            f"Stop upload run {fmt.short_id(self.view.run_id)}: objects in flight finish, nothing new is sent.",
            f"{fmt.count(self.view.objects_done)} of {fmt.count(self.view.objects_total)} objects are confirmed "
            "and stay in the store and the journal.",
            "The data set is not usable for training until an upload completes; r (resume) continues later.",
        ]

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.cancel_run()

        self.app.push_screen(ConfirmScreen("Cancel the upload?", lines, "Cancel upload"), answered)

    def cancel_run(self) -> None:
        """Ask the engine to stop (no dialog): used after confirmation and when the console quits."""
        if self.control is None or not self.active:
            return
        self.control.cancel()
        self.phase = "cancelling"
        self._show_view(self._with_status("cancelling"))
        self._say("warning", "cancelling", "Cancelling: waiting for objects in flight …")
        self._log("warning", f"upload {fmt.short_id(self.view.run_id)} cancelling")
        self.app.refresh_bindings()

    # ----- workers (no widget access) ------------------------------------------------------------

    @work(thread=True, exclusive=True, group="validate", exit_on_error=False)
    def _validate_worker(self, generation: int, typed: str) -> None:
        from arsl_tui.ops.dataset import DatasetError

        last_posted = 0.0

        def progressed(scanned: int) -> None:
            nonlocal last_posted
            now = time.monotonic()
            if now - last_posted >= self.progress_interval_s:
                last_posted = now
                self.post_message(self.ValidationProgressed(generation, typed, scanned))

        try:
            report = self.services.validate(self.settings, Path(typed).expanduser(), progressed)
        except DatasetError as error:
            self.post_message(self.ValidationFailed(generation, typed, str(error)))
        except OSError as error:
            self.post_message(self.ValidationFailed(generation, typed, f"{typed}: cannot be read ({error})"))
        except Exception as error:  # a validation bug must not end the console
            self.post_message(self.ValidationFailed(generation, typed, f"{type(error).__name__}: {error}"))
        else:
            self.post_message(self.ValidationDone(generation, ValidatedDataset.from_report(typed, report)))

    @work(thread=True, exclusive=True, group="upload", exit_on_error=False)
    def _upload_worker(self, order: UploadOrder, control: UploadControlLike, feed: UploadFeed) -> None:
        try:
            outcome = run_in_low_priority_thread(
                lambda: self.services.run_upload(self.settings, order, feed, control), self.engine_niceness
            )
        except UploadRefusedError as refused:
            self.post_message(self.WorkerEnded(None, str(refused), refused))
        except (EngineUnavailable, UploadNotRun) as error:
            self.post_message(self.WorkerEnded(None, str(error), None))
        except Exception as error:  # an engine failure is shown, never a traceback
            self.post_message(self.WorkerEnded(None, f"{type(error).__name__}: {error}", None))
        else:
            self.post_message(self.WorkerEnded(outcome, "", None))

    @work(thread=True, exclusive=True, group="journal", exit_on_error=False)
    def read_journal(self) -> None:
        try:
            record = self.services.resumable_run(self.settings)
        except EngineUnavailable as error:
            self.post_message(self.JournalRead(None, str(error)))
        except Exception as error:
            self.post_message(self.JournalRead(None, f"cannot read the upload journal: {error}"))
        else:
            self.post_message(self.JournalRead(record, ""))

    # ----- message handlers (UI thread) ---------------------------------------------------------

    @on(Input.Submitted, "#path-input")
    async def _path_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.screen.set_focus(None)  # out of the field, so the digits switch tabs while it validates
        await self.app.run_action("upload_validate")

    @on(DataTable.RowHighlighted, "#counts-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        chart = self.query_one("#counts-chart", ClassCountChart)
        chart.selected = min(event.cursor_row, 31)

    def on_upload_tab_validation_done(self, message: ValidationDone) -> None:
        if message.generation != self._generation:
            return
        self.validating = False
        dataset = message.dataset
        self.validated = dataset
        self.query_one("#counts-table", ClassCountTable).set_counts(dataset.counts)
        self.query_one("#counts-chart", ClassCountChart).set_counts(dataset.class_totals)
        self.query_one("#problems", ProblemList).show_findings(dataset.problems, dataset.typed)
        summary = (
            f"{fmt.count(dataset.images)} images, {fmt.size(dataset.total_bytes)}, "
            f"manifest {fmt.short_id(dataset.manifest_id)}"
        )
        read_only = bool(getattr(self.app, "read_only", False))
        if dataset.ok:
            next_step = "Read-only mode: uploading is off." if read_only else "S uploads it."
            self._say("ok", "valid", f"Valid: {summary}. {next_step}")
            self._log("ok", f"validated {dataset.typed}: {summary}")
        else:
            next_step = (
                "Read-only mode: uploading is off." if read_only else "S uploads the rest, problem files quarantined."
            )
            self._say("warning", "warning", f"{len(dataset.problems)} problem(s); {summary}. {next_step}")
            self._log("warning", f"validated {dataset.typed}: {len(dataset.problems)} problem(s); {summary}")
        if dataset.notes:
            self._log("info", f"{dataset.notes} image(s) are not 64×64 grayscale; the trainer converts them")
        self.query_one("#counts-table", ClassCountTable).focus()
        self.app.refresh_bindings()

    def on_upload_tab_validation_progressed(self, message: ValidationProgressed) -> None:
        if message.generation == self._generation and self.validating:
            self._say(
                "info", "validating", f"Validating {message.typed} … {fmt.count(message.scanned)} files decoded so far."
            )

    def on_upload_tab_validation_failed(self, message: ValidationFailed) -> None:
        if message.generation != self._generation:
            return
        self.validating = False
        self.last_error = message.error
        self._say("error", "error", message.error)
        self._log("error", message.error)
        self.app.refresh_bindings()

    def on_upload_tab_journal_read(self, message: JournalRead) -> None:
        banner = self.query_one("#resume-banner", StatusLine)
        if message.error:
            self._log("warning", message.error)
        self.resumable = message.record
        record = message.record
        if record is None or self.active:
            banner.display = False
        else:
            action = "read-only: no resume" if getattr(self.app, "read_only", False) else "r resumes"
            # The folder is in the path field (filled below); the banner keeps to one line at 80 columns.
            banner.say(
                "warning",
                "resumable",
                f"{record.status} upload run {fmt.short_id(record.run_id, 8)}: "
                f"{fmt.count(record.objects_confirmed)}/{fmt.count(record.objects_total)} objects "
                f"confirmed — {action}",
            )
            banner.display = True
            path_input = self.query_one("#path-input", PathInput)
            if not path_input.value:
                path_input.value = record.dataset_dir
            self._log(
                "warning",
                f"journal: {record.status} upload run {record.run_id} of {record.dataset_dir} "
                f"({record.objects_confirmed}/{record.objects_total} objects confirmed)",
            )
        self.app.refresh_bindings()

    def on_upload_tab_feed_ready(self, message: FeedReady) -> None:
        feed = self.feed
        if feed is None:
            return
        wait = self._last_render + self.progress_interval_s - time.monotonic()
        if feed.only_progress_pending and wait > 0:
            if self._drain_timer is None:
                self._drain_timer = self.set_timer(wait, self._drain_feed)
            return
        self._drain_feed()

    def on_upload_tab_worker_ended(self, message: WorkerEnded) -> None:
        if self.feed is not None:
            self._drain_feed()
        self.feed = None
        self.control = None
        self.phase = "idle"
        outcome = message.outcome
        if outcome is not None:
            status = outcome.status
            view = self.view
            self._show_view(
                UploadView(
                    status=status,
                    run_id=outcome.run_id,
                    destination=outcome.destination,
                    mode=view.mode,
                    files_done=view.files_done,
                    files_total=view.files_total,
                    bytes_done=view.bytes_done,
                    bytes_total=view.bytes_total,
                    objects_done=view.objects_done,
                    objects_total=view.objects_total,
                    bytes_per_s=view.bytes_per_s,
                    eta_s=None,
                    retries=view.retries,
                    errors=view.errors,
                    elapsed_s=outcome.elapsed_s,
                    error=outcome.error,
                )
            )
            sent = (
                f"{fmt.count(outcome.objects_sent)} objects sent, {fmt.count(outcome.objects_skipped)} already "
                f"there, {fmt.size(outcome.bytes_sent)}"
            )
            if status == "done":
                self._say("ok", "done", f"Uploaded: {sent} (y copies the run id).")
                self._log("ok", f"upload {outcome.run_id} done: {sent} in {fmt.duration(outcome.elapsed_s)}")
            elif status == "cancelled":
                self._say("warning", "cancelled", f"Cancelled: {sent}. r resumes later.")
                self._log("warning", f"upload {outcome.run_id} cancelled: {sent}")
            else:
                self.last_error = outcome.error or "the upload failed"
                self._say("error", "failed", f"Failed: {self.last_error} (Y copies the error; r retries).")
                self._log("error", f"upload {outcome.run_id} failed: {self.last_error}")
            self.post_message(UploadRunEnded(status, outcome.run_id))
        else:
            self.last_error = message.error
            self._show_view(self._with_status("failed", error=message.error))
            if message.refused is not None and message.refused.report is not None:
                report = message.refused.report
                self.query_one("#problems", ProblemList).show_findings(report.problems, str(report.root))
            self._say("error", "failed", f"Not uploaded: {message.error}")
            self._log("error", f"upload not run: {message.error}")
            self.post_message(UploadRunEnded("failed", self.view.run_id))
        self.read_journal()
        self.app.refresh_bindings()

    # ----- helpers ------------------------------------------------------------------------------

    def _start(self, order: UploadOrder) -> None:
        try:
            control = self.services.new_control()
        except EngineUnavailable as error:
            self.last_error = str(error)
            self._say("error", "error", str(error))
            self._log("error", str(error))
            return
        self.control = control
        self.feed = UploadFeed(lambda: self.post_message(self.FeedReady()))
        self.phase = "uploading"
        self.resumable = None
        self.query_one("#resume-banner", StatusLine).display = False
        self.progress_events_received = 0
        self._show_view(UploadView(status="validating", mode=order.mode))
        self._say("info", "running", f"Uploading {order.dataset_dir} ({order.mode}) — p pauses, X cancels.")
        self._log("info", f"upload of {order.dataset_dir} started ({order.mode})")
        self.query_one("#counts-table", ClassCountTable).focus()
        self.app.refresh_bindings()
        self._upload_worker(order, control, self.feed)

    def _drain_feed(self) -> None:
        self._drain_timer = None
        feed = self.feed
        if feed is None:
            return
        batch = feed.drain()
        view = self.view
        retries_logged = 0
        finished: UploadFinished | None = None
        for event in batch.events:
            if isinstance(event, UploadStarted):
                view = view.started(event)
                if self.phase == "paused":
                    view = replace(view, status="paused")
                already = (
                    f", {fmt.count(event.objects_already_confirmed)} already confirmed"
                    if event.objects_already_confirmed
                    else ""
                )
                self._log(
                    "info",
                    f"run {event.run_id}: {fmt.count(event.objects_total)} objects "
                    f"({fmt.size(event.bytes_total)}) → {event.destination}{already}",
                )
            elif isinstance(event, UploadPhaseChanged):
                view = view.phase(event)
                self._log("info", f"phase {event.phase}{': ' + event.detail if event.detail else ''}")
            elif isinstance(event, UploadRetried):
                retries_logged += 1
                if retries_logged <= MAX_RETRY_LINES_PER_BATCH:
                    self._log(
                        "warning", f"retry {event.attempt} of {event.key} in {event.delay_s:.1f} s: {event.error}"
                    )
            elif isinstance(event, UploadFinished):
                finished = event
        if retries_logged > MAX_RETRY_LINES_PER_BATCH:
            self._log("warning", f"… {retries_logged - MAX_RETRY_LINES_PER_BATCH} more retries")
        if batch.progress is not None:
            self.progress_events_received += batch.progress_events_seen
            view = view.progressed(batch.progress)
        if finished is not None:
            view = view.finished(finished)
        self._show_view(view)

    def _show_view(self, view: UploadView) -> None:
        self.view = view
        self._last_render = time.monotonic()
        self.progress_renders += 1
        self.query_one("#upload-progress", UploadProgressPanel).show(view)

    def _with_status(self, status: str, error: str = "") -> UploadView:
        return replace(self.view, status=status, error=error or self.view.error)

    def _clear_report(self) -> None:
        self.query_one("#counts-table", ClassCountTable).clear()
        self.query_one("#counts-chart", ClassCountChart).clear()
        self.query_one("#problems", ProblemList).show_findings([], "")

    def _say(self, level: str, status: str, text: str) -> None:
        self.query_one("#upload-status", StatusLine).say(level, status, text)
