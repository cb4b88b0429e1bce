"""The Alarms tab: every rule with its state, current value and a sparkline of its metric, and the history.

Reads go through `ops.monitoring` (`list_rules`, `series`, `history`: what `arsl alarms list|history`
show) on the monitor `services.open_monitor` gives, in a thread worker while the tab is visible.
Acknowledge (`A`) and silence (`M`) run `ops.monitoring.acknowledge|silence` after a confirmation;
both are written to the rule's history with the user's name. The console never runs monitoring
rounds itself: `arsl alarms watch` (or the canary controller) does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Static

from arsl_tui.config import Settings
from arsl_tui.domain.alarms import AlarmState, HistoryEntry, HistoryKind, RuleView, parse_duration
from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.formatting import error_text
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.form import FormField, FormScreen, FormValues
from arsl_tui.ui.services import ConsoleServices, no_state_line, no_state_yet
from arsl_tui.ui.tabs.live import LiveTab, poll_interval
from arsl_tui.ui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from arsl_tui.domain.ports import Monitor

SPARK_PERIODS = 16
HISTORY_SHOWN = 50
CLOUD_MIN_REFRESH_S = 30.0
"""Cloud Eye is asked at most this often (one metric query per rule per refresh)."""
MAX_SILENCE_S = 30 * 86400
FILTERS: tuple[str, ...] = ("all", "alarm", "ok", "insufficient_data")
STATE_WORDS = {"alarm": "alarm", "ok": "ok", "insufficient_data": "no data"}
STATE_ORDER = {"alarm": 0, "ok": 1, "insufficient_data": 2}


def state_text(state: AlarmState) -> str:
    """`✗ alarm`, `✓ ok`, `○ no data`: glyph and word."""
    return f"{fmt.STATUS_GLYPHS.get(state.value, '·')} {STATE_WORDS.get(state.value, state.value)}"


def filter_label(name: str) -> str:
    return "all" if name == "all" else STATE_WORDS.get(name, name)


def align_periods(points: list[tuple[float, float]], now: float, period_s: int, periods: int) -> list[float | None]:
    """One value per period for the last `periods` periods up to `now`; None where no data."""
    last = int(now // period_s)
    values: list[float | None] = [None] * periods
    for at, value in points:
        slot = int(at // period_s) - (last - periods + 1)
        if 0 <= slot < periods:
            values[slot] = value
    return values


def marks_text(view: RuleView, now: float) -> str:
    parts = []
    if view.acknowledged_at is not None:
        parts.append(f"✓ ack {view.acknowledged_by}".rstrip())
    if view.silenced(now) and view.silenced_until is not None:
        parts.append(f"‖ silenced to {fmt.timestamp(view.silenced_until)[11:]}")
    return ", ".join(parts)


def history_change(entry: HistoryEntry) -> str:
    if entry.kind is HistoryKind.TRANSITION:
        old = STATE_WORDS.get(entry.old.value, entry.old.value) if entry.old else "–"
        new = STATE_WORDS.get(entry.new.value, entry.new.value) if entry.new else "–"
        glyph = fmt.STATUS_GLYPHS.get(entry.new.value if entry.new else "", "·")
        return f"{glyph} {old} → {new}"
    return f"{fmt.STATUS_GLYPHS.get(entry.kind.value, '·')} {entry.kind.value}"


@dataclass(frozen=True)
class AlarmsSnapshot:
    """One read: the rules, each rule's recent periods, and the history."""

    views: tuple[RuleView, ...]
    periods: dict[str, list[float | None]]
    history: tuple[HistoryEntry, ...]
    read_at: float


