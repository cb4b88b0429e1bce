"""The help overlay shows, under what each key does, the id `[keymap]` remaps it by."""

from __future__ import annotations

from arsl_tui.ui.keymap import ACTIONS
from arsl_tui.ui.screens.help import HelpScreen
from tests.ui.conftest import AppFactory, screen_text, settle


async def test_each_remappable_key_in_help_shows_its_id(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        rows = app.screen.rows
        ids = {spec.id for spec in ACTIONS}
        training = [row for row in rows if row.place == "Training tab"]
        assert {row.binding_id for row in training} == {spec.id for spec in ACTIONS if spec.scope == "training"}
        assert all(row.binding_id in ids for row in rows if row.binding_id)
        # A widget's own keys (the job list's arrows) have no id: nothing to remap them by.
        assert any(row.place == "job list" and not row.binding_id for row in rows)
        text = screen_text(app)
        assert f"id {training[0].binding_id}" in text
        assert "Remap a key by the id under what it does" in str(app.screen.query_one("#help-hint").render())
