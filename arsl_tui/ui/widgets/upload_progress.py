"""The live upload panel: phase, files and bytes done, rate, ETA, retries and errors."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from rich.text import Text
from textual.widget import Widget

from arsl_tui.domain.events import UploadFinished, UploadPhaseChanged, UploadProgressed, UploadStarted
from arsl_tui.ui import formatting as fmt


@dataclass(frozen=True)
class UploadView:
    """Everything the panel shows; replaced as events arrive."""

    status: str = "idle"
    """idle | validating | packing | sending | verifying | finishing | paused | cancelling | done | cancelled |
    failed"""
    run_id: str = ""
    destination: str = ""
    mode: str = ""
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    objects_done: int = 0
    objects_total: int = 0
    objects_already_confirmed: int = 0
    bytes_per_s: float = 0.0
    eta_s: float | None = None
    retries: int = 0
    errors: int = 0
    elapsed_s: float | None = None
    error: str = ""
    last_retry: str = ""

    def started(self, event: UploadStarted) -> UploadView:
        return UploadView(
            status="sending",
            run_id=event.run_id,
            destination=event.destination,
            mode=event.mode,
            files_total=event.files_total,
            bytes_total=event.bytes_total,
            objects_total=event.objects_total,
            objects_done=event.objects_already_confirmed,
            objects_already_confirmed=event.objects_already_confirmed,
        )

    def progressed(self, event: UploadProgressed) -> UploadView:
        return replace(
            self,
            run_id=event.run_id or self.run_id,
            files_done=event.files_done,
            files_total=event.files_total,
            bytes_done=event.bytes_done,
            bytes_total=event.bytes_total,
            objects_done=event.objects_done,
            objects_total=event.objects_total,
            bytes_per_s=event.bytes_per_s,
            eta_s=event.eta_s,
            retries=event.retries,
            errors=event.errors,
        )

    def phase(self, event: UploadPhaseChanged) -> UploadView:
        if self.status in ("paused", "cancelling"):
            return replace(self, run_id=event.run_id or self.run_id)
        return replace(self, status=event.phase, run_id=event.run_id or self.run_id)

    def finished(self, event: UploadFinished) -> UploadView:
        return replace(
            self,
            status=event.status,
            run_id=event.run_id or self.run_id,
            destination=event.destination or self.destination,
            elapsed_s=event.elapsed_s,
            error=event.error,
            eta_s=None if event.status == "done" else self.eta_s,
        )


class UploadProgressPanel(Widget):
    """Four lines of text; bars are drawn with characters so they read without colour."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"upload-progress--bar", "upload-progress--held", "upload-progress--failed"}
    DEFAULT_CSS = """
    UploadProgressPanel {
        height: 6; border: round $primary 50%; border-title-color: $text; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
        & > .upload-progress--bar { color: $success; }
        & > .upload-progress--held { color: $warning; }
        & > .upload-progress--failed { color: $error; text-style: bold; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view = UploadView()
        self.border_title = "Upload"
        self.renders = 0
        """How many times the panel re-rendered (the feed coalesces events, so this stays small)."""

    def show(self, view: UploadView) -> None:
        if view != self.view:
            self.view = view
            self.refresh()

    def render(self) -> Text:
        self.renders += 1
        view = self.view
        width = max(20, self.content_region.width or 70)
        if view.status == "idle" and not view.run_id:
            return Text("○ no upload running. Validate a folder (v), then start (S).", style="dim")
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(fmt.status_text(view.status), style="bold")
        if view.run_id:
            head.append(f"  run {fmt.short_id(view.run_id)}")
        if view.destination:
            head.append(f"  → {fmt.shorten_ids(view.destination)}")
        bar_width = max(10, width - 40)
        if view.status in ("failed", "error"):
            bar_style = self.get_component_rich_style("upload-progress--failed")
        elif view.status in ("paused", "cancelling", "cancelled"):
            bar_style = self.get_component_rich_style("upload-progress--held")
        else:
            bar_style = self.get_component_rich_style("upload-progress--bar")
        files = Text(no_wrap=True, overflow="ellipsis")
        files.append("files  ")
        files.append(fmt.bar(view.files_done, view.files_total, bar_width), style=bar_style)
        files.append(
            f" {fmt.count(view.files_done)} / {fmt.count(view.files_total)}"
            f" {fmt.percent(view.files_done, view.files_total)}"
        )
        data = Text(no_wrap=True, overflow="ellipsis")
        data.append("bytes  ")
        data.append(fmt.bar(view.bytes_done, view.bytes_total, bar_width), style=bar_style)
        data.append(f" {fmt.size(view.bytes_done)} / {fmt.size(view.bytes_total)}")
        facts = Text(no_wrap=True, overflow="ellipsis")
        facts.append(f"rate {fmt.rate(view.bytes_per_s)}  ETA {fmt.duration(view.eta_s)}  ")
        facts.append(f"objects {fmt.count(view.objects_done)}/{fmt.count(view.objects_total)}  ")
        facts.append(f"retries {view.retries}  ", style="bold" if view.retries else "")
        facts.append(f"errors {view.errors}", style="bold" if view.errors else "")
        if view.elapsed_s is not None:
            facts.append(f"  took {fmt.duration(view.elapsed_s)}")
        lines = [head, files, data, facts]
        if view.error:
            lines[0] = Text(
                f"{fmt.status_text(view.status)}  {view.error}",
                no_wrap=True,
                overflow="ellipsis",
                style=self.get_component_rich_style("upload-progress--failed"),
            )
        return Text("\n", no_wrap=True, overflow="ellipsis").join(lines)
