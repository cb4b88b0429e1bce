"""The base of the tabs that read a backend: they read in thread workers, only while visible, at most once
per interval, never two reads at a time, through adapters each opened once and closed with the tab."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar, cast

from textual.timer import Timer

from arsl_tui.backends import backend_for
from arsl_tui.config import Settings
from arsl_tui.ui.services import ConsoleServices, close_quietly
from arsl_tui.ui.tabs.body import TabBody

AdapterT = TypeVar("AdapterT")


def poll_interval(settings: Settings, cloud_min_s: float) -> float:
    """`[console] refresh_s` (≥ 1 s), and no faster than `cloud_min_s` on a backend that is not on this machine."""
    interval = max(1.0, settings.console.refresh_s)
    return interval if backend_for(settings).runs_here else max(interval, cloud_min_s)


class LiveTab(TabBody):
    """A tab whose reads run in workers on a timer that is paused while the tab is hidden."""

    focus_id = ""
    """The widget that gets the focus when the tab is shown (its list, so arrow keys work at once)."""

    def __init__(self, settings: Settings, services: ConsoleServices, *, id: str | None = None) -> None:
        super().__init__(settings, services, id=id, classes="live-tab")
        self._timer: Timer | None = None
        self._reading = False
        self._adapters: dict[str, object] = {}
        """Opened by the worker threads (under the lock), closed when the tab is unmounted."""
        self._open_lock = threading.Lock()

    def on_mount(self) -> None:
        # A tab mounted lazily (after the first frame) may be the one shown already.
        if self.parent is not None and getattr(self.app, "active_tab", None) == self.parent.id:
            self.set_visible(True)
            self.focus_default()

    def on_unmount(self) -> None:
        for adapter in self._adapters.values():
            close_quietly(adapter)

    # ----- reading ------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read now, unless the last read is still running (a slow backend never piles up workers)."""
        if self.begin_read():
            self.read()

    def read(self) -> None:
        """Start the read worker; its message's handler calls `read_ended`."""
        raise NotImplementedError

    def begin_read(self) -> bool:
        """Mark a read as started; False while the last one is still running."""
        if self._reading:
            return False
        self._reading = True
        return True

    def read_ended(self) -> None:
        self._reading = False

    def adapter(self, name: str, open_adapter: Callable[[], AdapterT]) -> AdapterT:
        """The adapter called `name`, opened on first use by whichever worker thread needs it first."""
        with self._open_lock:
            if name not in self._adapters:
                self._adapters[name] = open_adapter()
            return cast(AdapterT, self._adapters[name])

    # ----- visibility ---------------------------------------------------------------------------

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
