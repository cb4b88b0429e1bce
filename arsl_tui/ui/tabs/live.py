"""The base of the tabs that read a backend: they read only while visible, at most once per interval."""

from __future__ import annotations

from collections.abc import Callable

from textual.containers import Vertical
from textual.timer import Timer


class LiveTab(Vertical):
    """A tab whose reads run in workers on a timer that is paused while the tab is hidden."""

    focus_id = ""
    """The widget that gets the focus when the tab is shown (its list, so arrow keys work at once)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="live-tab")
        self._timer: Timer | None = None

    def on_mount(self) -> None:
        # A tab mounted lazily (after the first frame) may be the one shown already.
        if self.parent is not None and getattr(self.app, "active_tab", None) == self.parent.id:
            self.set_visible(True)
            self.focus_default()

    def focus_default(self) -> None:
        """Focus `focus_id` once the tab is on screen, unless the focus is in this tab already.

        The focus must leave a hidden tab: TabbedContent shows the pane that holds the focused widget.
        """
        self.call_after_refresh(self._focus_default_now)

    def _focus_default_now(self) -> None:
        if self.parent is None or getattr(self.app, "active_tab", None) != self.parent.id:
            return  # the user moved on meanwhile
        focused = self.screen.focused
        if focused is not None and self in focused.ancestors_with_self:
            return
        if self.focus_id:
            self.screen.set_focus(self.query_one(f"#{self.focus_id}"))

    def start_timer(self, interval_s: float, callback: Callable[[], object]) -> None:
        """Call from `on_mount`: the timer starts paused; the App resumes it when the tab is shown."""
        self._timer = self.set_interval(interval_s, callback, pause=True)

    def reload(self) -> None:
        """Read now (subclasses start their worker here)."""
        raise NotImplementedError

    def set_visible(self, visible: bool) -> None:
        if self._timer is None:
            return
        if visible:
            # After the next refresh, so the tab (and the console's first frame) is on screen before the
            # worker starts importing and reading.
            self.call_after_refresh(self.reload)
            self._timer.resume()
        else:
            self._timer.pause()
