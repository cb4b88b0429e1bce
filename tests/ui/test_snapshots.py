"""SVG snapshots of every tab and dialog at 80×24 (plus one large size), with deterministic data.

Everything time-, path- or encoder-dependent is fixed: settings point at `/srv/arsl` (never touched),
journal records, upload events and the validation report come from `ScriptedUpload`, local time is UTC,
and the data set path is typed relative. Update on purpose with `pytest --snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from arsl_tui.config import Settings
from arsl_tui.ui.app import ArslApp
from tests.ui.conftest import FakeRun, ScriptedUpload, settle, validate_folder

SNAPSHOT_SETTINGS = Settings(home="/srv/arsl")


def journal() -> ScriptedUpload:
    cancelled = FakeRun(run_id="1a2b3c4d5e6f", status="cancelled", objects_confirmed=6, bytes_confirmed=360_000_000,
                        updated_at=1_767_258_000.0)
    return ScriptedUpload(
        fixed_validation=True,
        runs=[FakeRun(), cancelled,
              FakeRun(run_id="9f8e7d6c5b4a", status="failed", objects_confirmed=0, bytes_confirmed=0,
                      updated_at=1_767_171_600.0, error="storage error: 403 AccessDenied")],
        resumable=cancelled)


def console(scripted: ScriptedUpload | None = None, **options: Any) -> ArslApp:
    options.setdefault("theme", "arsl-dark")
    options.setdefault("progress_interval_s", 0.0)
    return ArslApp(SNAPSHOT_SETTINGS, services=(scripted or journal()).services(), **options)


@pytest.fixture(autouse=True)
def deterministic(utc: None, arsl_home: Path) -> None:
    """UTC clock, a temporary working folder, no ARSL_* variables."""


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


@pytest.mark.parametrize("tab_key", ["3", "4", "5", "6"])
def test_planned_tabs(snap_compare: Any, tab_key: str) -> None:
    assert snap_compare(console(), press=[tab_key], run_before=settled)


def test_terminal_too_small(snap_compare: Any) -> None:
    assert snap_compare(console(), run_before=settled, terminal_size=(60, 20))


@pytest.mark.parametrize("theme", ["arsl-light", "arsl-16"])
def test_other_themes(snap_compare: Any, theme: str) -> None:
    assert snap_compare(console(theme=theme), run_before=validated)
