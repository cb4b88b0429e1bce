"""`arsl upload DIR` and `arsl upload status`.

`arsl upload DIR` validates, packs and sends a data set (resuming any earlier attempt), showing a
Rich progress bar; with `--json` it prints one JSON object per event (`{"event": "<Kind>", ...}`,
one `UploadProgressed` per confirmed object) and ends with `{"event": "outcome", ...}`.
Exit codes: 0 done, 1 refused by validation (problems listed) or already running elsewhere,
2 usage (no such folder, read-only mode), 3 store error (the journal is kept; run again to resume),
130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from arsl_tui.backends import backend_for
from arsl_tui.cli.common import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandContext,
    CommandFailed,
    confirm,
    safe_text,
    setting_range,
    whole_number,
)
from arsl_tui.config import UploadSettings

if TYPE_CHECKING:
    from arsl_tui.domain.events import Event
    from arsl_tui.ops.upload import UploadOutcome, UploadRefused

STATUS_WORD = "status"
_MAX_RETRY_LINES = 5


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    upload = subcommands.add_parser(
        "upload",
        parents=[common],
        help="upload a data set to the object store (resumes by default)",
        description="Validate DIR, then upload it (shards or files) with concurrent, checksummed, resumable "
        "requests; the manifest goes last. `arsl upload status` lists upload runs (write ./status "
        "for a folder named status).",
    )
    upload.add_argument("target", metavar="DIR", help="data set folder (the 32 class folders), or `status`")
    upload.add_argument(
        "--mode",
        choices=("shards", "files"),
        default=None,
        help="shards: ~64 MB WebDataset tar shards (default from config); files: one object per image",
    )
    upload.add_argument(
        "--concurrency",
        type=whole_number(*setting_range(UploadSettings, "concurrency")),
        default=None,
        metavar="N",
        help="requests in flight (1–256)",
    )
    upload.add_argument(
        "--allow-problems",
        action="store_true",
        help="quarantine problem files (left out of the manifest and the store) instead of refusing",
    )
    upload.add_argument("--yes", "-y", action="store_true", help="do not ask before uploading")
    upload.add_argument(
        "--limit", type=whole_number(1, 10_000), default=20, metavar="N", help="runs to list with `status` (default 20)"
    )
    upload.set_defaults(handler=upload_command)


def upload_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    if namespace.target == STATUS_WORD:
        return status_command(context, namespace)
    from arsl_tui.ops.dataset import DatasetError
    from arsl_tui.ops.upload import UploadBusy, UploadRefused, UploadRequest, run_upload
    from arsl_tui.state.db import StateError

    context.require_writable("upload")
    settings = context.settings
    if namespace.concurrency is not None and not 1 <= namespace.concurrency <= 256:
        raise CommandFailed(f"--concurrency must be between 1 and 256, got {namespace.concurrency}", EXIT_USAGE)
    folder = Path(namespace.target)
    if not folder.is_dir():
        raise CommandFailed(
            f"{folder}: no such folder" if not folder.exists() else f"{folder}: is not a folder", EXIT_USAGE
        )
    mode = namespace.mode or settings.upload.mode
    # Opened here to name the destination (and to fail before the question if it cannot be opened); the engine
    # opens its own from the settings, as files mode's sending processes do.
    location = backend_for(settings).object_store().location
    confirm(
        context,
        f"Upload {safe_text(str(folder))} to {location} ({mode} mode)?",
        namespace.yes,
        refusal="cancelled; nothing uploaded",
    )
    request = UploadRequest(
        dataset_dir=folder, mode=mode, concurrency=namespace.concurrency, allow_problems=namespace.allow_problems
    )
    view: _JsonView | _ProgressView = _JsonView(context) if context.json_output else _ProgressView(context)
    try:
        with view:
            outcome = run_upload(settings, request, on_event=view.on_event)
    except UploadRefused as refusal:
        return _refused(context, refusal)
    except DatasetError as error:
        raise CommandFailed(str(error), EXIT_USAGE) from None
    except UploadBusy as error:
        raise CommandFailed(str(error), EXIT_FAILED) from None
    except StateError as error:
        raise CommandFailed(f"upload journal: {error}", EXIT_BACKEND) from None
    except KeyboardInterrupt:
        raise CommandFailed(
            "interrupted; run the same command again to resume where it stopped", EXIT_INTERRUPTED
        ) from None
    return _report_outcome(context, outcome)


def _refused(context: CommandContext, refusal: UploadRefused) -> int:
    report = refusal.report
    if context.json_output:
        context.emit_json(
            {
                "event": "refused",
                "error": str(refusal),
                "exit_code": EXIT_FAILED,
                "root": str(report.root),
                "problems": [item.to_json() for item in report.problems],
            }
        )
    console = context.err_console
    console.print(
        Text.assemble(
            ("refused:", "bold red"),
            f" {safe_text(str(report.root))}: {len(report.problems)} problem(s); nothing uploaded",
        )
    )
    for finding in report.problems:
        console.print(
            f"  PROBLEM  {safe_text(finding.path)}: {finding.kind}: {safe_text(finding.detail)}", markup=False
        )
    console.print("fix them, or pass --allow-problems to quarantine these files (they stay out of the store)")
    return EXIT_FAILED


def _report_outcome(context: CommandContext, outcome: UploadOutcome) -> int:
    code = {"done": EXIT_OK, "cancelled": EXIT_INTERRUPTED, "failed": EXIT_BACKEND}[outcome.status]
    if context.json_output:
        context.emit_json({"event": "outcome", **dataclasses.asdict(outcome), "exit_code": code})
    summary = (
        f"{outcome.objects_sent} object(s) sent ({outcome.bytes_sent / 1e6:.1f} MB), "
        f"{outcome.objects_skipped} already in the store, {outcome.elapsed_s:.1f} s"
    )
    if outcome.status == "done":
        context.console.print(f"[bold green]done[/] data set {outcome.manifest_id[:12]} → {outcome.destination}")
        context.console.print(summary)
    elif outcome.status == "cancelled":
        context.err_console.print(f"cancelled: {summary}; run the same command again to resume")
    else:
        context.err_console.print(Text.assemble(("error:", "bold red"), f" upload failed: {safe_text(outcome.error)}"))
        context.err_console.print(f"{summary}; the journal is kept: run the same command again to resume")
    return code


def status_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.upload import list_upload_runs, resumable_run

    settings = context.settings
    runs = list_upload_runs(settings, limit=max(1, namespace.limit))
    unfinished = resumable_run(settings)
    if context.json_output:
        context.emit_json(
            {
                "runs": [dataclasses.asdict(run) for run in runs],
                "resumable": dataclasses.asdict(unfinished) if unfinished else None,
            }
        )
        return EXIT_OK
    if not runs:
        context.console.print("no upload runs yet")
        return EXIT_OK
    table = Table(show_edge=False, pad_edge=False)
    for column in ("run", "status", "mode", "objects", "MB", "started", "data set", "error"):
        table.add_column(column, justify="right" if column in ("objects", "MB") else "left", no_wrap=column != "error")
    for run in runs:
        table.add_row(
            run.run_id,
            run.status,
            run.mode,
            f"{run.objects_confirmed}/{run.objects_total}",
            f"{run.bytes_confirmed / 1e6:.1f}/{run.bytes_total / 1e6:.1f}",
            time.strftime("%m-%d %H:%M", time.localtime(run.started_at)),
            run.manifest_id[:12],
            run.error[:60],
        )
    context.console.print(table)
    if unfinished is not None:
        context.console.print(
            f"resumable: {unfinished.run_id} ({unfinished.status}) — run "
            f"`arsl upload {unfinished.dataset_dir} --mode {unfinished.mode}` to finish it",
            markup=False,
        )
    return EXIT_OK


class _JsonView:
    """JSON lines on stdout, one per event; events arrive from several threads."""

    def __init__(self, context: CommandContext) -> None:
        self._context = context
        self._lock = threading.Lock()

    def __enter__(self) -> _JsonView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def on_event(self, event: Event) -> None:
        payload = {"event": event.kind, **dataclasses.asdict(event)}
        with self._lock:
            self._context.emit_json(payload)


class _ProgressView:
    """A Rich progress bar over bytes, with files, rate, ETA and retries beside it."""

    def __init__(self, context: CommandContext) -> None:
        self._console = context.console
        self._progress = Progress(
            TextColumn("[bold]{task.fields[phase]:<10}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[files]}"),
            TextColumn("{task.fields[size]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[retries]}"),
            console=self._console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._lock = threading.Lock()
        self._retry_lines = 0

    def __enter__(self) -> _ProgressView:
        self._progress.start()
        self._task = self._progress.add_task(
            "upload", total=None, phase="starting", files="", size="", rate="", eta="", retries=""
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def on_event(self, event: Event) -> None:
        from arsl_tui.domain.events import (
            UploadFinished,
            UploadPhaseChanged,
            UploadProgressed,
            UploadRetried,
            UploadStarted,
        )

        assert self._task is not None
        progress = self._progress
        if isinstance(event, UploadProgressed):
            progress.update(
                self._task,
                completed=event.bytes_done,
                total=event.bytes_total,
                files=f"{event.files_done:,}/{event.files_total:,} files",
                size=f"{event.bytes_done / 1e6:,.1f}/{event.bytes_total / 1e6:,.1f} MB",
                rate=f"{event.bytes_per_s / 1e6:,.2f} MB/s",
                eta=f"ETA {_duration(event.eta_s)}" if event.eta_s is not None else "",
                retries=f"{event.retries} retries" if event.retries else "",
            )
        elif isinstance(event, UploadPhaseChanged):
            progress.update(self._task, phase=event.phase)
            # Validating and packing details are counters (the bar shows them); listing is routine.
            if event.detail and event.phase in ("verifying", "sending") and not event.detail.startswith("listing"):
                progress.console.print(f"{event.phase}: {event.detail}", markup=False)
        elif isinstance(event, UploadStarted):
            progress.update(self._task, total=event.bytes_total, completed=0, files=f"0/{event.files_total:,} files")
            already = (
                f", {event.objects_already_confirmed} already confirmed" if event.objects_already_confirmed else ""
            )
            progress.console.print(
                f"uploading {event.objects_total} object(s) ({event.mode} mode{already}) to {event.destination}",
                markup=False,
            )
        elif isinstance(event, UploadRetried):
            with self._lock:
                self._retry_lines += 1
                shown = self._retry_lines <= _MAX_RETRY_LINES
            if shown:
                progress.console.print(
                    f"retry {event.key} (attempt {event.attempt}, in {event.delay_s:.2f} s): {event.error}",
                    markup=False,
                    style="yellow",
                )
        elif isinstance(event, UploadFinished):
            progress.update(self._task, phase=event.status)


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 60}:{whole % 60:02d}"
