"""The whole pipeline from the console: the first-run offer, starting (a launcher records the command
line; nothing trains), following a run from its real event file, cancelling it, and read-only mode."""

from __future__ import annotations

import dataclasses
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input

from arsl_tui.ops.pipeline_log import EventLog, PipelineLock
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.form import FormScreen
from arsl_tui.ui.services import default_services
from arsl_tui.ui.tabs.overview import OverviewTab
from arsl_tui.ui.widgets.log_panel import LogPanel
from arsl_tui.ui.widgets.pipeline_line import PipelineLine
from arsl_tui.ui.widgets.status_line import StatusLine
from tests.ui.conftest import AppFactory, screen_text, settle, type_text, validate_folder
from tests.ui.fakes import DEMO_RUN, PipelineHolder, RecordingLauncher, RecordingSignals, pipeline_events

NOTHING_YET = "○ pipeline: nothing yet — press d on Overview (1) for the demo"


def line(app: ArslApp) -> str:
    return app.query_one(PipelineLine).text


def log_lines(app: ArslApp) -> str:
    return "\n".join(app.query_one("#log", LogPanel).recent)


async def follow(app: ArslApp, pilot: Pilot[Any]) -> None:
    """One read of the pipeline's files now (what the 1 s timer does), and its message handled."""
    app.read_pipeline_now()
    await settle(app, pilot)


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str) -> None:
    for _ in range(200):  # bounded: reads run in workers, their messages arrive a few pauses later
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def palette_says_off(app: ArslApp) -> bool:
    return "off: read-only mode" in " ".join(screen_text(app).split())  # the palette wraps long help


def recording_app(make_app: AppFactory, **options: Any) -> tuple[ArslApp, RecordingLauncher, RecordingSignals]:
    launcher, signals = RecordingLauncher(), RecordingSignals()
    services = dataclasses.replace(default_services(), launch_pipeline=launcher, signal_pipeline=signals)
    return make_app(services=services, **options), launcher, signals


async def test_an_empty_home_offers_the_demo_and_d_launches_it_detached(make_app: AppFactory, arsl_home: Path) -> None:
    app, launcher, _ = recording_app(make_app)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: line(app) == NOTHING_YET, "the first-run line")
        text = screen_text(app)
        assert "First run: nothing here yet (no upload, no model version, no pipeline run)." in text
        assert "9,600 synthetic images (300 a class, about 15.8 MB)" in text
        assert "About 3 minutes on two CPU cores" in text
        assert list(arsl_home.iterdir()) == []  # looking at an empty home created nothing in it
        await pilot.press("3")  # every tab says where the next step is
        assert app.active_tab == "training" and NOTHING_YET in screen_text(app)
        await pilot.press("1", "d")
        assert isinstance(app.screen, ConfirmScreen) and not launcher.launches  # it asks first, like every action
        assert "the demo" in screen_text(app)
        await pilot.press("y")
        await until(pilot, lambda: len(launcher.launches) == 1, "the launch after the yes")
        launch = launcher.launches[0]
        assert launch.command == (
            sys.executable,
            "-m",
            "arsl_tui",
            "pipeline",
            "run",
            "--demo",
            "--yes",
            "--backend",
            "local",
        )
        assert launch.environment["ARSL_HOME"] == str(arsl_home)
        assert launch.log_path.parent == arsl_home / "pipeline"
        assert line(app) == "► pipeline starting (process 4242) …"
        assert "First run" not in screen_text(app)  # the offer gives way to the run
        assert app.screen.active_bindings["X"].binding.id == "pipeline.cancel"
        assert "d" not in app.screen.active_bindings or not app.screen.active_bindings["d"].enabled
        await pilot.press("d")
        assert len(launcher.launches) == 1  # no second run while this one starts


async def test_S_asks_for_the_folder_then_confirms_and_a_no_starts_nothing(
    make_app: AppFactory, arsl_home: Path, tiny_dataset: Path
) -> None:
    app, launcher, _ = recording_app(make_app)
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, tiny_dataset)
        await pilot.press("escape", "1", "S")
        assert isinstance(app.screen, FormScreen)
        field = app.screen.query_one("#field-dataset", Input)
        assert field.value == str(tiny_dataset)  # what the Upload tab validated
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmScreen)
        body = "\n".join(app.screen.what_happens)
        assert f"Backend local, home {arsl_home}" in body and f"Data set: {tiny_dataset} (not the demo)." in body
        assert "goes on if you quit the console" in body
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen | FormScreen) and launcher.launches == []

        await pilot.press("S")
        field = app.screen.query_one("#field-dataset", Input)
        field.value = str(arsl_home / "nope")
        await pilot.press("enter")
        assert isinstance(app.screen, FormScreen)
        error = app.screen.query_one("#form-error", StatusLine).message
        assert error == f"✗ data set folder: '{arsl_home / 'nope'}' is not a folder"
        field.value = "demo"
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Data set: the demo — 9,600 synthetic images" in "\n".join(app.screen.what_happens)
        await pilot.press("y")
        assert [launch.command[5:] for launch in launcher.launches] == [("--demo", "--yes", "--backend", "local")]


