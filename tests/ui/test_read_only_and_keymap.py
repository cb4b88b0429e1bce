"""Read-only mode is one gate for keys, the palette and remapped keys; the keymap applies by binding id."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textual.command import CommandPalette

from arsl_tui.config import Settings
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.keymap import ACTIONS, app_actions, check_keymap
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.widgets.log_panel import LogPanel
from tests.ui.conftest import AppFactory, screen_text, settle, type_text
from tests.ui.conftest import validate_folder as validate


async def test_read_only_flag_greys_start_and_a_key_press_does_nothing(
    make_app: AppFactory, tiny_dataset: Path
) -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await validate(app, pilot, tiny_dataset)
        assert "Valid:" in screen_text(app)  # validating changes nothing, so it stays on
        start = app.screen.active_bindings["S"]
        assert start.binding.id == "upload.start" and start.enabled is False  # shown, greyed
        await pilot.press("S")
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.upload_tab.control is None
        assert "READ-ONLY" in screen_text(app)


async def test_config_switch_read_only_gates_like_the_flag(
    make_app: AppFactory, console_settings: Settings, tiny_dataset: Path
) -> None:
    app = make_app(dataclasses.replace(console_settings, read_only=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await validate(app, pilot, tiny_dataset)
        assert app.read_only
        await pilot.press("S")
        assert not isinstance(app.screen, ConfirmScreen)


async def test_palette_cannot_bypass_read_only(make_app: AppFactory, tiny_dataset: Path) -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await validate(app, pilot, tiny_dataset)
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await type_text(pilot, "start uploading")
        for _ in range(100):  # bounded: the palette searches asynchronously
            if "read-only" in screen_text(app):
                break
            await pilot.pause()
        assert "off: read-only mode" in screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.upload_tab.control is None
        assert any("read-only mode is on" in line for line in app.query_one("#log", LogPanel).recent)


async def test_remapped_key_starts_the_flow_but_not_in_read_only(
    make_app: AppFactory, console_settings: Settings, tiny_dataset: Path
) -> None:
    remapped = dataclasses.replace(console_settings, keymap={"upload.start": "z"})
    app = make_app(remapped)
    async with app.run_test(size=(80, 24)) as pilot:
        await validate(app, pilot, tiny_dataset)
        await pilot.press("S")  # the old key no longer starts
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("z")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
    read_only_app = make_app(remapped, read_only=True)
    async with read_only_app.run_test(size=(80, 24)) as pilot:
        await validate(read_only_app, pilot, tiny_dataset)
        await pilot.press("z")
        assert not isinstance(read_only_app.screen, ConfirmScreen)
        assert read_only_app.upload_tab.control is None


async def test_unknown_binding_id_is_reported_in_the_log_not_a_crash(
    make_app: AppFactory, console_settings: Settings
) -> None:
    settings = dataclasses.replace(
        console_settings, keymap={"upload.strat": "ctrl+u", "tabs.upload": "u"}, source="/etc/arsl/config.toml"
    )
    app = make_app(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        log = "\n".join(app.query_one("#log", LogPanel).recent)
        assert "/etc/arsl/config.toml [keymap]: unknown binding id 'upload.strat'" in log
        await pilot.press("u")  # the valid entry still applies
        assert app.active_tab == "upload"


def test_keymap_check_names_each_bad_entry() -> None:
    checked = check_keymap({"nope.thing": "x", "upload.start": " , ", "app.help": "ctrl+a"}, "config.toml")
    assert checked.applicable == {"app.help": "ctrl+a"}
    problems = "\n".join(checked.problems)
    assert "unknown binding id 'nope.thing'" in problems
    assert "upload.start = ' , '" in problems
    assert "app.help uses ctrl+a, which tmux or the shell may take first" in problems


def test_every_action_has_an_id_words_and_an_app_method() -> None:
    ids = [spec.id for spec in ACTIONS]
    assert len(ids) == len(set(ids))
    for spec in ACTIONS:
        assert "." in spec.id and spec.description and spec.tooltip and spec.title, spec
    for spec in app_actions():
        if spec.action_name != "command_palette":
            assert callable(getattr(ArslApp, f"action_{spec.action_name}", None)), spec.action
    mutating = {spec.id for spec in ACTIONS if spec.mutates}
    assert {
        "upload.start",
        "upload.pause",
        "upload.resume",
        "upload.cancel",
        "training.submit",
        "training.stop",
        "gate.register",
        "gate.override",
        "alarms.acknowledge",
        "alarms.silence",
        "canary.promote",
        "canary.promote_full",
        "canary.pause",
        "canary.resume",
        "canary.rollback",
    } <= mutating
    assert not {"training.open_log", "gate.view", "alarms.filter"} & mutating


async def test_read_only_turns_off_every_new_tab_action_for_keys_and_the_palette(
    console_settings: Settings, tmp_path: Path
) -> None:
    from arsl_tui.ui.screens.form import FormScreen
    from arsl_tui.ui.services import default_services
    from tests.ui.fakes import build_alarm_state, canary_world, clock_at, recorded_platform

    end = build_alarm_state(console_settings)
    world = canary_world(tmp_path / "canary")
    world.start()
    platform = recorded_platform()
    services = dataclasses.replace(
        default_services(),
        open_training_platform=lambda _: platform,
        open_canary=lambda _: world.controller(),
        clock=clock_at(end + 5),
    )
    app = ArslApp(console_settings, theme="arsl-dark", services=services, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        for tab_key, keys in (("3", "SX"), ("4", "O"), ("6", "AM"), ("5", "PFpX")):
            await pilot.press(tab_key)
            await settle(app, pilot)
            for key in keys:
                active = app.screen.active_bindings[key]
                assert active.enabled is False, (tab_key, key)  # shown, greyed
                await pilot.press(key)
                assert not isinstance(app.screen, ConfirmScreen | FormScreen), (tab_key, key)
        assert platform.submitted == [] and platform.count("stop") == 0
        assert world.platform.weights == {"v1": 90, "v2": 10}
        for query, title in (
            ("training submit", "Training: submit a job"),
            ("gate override", "Gate: register a failed model by override"),
            ("alarms acknowledge", "Alarms: acknowledge the selected alarm"),
            ("canary roll", "Canary: roll back"),
        ):
            await pilot.press("ctrl+p")
            await type_text(pilot, query)
            for _ in range(100):  # bounded: the palette searches asynchronously
                if "off: read-only mode" in screen_text(app):
                    break
                await pilot.pause()
            assert "off: read-only mode" in screen_text(app), title
            await pilot.press("enter")
            await settle(app, pilot)
            assert not isinstance(app.screen, ConfirmScreen | FormScreen | CommandPalette), title
            assert f"{title}: read-only mode is on" in app.query_one("#log", LogPanel).recent[-1]
        assert world.platform.weights == {"v1": 90, "v2": 10}
