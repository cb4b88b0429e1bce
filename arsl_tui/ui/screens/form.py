"""A modal form of labelled text fields: hyper-parameters, an override reason, a silence's length.

Enter in any field submits; `check` (pure, quick) may refuse the values with a message naming the
field, which is shown in the form so nothing typed is lost. The form states what submitting does,
and is the confirmation for actions that need typed input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from arsl_tui.ui.keymap import bindings_for
from arsl_tui.ui.widgets.status_line import StatusLine

FormValues = dict[str, str]


@dataclass(frozen=True)
class FormField:
    key: str
    label: str
    value: str = ""
    placeholder: str = ""


class FormScreen(ModalScreen[FormValues | None]):
    """Returns the typed values (stripped) on submit, None on Esc or Cancel."""

    BINDINGS = bindings_for("form")

    def __init__(
        self,
        title: str,
        explanation: Sequence[str],
        fields: Sequence[FormField],
        submit_label: str,
        *,
        check: Callable[[Mapping[str, str]], str] | None = None,
        error: str = "",
    ) -> None:
        super().__init__()
        self.title_text = title
        self.explanation = list(explanation)
        self.fields = list(fields)
        self.submit_label = submit_label
        self.check = check
        self.initial_error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="form-dialog"):
            yield Static(self.title_text, id="form-title", markup=False)
            if self.explanation:
                yield Static("\n".join(f"• {line}" for line in self.explanation), id="form-body", markup=False)
            for form_field in self.fields:
                with Horizontal(classes="form-row"):
                    yield Label(form_field.label, classes="form-label")
                    yield Input(
                        form_field.value,
                        placeholder=form_field.placeholder,
                        id=f"field-{form_field.key}",
                        classes="form-input",
                        compact=True,
                    )
            yield StatusLine("", id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button(f"{self.submit_label} (enter)", id="form-submit", variant="warning", compact=True)
                yield Button("Cancel (esc)", id="form-cancel", compact=True)

    def on_mount(self) -> None:
        error_line = self.query_one("#form-error", StatusLine)
        if self.initial_error:
            error_line.say("error", "error", self.initial_error)
        else:
            error_line.display = False
        if self.fields:
            self.query_one(f"#field-{self.fields[0].key}", Input).focus()

    def values(self) -> FormValues:
        return {item.key: self.query_one(f"#field-{item.key}", Input).value.strip() for item in self.fields}

    def submit(self) -> None:
        values = self.values()
        problem = self.check(values) if self.check is not None else ""
        if problem:
            error_line = self.query_one("#form-error", StatusLine)
            error_line.say("error", "error", problem)
            error_line.display = True
            return
        self.dismiss(values)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "form-submit":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
