"""The Overview (home) tab: the pipeline first, every phase from `ops.status.collect`, what to do next (one
source for every hint), read in a worker."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from arsl_tui.config import Settings
from arsl_tui.ops.pipeline_log import EventLog, PipelineLock
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.ops.status import PhaseState, StatusReport
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.services import default_services
from arsl_tui.ui.tabs.overview import OverviewTab, PhasesTable
from arsl_tui.ui.widgets.header import ArslHeader
from arsl_tui.ui.widgets.status_line import StatusLine
from tests.fixtures.registry_checks import register
from tests.ui.conftest import AppFactory, screen_text, settle
from tests.ui.fakes import DEMO_RUN, fixed_report, pipeline_events

NOTHING_WAITS = "✓ Nothing waits on you: every phase is done or running."


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
    quiet = fixed_report(
        [
            (name, PhaseState.DONE, f"{name} fine", "")
            for name in ("data", "training", "models", "service", "canary", "alarms")
        ]
    )
    current = [quiet]
    services = dataclasses.replace(default_services(), collect_status=lambda _: current[0])
    app = ArslApp(console_settings, theme="arsl-dark", services=services)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert next_line(app) == NOTHING_WAITS
        overview = app.query_one(OverviewTab)
        loads = overview.loads
        current[0] = fixed_report()  # an alarm fired meanwhile
        overview.reload()  # what the refresh timer calls
        await settle(app, pilot)
        assert overview.loads > loads
        assert next_line(app) == "▲ Next (alarms): arsl alarms list — or the Alarms tab (6)"
        assert "▲ attention" in screen_text(app) and "1 in alarm: arsl-err" in screen_text(app)
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


def suggestions(app: ArslApp) -> list[str]:
    """The table's next column, row by row."""
    return [row[3] for row in app.query_one(PhasesTable).shown]


def reporting(report: StatusReport) -> Any:
    return dataclasses.replace(default_services(), collect_status=lambda _: report)


async def read_pipeline(app: ArslApp, pilot: Pilot[Any]) -> None:
    app.read_pipeline_now()
    await settle(app, pilot)


async def test_a_running_pipeline_comes_first_and_no_row_suggests_a_step_it_is_about_to_take(
    console_settings: Settings, arsl_home: Path
) -> None:
    lock = PipelineLock.acquire(arsl_home, DEMO_RUN)  # a live run, as `arsl pipeline run` holds it
    log = EventLog(arsl_home, DEMO_RUN)
    app = ArslApp(console_settings, theme="arsl-dark", services=reporting(fixed_report()))
    try:
        for payload in pipeline_events():
            log.write(payload)
        async with app.run_test(size=(80, 24)) as pilot:
            await read_pipeline(app, pilot)
            lines = screen_text(app).splitlines()
            run_line = next(index for index, line in enumerate(lines) if f"Pipeline {DEMO_RUN}" in line)
            workflow = next(index for index, line in enumerate(lines) if line.strip() == "Workflow")
            assert run_line < workflow  # the pipeline first
            assert next_line(app) == "► Next (pipeline): arsl pipeline watch — it runs the next steps; X cancels"
            assert suggestions(app) == ["–"] * 6  # not `arsl gate …`, not `arsl deploy …`: the run does those
            assert "▲ attention" in screen_text(app)  # the state is still shown, only the suggestions wait

            for payload in pipeline_events(through="promoted")[len(pipeline_events()) :]:
                log.write(payload)
            log.close()
            lock.release()  # the run ended (promoted)
            await read_pipeline(app, pilot)
            assert next_line(app) == "▲ Next (alarms): arsl alarms list — or the Alarms tab (6)"
            assert suggestions(app) == [
                "–",
                "arsl gate job-good",
                "arsl deploy v2 --canary 10",
                "–",
                "arsl canary watch",
                "arsl alarms list",
            ]
    finally:
        log.close()
        lock.release()


async def test_nothing_waits_is_never_said_beside_a_suggestion_and_no_suggestion_is_cut(
    console_settings: Settings,
) -> None:
    job = "job-20260101-100400-77aa"
    report = fixed_report(
        [
            ("data", PhaseState.DONE, "data set c0ffeec0ffee in local:/srv/arsl/store/arsl-ml/datasets/c0ffee…/", ""),
            ("training", PhaseState.RUNNING, f"job {job} Running", f"arsl train watch {job}"),
            ("models", PhaseState.DONE, "champion v1, challenger —", ""),
            ("service", PhaseState.NONE, "nothing deployed", "arsl deploy champion"),
            ("canary", PhaseState.DONE, "v2 vs v1: promoted, step 4/4 at 100%", ""),
            ("alarms", PhaseState.DONE, "4 rules, none in alarm (0 without data)", ""),
        ]
    )
    app = ArslApp(console_settings, theme="arsl-dark", services=reporting(report))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert next_line(app) == "○ Next (service): arsl deploy champion — or the Canary tab (5)"
        text = screen_text(app)
        assert "arsl deploy champion" in text  # whole at 80 columns
        lines = text.splitlines()
        watch = next(index for index, line in enumerate(lines) if line.rstrip().endswith("arsl train watch"))
        assert lines[watch + 1].rstrip().endswith(job)  # wrapped at the space, the id whole on the next line

    running_only = fixed_report(
        [(name, PhaseState.DONE, f"{name} fine", "") for name in ("data", "models", "service", "canary", "alarms")]
        + [("training", PhaseState.RUNNING, f"job {job} Running", f"arsl train watch {job}")]
    )
    app = ArslApp(console_settings, theme="arsl-dark", services=reporting(running_only))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert next_line(app) == f"► Next (training): arsl train watch {job} — or the Training tab (3)"
        assert next_line(app) != NOTHING_WAITS and f"arsl train watch {job}" in suggestions(app)


async def test_after_a_promotion_the_header_shows_the_champion_and_no_challenger(
    console_settings: Settings, tmp_path: Path
) -> None:
    registry = ModelRegistry.from_settings(console_settings)
    register(registry, tmp_path / "scratch", 1)
    register(registry, tmp_path / "scratch", 2)
    app = ArslApp(console_settings, theme="arsl-dark")  # the real `collect` on the real registry
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        header = app.query_one("#header", ArslHeader)
        assert (header.champion, header.challenger) == ("v1", "v2")
        registry.set_alias("champion", "v2", "canary c1: promoted after 4 steps", "ann")  # what a promotion writes
        app.query_one(OverviewTab).reload()
        await settle(app, pilot)
        assert (header.champion, header.challenger) == ("v2", "–")
        assert "champion v2 challenger –" in screen_text(app).splitlines()[0]
        assert "champion v2, challenger —" in screen_text(app)
