"""Shown over everything while the terminal is smaller than the console's 80×24 floor."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Center, Middle
from textual.screen import ModalScreen
from textual.widgets import Static

from arsl_tui.ui.keymap import bindings_for

MIN_WIDTH = 80
MIN_HEIGHT = 24


def too_small_message(width: int, height: int) -> str:
    return (
        f"Terminal too small: {width}×{height}. arsl needs at least {MIN_WIDTH}×{MIN_HEIGHT}. "
        "Enlarge the window to continue (work in progress keeps running), or press q to quit."
    )


class TooSmallScreen(ModalScreen[None]):
    """Blocks keys except quit; the console pops it as soon as the terminal is big enough again."""

    BINDINGS = bindings_for("too-small")

    def compose(self) -> ComposeResult:
        with Middle(), Center():
            yield Static(
                too_small_message(self.app.size.width, self.app.size.height), id="too-small-message", markup=False
            )

    def on_resize(self) -> None:
        self.query_one("#too-small-message", Static).update(
            too_small_message(self.app.size.width, self.app.size.height)
        )
