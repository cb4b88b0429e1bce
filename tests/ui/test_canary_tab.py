"""The Canary tab over a real `CanaryController` (real registry and state file, an in-memory serving platform)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.domain.canary import Command
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.services import default_services
from arsl_tui.ui.widgets.status_line import StatusLine
from tests.ui.conftest import screen_text, settle
from tests.ui.fakes import CanaryWorld, canary_world


def canary_app(world: CanaryWorld, **options: Any) -> ArslApp:
    services = dataclasses.replace(default_services(), open_canary=lambda _: world.controller(), clock=world.clock)
    return ArslApp(world.settings, theme="arsl-dark", services=services, **options)


def at_second_step(root: Path, quality: str = "good") -> CanaryWorld:
    """v2 passed its first window (10 %) and has served 25 % for two minutes."""
    world = canary_world(root, quality)
    world.start()
    world.window_passes()
    world.window_passes(120)
    return world


async def test_split_numbers_verdicts_and_a_confirmed_step_up(tmp_path: Path) -> None:
    world = at_second_step(tmp_path)
    app = canary_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(app, pilot)
        text = screen_text(app)
        assert "v2 vs champion v1 · ► observing · step 2/4 · window ends in 3 min 00 s" in text
        assert "v1  75% ████" in text and "▒▒▒  25% v2" in text
        assert "plan  ✓ 10% → ► 25% → 50% → 100%" in text
        assert "now (so far)" in text and "✓ pass 100" in text
        await pilot.press("P")
        assert isinstance(app.screen, ConfirmScreen)
        said = "\n".join(app.screen.what_happens)
        assert "Move v2 from 25% to 50%" in said and "v1 75% / v2 25% → v1 50% / v2 50%" in said
        await pilot.press("n")
        assert world.platform.weights == {"v1": 75, "v2": 25}
        await pilot.press("P", "y")
        await settle(app, pilot)
        assert world.platform.weights == {"v1": 50, "v2": 50}
        assert app.query_one("#canary-status", StatusLine).message.startswith("✓ promote: observing — stepped to 50%")
        await pilot.press("X")
        assert isinstance(app.screen, ConfirmScreen)
        assert "v1 50% / v2 50% → v1 100% / v2 0%" in "\n".join(app.screen.what_happens)
        await pilot.press("y")
        await settle(app, pilot)
        assert world.platform.weights == {"v1": 100, "v2": 0}
        assert "✗ rolled back" in screen_text(app)
        assert "X" not in app.screen.active_bindings  # an ended canary offers no keys


async def test_an_automatic_rollback_is_an_alarm_banner_with_the_reason(tmp_path: Path) -> None:
    world = canary_world(tmp_path, "bad")
    world.start()
    world.window_passes()
    app = canary_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(app, pilot)
        banner = app.query_one("#canary-alarm", StatusLine)
        assert banner.display
        assert banner.message.startswith(
            "✗ ALARM — automatic rollback at 10%: critical metric failed: online "
            "accuracy 0.00% is under the limit 90.00%"
        )
        assert "✗ fail 0" in screen_text(app) and "✗ Low" in screen_text(app)


async def test_a_command_on_a_run_that_moved_on_is_refused_with_a_message(tmp_path: Path) -> None:
    world = at_second_step(tmp_path)
    app = canary_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(app, pilot)
        other = world.controller()  # another operator pauses it from a shell meanwhile
        try:
            other.command(Command.PAUSE)
        finally:
            other.close()
        await pilot.press("P", "y")
        await settle(app, pilot)
        message = app.query_one("#canary-status", StatusLine).message
        assert message.startswith("✗ promote not done: the canary changed since it was shown")
        assert world.platform.weights == {"v1": 75, "v2": 25}
        assert "‖ paused" in screen_text(app)  # read again after the refusal


def promoted(root: Path) -> CanaryWorld:
    """Every window passed: v2 went 10 % → 25 % → 50 % → 100 % and is champion."""
    world = canary_world(root)
    world.start()
    for _ in range(4):
        world.window_passes()
    controller = world.controller()
    try:
        run = controller.current()
    finally:
        controller.close()
    assert run is not None and run.phase.value == "promoted"
    return world


@pytest.mark.usefixtures("utc")
async def test_a_promoted_release_shows_what_it_served_and_why_latency_was_not_scored(tmp_path: Path) -> None:
    world = promoted(tmp_path)
    controller = world.controller()
    try:
        last = controller.current().judgements[-1]
    finally:
        controller.close()
    judged = last["judgement"]
    latency = next(metric for metric in judged["metrics"] if metric["name"] == "latency")
    assert (judged["outcome"], latency["classification"]) == ("pass", "NoData")
    app = canary_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(app, pilot)
        text = screen_text(app)
        # No live window after the promotion: the numbers are the last judged window's, and say so.
        assert "numbers: last window 10:15–10:20" in text
        v2 = next(line for line in text.splitlines() if line.split()[:2] == ["v2", "champion"])
        assert f"{judged['canary_requests']:,}" in v2 and "–" not in v2.split("100%", 1)[1]
        v1 = next(line for line in text.splitlines() if line.split()[:2] == ["v1", "previous"])
        assert f" {judged['baseline_requests']} " in v1  # the old champion served none of the 100 % window
        note = " ".join(text.split())
        assert "10:20 at 100%: ✓ pass, score 100 from the 3 metrics with data." in note
        assert f"latency: no data (not scored) — {latency['reason']} (v2 {latency['canary_n']:,}, v1 0 samples)" in note
        await pilot.press("down")  # the note follows the highlighted verdict
        await pilot.pause()
        assert "10:15 at 50%: ✓ pass — score 100: every metric passed" in " ".join(screen_text(app).split())
