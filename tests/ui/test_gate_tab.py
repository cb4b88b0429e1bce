"""The Gate tab with the real gate and the real registry on a temporary home: register, override, versions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual.widgets import DataTable, Select

from arsl_tui.config import Settings
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.form import FormScreen
from arsl_tui.ui.services import default_services
from arsl_tui.ui.widgets.log_panel import LogPanel
from arsl_tui.ui.widgets.status_line import StatusLine
from tests.fixtures.model_packages import write_package
from tests.ui.conftest import screen_text, settle, type_text
from tests.ui.fakes import RecordedPlatform, clock_at, recorded_platform


def gate_app(settings: Settings, platform: RecordedPlatform, **options: object) -> ArslApp:
    services = dataclasses.replace(
        default_services(), open_training_platform=lambda _: platform, clock=clock_at(1_767_261_600.0)
    )
    return ArslApp(settings, theme="arsl-dark", services=services, **options)  # type: ignore[arg-type]


def platform_with_packages(root: Path) -> RecordedPlatform:
    """Every recorded job writes its output (a model package) under `root/<job>`."""
    platform = recorded_platform()
    for job in platform.jobs:
        output = root / job.status.job_id
        write_package(output / "model", seed=len(job.status.job_id), job_id=job.status.job_id)
        job.status = dataclasses.replace(job.status, output=str(output))
    return platform


def logged(app: ArslApp) -> str:
    return "\n".join(app.query_one("#log", LogPanel).recent)


def verdict(app: ArslApp) -> str:
    return app.query_one("#gate-verdict", StatusLine).message


async def pick_job(app: ArslApp, pilot: object, job_id: str) -> None:
    """Choose a job with the keyboard: focus the picker, open it, move to the job, Enter."""
    picker = app.query_one("#gate-job", Select)
    picker.focus()
    await pilot.press("enter")  # type: ignore[attr-defined]
    options = [value for _, value in app.gate_tab._job_options]
    steps = options.index(job_id) - options.index(str(picker.value))
    for _ in range(abs(steps)):
        await pilot.press("down" if steps > 0 else "up")  # type: ignore[attr-defined]
    await pilot.press("enter")  # type: ignore[attr-defined]
    await settle(app, pilot)  # type: ignore[arg-type]


async def test_a_passing_job_is_registered_after_confirmation(console_settings: Settings, tmp_path: Path) -> None:
    app = gate_app(console_settings, platform_with_packages(tmp_path / "outputs"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(app, pilot)
        assert app.gate_tab.selected == "job-weak"  # the newest finished job
        assert verdict(app).startswith("✗ FAIL: 5/6 rules failed")
        await pick_job(app, pilot, "job-good")
        assert verdict(app) == "✓ PASS: 6/6 rules (no champion yet) — R registers it as the next version."
        rules = app.query_one("#gate-rules", DataTable)
        assert [str(rules.get_row(key)[0]) for key in rules.rows] == ["✓ pass"] * 6
        assert str(rules.get_row("class_floor")[4]) == "worst class: ain"
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        said = "\n".join(app.screen.what_happens)
        assert "challenger and champion (there is none yet)" in said
        await pilot.press("y")
        await settle(app, pilot)
        assert "job-good registered as v1 (champion and challenger)" in logged(app)
        assert verdict(app) == "✓ PASS: 8/8 rules (vs champion v1); registered as v1."  # evaluated again
        registry = ModelRegistry.from_settings(console_settings)
        assert registry.aliases() == {"challenger": "v1", "champion": "v1"}
        assert app.screen.active_bindings["R"].enabled is False  # registered: nothing more to do
        await pilot.press("v", "v", "v")
        text = screen_text(app)
        assert "[versions]" in text and "champion, challenger" in text and "job-good" in text


async def test_a_failing_job_needs_a_typed_reason_to_be_registered(console_settings: Settings, tmp_path: Path) -> None:
    app = gate_app(console_settings, platform_with_packages(tmp_path / "outputs"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(app, pilot)
        assert "R register" not in screen_text(app)  # a failed job offers only the override
        await pilot.press("R")
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("O")
        assert isinstance(app.screen, FormScreen)
        await pilot.press("enter")
        assert "a reason is required" in screen_text(app)
        await type_text(pilot, "demo build for the sign-in kiosk")
        await pilot.press("enter")
        await settle(app, pilot)
        assert "job-weak registered by override as v1 (challenger)" in logged(app)
        assert verdict(app).endswith("registered by override as v1.")
        log = ModelRegistry.from_settings(console_settings).log()
        assert (log[0].action, log[0].reason) == ("override", "demo build for the sign-in kiosk")
        await pilot.press("v", "v")
        assert "No champion yet" in screen_text(app)


async def test_an_unreadable_metrics_file_is_a_message(console_settings: Settings) -> None:
    platform = recorded_platform()
    weak = next(job for job in platform.jobs if job.status.job_id == "job-weak")
    weak.records = [{"type": "epoch", "epoch": 1, "train_loss": "high"}]
    weak.revealed = 1
    app = gate_app(console_settings, platform)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(app, pilot)
        assert verdict(app) == "✗ job-weak: metrics record 1: field 'train_loss' is 'high', expected a number"
        assert app.screen.active_bindings["R"].enabled is False and "O" not in app.screen.active_bindings
        await pick_job(app, pilot, "job-good")
        assert verdict(app).startswith("✓ PASS")
