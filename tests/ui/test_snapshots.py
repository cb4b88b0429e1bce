"""SVG snapshots of every tab and dialog at 80×24 (plus one large size), with deterministic data.

Everything time-, path- or encoder-dependent is fixed: settings point at `/srv/arsl` (never touched:
every backend the tabs open is a fake or lives in the test's temporary folder), journal records,
upload events and the validation report come from `ScriptedUpload`, the workflow's status is a fixed
report, the Training tab replays a recorded trainer run, the Alarms tab reads a monitor state built on
a fixed clock, local time is UTC, and the data set path is typed relative. Update on purpose with
`pytest --snapshot-update`.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from arsl_tui.config import Settings
from arsl_tui.ops.monitoring import open_local_monitor
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.services import ConsoleServices
from tests.ui.conftest import FakeRun, ScriptedUpload, settle, validate_folder
from tests.ui.fakes import (
    T0,
    CanaryWorld,
    RecordedPlatform,
    build_alarm_state,
    canary_world,
    clock_at,
    epoch_time,
    fixed_report,
    recorded_platform,
    records_through_epoch,
)
from tests.ui.test_gate_tab import pick_job

SNAPSHOT_SETTINGS = Settings(home="/srv/arsl")


def journal() -> ScriptedUpload:
    cancelled = FakeRun(
        run_id="1a2b3c4d5e6f",
        status="cancelled",
        objects_confirmed=6,
        bytes_confirmed=360_000_000,
        updated_at=1_767_258_000.0,
    )
    return ScriptedUpload(
        fixed_validation=True,
        runs=[
            FakeRun(),
            cancelled,
            FakeRun(
                run_id="9f8e7d6c5b4a",
                status="failed",
                objects_confirmed=0,
                bytes_confirmed=0,
                updated_at=1_767_171_600.0,
                error="storage error: 403 AccessDenied",
            ),
        ],
        resumable=cancelled,
    )


@dataclasses.dataclass
class Backends:
    """What the tabs open, all in the test's temporary folder (or fakes)."""

    root: Path
    platform: RecordedPlatform = dataclasses.field(default_factory=lambda: recorded_platform(records_through_epoch(6)))
    now: float = T0 + 5
    canary: CanaryWorld | None = None

    def services(self, scripted: ScriptedUpload) -> ConsoleServices:
        alarms_home = dataclasses.replace(SNAPSHOT_SETTINGS, home=str(self.root / "alarms"))

        def open_canary(settings: Settings) -> Any:
            from arsl_tui.ops.canary_wiring import open_controller

            if self.canary is not None:
                return self.canary.controller()
            return open_controller(dataclasses.replace(settings, home=str(self.root / "canary")))

        return dataclasses.replace(
            scripted.services(),
            collect_status=lambda settings: fixed_report(),
            open_training_platform=lambda settings: self.platform,
            open_registry=lambda settings: ModelRegistry(
                LocalObjectStore(self.root / "store"), "models/", clock=clock_at(T0)
            ),
            open_monitor=lambda settings: open_local_monitor(
                alarms_home, sampler=lambda now, window: [], clock=clock_at(self.now)
            ),
            open_canary=open_canary,
            clock=clock_at(self.now),
        )


def console(scripted: ScriptedUpload | None = None, backends: Backends | None = None, **options: Any) -> ArslApp:
    options.setdefault("theme", "arsl-dark")
    options.setdefault("progress_interval_s", 0.0)
    services = (backends or Backends(Path(tempfile.mkdtemp(prefix="arsl-snap-")))).services(scripted or journal())
    return ArslApp(SNAPSHOT_SETTINGS, services=services, **options)


@pytest.fixture(autouse=True)
def deterministic(utc: None, arsl_home: Path) -> Iterator[None]:
    """UTC clock, a temporary working folder, no ARSL_* variables; the settings' home is never created."""
    existed = SNAPSHOT_SETTINGS.home_dir.exists()
    yield
    assert existed or not SNAPSHOT_SETTINGS.home_dir.exists(), "a snapshot test wrote to the settings' home"


async def settled(pilot: Pilot[Any]) -> None:
    await settle(pilot.app, pilot)  # type: ignore[arg-type]


async def validated(pilot: Pilot[Any]) -> None:
    await validate_folder(pilot.app, pilot, "dataset")  # type: ignore[arg-type]


def test_overview_tab(snap_compare: Any) -> None:
    assert snap_compare(console(), run_before=settled)


def test_overview_tab_large_terminal(snap_compare: Any) -> None:
    assert snap_compare(console(), run_before=settled, terminal_size=(120, 36))


def test_upload_tab_empty(snap_compare: Any) -> None:
    assert snap_compare(console(), press=["2"], run_before=settled)


def test_upload_tab_validated(snap_compare: Any) -> None:
    assert snap_compare(console(), run_before=validated)


def test_upload_tab_done(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await validated(pilot)
        await pilot.press("S", "y")
        await settled(pilot)

    assert snap_compare(console(), run_before=run_before)


def test_upload_tab_paused(snap_compare: Any) -> None:
    scripted = ScriptedUpload(hold_until_cancelled=True, fixed_validation=True)

    async def run_before(pilot: Pilot[Any]) -> None:
        import asyncio

        await validated(pilot)
        await pilot.press("S", "y")
        assert await asyncio.to_thread(scripted.holding.wait, 30)
        await pilot.pause()
        await pilot.press("p")

    assert snap_compare(console(scripted), run_before=run_before)


def test_confirm_dialog(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await validated(pilot)
        await pilot.press("S")

    assert snap_compare(console(), run_before=run_before)


def test_help_overlay(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await validated(pilot)
        await pilot.press("question_mark")

    assert snap_compare(console(), run_before=run_before)


def test_read_only_upload_tab(snap_compare: Any) -> None:
    assert snap_compare(console(read_only=True), run_before=validated)


def test_training_tab_replaying_a_recorded_run(snap_compare: Any, tmp_path: Path) -> None:
    backends = Backends(tmp_path, now=epoch_time(6) + 5)
    assert snap_compare(console(backends=backends), press=["3"], run_before=settled)


def test_gate_tab_passing_record(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("4")
        await settled(pilot)
        await pick_job(pilot.app, pilot, "job-good")  # type: ignore[arg-type]
        pilot.app.screen.set_focus(None)  # no cursor highlight in the picture

    assert snap_compare(console(backends=Backends(tmp_path)), run_before=run_before)


def test_gate_tab_failing_record_per_class_view(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(console(backends=Backends(tmp_path)), press=["4", "v"], run_before=settled)


def test_alarms_tab_with_history(snap_compare: Any, tmp_path: Path) -> None:
    end = build_alarm_state(dataclasses.replace(SNAPSHOT_SETTINGS, home=str(tmp_path / "alarms")))
    assert snap_compare(console(backends=Backends(tmp_path, now=end + 5)), press=["6"], run_before=settled)


def test_canary_tab_observing(snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("arsl_tui.ops.canary.secrets.token_hex", lambda length: "ab12")
    world = canary_world(tmp_path / "canary")
    world.start()
    world.window_passes()
    world.window_passes(120)
    assert snap_compare(console(backends=Backends(tmp_path, canary=world)), press=["5"], run_before=settled)


def test_terminal_too_small(snap_compare: Any) -> None:
    assert snap_compare(console(), run_before=settled, terminal_size=(60, 20))


@pytest.mark.parametrize("theme", ["arsl-light", "arsl-16"])
def test_other_themes(snap_compare: Any, theme: str) -> None:
    assert snap_compare(console(theme=theme), run_before=validated)
