"""The `Monitor` port on this machine: series, rules, states and history in the state database.

Every round (`run_once`) samples the gateway (through a `Sampler`: requests, errors, error rate, p95
latency and online accuracy over the last period, per service and per model version, and whether
the deployed service answers), judges every rule on the periods completed since its last round
(`domain.alarms.evaluate`), records each state change in the history, and then tells subscribers.
Rounds are driven by the caller (`arsl alarms watch`, the console, a test): nothing here sleeps.

Component "alarms" in the state file:
    alarm_points    (namespace, metric, dimensions, time, value): raw points; older than the
                    retention are deleted each round
    alarm_rules     name → definition and evaluation status (JSON)
    alarm_history   state changes and operator actions (acknowledge, silence), in order (seq)
    alarm_marks     per rule: acknowledged (until it leaves alarm) and silenced until a time

Acknowledge and silence are kept here for both backends: they are the operator's log, and Cloud Eye
has no acknowledgement. A silenced rule still changes state and is still recorded; its notices are
marked `silenced` so people are not paged, while the canary controller still sees them.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from arsl_tui.domain.alarms import (
    LOCAL_NAMESPACE,
    AlarmActionRefused,
    AlarmEvent,
    AlarmRule,
    AlarmRuleError,
    AlarmState,
    DataPoint,
    Dimensions,
    Filter,
    HistoryEntry,
    HistoryKind,
    MonitorError,
    NoticeKind,
    RuleNotFound,
    RuleStatus,
    RuleView,
    Sample,
    Sampler,
    SetupReport,
    check_custom_namespace,
    dimensions_of,
    evaluate,
)
from arsl_tui.state.db import Migrations, StateDB

MIGRATIONS = Migrations(
    "alarms",
    steps=(
        """
    CREATE TABLE alarm_points (
        id INTEGER PRIMARY KEY,
        namespace TEXT NOT NULL,
        metric TEXT NOT NULL,
        dimensions TEXT NOT NULL,
        time REAL NOT NULL,
        value REAL NOT NULL,
        unit TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX alarm_points_series ON alarm_points (namespace, metric, dimensions, time);
    CREATE INDEX alarm_points_time ON alarm_points (time);
    CREATE TABLE alarm_rules (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE alarm_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        rule TEXT NOT NULL,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        old_state TEXT,
        new_state TEXT,
        value REAL,
        detail TEXT NOT NULL DEFAULT '',
        user TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX alarm_history_rule ON alarm_history (rule, seq);
    CREATE INDEX alarm_history_time ON alarm_history (time);
    CREATE TABLE alarm_marks (
        rule TEXT PRIMARY KEY,
        acknowledged_at REAL,
        acknowledged_by TEXT NOT NULL DEFAULT '',
        silenced_until REAL,
        silenced_by TEXT NOT NULL DEFAULT ''
    );
    """,
    ),
)

MAX_SILENCE_S = 30 * 86400
HISTORY_KEPT_PER_RULE = 20
"""History lines of each rule kept past the retention, so a quiet rule still shows how it got where it is."""


Subscriber = Callable[[AlarmEvent], None]


def _dims_key(dimensions: Dimensions) -> str:
    return json.dumps([list(pair) for pair in dimensions_of(dimensions)], separators=(",", ":"))


class LocalMonitor:
    """Rules, series and history in one state file; rounds are run by the caller."""

    backend = "local"

    def __init__(
        self,
        db: StateDB,
        *,
        sampler: Sampler | None = None,
        clock: Callable[[], float] = time.time,
        retention_s: float = 7 * 86400,
        user: str = "",
    ) -> None:
        self.db = db
        db.ensure_schema(MIGRATIONS)
        self.operator_log = OperatorLog(db)
        self._sampler = sampler
        self._clock = clock
        self._retention_s = retention_s
        self._user = user
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._round = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def now(self) -> float:
        """The monitor's clock (the wall clock, unless a test gave another)."""
        return self._clock()

    # --- rules ------------------------------------------------------------------------------------

    def ensure_rules(self, rules: Sequence[AlarmRule]) -> SetupReport:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise AlarmRuleError(f"alarm rule names must be unique, got {names}")
        now = self._clock()
        created: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        with self.db.transaction() as connection:
            stored = {
                name: (definition, status)
                for name, definition, status in connection.execute("SELECT name, definition, status FROM alarm_rules")
            }
            for rule in rules:
                definition = json.dumps(rule.to_json(), sort_keys=True)
                if rule.name not in stored:
                    connection.execute(
                        "INSERT INTO alarm_rules (name, definition, status, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (rule.name, definition, json.dumps(RuleStatus.new(rule, now).to_json()), now, now),
                    )
                    created.append(rule.name)
                    continue
                old_definition, old_status = stored[rule.name]
                if old_definition == definition:
                    unchanged.append(rule.name)
                    continue
                old = AlarmRule.from_json(json.loads(old_definition), f"{self.db.path}: alarm rule {rule.name!r}")
                status = RuleStatus.from_json(json.loads(old_status))
                if old.period_s != rule.period_s:
                    # Period indexes mean something else now: judge afresh from the current period.
                    status = RuleStatus(
                        rule=rule.name, state=status.state, since=status.since, next_period=int(now // rule.period_s)
                    )
                connection.execute(
                    "UPDATE alarm_rules SET definition = ?, status = ?, updated_at = ? WHERE name = ?",
                    (definition, json.dumps(status.to_json()), now, rule.name),
                )
                updated.append(rule.name)
        notes = tuple(
            f"rule {name!r} is stored but no longer configured; it is kept" for name in sorted(set(stored) - set(names))
        )
        return SetupReport(created=tuple(created), updated=tuple(updated), unchanged=tuple(unchanged), notes=notes)

    def _load(self, connection: sqlite3.Connection) -> list[tuple[AlarmRule, RuleStatus]]:
        loaded = []
        for name, definition, status in connection.execute(
            "SELECT name, definition, status FROM alarm_rules ORDER BY name"
        ):
            where = f"{self.db.path}: alarm rule {name!r}"
            try:
                loaded.append(
                    (AlarmRule.from_json(json.loads(definition), where), RuleStatus.from_json(json.loads(status)))
                )
            except (json.JSONDecodeError, KeyError, ValueError) as error:
                raise MonitorError(f"{where} is unreadable ({error}); run `arsl alarms setup` again") from None
        return loaded

    def rules(self) -> list[RuleView]:
        connection = self.db.connection()
        return [
            self.operator_log.apply(
                RuleView(rule=rule, state=status.state, since=status.since, value=status.value, rule_id=rule.name)
            )
            for rule, status in self._load(connection)
        ]

    def rule(self, name: str) -> RuleView:
        for view in self.rules():
            if view.rule.name == name:
                return view
        known = ", ".join(view.rule.name for view in self.rules()) or "none; run `arsl alarms setup`"
        raise RuleNotFound(f"no alarm rule named {name!r} (rules: {known})")

    # --- series -----------------------------------------------------------------------------------

    def put_metric(
        self,
        namespace: str,
        metric: str,
        value: float,
        dimensions: Mapping[str, str],
        *,
        unit: str = "",
        at: float | None = None,
    ) -> None:
        check_custom_namespace(namespace)
        if not math.isfinite(value):
            raise AlarmRuleError(f"metric {namespace}/{metric}: value {value!r} is not a finite number")
        self.put_points(
            namespace,
            [Sample(metric, dimensions_of(dimensions), float(value), unit)],
            self._clock() if at is None else at,
        )

    def put_points(self, namespace: str, samples: Iterable[Sample], at: float) -> None:
        rows = [
            (namespace, sample.metric, _dims_key(sample.dimensions), at, sample.value, sample.unit)
            for sample in samples
            if math.isfinite(sample.value)
        ]
        if not rows:
            return
        with self.db.transaction() as connection:
            connection.executemany(
                "INSERT INTO alarm_points (namespace, metric, dimensions, time, value, unit) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def points(
        self, namespace: str, metric: str, dimensions: Mapping[str, str] | Dimensions, since: float, until: float
    ) -> list[DataPoint]:
        dims = dimensions_of(dimensions)
        rows = self.db.connection().execute(
            "SELECT time, value FROM alarm_points WHERE namespace = ? AND metric = ? AND dimensions = ? "
            "AND time >= ? AND time < ? ORDER BY time",
            (namespace, metric, _dims_key(dims), since, until),
        )
        return [DataPoint(float(at), float(value)) for at, value in rows]

    def series(
        self,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, str],
        *,
        since: float,
        until: float,
        period_s: int,
        filter: Filter,
    ) -> list[DataPoint]:
        if period_s < 1:
            raise AlarmRuleError(f"period_s = {period_s!r}: expected an integer >= 1")
        buckets: dict[int, list[float]] = {}
        for point in self.points(namespace, metric, dimensions, since, until):
            buckets.setdefault(int(point.time // period_s), []).append(point.value)
        return [DataPoint(index * period_s, Filter(filter).reduce(values)) for index, values in sorted(buckets.items())]

    # --- rounds -----------------------------------------------------------------------------------

    def sample(self, now: float | None = None) -> list[Sample]:
        """Measure the gateway over the last period (the shortest rule period) and store the points."""
        if self._sampler is None:
            return []
        now = self._clock() if now is None else now
        periods = [rule.period_s for rule, _ in self._load(self.db.connection())]
        window = float(min(periods)) if periods else 60.0
        samples = list(self._sampler(now, window))
        self.put_points(LOCAL_NAMESPACE, samples, now)
        return samples

    def evaluate(self, now: float | None = None) -> list[AlarmEvent]:
        """Judge every rule on its periods completed by `now`; record changes, then tell subscribers."""
        now = self._clock() if now is None else now
        events: list[AlarmEvent] = []
        with self._round, self.db.transaction() as connection:
            silenced = {
                rule: until
                for rule, until in connection.execute(
                    "SELECT rule, silenced_until FROM alarm_marks WHERE silenced_until IS NOT NULL"
                )
            }
            for rule, status in self._load(connection):
                start = status.next_period * rule.period_s
                dims_key = _dims_key(rule.dimensions)
                points = [
                    DataPoint(float(at), float(value))
                    for at, value in connection.execute(
                        "SELECT time, value FROM alarm_points WHERE namespace = ? AND metric = ? AND dimensions = ? "
                        "AND time >= ? AND time < ?",
                        (rule.namespace, rule.metric, dims_key, start, now),
                    )
                ]
                result = evaluate(rule, status, points, now)
                if result.status == status:
                    continue
                connection.execute(
                    "UPDATE alarm_rules SET status = ? WHERE name = ?", (json.dumps(result.status.to_json()), rule.name)
                )
                notices = {(notice.time, notice.kind): notice for notice in result.notices}
                muted = silenced.get(rule.name) is not None and silenced[rule.name] > now
                for transition in result.transitions:
                    cursor = connection.execute(
                        "INSERT INTO alarm_history (rule, time, kind, old_state, new_state, value, detail) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            rule.name,
                            transition.time,
                            HistoryKind.TRANSITION.value,
                            transition.old.value,
                            transition.new.value,
                            transition.value,
                            transition.reason,
                        ),
                    )
                    kind = (
                        NoticeKind.ALARM
                        if transition.new is AlarmState.ALARM
                        else NoticeKind.RECOVERED
                        if transition.old is AlarmState.ALARM and transition.new is AlarmState.OK
                        else None
                    )
                    if kind is not None:
                        notices.pop((transition.time, kind), None)
                    events.append(
                        AlarmEvent(
                            rule.name,
                            transition.time,
                            transition.new,
                            kind,
                            transition.value,
                            transition.reason,
                            muted,
                            int(cursor.lastrowid or 0),
                            transition.old,
                        )
                    )
                    if transition.old is AlarmState.ALARM:
                        connection.execute(
                            "UPDATE alarm_marks SET acknowledged_at = NULL, acknowledged_by = '' WHERE rule = ?",
                            (rule.name,),
                        )
                for notice in notices.values():
                    events.append(
                        AlarmEvent(
                            rule.name,
                            notice.time,
                            result.status.state,
                            notice.kind,
                            notice.value,
                            notice.reason,
                            muted,
                            0,
                        )
                    )
        events.sort(key=lambda event: (event.time, event.seq))
        self._publish(events)
        return events

    def prune(self, now: float | None = None) -> int:
        """Delete points and history older than the retention (keeping each rule's last lines); rows deleted."""
        now = self._clock() if now is None else now
        cutoff = now - self._retention_s
        with self.db.transaction() as connection:
            points = connection.execute("DELETE FROM alarm_points WHERE time < ?", (cutoff,)).rowcount
            history = connection.execute(
                "DELETE FROM alarm_history WHERE time < ? AND seq NOT IN (SELECT seq FROM (SELECT seq, ROW_NUMBER() "
                "OVER (PARTITION BY rule ORDER BY seq DESC) AS newest FROM alarm_history) WHERE newest <= ?)",
                (cutoff, HISTORY_KEPT_PER_RULE),
            ).rowcount
        return int(points) + int(history)

    def run_once(self, now: float | None = None) -> list[AlarmEvent]:
        """One round: sample, judge, prune."""
        now = self._clock() if now is None else now
        self.sample(now)
        events = self.evaluate(now)
        self.prune(now)
        return events

    # --- subscribers ------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every event of the rounds this monitor runs; returns the unsubscribe call."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def _publish(self, events: Sequence[AlarmEvent]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for event in events:
            for subscriber in subscribers:
                subscriber(event)

    # --- history and operator actions -------------------------------------------------------------

    def history(
        self, rule: str | None = None, since: float | None = None, limit: int = 100, after_seq: int = 0
    ) -> list[HistoryEntry]:
        """State changes and operator actions, oldest first (the newest `limit`); `after_seq` for polling."""
        clauses: list[str] = ["seq > ?"]
        arguments: list[object] = [after_seq]
        if rule is not None:
            clauses.append("rule = ?")
            arguments.append(rule)
        if since is not None:
            clauses.append("time >= ?")
            arguments.append(since)
        return _history_rows(self.db.connection(), clauses, arguments, limit)

    def acknowledge(self, name: str, user: str, note: str = "") -> RuleView:
        """Mark a rule's current alarm as seen (until it leaves alarm); logged."""
        self.operator_log.acknowledge(self.rule(name), user, note, self._clock())
        return self.rule(name)

    def silence(self, name: str, seconds: float, user: str, note: str = "") -> RuleView:
        """Mute a rule's notices for `seconds` (0 ends a silence); it still changes state. Logged."""
        self.operator_log.silence(self.rule(name), seconds, user, note, self._clock())
        return self.rule(name)


class OperatorLog:
    """Acknowledgements and silences with who and when: the marks on each rule and their history lines."""

    def __init__(self, db: StateDB) -> None:
        self.db = db
        db.ensure_schema(MIGRATIONS)

    def close(self) -> None:
        self.db.close()

    def marks(self) -> dict[str, tuple[float | None, str, float | None]]:
        """Rule name → (acknowledged at, by whom, silenced until)."""
        return {
            row[0]: (row[1], row[2] or "", row[3])
            for row in self.db.connection().execute(
                "SELECT rule, acknowledged_at, acknowledged_by, silenced_until FROM alarm_marks"
            )
        }

    def apply(self, view: RuleView) -> RuleView:
        """`view` with its marks; an acknowledgement counts only for the alarm it was given in."""
        acknowledged_at, acknowledged_by, silenced_until = self.marks().get(view.rule.name, (None, "", None))
        current = (
            acknowledged_at is not None
            and view.state is AlarmState.ALARM
            and (view.since is None or acknowledged_at >= view.since)
        )
        return replace(
            view,
            acknowledged_at=acknowledged_at if current else None,
            acknowledged_by=acknowledged_by if current else "",
            silenced_until=silenced_until,
        )

    def acknowledge(self, view: RuleView, user: str, note: str, now: float) -> None:
        name = view.rule.name
        if view.state is not AlarmState.ALARM:
            raise AlarmActionRefused(f"alarm rule {name!r} is {view.state.value}, not in alarm: nothing to acknowledge")
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO alarm_marks (rule, acknowledged_at, acknowledged_by) VALUES (?, ?, ?) "
                "ON CONFLICT(rule) DO UPDATE SET acknowledged_at = excluded.acknowledged_at, "
                "acknowledged_by = excluded.acknowledged_by",
                (name, now, user),
            )
            self._log(
                connection,
                name,
                now,
                HistoryKind.ACKNOWLEDGED,
                view.state,
                note or f"acknowledged while {view.rule.condition}",
                user,
            )

    def silence(self, view: RuleView, seconds: float, user: str, note: str, now: float) -> None:
        if not 0 <= seconds <= MAX_SILENCE_S:
            raise AlarmRuleError(f"silence duration {seconds:g} s: expected 0 to {MAX_SILENCE_S // 86400} days")
        name = view.rule.name
        until = now + seconds if seconds else None
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO alarm_marks (rule, silenced_until, silenced_by) VALUES (?, ?, ?) "
                "ON CONFLICT(rule) DO UPDATE SET silenced_until = excluded.silenced_until, "
                "silenced_by = excluded.silenced_by",
                (name, until, user),
            )
            detail = note or (
                f"silenced for {_human_seconds(seconds)} (until "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(until))})"
                if until
                else "silence ended"
            )
            self._log(connection, name, now, HistoryKind.SILENCED, view.state, detail, user)

    def entries(self, rule: str | None = None, since: float | None = None, limit: int = 100) -> list[HistoryEntry]:
        """The operator's lines only (for a backend whose state changes live elsewhere)."""
        clauses: list[str] = ["kind != ?"]
        arguments: list[object] = [HistoryKind.TRANSITION.value]
        if rule is not None:
            clauses.append("rule = ?")
            arguments.append(rule)
        if since is not None:
            clauses.append("time >= ?")
            arguments.append(since)
        return _history_rows(self.db.connection(), clauses, arguments, limit)

    @staticmethod
    def _log(
        connection: sqlite3.Connection,
        rule: str,
        at: float,
        kind: HistoryKind,
        state: AlarmState,
        detail: str,
        user: str,
    ) -> None:
        connection.execute(
            "INSERT INTO alarm_history (rule, time, kind, old_state, new_state, detail, user) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rule, at, kind.value, state.value, state.value, detail, user),
        )


def _history_rows(
    connection: sqlite3.Connection, clauses: list[str], arguments: list[object], limit: int
) -> list[HistoryEntry]:
    # Only fixed clause texts are joined; every value is a bound parameter.
    query = (
        "SELECT seq, rule, time, kind, old_state, new_state, value, detail, user FROM alarm_history "  # noqa: S608
        f"WHERE {' AND '.join(clauses)} ORDER BY seq DESC LIMIT ?"
    )
    rows = connection.execute(query, (*arguments, limit)).fetchall()
    return [
        HistoryEntry(
            seq=int(seq),
            rule=name,
            time=float(at),
            kind=HistoryKind(kind),
            old=AlarmState(old) if old else None,
            new=AlarmState(new) if new else None,
            value=value,
            detail=detail,
            user=user,
        )
        for seq, name, at, kind, old, new, value, detail, user in reversed(rows)
    ]


def _human_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


__all__ = ["MIGRATIONS", "LocalMonitor", "OperatorLog", "Subscriber"]
