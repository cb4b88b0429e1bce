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


async def test_help_on_a_tab_with_nothing_to_act_on_lists_that_tabs_actions_first(make_app: AppFactory) -> None:
    # No canary run: every canary action is "not now", and the focus sits in the versions table, whose
    # cursor keys are active. The help must still open on what the Canary tab does, not on the arrows.
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await settle(app, pilot)
        assert app.active_tab == "canary"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        rows = app.screen.rows
        canary_ids = {spec.id for spec in ACTIONS if spec.scope == "canary"}
        leading = rows[: len(canary_ids)]
        assert {row.binding_id for row in leading} == canary_ids
        assert all(row.place == "Canary tab" and row.state != "✓ on" for row in leading)
        assert any(row.place not in ("Canary tab", "everywhere") for row in rows[len(canary_ids) :])