class AlarmsTab(LiveTab):
    """The alarm rules and their history, and the `alarms` actions: filter, acknowledge, silence."""

    scope = "alarms"
    focus_id = "alarms-rules"

    class Read(Message):
        def __init__(self, snapshot: AlarmsSnapshot | None, error: str, no_state: bool = False) -> None:
            super().__init__()
            self.snapshot = snapshot
            self.error = error
            self.no_state = no_state
            """Read-only and no state file to read (never written, or its home was removed): not an error."""

    class ActionDone(Message):
        def __init__(self, verb: str, rule: str, view: RuleView | None, error: str) -> None:
            super().__init__()
            self.verb = verb
            self.rule = rule
            self.view = view
            self.error = error

    def __init__(self, settings: Settings, services: ConsoleServices) -> None:
        super().__init__(settings, services, id="alarms-body")
        self.snapshot: AlarmsSnapshot | None = None
        self.state_filter = "all"
        self.selected: str | None = None
        self.busy = False
        self.reads = 0
        """Reads handled so far (tests wait on it)."""
        self._shown_rules: tuple[tuple[str, ...], ...] = ()
        self._read_error = ""
        self._shown_history: tuple[int | tuple[object, ...], ...] = ()

    def compose(self) -> ComposeResult:
        yield Static("○ reading the alarm rules …", id="alarms-summary", markup=False)
        yield DataTable[str | Text](id="alarms-rules", cursor_type="row", zebra_stripes=False)
        yield Static("", id="alarms-detail", markup=False)
        yield Static("History (newest first)", classes="section-title", id="alarms-history-title")
        yield DataTable[str | Text](id="alarms-history", cursor_type="row", zebra_stripes=False)
        yield StatusLine("", id="alarms-status")

    def on_mount(self) -> None:
        rules = self.query_one("#alarms-rules", DataTable)
        for column in ("state", "rule", "value", f"last {SPARK_PERIODS} periods", "marks"):
            rules.add_column(column, key=column)
        history = self.query_one("#alarms-history", DataTable)
        for column in ("time", "rule", "change", "value", "detail"):
            history.add_column(column, key=column)
        self.query_one("#alarms-status", StatusLine).display = False
        self.start_timer(poll_interval(self.settings, CLOUD_MIN_REFRESH_S), self.reload)

    # ----- reading --------------------------------------------------------------------------------

    def _open(self) -> Monitor:
        return self.adapter("monitor", lambda: self.services.open_monitor(self.settings))

    def read(self) -> None:
        self._read_worker()

    @work(thread=True, group="alarms-read", exit_on_error=False)
    def _read_worker(self) -> None:
        from arsl_tui.ops.monitoring import history, list_rules, series

        try:
            monitor = self._open()
            now = self.services.clock()
            views = list_rules(self.settings, monitor)
            periods: dict[str, list[float | None]] = {}
            for view in views:
                points = series(self.settings, view, periods=SPARK_PERIODS, monitor=monitor, now=now)
                periods[view.rule.name] = align_periods(
                    [(point.time, point.value) for point in points], now, view.rule.period_s, SPARK_PERIODS
                )
            entries = history(self.settings, limit=HISTORY_SHOWN, monitor=monitor)
        except Exception as error:  # MonitorError (Cloud Eye, the state file) or a provider bug: a message
            self.post_message(self.Read(None, error_text(error), no_state_yet(error)))
        else:
            self.post_message(self.Read(AlarmsSnapshot(tuple(views), periods, tuple(entries), now), ""))

    def on_alarms_tab_read(self, message: Read) -> None:
        self.read_ended()
        self.reads += 1
        if message.no_state:
            self._show_no_state()
            return
        if message.snapshot is None:
            self._say("error", "error", f"Cannot read the alarms: {message.error}")
            if message.error != self._read_error:  # an outage is logged once, not at every refresh
                self._log("error", f"alarms: {message.error}")
            self._read_error = message.error
            return
        if self._read_error:
            self._read_error = ""
            self.query_one("#alarms-status", StatusLine).display = False
        self.snapshot = message.snapshot
        self._show_snapshot()

    # ----- showing --------------------------------------------------------------------------------

    def _show_no_state(self) -> None:
        """Nothing to read: what was shown before is gone with the state file, so it is cleared."""
        self.snapshot = None
        self._read_error = ""
        self._shown_rules = self._shown_history = ()
        self.selected = None
        self.query_one("#alarms-summary", Static).update(f"○ {no_state_line(self.settings, 'alarm rules')}")
        self.query_one("#alarms-rules", DataTable).clear()
        self.query_one("#alarms-history", DataTable).clear()
        self.query_one("#alarms-detail", Static).update("")
        self.query_one("#alarms-status", StatusLine).display = False
        self.app.refresh_bindings()

    def visible_views(self) -> list[RuleView]:
        """The rules the filter lets through, those in alarm first."""
        views = sorted(
            self.snapshot.views if self.snapshot else (),
            key=lambda view: (STATE_ORDER.get(view.state.value, 3), view.rule.name),
        )
        if self.state_filter == "all":
            return views
        return [view for view in views if view.state.value == self.state_filter]

    def _show_snapshot(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        now = snapshot.read_at
        counts = {state: sum(1 for view in snapshot.views if view.state is state) for state in AlarmState}
        summary = (
            f"Filter: {filter_label(self.state_filter)} (f) · {len(snapshot.views)} rules: "
            f"{counts[AlarmState.ALARM]} {state_text(AlarmState.ALARM)} · {counts[AlarmState.OK]} "
            f"{state_text(AlarmState.OK)} · {counts[AlarmState.INSUFFICIENT_DATA]} "
            f"{state_text(AlarmState.INSUFFICIENT_DATA)} · read {fmt.timestamp(now)[11:]}"
        )
        if not snapshot.views:
            summary = "○ No alarm rules yet: `arsl alarms setup` creates them from [alarms]."
        self.query_one("#alarms-summary", Static).update(summary)
        views = self.visible_views()
        rows = tuple(
            (
                state_text(view.state),
                view.rule.name,
                _value(view),
                fmt.sparkline(snapshot.periods.get(view.rule.name, []), SPARK_PERIODS),
                marks_text(view, now),
            )
            for view in views
        )
        table = self.query_one("#alarms-rules", DataTable)
        if rows != self._shown_rules:
            self._shown_rules = rows
            keep = self.selected
            table.clear()
            for row in rows:
                table.add_row(row[0], row[1], Text(row[2], justify="right"), row[3], row[4], key=row[1])
            names = [row[1] for row in rows]
            if keep in names:
                table.move_cursor(row=names.index(keep), animate=False)
            elif names:
                self.selected = names[0]
            else:
                self.selected = None
        self._show_detail()
        shown_names = {view.rule.name for view in views}
        entries = [
            entry for entry in reversed(snapshot.history) if self.state_filter == "all" or entry.rule in shown_names
        ]
        fingerprint = tuple(entry.seq or (entry.rule, entry.time, entry.kind.value) for entry in entries)
        if fingerprint != self._shown_history:
            self._shown_history = fingerprint
            history = self.query_one("#alarms-history", DataTable)
            history.clear()
            for entry in entries:
                detail = entry.detail + (f" (by {entry.user})" if entry.user else "")
                history.add_row(
                    fmt.timestamp(entry.time),
                    entry.rule,
                    history_change(entry),
                    Text(f"{entry.value:.3g}" if entry.value is not None else "", justify="right"),
                    detail,
                )
        self.app.refresh_bindings()

    def _show_detail(self) -> None:
        view = self.selected_view()
        detail = self.query_one("#alarms-detail", Static)
        if view is None:
            detail.update("")
            return
        since = f" since {fmt.timestamp(view.since)}" if view.since else ""
        detail.update(
            Text(
                f"{view.rule.name}: {view.rule.condition}{since}\n{view.rule.description}",
                no_wrap=True,
                overflow="ellipsis",
            )
        )

    def selected_view(self) -> RuleView | None:
        return next((view for view in self.visible_views() if view.rule.name == self.selected), None)

    @on(DataTable.RowHighlighted, "#alarms-rules")
    def _rule_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != event.data_table.cursor_row or event.row_key is None:
            return
        self.selected = event.row_key.value
        self._show_detail()
        self.app.refresh_bindings()

    # ----- keys -----------------------------------------------------------------------------------

    def availability(self, action: str) -> bool | None:
        view = self.selected_view()
        if action == "alarms_acknowledge":
            return (
                bool(
                    view is not None
                    and view.state is AlarmState.ALARM
                    and view.acknowledged_at is None
                    and not self.busy
                )
                or None
            )
        if action == "alarms_silence":
            return bool(view is not None and not self.busy) or None
        return True

    def current_id(self) -> str:
        return self.selected or ""

    def action_alarms_filter(self) -> None:
        self.state_filter = FILTERS[(FILTERS.index(self.state_filter) + 1) % len(FILTERS)]
        self._show_snapshot()

    def action_alarms_acknowledge(self) -> None:
        view = self.selected_view()
        if view is None or view.state is not AlarmState.ALARM:
            return
        since = fmt.timestamp(view.since) if view.since else "–"
        lines = [
            f"Acknowledge the alarm of {view.rule.name} (in alarm since {since}, value {_value(view)}).",
            f"Condition: {view.rule.condition}.",
            "Marks it as seen until it leaves alarm; notifications and the canary controller are unaffected.",
            "Written to the rule's history with your user name.",
        ]

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._start("acknowledge", view.rule.name, None)

        self.app.push_screen(ConfirmScreen("Acknowledge this alarm?", lines, "Acknowledge"), answered)

    def action_alarms_silence(self) -> None:
        view = self.selected_view()
        if view is None:
            return
        now = self.services.clock()
        current = (
            f"It is silenced until {fmt.timestamp(view.silenced_until)}."
            if view.silenced(now) and view.silenced_until is not None
            else "It is not silenced now."
        )
        explanation = [
            f"Silence {view.rule.name} ({state_text(view.state)}): its notifications stop for the time "
            "you type (30m, 2h, 1d; 0 ends a silence). " + current,
            "It still changes state and is still recorded; the canary controller still sees it.",
            "Enter silences it, written to the rule's history with your user name; Esc changes nothing.",
        ]

        def answered(values: FormValues | None) -> None:
            if values is None:
                return
            self._start("silence", view.rule.name, values)

        self.app.push_screen(
            FormScreen(
                "Silence this alarm rule?",
                explanation,
                [FormField("duration", "for how long", "1h"), FormField("note", "note", placeholder="optional: why")],
                "Silence",
                check=check_silence,
            ),
            answered,
        )

    def _start(self, verb: str, rule: str, values: FormValues | None) -> None:
        self.busy = True
        self._say("info", "running", f"{verb.capitalize()} {rule} …")
        self.app.refresh_bindings()
        self._action_worker(verb, rule, values or {})

    @work(thread=True, group="alarms-action", exit_on_error=False)
    def _action_worker(self, verb: str, rule: str, values: FormValues) -> None:
        from arsl_tui.ops.monitoring import acknowledge, silence

        try:
            monitor = self._open()
            if verb == "acknowledge":
                view = acknowledge(self.settings, rule, monitor=monitor)
            else:
                view = silence(
                    self.settings,
                    rule,
                    parse_duration(values["duration"]),
                    note=values.get("note", ""),
                    monitor=monitor,
                )
        except Exception as error:  # refused (not in alarm), state file or Cloud Eye errors: a message
            self.post_message(self.ActionDone(verb, rule, None, error_text(error)))
        else:
            self.post_message(self.ActionDone(verb, rule, view, ""))

    def on_alarms_tab_action_done(self, message: ActionDone) -> None:
        self.busy = False
        if message.view is None:
            self._say("error", "error", f"{message.verb.capitalize()} {message.rule} failed: {message.error}")
            self._log("error", f"alarms {message.verb} {message.rule}: {message.error}")
        elif message.verb == "acknowledge":
            self._say("ok", "done", f"Acknowledged {message.rule} (logged in its history).")
            self._log("ok", f"acknowledged alarm {message.rule}")
        else:
            view = message.view
            until = (
                f"until {fmt.timestamp(view.silenced_until)}"
                if view.silenced_until and view.silenced(self.services.clock())
                else "no longer silenced"
            )
            self._say("ok", "done", f"{message.rule}: {until} (logged in its history).")
            self._log("ok", f"silenced alarm {message.rule}: {until}")
        self.app.refresh_bindings()
        self.reload()

    def _say(self, level: str, status: str, text: str) -> None:
        line = self.query_one("#alarms-status", StatusLine)
        line.say(level, status, text)
        line.display = True


def _value(view: RuleView) -> str:
    if view.value is None:
        return "–"
    unit = f" {view.rule.unit}" if view.rule.unit and view.rule.unit != "count" else ""
    return f"{view.value:.3g}{unit}"


def check_silence(values: Mapping[str, str]) -> str:
    text = values.get("duration", "")
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        return str(error)
    if seconds > MAX_SILENCE_S:
        return f"duration {text!r}: at most {MAX_SILENCE_S // 86400} days"
    return ""
