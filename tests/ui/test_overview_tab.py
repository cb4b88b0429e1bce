"""The Overview (home) tab: every phase from `ops.status.collect`, what to do next, read in a worker."""

from __future__ import annotations

import dataclasses

from arsl_tui.config import Settings
from arsl_tui.ops.status import PhaseState, StatusReport
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.services import default_services
from arsl_tui.ui.tabs.overview import OverviewTab, PhasesTable
from arsl_tui.ui.widgets.header import ArslHeader
from arsl_tui.ui.widgets.status_line import StatusLine
from tests.ui.conftest import AppFactory, screen_text, settle
from tests.ui.fakes import fixed_report


def next_line(app: ArslApp) -> str:
    return app.query_one("#next-step", StatusLine).message


async def test_a_fresh_home_shows_every_phase_and_enter_opens_a_phase_tab(make_app: AppFactory) -> None:
    app = make_app()  # the real `collect` on an empty home
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.active_tab == "overview"
        text = screen_text(app)
        assert "○ data → ○ training → ○ models → ○ service → ○ canary → ○ alarms" in text
        assert "no training job yet" in text and "arsl train submit (3)" in text
        assert next_line(app) == "○ Next (data): arsl upload DIR — or the Upload tab (2)"
        table = app.query_one(PhasesTable)
        table.focus()
        await pilot.press("down", "enter")
        assert app.active_tab == "training"


async def test_each_refresh_reads_again_and_the_header_follows_the_registry(console_settings: Settings) -> None:
    quiet = fixed_report([(name, PhaseState.DONE, f"{name} fine", "") for name in
                          ("data", "training", "models", "service", "canary", "alarms")])
    current = [quiet]
    services = dataclasses.replace(default_services(), collect_status=lambda _: current[0])
    app = ArslApp(console_settings, theme="arsl-dark", services=services)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert next_line(app) == "✓ Nothing waits on you: every phase is done or running."
        overview = app.query_one(OverviewTab)
        loads = overview.loads
        current[0] = fixed_report()  # an alarm fired meanwhile
        overview.reload()  # what the refresh timer calls
        await settle(app, pilot)
        assert overview.loads > loads
        assert next_line(app) == "▲ Next (alarms): arsl alarms list — or the Alarms tab (6)"
        assert "▲ attention" in screen_text(app) and "1 in alarm: arsl-error-rate" in screen_text(app)
        header = app.query_one("#header", ArslHeader)
        assert (header.champion, header.challenger) == ("v1", "v2")


async def test_a_failing_status_read_is_a_message_and_the_console_keeps_running(console_settings: Settings) -> None:
    def broken(settings: Settings) -> StatusReport:
        raise RuntimeError("state file locked by another program")

    services = dataclasses.replace(default_services(), collect_status=broken)
    app = ArslApp(console_settings, theme="arsl-dark", services=services)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert next_line(app) == "✗ Cannot read the workflow's status: state file locked by another program"
        assert "Traceback" not in screen_text(app)
        await pilot.press("6")
        assert app.active_tab == "alarms" and app.is_running
