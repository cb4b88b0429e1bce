"""The Overview tab: where each pipeline stage stands, and the recent upload runs from the journal.

It re-reads the journal every `refresh_s` (default 1 s) while visible, so an upload started from
`arsl upload` in another shell shows here too; the timer is paused while the tab is hidden.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from arsl_tui.config import Settings
from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.services import ConsoleServices, EngineUnavailable, UploadRunLike
from arsl_tui.ui.widgets.runs_table import RunsTable

RUNS_SHOWN = 20


def pipeline_lines(runs: Sequence[UploadRunLike], resumable: UploadRunLike | None, journal_error: str) -> list[str]:
    """One line per stage: glyph, stage, state in words, and where to act."""
    uploaded = next((run for run in runs if run.status == "done"), None)
    running = next((run for run in runs if run.status == "running"), None)
    if journal_error:
        data = f"{fmt.STATUS_GLYPHS['warning']} data      journal unavailable: {journal_error}"
    elif running is not None:
        data = (f"{fmt.STATUS_GLYPHS['running']} data      uploading {fmt.tail(running.dataset_dir, 30)}: "
                f"{fmt.count(running.objects_confirmed)}/{fmt.count(running.objects_total)} objects")
    elif uploaded is not None:
        data = (f"{fmt.STATUS_GLYPHS['done']} data      uploaded: manifest {fmt.short_id(uploaded.manifest_id)}, "
                f"{fmt.size(uploaded.bytes_total)}, run {fmt.short_id(uploaded.run_id, 8)}")
    else:
        data = f"{fmt.STATUS_GLYPHS['none']} data      nothing uploaded yet — Upload tab (2)"
    lines = [data]
    if resumable is not None and running is None:
        lines.append(f"{fmt.STATUS_GLYPHS['resumable']} upload    {resumable.status} run "
                     f"{fmt.short_id(resumable.run_id, 8)}: {fmt.count(resumable.objects_confirmed)}/"
                     f"{fmt.count(resumable.objects_total)} objects — resume on the Upload tab (2, then r)")
    lines += [
        f"{fmt.STATUS_GLYPHS['none']} training  not in the console yet — Training tab (3) names today's command",
        f"{fmt.STATUS_GLYPHS['none']} gate      not in the console yet — Gate tab (4)",
        f"{fmt.STATUS_GLYPHS['none']} canary    not in the console yet — Canary tab (5)",
        f"{fmt.STATUS_GLYPHS['none']} alarms    not in the console yet — Alarms tab (6)",
    ]
    return lines


class OverviewTab(Vertical):
    class JournalLoaded(Message):
        def __init__(self, runs: Sequence[UploadRunLike], resumable: UploadRunLike | None, error: str) -> None:
            super().__init__()
            self.runs = runs
            self.resumable = resumable
            self.error = error

    def __init__(self, settings: Settings, services: ConsoleServices) -> None:
        super().__init__(id="overview-body")
        self.settings = settings
        self.services = services
        self.loads = 0
        """Journal reads so far (the timer's only work)."""
        self._timer: Timer | None = None
        self._shown_lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("Pipeline", classes="section-title")
        yield Static("○ reading the upload journal …", id="pipeline", markup=False)
        yield Static("Recent upload runs (journal, newest first)", classes="section-title")
        yield RunsTable(id="runs-table")
        settings = self.settings
        yield Static(f"config {settings.source} · backend {settings.backend} · state {settings.home_dir}",
                     id="overview-config", markup=False)

    def on_mount(self) -> None:
        self._timer = self.set_interval(self.settings.console.refresh_s, self.reload, pause=True)

    def set_visible(self, visible: bool) -> None:
        """Poll the journal only while the tab is on screen."""
        if self._timer is None:
            return
        if visible:
            self.reload()
            self._timer.resume()
        else:
            self._timer.pause()

    def reload(self) -> None:
        self._load_worker()

    @work(thread=True, exclusive=True, group="overview", exit_on_error=False)
    def _load_worker(self) -> None:
        try:
            runs = self.services.list_upload_runs(self.settings, RUNS_SHOWN)
            resumable = self.services.resumable_run(self.settings)
        except EngineUnavailable as error:
            self.post_message(self.JournalLoaded([], None, str(error)))
        except Exception as error:
            self.post_message(self.JournalLoaded([], None, f"{type(error).__name__}: {error}"))
        else:
            self.post_message(self.JournalLoaded(runs, resumable, ""))

    def on_overview_tab_journal_loaded(self, message: JournalLoaded) -> None:
        self.loads += 1
        lines = pipeline_lines(message.runs, message.resumable, message.error)
        if lines != self._shown_lines:
            self._shown_lines = lines
            self.query_one("#pipeline", Static).update("\n".join(lines))
        self.query_one("#runs-table", RunsTable).show_runs(message.runs)
