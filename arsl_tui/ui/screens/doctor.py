"""The doctor's report (what `arsl doctor` prints), run in a worker: its probes are network calls on the
huawei backend and may take a while each, and the console must keep drawing meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from arsl_tui.ui.formatting import error_text
from arsl_tui.ui.keymap import bindings_for

if TYPE_CHECKING:
    from arsl_tui.ops.doctor import DoctorReport

WAITING = "… checking (read-only: nothing is created or changed)"


def report_text(report: DoctorReport) -> Text:
    """One line per check (✓ ✗ –), a ✗'s fix under it, then which phases cannot run."""
    text = Text()
    for check in report.checks:
        style = "bold red" if not check.ok else ("dim" if check.skipped else "bold green")
        text.append(check.glyph, style=style)
        text.append(" ")
        text.append(check.name, style="bold")
        text.append(f": {check.detail}\n")
        if not check.ok and check.fix:
            text.append(f"    fix: {check.fix}\n", style="yellow")
    text.append(report.summary(), style="green" if report.healthy else "bold red")
    return text


class DoctorScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    DoctorScreen { align: center middle; }
    #doctor-dialog { width: 100%; height: 100%; border: round $primary; background: $surface; padding: 0 1; }
    #doctor-title { text-style: bold; height: 1; }
    #doctor-scroll { height: 1fr; }
    #doctor-report { height: auto; }
    #doctor-hint { height: 1; color: $text-muted; }
    """
    BINDINGS = bindings_for("doctor")

    class Finished(Message):
        def __init__(self, report: DoctorReport | None, error: str) -> None:
            super().__init__()
            self.report = report
            self.error = error

    def __init__(self, title: str, run: Callable[[], DoctorReport]) -> None:
        super().__init__()
        self.title_text = title
        self.run = run
        """Runs every check; called in a worker thread. Its exception's message is shown instead."""
        self.report: DoctorReport | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="doctor-dialog"):
            yield Static(self.title_text, id="doctor-title", markup=False)
            with VerticalScroll(id="doctor-scroll"):
                yield Static(WAITING, id="doctor-report", markup=False)
            yield Static("Esc closes", id="doctor-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#doctor-scroll", VerticalScroll).focus()
        self._run_worker()

    @work(thread=True, group="doctor", exit_on_error=False)
    def _run_worker(self) -> None:
        try:
            report = self.run()
        except Exception as error:  # a bug in a probe is shown here, never a traceback over the console
            self.post_message(self.Finished(None, error_text(error)))
        else:
            self.post_message(self.Finished(report, ""))

    def on_doctor_screen_finished(self, message: Finished) -> None:
        shown = self.query_one("#doctor-report", Static)
        if message.report is None:
            shown.update(f"✗ the doctor could not finish: {message.error}")
            return
        self.report = message.report
        shown.update(report_text(message.report))
        failed = len(message.report.failed)
        verdict = "nothing missing" if not failed else f"{failed} check(s) failed"
        self.query_one("#doctor-hint", Static).update(f"{verdict} · `arsl doctor --json` for scripts · Esc closes")

    def action_close(self) -> None:
        self.dismiss(None)


__all__ = ["DoctorScreen", "report_text"]
