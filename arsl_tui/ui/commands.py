"""The command palette's provider: every registered App action, run through the same gate as its key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from arsl_tui.ui.keymap import ActionSpec, app_actions


class PaletteHost(Protocol):
    """What the provider needs of the console App."""

    def palette_state(self, spec: ActionSpec) -> str: ...

    def keys_for(self, spec: ActionSpec) -> list[str]: ...

    async def run_from_palette(self, spec: ActionSpec) -> None: ...


class ArslCommands(Provider):
    """Lists each action with its keys and whether it is available; choosing one calls the App's
    `run_from_palette`, which goes through `run_action`, so `check_action` (read-only mode included)
    applies exactly as for a key press."""

    @property
    def host(self) -> PaletteHost:
        return cast(PaletteHost, self.app)

    def _help(self, spec: ActionSpec) -> str:
        keys = ", ".join(self.host.keys_for(spec)) or "no key"
        state = self.host.palette_state(spec)
        return f"{spec.tooltip} [{keys}]" + (f" — {state}" if state else "")

    def _command(self, spec: ActionSpec) -> Callable[[], Awaitable[None]]:
        host = self.host

        async def run() -> None:
            await host.run_from_palette(spec)

        return run

    def _listed(self) -> list[ActionSpec]:
        return [spec for spec in app_actions() if spec.id != "app.palette"]

    async def discover(self) -> Hits:
        for spec in self._listed():
            yield DiscoveryHit(spec.title, self._command(spec), help=self._help(spec))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec in self._listed():
            score = max(matcher.match(spec.title), matcher.match(spec.id))
            if score > 0:
                yield Hit(
                    score, matcher.highlight(spec.title), self._command(spec), text=spec.title, help=self._help(spec)
                )
