"""A one-line status message that always starts with a glyph and a word, colour only as an extra."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from arsl_tui.ui.formatting import STATUS_GLYPHS

_LEVEL_CLASSES = ("-ok", "-error", "-warning", "-info")


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: auto; max-height: 2; }
    StatusLine.-ok { color: $success; }
    StatusLine.-error { color: $error; text-style: bold; }
    StatusLine.-warning { color: $warning; }
    """

    def __init__(self, text: str = "", *, id: str | None = None) -> None:
        super().__init__(text, id=id, markup=False)
        self.message = text

    def say(self, level: str, status: str, message: str) -> None:
        """`level` picks the colour (ok/error/warning/info); `status` picks the glyph and the word."""
        self.message = f"{STATUS_GLYPHS.get(status, '·')} {message}"
        self.remove_class(*_LEVEL_CLASSES)
        self.add_class(f"-{level}")
        self.update(Text(self.message))