async def test_the_pipeline_line_follows_a_run_from_its_event_file_on_every_tab(
    make_app: AppFactory, arsl_home: Path
) -> None:
    events = pipeline_events()
    lock = PipelineLock.acquire(arsl_home, DEMO_RUN)  # a live run, as `run_pipeline` holds it
    log = EventLog(arsl_home, DEMO_RUN)
    app = make_app()
    try:
        for payload in events[:6]:  # through the start of the champion's training
            log.write(payload)
        async with app.run_test(size=(80, 24)) as pilot:
            await follow(app, pilot)
            assert re.fullmatch(
                r"pipeline p2026…ab12 ► champion: no champion yet: training seed 1 · \d+s", line(app)
            ), line(app)
            for payload in events[6:]:
                log.write(payload)
            with open(log.path, "ab") as raw:  # the next event, half written
                raw.write(b'{"event": "PipelineProgress", "phase": "champion", "detail": "job-2026')
            await follow(app, pilot)
            assert re.fullmatch(
                r"pipeline p2026…ab12 ► champion: job…3f2a epoch 4/10: val_acc 0\.912 · \d+s", line(app)
            ), line(app)
            text = screen_text(app)
            assert f"Pipeline {DEMO_RUN} (demo) · ► running" in text and "X cancels" in text
            assert "✓ data  ✓ upload  ► champion  ○ train  ○ gate  ○ deploy  ○ canary  ○ alarms" in text
            assert "✓ upload: data set 6e7df9092327" in text
            await pilot.press("5")
            assert "► champion: job…3f2a epoch 4/10" in screen_text(app)

            log.close()
            lock.release()  # the runner is gone without a PipelineEnded
            await follow(app, pilot)
            assert re.fullmatch(
                r"pipeline p2026…ab12 ▲ interrupted in champion · \d+s — run it again to resume", line(app)
            ), line(app)
            assert (
                f"Pipeline {DEMO_RUN}: interrupted in champion — its process ended without finishing "
                "during champion (killed?); run it again to resume"
            ) in log_lines(app)

            later = "p20260101-110000-cd34"  # a newer run, complete
            finished = EventLog(arsl_home, later)
            for payload in pipeline_events(later, through="promoted"):
                finished.write(payload)
            finished.close()
            await follow(app, pilot)
            assert line(app).startswith("pipeline p2026…cd34 ✓ promoted v2 · 11m02s · ended "), line(app)
            assert len(line(app)) <= 80
    finally:
        log.close()
        lock.release()


async def test_X_cancels_a_run_started_elsewhere_and_reports_how_it_ended(
    make_app: AppFactory, arsl_home: Path
) -> None:
    holder = PipelineHolder(arsl_home, events=pipeline_events())  # as if `arsl pipeline run` ran in a terminal
    try:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await follow(app, pilot)
            assert "► champion" in line(app)
            await pilot.press("X")
            assert isinstance(app.screen, ConfirmScreen)
            assert app.screen.what_happens[0] == (
                f"Sends SIGINT to process group {holder.pid} (pipeline run "
                f"{DEMO_RUN}), as Ctrl-C in its terminal would."
            )
            await pilot.press("n")  # refused: the run goes on
            assert holder.process.poll() is None
            await pilot.press("X", "y")
            assert holder.wait() == 130
            await follow(app, pilot)
            assert line(app) == "pipeline p2026…ab12 ■ cancelled in champion · 2s — run it again to resume"
            assert f"SIGINT sent to process group {holder.pid}" in log_lines(app)
            assert (
                f"Pipeline {DEMO_RUN}: cancelled in champion — interrupted (SIGINT); run it again to resume"
            ) in log_lines(app)
            assert "X" not in app.screen.active_bindings or not app.screen.active_bindings["X"].enabled
    finally:
        holder.close()


async def test_read_only_refuses_starting_and_cancelling_by_key_and_palette(
    make_app: AppFactory, arsl_home: Path
) -> None:
    app, launcher, signals = recording_app(make_app, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.query_one(OverviewTab).first_run, "the first-run offer")
        assert "read-only" in line(app)
        for key in ("d", "S"):
            assert app.screen.active_bindings[key].enabled is False  # shown, greyed
            await pilot.press(key)
            assert not isinstance(app.screen, FormScreen | ConfirmScreen), key
        await pilot.press("ctrl+p")
        await type_text(pilot, "run the demo")
        await until(pilot, lambda: palette_says_off(app), "the palette's read-only mark")
        await pilot.press("enter")
        await settle(app, pilot)
        assert not isinstance(app.screen, CommandPalette | FormScreen | ConfirmScreen)
        assert "Pipeline: generate the demo data set and run the whole demo: read-only mode is on" in log_lines(app)

        lock = PipelineLock.acquire(arsl_home, DEMO_RUN)
        log = EventLog(arsl_home, DEMO_RUN)
        try:
            for payload in pipeline_events():
                log.write(payload)
            await follow(app, pilot)
            assert "► champion" in line(app)
            assert app.screen.active_bindings["X"].enabled is False
            await pilot.press("X")
            assert not isinstance(app.screen, ConfirmScreen)
            await pilot.press("ctrl+p")
            await type_text(pilot, "cancel the running")
            await until(pilot, lambda: palette_says_off(app), "the palette's read-only mark")
            await pilot.press("enter")
            await settle(app, pilot)
            assert "Pipeline: cancel the running pipeline: read-only mode is on" in log_lines(app)
        finally:
            log.close()
            lock.release()
    assert launcher.launches == [] and signals.sent == []
    assert signal.SIGINT not in [sent[2] for sent in signals.sent]
