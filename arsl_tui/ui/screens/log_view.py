"""A job's whole log in a scrollable view, read in a worker so a large log never blocks the console."""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Log, Static

from arsl_tui.ui.keymap import bindings_for


class LogViewScreen(ModalScreen[None]):
    BINDINGS = bindings_for("log-view")

    class TextLoaded(Message):
        def __init__(self, text: str, error: str) -> None:
            super().__init__()
            self.text = text
            self.error = error

    def __init__(self, title: str, load: Callable[[], str]) -> None:
        super().__init__()
        self.title_text = title
        self.load = load
        """Returns the whole text; runs in a worker thread. Its exception's message is shown instead."""
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Vertical(id="log-view-dialog"):
            yield Static(self.title_text, id="log-view-title", markup=False)
            yield Log(id="log-view-text", max_lines=200_000)
            yield Static("… reading the log", id="log-view-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#log-view-text", Log).focus()
        self._load_worker()

    @work(thread=True, group="log-view", exit_on_error=False)
    def _load_worker(self) -> None:
        try:
            text = self.load()
        except Exception as error:  # a backend error is shown in the view, never a traceback
            self.post_message(self.TextLoaded("", f"{type(error).__name__}: {error}" if not str(error) else str(error)))
        else:
            self.post_message(self.TextLoaded(text, ""))

    def on_log_view_screen_text_loaded(self, message: TextLoaded) -> None:
        log = self.query_one("#log-view-text", Log)
        hint = self.query_one("#log-view-hint", Static)
        self.loaded = True
        if message.error:
            hint.update(f"✗ cannot read the log: {message.error}")
            return
        lines = message.text.splitlines()
        log.write_lines(lines)
        hint.update(f"{len(lines):,} lines · ↑↓ PgUp PgDn Home End scroll · Esc closes")

    def action_close(self) -> None:
        self.dismiss(None)
