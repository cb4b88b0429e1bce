"""The validation problems of a data set, one per line, scrollable with the keyboard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rich.text import Text
from textual.widgets import OptionList

MAX_SHOWN = 300


class FindingLike(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def detail(self) -> str: ...


class ProblemList(OptionList):
    """Hidden when there is nothing to list; long lists are cut with a pointer to the full report."""

    DEFAULT_CSS = """
    ProblemList { height: auto; max-height: 5; border: none; padding: 0; display: none; }
    ProblemList.-shown { display: block; }
    """

    def show_findings(self, findings: Sequence[FindingLike], folder: str) -> None:
        from arsl_tui.ops.dataset import shown

        self.clear_options()
        # File names are data, not markup: `[@click=app.quit]x.jpg` must print as itself, escapes as escapes.
        lines = [Text(shown(f"✗ {item.path}  {item.kind}: {item.detail}")) for item in findings[:MAX_SHOWN]]
        if len(findings) > MAX_SHOWN:
            lines.append(
                Text(shown(f"… and {len(findings) - MAX_SHOWN:,} more: run `arsl data validate {folder}` to list all"))
            )
        self.add_options(lines)
        self.set_class(bool(lines), "-shown")
