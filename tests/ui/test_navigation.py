"""Keyboard navigation: tabs, the help overlay, the palette, header and log toggles, small terminals."""

from __future__ import annotations

from pathlib import Path

from textual.command import CommandPalette
from textual.widgets import DataTable

from arsl_tui.ui.keymap import TAB_IDS
from arsl_tui.ui.screens.help import HelpScreen
from arsl_tui.ui.screens.too_small import TooSmallScreen
from arsl_tui.ui.widgets.log_panel import LogPanel
from arsl_tui.ui.widgets.path_input import PathInput
from tests.ui.conftest import AppFactory, screen_text, settle, type_text


async def test_number_keys_switch_every_tab(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.active_tab == "overview"
        for number in (3, 4, 5, 6, 1, 2):
            await pilot.press("escape", str(number))  # escape leaves the path field the Upload tab focuses
            assert app.active_tab == TAB_IDS[number - 1]


async def test_digits_type_into_the_path_field_until_escape_leaves_it(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        path_input = app.query_one(PathInput)
        assert path_input.has_focus
        await pilot.press("1")
        assert path_input.value == "1" and app.active_tab == "upload"
        await pilot.press("escape", "1")
        assert app.active_tab == "overview"


async def test_help_overlay_lists_the_keys_of_the_focused_place(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")  # focus is in the path field
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
        await pilot.press("2")
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
