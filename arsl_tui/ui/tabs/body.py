"""The base of every tab's content: the tab owns the actions of its scope in the keymap registry.

A tab implements each action of its scope as `action_<name>` (checked when the class is made). The keys
are bound on the App (`keymap.bindings_for("app")`), so they work wherever the focus is, the footer shows
them and `[keymap]` remaps them by id; the App's action for each is made from the registry and runs the
tab's. Whether an action can run is asked of the console's one gate, `ArslApp.check_action`, which asks
the tab's `availability`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.containers import Vertical

from arsl_tui.backends import Backend, backend_for
from arsl_tui.config import Settings
from arsl_tui.ui.keymap import actions_of
from arsl_tui.ui.messages import Logged
from arsl_tui.ui.services import ConsoleServices


class TabBody(Vertical):
    """One tab's content, the owner of its scope's actions."""

    scope: ClassVar[str] = ""
    """The tab id whose actions (`ActionSpec.scope`) this body runs; empty for an abstract base."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [
            spec.id for spec in actions_of(cls.scope) if not callable(getattr(cls, f"action_{spec.action_name}", None))
        ]
        if missing:
            raise TypeError(f"{cls.__name__} owns the {cls.scope} actions but does not implement {', '.join(missing)}")

    def __init__(
        self, settings: Settings, services: ConsoleServices, *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.settings = settings
        self.services = services
        self.backend: Backend = backend_for(settings)

    def availability(self, action: str) -> bool | None:
        """What the tab's state allows: True runnable, None shown but off, False not offered now."""
        return True

    def current_id(self) -> str:
        """The id on this tab most worth copying (`y`); empty when there is none."""
        return ""

    def _log(self, level: str, text: str) -> None:
        self.post_message(Logged(level, text))
