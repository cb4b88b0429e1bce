"""A modal that states exactly what an action will do and waits for an explicit yes."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from arsl_tui.ui.keymap import bindings_for


class ConfirmScreen(ModalScreen[bool]):
    """Returns True only on `y` or the confirm button; Esc, `n` and the cancel button return False.

    The cancel button has the focus, so a stray Enter changes nothing.
    """

    BINDINGS = bindings_for("confirm")

    def __init__(
        self, title: str, what_happens: Sequence[str], confirm_label: str, *, refuse_label: str = "Cancel"
    ) -> None:
        super().__init__()
        self.title_text = title
        self.what_happens = list(what_happens)
        self.confirm_label = confirm_label
        self.refuse_label = refuse_label
        """The no-button's word (for a dialog whose action is itself a cancel, "Cancel" would read as yes)."""

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(self.title_text, id="confirm-title", markup=False)
            yield Static("\n".join(f"• {line}" for line in self.what_happens), id="confirm-body", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.confirm_label} (y)", id="confirm-yes", variant="warning", compact=True)
                yield Button(f"{self.refuse_label} (n/esc)", id="confirm-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm-yes")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_dismiss_dialog(self) -> None:
        self.dismiss(False)
