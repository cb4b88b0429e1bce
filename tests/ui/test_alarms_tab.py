"""The Alarms tab over the real local monitor's state: states, sparklines, history, filter, acknowledge, silence."""

from __future__ import annotations

import dataclasses

from textual.widgets import DataTable

from arsl_tui.config import Settings
from arsl_tui.ops.monitoring import history, open_local_monitor
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.form import FormScreen
from arsl_tui.ui.services import default_services
from tests.ui.conftest import screen_text, settle, type_text
from tests.ui.fakes import build_alarm_state, clock_at, scripted_samples


def alarms_app(settings: Settings, now: float, **options: object) -> ArslApp:
    services = dataclasses.replace(default_services(), clock=clock_at(now))
    return ArslApp(settings, theme="arsl-dark", services=services, **options)  # type: ignore[arg-type]


def rule_rows(app: ArslApp) -> dict[str, list[str]]:
    table = app.query_one("#alarms-rules", DataTable)
    return {str(table.get_row(key)[1]): [str(cell) for cell in table.get_row(key)] for key in table.rows}


async def test_rules_history_filter_and_acknowledge(console_settings: Settings) -> None:
    end = build_alarm_state(console_settings)
    app = alarms_app(console_settings, end + 5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await settle(app, pilot)
        rows = rule_rows(app)
        assert rows["arsl-error-rate"][0] == "✗ alarm" and rows["arsl-error-rate"][2] == "0.13"
        assert rows["arsl-p95-latency"][0] == "✓ ok" and rows["arsl-online-accuracy"][0] == "○ no data"
        spark = rows["arsl-error-rate"][3]
        assert len(spark) == 16 and spark.startswith("····") and spark.endswith("█")
        assert app.alarms_tab.selected == "arsl-error-rate"  # rules in alarm come first
        text = screen_text(app)
        assert "✗ ok → alarm" in text and "1 ✗ alarm · 3 ✓ ok · 3 ○ no data" in text
        await pilot.press("f")
        assert list(rule_rows(app)) == ["arsl-error-rate"]
        assert "Filter: alarm (f)" in screen_text(app)
        await pilot.press("f")
        assert sorted(rule_rows(app)) == ["arsl-p95-latency", "arsl-service-down", "arsl-traffic-high"]
        await pilot.press("f", "f")
        assert len(rule_rows(app)) == 7
        await pilot.press("f")  # in alarm only, then acknowledge the one there
        await pilot.press("A")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Acknowledge the alarm of arsl-error-rate" in app.screen.what_happens[0]
        await pilot.press("y")
        await settle(app, pilot)
        assert rule_rows(app)["arsl-error-rate"][4].startswith("✓ ack ")
        assert "✓ acknowledged" in screen_text(app)
        assert app.screen.active_bindings["A"].enabled is False  # acknowledged already


async def test_silence_takes_a_typed_duration_and_is_logged(console_settings: Settings) -> None:
    end = build_alarm_state(console_settings)
    app = alarms_app(console_settings, end + 5)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await settle(app, pilot)
        await pilot.press("M")
        assert isinstance(app.screen, FormScreen)
        form = app.screen
        assert form.values()["duration"] == "1h"
        await pilot.press("backspace", "backspace")
        await type_text(pilot, "forever")
        await pilot.press("enter")
        assert app.screen is form
        assert "duration 'forever': expected a number with s, m, h or d" in screen_text(app)
        await pilot.press(*["backspace"] * 7)
        await type_text(pilot, "30m")
        await pilot.press("enter")
        await settle(app, pilot)
        assert not isinstance(app.screen, FormScreen)
        entries = history(console_settings, rule="arsl-error-rate")
        assert entries[-1].kind.value == "silenced" and "silenced for 30m" in entries[-1].detail


async def test_a_new_round_shows_on_the_next_refresh(console_settings: Settings) -> None:
    end = build_alarm_state(console_settings)
    app = alarms_app(console_settings, end + 65)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await settle(app, pilot)
        reads = app.alarms_tab.reads
        before = rule_rows(app)["arsl-error-rate"][3]
        monitor = open_local_monitor(console_settings, sampler=lambda now, window: scripted_samples(99))
        try:
            monitor.run_once(end + 60)
        finally:
            monitor.close()
        app.alarms_tab.reload()  # what the refresh timer calls
        await settle(app, pilot)
        assert app.alarms_tab.reads > reads
        after = rule_rows(app)["arsl-error-rate"][3]
        assert before.endswith("█·") and after.endswith("▂█")  # the new period's 102 % dwarfs the earlier ones
