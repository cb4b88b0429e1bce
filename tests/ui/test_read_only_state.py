"""A read-only console writes nothing: not even an empty state file when its home disappears."""

from __future__ import annotations

import dataclasses
import shutil

from textual.widgets import DataTable, Static

from arsl_tui.config import Settings
from arsl_tui.ops.monitoring import setup
from arsl_tui.ui.keymap import TAB_IDS
from arsl_tui.ui.widgets.status_line import StatusLine
from tests.ui.conftest import AppFactory, screen_text, settle


def read_only(settings: Settings) -> Settings:
    """What ARSL_READ_ONLY / `read_only = true` give the console."""
    return dataclasses.replace(settings, read_only=True)


async def test_a_removed_home_shows_no_state_here_yet_and_is_not_created_again(
    make_app: AppFactory, console_settings: Settings
) -> None:
    home = console_settings.home_dir
    assert setup(console_settings).created, "a home with real state: the alarm rules"
    app = make_app(read_only(console_settings))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await settle(app, pilot)
        rules = app.query_one("#alarms-rules", DataTable)
        assert rules.row_count > 0, "the rules are read while the home is there"
        shutil.rmtree(home)
        app.alarms_tab.reload()
        await settle(app, pilot)
        summary = str(app.query_one("#alarms-summary", Static).render())
        assert summary.startswith(f"○ no state here yet: {home} holds no alarm rules"), summary
        text = screen_text(app)
        assert "no state here yet" in text
        assert rules.row_count == 0, "what was shown went with the home"
        assert "no such table" not in text
        for number in range(1, len(TAB_IDS) + 1):  # every tab reads again, none may write
            await pilot.press(str(number))
            await settle(app, pilot)
            assert "no such table" not in screen_text(app)
        app.alarms_tab.reload()
        await pilot.press("6")
        await settle(app, pilot)
        assert "no state here yet" in screen_text(app)
    assert not home.exists(), "a read-only console must not re-create its home or arsl.db"


async def test_a_read_only_console_on_a_home_that_was_never_written_creates_nothing(
    make_app: AppFactory, console_settings: Settings
) -> None:
    home = console_settings.home_dir / "never-written"
    settings = read_only(dataclasses.replace(console_settings, home=str(home)))
    app = make_app(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await settle(app, pilot)
        verdict = app.query_one("#gate-verdict", StatusLine)
        assert verdict.message.startswith(f"○ no state here yet: {home} holds no training jobs"), verdict.message
        assert "-error" not in verdict.classes, "nothing to read is not an error"
        await pilot.press("6")
        await settle(app, pilot)
        text = screen_text(app)
        assert "no state here yet" in text and "Cannot read the alarms" not in text
        for number in range(1, len(TAB_IDS) + 1):
            await pilot.press(str(number))
            await settle(app, pilot)
    assert not home.exists()
