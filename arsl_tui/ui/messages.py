"""Messages that cross the console's widgets."""

from __future__ import annotations

from textual.message import Message


class Logged(Message):
    """A line for the log panel (handled by the App)."""

    def __init__(self, level: str, text: str) -> None:
        super().__init__()
        self.level = level
        self.text = text
