"""The log panel: what the console did and what went wrong, newest last; toggled with `l`."""

from __future__ import annotations

from collections import deque

from textual.widgets import Log

_LEVEL_GLYPHS = {"info": "·", "ok": "✓", "warning": "▲", "error": "✗"}


class LogPanel(Log):
    """A bounded plain-text log; each line carries a glyph and a level word, so no colour is needed."""

    DEFAULT_CSS = """
    LogPanel { height: 7; border-top: solid $primary; background: $surface; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=1000, auto_scroll=True, id=id)
        self.recent: deque[str] = deque(maxlen=200)
        """The latest lines as plain text, for tests and for the help overlay."""

    def add(self, level: str, message: str) -> None:
        line = f"{_LEVEL_GLYPHS.get(level, '·')} {level:<7} {message}"
        self.recent.append(line)
        self.write_line(line)
