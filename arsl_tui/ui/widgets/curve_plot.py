"""A learning-curve plot drawn with plotext (textual-plotext); imported only by `PlotSlot`, in a worker,
because plotext takes most of a second to import."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from arsl_tui.ui.curves import Chart


class CurvePlot(PlotextPlot):
    """Owns every plotext call: `show(chart)` redraws only when the chart changed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.shown: Chart | None = None
        self.draws = 0
        """How many times the plot was rebuilt (for tests of the refresh rate)."""

    def show(self, chart: Chart) -> None:
        if chart == self.shown:
            return
        self.shown = chart
        self.draws += 1
        plt = self.plt
        plt.clear_data()
        plt.title(chart.title)
        plt.xlabel(chart.x_label)
        for series in chart.series:
            if series.xs:
                plt.plot(list(series.xs), list(series.ys), label=series.label, marker=series.marker)
        self.refresh()
