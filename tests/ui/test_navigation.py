"""Keyboard navigation: tabs, the help overlay, the palette, header and log toggles, small terminals."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.keymap import TAB_IDS
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.help import HelpScreen
from arsl_tui.ui.screens.too_small import TooSmallScreen
from arsl_tui.ui.widgets.log_panel import LogPanel
from arsl_tui.ui.widgets.path_input import PathInput
from arsl_tui.ui.widgets.status_line import StatusLine
from tests.ui.conftest import AppFactory, screen_text, settle, type_text, validate_folder


def every_move_once() -> list[int]:
    """Tab numbers whose consecutive pairs are every (from, to) move once, staying put included: a de Bruijn
    sequence (Martin's rule: append the highest number whose move is unused), from where the console starts."""
    sequence = [1]
    used: set[tuple[int, int]] = set()
    while True:
        for number in range(len(TAB_IDS), 0, -1):
            if (sequence[-1], number) not in used:
                used.add((sequence[-1], number))
                sequence.append(number)
                break
        else:
            return sequence


async def test_from_each_tab_each_digit_shows_its_tab(make_app: AppFactory) -> None:
    numbers = every_move_once()
    moves = set(itertools.pairwise(numbers))
    assert len(numbers) == 37 and moves == {(a, b) for a in range(1, 7) for b in range(1, 7)}
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        path_input = app.query_one(PathInput)
        assert app.active_tab == "overview"
        for origin, target in itertools.pairwise(numbers):
            await pilot.press(str(target))
            shown = app.active_tab
            assert shown == TAB_IDS[target - 1], f"from {TAB_IDS[origin - 1]}, {target} showed {shown}"
            assert not isinstance(app.focused, Input), f"{origin} → {target}: the focus is in {app.focused!r}"
        assert path_input.value == "", "no digit was typed into the folder field"


async def assert_each_digit_leaves_the_upload_tab(app: ArslApp, pilot: Pilot[Any]) -> None:
    for number, tab in enumerate(TAB_IDS, start=1):
        await pilot.press("2")
        assert app.active_tab == "upload"
        await pilot.press(str(number))
        assert app.active_tab == tab


async def test_the_digits_still_switch_tabs_after_the_folder_field_was_used(
    make_app: AppFactory, tiny_dataset: Path
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "enter")
        await type_text(pilot, "nowhere")
        await pilot.press("enter")  # Enter validates and leaves the field, also when validation fails
        await settle(app, pilot)
        assert "nowhere: no such folder" in app.query_one("#upload-status", StatusLine).message
        await assert_each_digit_leaves_the_upload_tab(app, pilot)
        await validate_folder(app, pilot, tiny_dataset)  # the counts table has the focus now
        assert app.upload_tab.validated is not None
        await assert_each_digit_leaves_the_upload_tab(app, pilot)
        assert app.query_one(PathInput).value == str(tiny_dataset)


@pytest.mark.parametrize("key", ["enter", "slash", "e"])
async def test_enter_or_slash_opens_the_folder_field_typing_works_there_and_escape_gives_the_digits_back(
    make_app: AppFactory, key: str
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        path_input = app.query_one(PathInput)
        assert app.active_tab == "upload" and not path_input.has_focus, "showing the tab focuses nothing"
        await pilot.press(key)
        assert path_input.has_focus and path_input.value == "", "the key that opens the field is not typed"
        await pilot.press("3", "4", "slash", "v", "S")
        assert path_input.value == "34/vS" and app.active_tab == "upload", "in the field every key is text"
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert not path_input.has_focus and path_input.value == "34/vS"
        await pilot.press("3")
        assert app.active_tab == "training"


async def test_a_click_opens_the_folder_field(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        path_input = app.query_one(PathInput)
        assert not path_input.has_focus
        assert await pilot.click(PathInput)
        assert path_input.has_focus
        await pilot.press("5")
        assert path_input.value == "5" and app.active_tab == "upload"
        await pilot.press("escape", "5")
        assert app.active_tab == "canary"


async def test_help_overlay_lists_the_keys_of_the_focused_place(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "enter")  # focus is in the path field
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        rows = app.screen.rows
        # In the field, letters type text: the help lists the field's keys and the chords that still work.
        assert {row.place for row in rows} >= {"path field", "everywhere"}
        assert any(row.place == "path field" and row.keys == "tab" for row in rows)
        assert any(row.place == "path field" and row.keys == "esc" for row in rows)
        assert not any(row.place == "Upload tab" for row in rows)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "question_mark")  # out of the field, `?` itself opens it
        assert isinstance(app.screen, HelpScreen)
        rows = app.screen.rows
        assert all(row.place != "path field" for row in rows)
        assert any(row.place == "Upload tab" and row.keys == "v" for row in rows)
        assert rows[0].place == "Upload tab"


async def test_palette_runs_actions_by_name(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await type_text(pilot, "upload tab")
        for _ in range(100):  # bounded: the palette searches asynchronously
            if "Go to the Upload tab" in screen_text(app):
                break
            await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.active_tab == "upload"


async def test_palette_lists_every_app_action(make_app: AppFactory) -> None:
    from arsl_tui.ui.commands import ArslCommands
    from arsl_tui.ui.keymap import app_actions

    app = make_app()
    async with app.run_test(size=(80, 24)):
        provider = ArslCommands(app.screen)
        titles = [hit.text async for hit in provider.discover()]
    assert set(titles) == {spec.title for spec in app_actions() if spec.id != "app.palette"}


async def test_header_and_log_panel_toggle(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        header = app.query_one("#header")
        log = app.query_one("#log")
        assert header.display and not log.display
        await pilot.press("H", "l")
        assert not header.display and log.display
        assert "console ready" in "\n".join(app.query_one("#log", LogPanel).recent)


async def test_a_60_by_20_terminal_gets_a_clear_message_and_the_app_keeps_running(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, TooSmallScreen)
        text = screen_text(app)
        assert "Terminal too small: 60×20" in text and "80×24" in text
        await pilot.press("2")  # ignored while too small
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not isinstance(app.screen, TooSmallScreen)
        await pilot.press("2")
        assert app.active_tab == "upload"
        await pilot.resize_terminal(79, 24)
        await pilot.pause()
        assert isinstance(app.screen, TooSmallScreen)
        assert app.is_running


async def test_tab_completes_a_folder_path(make_app: AppFactory, tiny_dataset: Path) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "slash")
        path_input = app.query_one(PathInput)
        path_input.value = str(tiny_dataset)[:-4]
        await type_text(pilot, str(tiny_dataset)[-4])
        for _ in range(100):  # bounded: the suggestion is computed off the event loop
            if path_input._suggestion:
                break
            await pilot.pause()
        await pilot.press("tab")
        assert path_input.value == str(tiny_dataset) + "/"
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.query_one("#counts-table", DataTable).row_count == 33
