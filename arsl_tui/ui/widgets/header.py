"""The top line: which backend, region, project and bucket the console acts on, and the model versions."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from arsl_tui.backends import backend_for
from arsl_tui.config import Settings


class ArslHeader(Static):
    """One line of facts about where the console points; hidden with `H`."""

    champion: reactive[str] = reactive("–")
    """Version serving most traffic, filled once the registry exists."""
    challenger: reactive[str] = reactive("–")
    read_only: reactive[bool] = reactive(False)

    def __init__(self, settings: Settings, *, read_only: bool, id: str | None = None) -> None:
        super().__init__(id=id)
        self._settings = settings
        self._backend = backend_for(settings)
        self.set_reactive(ArslHeader.read_only, read_only)

    def render(self) -> Text:
        settings, backend = self._settings, self._backend
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" arsl ", style="bold reverse")
        if self.read_only:
            line.append(" READ-ONLY ", style="bold reverse")
        facts = (
            ("backend", backend.name),
            ("region", backend.region),
            ("project", backend.project),
            ("bucket", settings.storage.bucket),
            ("champion", self.champion),
            ("challenger", self.challenger),
        )
        for label, value in facts:
            line.append(f" {label} ", style="dim")
            line.append(value, style="bold")
        return line
