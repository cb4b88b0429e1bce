"""Where a learning-curve plot goes: text (the last values) until plotext is loaded, then the plot.

plotext is imported in a worker thread the first time a chart is shown, so neither the console's
start nor a tab switch waits for it. If it cannot be imported, the text stays (a readable fallback).
"""

from __future__ import annotations

import importlib

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Container
from textual.message import Message
from textual.widgets import Static

from arsl_tui.ui.curves import Chart

PLOT_MODULE = "arsl_tui.ui.widgets.curve_plot"


class PlotSlot(Container):
    DEFAULT_CSS = """
    PlotSlot { height: 1fr; width: 1fr; }
    PlotSlot > .plot-fallback { color: $text-muted; height: 1fr; }
    """

    class ModuleLoaded(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.chart: Chart | None = None
        self.plot: object | None = None
        """The `CurvePlot`, once mounted."""
        self.load_error = ""
        self._loading = False

    def compose(self) -> ComposeResult:
        yield Static("", classes="plot-fallback", markup=False)

    def show(self, chart: Chart) -> None:
        self.chart = chart
        show = getattr(self.plot, "show", None)
        if show is not None:
            show(chart)
            return
        self.query_one(".plot-fallback", Static).update(Text(chart.summary()))
        if not self._loading and not self.load_error:
            self._loading = True
            self._import_worker()

    @work(thread=True, group="plot-import", exit_on_error=False)
    def _import_worker(self) -> None:
        try:
            importlib.import_module(PLOT_MODULE)
        except Exception as error:  # no plotext here: the text fallback stays
            self.post_message(self.ModuleLoaded(f"{type(error).__name__}: {error}"))
        else:
            self.post_message(self.ModuleLoaded(""))

    async def on_plot_slot_module_loaded(self, message: ModuleLoaded) -> None:
        message.stop()
        self._loading = False
        if message.error:
            self.load_error = message.error
            return
        module = importlib.import_module(PLOT_MODULE)
        plot = module.CurvePlot()
        await self.query_one(".plot-fallback", Static).remove()
        await self.mount(plot)
        self.plot = plot
        if self.chart is not None:
            plot.show(self.chart)
