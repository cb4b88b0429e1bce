"""Recent upload runs from the journal: status (glyph and word), progress, data set, last update."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.services import UploadRunLike


class RunsTable(DataTable[str | Text]):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id=id)
        self.shown: tuple[tuple[str, str, int, float], ...] = ()

    def on_mount(self) -> None:
        self.add_columns("run", "status", "objects", "data set", "updated")

    def show_runs(self, runs: Sequence[UploadRunLike]) -> None:
        fingerprint = tuple((run.run_id, run.status, run.objects_confirmed, run.updated_at) for run in runs)
        if fingerprint == self.shown:
            return
        self.shown = fingerprint
        self.clear()
        for run in runs:
            self.add_row(
                fmt.short_id(run.run_id, 8),
                fmt.status_text(run.status),
                Text(f"{fmt.count(run.objects_confirmed)}/{fmt.count(run.objects_total)}", justify="right"),
                fmt.tail(run.dataset_dir, 24),
                fmt.timestamp(run.updated_at),
                key=run.run_id,
            )
