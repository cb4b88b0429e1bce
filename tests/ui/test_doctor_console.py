"""The doctor on the Overview tab: `D` runs `arsl doctor`'s checks in a worker and shows the report."""

from __future__ import annotations

import dataclasses
import threading

from arsl_tui.config import GatewaySettings, Settings
from arsl_tui.ops.doctor import Check, DoctorReport, judge
from arsl_tui.ui.screens.doctor import DoctorScreen
from tests.ui.conftest import AppFactory, screen_text, settle


def quiet_port(settings: Settings) -> Settings:
    """Port 0 (any free port): the check must not depend on what else runs on this machine's 8765."""
    return dataclasses.replace(settings, gateway=GatewaySettings(port=0))


async def test_d_on_the_overview_shows_the_doctors_report(make_app: AppFactory, console_settings: Settings) -> None:
    app = make_app(quiet_port(console_settings))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.active_tab == "overview"
        await pilot.press("D")
        assert isinstance(app.screen, DoctorScreen)
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DoctorScreen) and screen.report is not None
        assert [check.name for check in screen.report.checks] == ["disk space", "gateway port", "torch"]
        text = screen_text(app)
        assert "✓ disk space" in text and "✓ gateway port" in text and "✓ torch" in text
        assert "local: every phase has what it needs" in text and "nothing missing" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, DoctorScreen)


async def test_the_doctor_runs_in_a_read_only_console(make_app: AppFactory, console_settings: Settings) -> None:
    app = make_app(quiet_port(console_settings), read_only=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("D")
        await settle(app, pilot)
        # The doctor changes nothing, so a read-only console offers it (the mutating actions are off).
        assert isinstance(app.screen, DoctorScreen) and app.screen.report is not None


async def test_a_failing_check_shows_its_fix_and_the_checks_run_off_the_ui_thread(make_app: AppFactory) -> None:
    app = make_app()
    threads: list[threading.Thread] = []

    def run() -> DoctorReport:
        threads.append(threading.current_thread())
        return judge(
            "huawei",
            [
                Check("credentials", True, "access key AKFA…", needed_by=("train",)),
                Check("training engine", False, "train.engine_version 'x' is not a preset", "set it", ("train",)),
            ],
        )

    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await app.push_screen(DoctorScreen("Doctor", run))
        await settle(app, pilot)
        text = screen_text(app)
        assert "✗ training engine: train.engine_version 'x' is not a preset" in text
        assert "fix: set it" in text and "huawei: cannot run yet: train" in text and "1 check(s) failed" in text
    assert threads and threads[0] is not threading.main_thread()


async def test_a_doctor_that_breaks_shows_why_instead_of_a_traceback(make_app: AppFactory) -> None:
    app = make_app()

    def run() -> DoctorReport:
        raise RuntimeError("probe exploded")

    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await app.push_screen(DoctorScreen("Doctor", run))
        await settle(app, pilot)
        assert "✗ the doctor could not finish: probe exploded" in screen_text(app)
