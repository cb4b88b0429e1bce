"""The Canary tab: the running canary's traffic split, each version's numbers, the judge's verdicts, the plan.

It reads `CanaryController.status()` (what `arsl canary status` prints: the stored run, the serving
platform's weights and the current window's per-version stats) in a thread worker while visible,
and judges the current window so far with the controller's own judge settings (a provisional
verdict; the controller's judgement at the window's end is what counts). Before the traffic split, a
shadow line shows the shadow window (copies sent and dropped, agreement with the champion, both
latencies) or what this backend can and cannot mirror. Promote, promote --full, pause, resume, skip
shadow and rollback call `CanaryController.command` — the code `arsl canary …` runs — after a
confirmation naming the versions and weights, with the change number the user saw, so a run that
moved on meanwhile is never stepped twice. Driving the windows is `arsl canary watch`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Static

from arsl_tui.config import Settings
from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.formatting import error_text
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.services import ConsoleServices
from arsl_tui.ui.tabs.live import LiveTab, poll_interval
from arsl_tui.ui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from arsl_tui.domain.canary import CanaryRun, Command
    from arsl_tui.domain.judge import Judgement
    from arsl_tui.domain.serving import VersionStats
    from arsl_tui.ops.canary import CanaryController, CanaryStatus

CLOUD_MIN_REFRESH_S = 10.0
VERDICTS_SHOWN = 8
METRICS = ("error_rate", "latency", "p95_latency", "online_accuracy")
METRIC_LABELS = {"error_rate": "errors", "latency": "latency", "p95_latency": "p95", "online_accuracy": "accuracy"}
CLASS_GLYPHS = {"Pass": "✓", "High": "▲", "Low": "▼", "NoData": "○"}
OUTCOME_GLYPHS = {"pass": "✓", "fail": "✗", "marginal": "…", "inconclusive": "○"}
PHASE_GLYPHS = {
    "idle": "○",
    "deploying": "…",
    "shadowing": "◐",
    "observing": "►",
    "paused": "‖",
    "promoting": "►",
    "promoted": "✓",
    "rolling_back": "■",
    "rolled_back": "✗",
    "failed": "✗",
}
BAR_WIDTH = 50


def metric_cell(metric: dict[str, object]) -> str:
    """`✓ Pass`, `✗ High` (a failed metric), `▼ Low`, `○ NoData`."""
    classification = str(metric.get("classification", ""))
    glyph = "✗" if metric.get("failed") else CLASS_GLYPHS.get(classification, "·")
    return f"{glyph} {classification}"


def outcome_cell(outcome: str, score: object) -> str:
    shown = f" {score:.0f}" if isinstance(score, int | float) else ""
    return f"{OUTCOME_GLYPHS.get(outcome, '·')} {outcome}{shown}"


def traffic_bar(weights: dict[str, int], champion: str, challenger: str, width: int = BAR_WIDTH) -> Text:
    """`v1 75% ██████░░ 25% v2`: the champion's share solid, the challenger's shaded, numbers at both ends."""
    champion_weight = weights.get(champion, 0)
    challenger_weight = weights.get(challenger, 0)
    solid = round(width * champion_weight / 100)
    bar = Text(f"{champion} {champion_weight:>3}% ")
    bar.append("█" * solid, style="bold")
    bar.append("▒" * (width - solid), style="reverse")
    bar.append(f" {challenger_weight:>3}% {challenger}")
    return bar


SHADOW_GLYPHS = {"passed": "✓", "skipped": "↷", "failed": "✗", "stopped": "✗"}


def plan_line(run: CanaryRun) -> str:
    """`✓ shadow → ✓ 10% → ► 25% → 50% → 100%`: the shadow step, steps passed, the current one, those to come."""
    parts = []
    if run.plan.shadow is not None:
        glyph = SHADOW_GLYPHS.get(run.shadow_result, "")
        if not glyph and run.phase.value == "shadowing":
            glyph = PHASE_GLYPHS["shadowing"]
        parts.append(f"{glyph} shadow" if glyph else "shadow")
    for index, step in enumerate(run.plan.steps):
        if run.phase.value in ("shadowing", "deploying") and run.plan.shadow is not None:
            glyph = ""
        elif run.phase.value in ("promoted", "promoting") or index < run.step:
            glyph = "✓ "
        elif index == run.step and run.phase.value in ("rolled_back", "rolling_back", "failed"):
            glyph = "✗ "
        elif index == run.step and run.phase.active:
            glyph = f"{PHASE_GLYPHS.get(run.phase.value, '►')} "
        else:
            glyph = ""
        parts.append(f"{glyph}{step.weight}%")
    holds = f"  (held {run.holds}×)" if run.holds else ""
    return "plan  " + " → ".join(parts) + holds


STATS_COLUMNS = ("version", "role", "weight", "requests", "errors", "p50 ms", "p95 ms", "accuracy")
"""Units in the headers, so the eight columns fit 80 terminal columns whole."""


def stats_cells(stats: VersionStats | None) -> tuple[str, str, str, str, str]:
    """requests, error rate, p50, p95 (ms), online accuracy (with its label count)."""
    if stats is None:
        return ("–", "–", "–", "–", "–")
    p50, p95 = stats.percentile_ms(50), stats.percentile_ms(95)
    accuracy = stats.online_accuracy
    return (
        f"{stats.requests:,}",
        f"{100 * stats.error_rate:.2f}%" if stats.requests else "–",
        f"{p50:.1f}" if p50 is not None else "–",
        f"{p95:.1f}" if p95 is not None else "–",
        f"{100 * accuracy:.1f}% of {stats.feedback:,}" if accuracy is not None else f"– ({stats.feedback} labels)",
    )


def window_cells(judgement: Mapping[str, Any], side: str) -> tuple[str, str, str, str, str]:
    """`stats_cells` for one side (`canary` or `baseline`) of a judged window, from the judge's record:
    what a finished run served in its last window, once no live window is left to read."""
    requests = judgement.get(f"{side}_requests")
    if not isinstance(requests, int):
        return ("–", "–", "–", "–", "–")
    metrics = judgement.get("metrics")
    values = (
        {str(item.get("name")): item for item in metrics if isinstance(item, Mapping)}
        if isinstance(metrics, list)
        else {}
    )

    def value(name: str) -> float | None:
        number = values.get(name, {}).get(side)
        return float(number) if isinstance(number, int | float) and not isinstance(number, bool) else None

    def samples(name: str) -> int:
        count = values.get(name, {}).get(f"{side}_n")
        return count if isinstance(count, int) else 0

    rate, median, p95, accuracy = (
        value("error_rate"),
        value("latency"),
        value("p95_latency"),
        value("online_accuracy"),
    )
    labels = samples("online_accuracy")
    return (
        f"{requests:,}",
        f"{100 * rate:.2f}%" if rate is not None and requests else "–",
        f"{median:.1f}" if median is not None else "–",
        f"{p95:.1f}" if p95 is not None else "–",
        f"{100 * accuracy:.1f}% of {labels:,}" if accuracy is not None else f"– ({labels} labels)",
    )


def shadow_line(status: CanaryStatus) -> str:
    """The shadow window (copies sent/dropped, agreement, both latencies), how the step ended, or why there is none."""
    run = status.run
    if run is None or run.plan.shadow is None:
        return f"shadow  none: {status.shadow_how}" if status.shadow_how else ""
    window = status.shadow
    if window is not None:
        agreement = "–" if window.agreement is None else f"{100 * window.agreement:.1f}%"
        data = window.to_json(samples=False)

        def ms(name: str) -> str:
            value = data.get(name)
            return f"{value:.1f}" if isinstance(value, int | float) else "–"

        return (
            f"shadow  {window.sent:,} sent · {window.dropped:,} dropped · agree {agreement} · p50 ms "
            f"{run.champion} {ms('champion_p50_ms')} / {run.challenger} {ms('challenger_p50_ms')}"
        )
    if run.shadow_result:
        verdicts = [item for item in run.judgements if item.get("phase") == "shadow"]
        reason = (verdicts[-1].get("judgement") or {}).get("reason", "") if verdicts else ""
        return f"shadow  {run.shadow_result}" + (f": {reason}" if reason else "")
    return f"shadow  copies of {run.plan.shadow.share}% once {run.challenger} is loaded, no client traffic"


def verdict_note(record: Mapping[str, Any], champion: str, challenger: str) -> str:
    """One judged window in words: its outcome and the judge's reason, and each metric the judge had no data
    for (left out of the score), with why and the samples on each side."""
    judgement = record.get("judgement") or {}
    at = record.get("at")
    when = fmt.timestamp(float(at))[11:] if isinstance(at, int | float) else "now (so far)"
    outcome = str(judgement.get("outcome", ""))
    metrics = [item for item in judgement.get("metrics") or () if isinstance(item, Mapping)]
    missing = [item for item in metrics if item.get("classification") == "NoData"]
    where = "in shadow" if record.get("phase") == "shadow" else f"at {record.get('weight', '?')}%"
    head = f"{when} {where}: {OUTCOME_GLYPHS.get(outcome, '·')} {outcome}"
    if not missing:
        return f"{head} — {judgement.get('reason', '')}"
    score = judgement.get("score")
    scored = len(metrics) - len(missing)
    shown = (
        f"score {score:.0f} from the {scored} metrics with data"
        if isinstance(score, int | float)
        else str(judgement.get("reason", ""))
    )
    parts = [
        f"{METRIC_LABELS.get(str(item.get('name')), str(item.get('name')))}: no data (not scored) — "
        f"{item.get('reason', '')} ({challenger} {int(item.get('canary_n') or 0):,}, "
        f"{champion} {int(item.get('baseline_n') or 0):,} samples)"
        for item in missing
    ]
    return f"{head}, {shown}. " + "; ".join(parts)


@dataclass(frozen=True)
class CanaryView:
    status: CanaryStatus
    live: Judgement | None
    """The current window judged so far (provisional)."""


class CanaryTab(LiveTab):
    """The canary's state and the `canary` actions: promote, promote fully, pause, resume, roll back."""

    scope = "canary"
    focus_id = "canary-verdicts"
    DEFAULT_CSS = """
    CanaryTab #canary-note { height: auto; max-height: 3; color: $text-muted; }
    """

    class Read(Message):
        def __init__(self, view: CanaryView | None, error: str) -> None:
            super().__init__()
            self.view = view
            self.error = error

    class Commanded(Message):
        def __init__(self, what: str, error: str) -> None:
            super().__init__()
            self.what = what
            self.error = error

    def __init__(self, settings: Settings, services: ConsoleServices) -> None:
        super().__init__(settings, services, id="canary-body")
        self.view: CanaryView | None = None
        self.busy = False
        self.reads = 0
        """Reads handled so far (tests wait on it)."""
        self._shown_verdicts: tuple[tuple[str, ...], ...] = ()
        self._verdict_records: list[Mapping[str, Any]] = []
        """The judged window behind each verdict row, in row order (the note explains the highlighted one)."""
        self._read_error = ""

    def compose(self) -> ComposeResult:
        yield Static("○ reading the canary …", id="canary-run", markup=False)
        yield StatusLine("", id="canary-alarm")
        yield Static("", id="canary-traffic", markup=False)
        yield Static("", id="canary-shadow", markup=False)
        yield Static("", id="canary-plan", markup=False)
        yield DataTable[str | Text](id="canary-stats", cursor_type="none", zebra_stripes=False)
        yield Static("Judge: verdict per metric, current window first", classes="section-title")
        yield DataTable[str | Text](id="canary-verdicts", cursor_type="row", zebra_stripes=False)
        yield Static("", id="canary-note", markup=False)
        yield Static("", id="canary-reason", markup=False)
        yield StatusLine("", id="canary-status")

    def on_mount(self) -> None:
        stats = self.query_one("#canary-stats", DataTable)
        for column in STATS_COLUMNS:
            stats.add_column(column, key=column)
        verdicts = self.query_one("#canary-verdicts", DataTable)
        for column in ("window", "step", "verdict", *(METRIC_LABELS[name] for name in METRICS)):
            verdicts.add_column(column, key=column)
        self.query_one("#canary-alarm", StatusLine).display = False
        self.query_one("#canary-status", StatusLine).display = False
        self.start_timer(poll_interval(self.settings, CLOUD_MIN_REFRESH_S), self.reload)

    # ----- reading --------------------------------------------------------------------------------

    def _open(self) -> CanaryController:
        return self.adapter("controller", lambda: self.services.open_canary(self.settings))

    def read(self) -> None:
        self._read_worker()

    @work(thread=True, group="canary-read", exit_on_error=False)
    def _read_worker(self) -> None:
        try:
            controller = self._open()
            status = controller.status(live=True)
            live = self._judge_live(status)
        except Exception as error:  # CanaryError, the state file, a provider bug: a message, never a traceback
            self.post_message(self.Read(None, error_text(error)))
        else:
            self.post_message(self.Read(CanaryView(status, live), ""))

    def _judge_live(self, status: CanaryStatus) -> Judgement | None:
        from arsl_tui.domain.canary import Phase
        from arsl_tui.domain.judge import judge, judge_shadow
        from arsl_tui.domain.serving import VersionStats
        from arsl_tui.ops.canary import judge_config, shadow_config

        run = status.run
        if run is not None and run.phase is Phase.SHADOWING:
            return judge_shadow(status.shadow, shadow_config(self.settings)) if status.shadow is not None else None
        if run is None or run.phase is not Phase.OBSERVING or not status.stats:
            return None
        canary = status.stats.get(run.challenger) or VersionStats(
            version=run.challenger, window_s=0.0, requests=0, errors=0
        )
        baseline = status.stats.get(run.champion)
        if baseline is not None and baseline.requests == 0:
            baseline = None
        return judge(canary, baseline, judge_config(self.settings, run.plan.steps[run.step].min_samples))

    def on_canary_tab_read(self, message: Read) -> None:
        self.read_ended()
        self.reads += 1
        if message.view is None:
            self._say("error", "error", f"Cannot read the canary: {message.error}")
            if message.error != self._read_error:  # an outage is logged once, not at every refresh
                self._log("error", f"canary: {message.error}")
            self._read_error = message.error
            return
        if self._read_error:
            self._read_error = ""
            self.query_one("#canary-status", StatusLine).display = False
        self.view = message.view
        self._show()
        self.app.refresh_bindings()

    # ----- showing --------------------------------------------------------------------------------

    def _show(self) -> None:
        view = self.view
        if view is None:
            return
        status = view.status
        run = status.run
        alarm = self.query_one("#canary-alarm", StatusLine)
        if run is None:
            self.query_one("#canary-run", Static).update(
                f"○ The release state cannot be read: {'; '.join(status.problems)}"
                if status.state_unavailable
                else "○ No canary has run yet. `arsl canary start [VERSION]` releases the challenger beside the "
                "champion; `arsl canary watch` drives it."
            )
            for widget_id in ("#canary-traffic", "#canary-plan", "#canary-note", "#canary-reason"):
                self.query_one(widget_id, Static).update("")
            self.query_one("#canary-shadow", Static).update(
                Text(shadow_line(status), no_wrap=True, overflow="ellipsis")
            )
            alarm.display = False
            return
        phase = run.phase.value
        left = run.time_left(status.now)
        facts = [
            f"{run.challenger} vs champion {run.champion}",
            f"{PHASE_GLYPHS.get(phase, '·')} {phase.replace('_', ' ')}",
            f"step {run.step + 1}/{len(run.plan.steps)}",
        ]
        if left is not None:
            facts.append(f"window ends in {fmt.duration(left)}")
        facts.append(f"run {run.run_id}")
        if status.controller is not None:
            # Shared state (several operators' consoles on one bucket): whose controller drives the release.
            holder = status.controller
            facts.append(f"driven by {holder.user}@{holder.host} (pid {holder.pid})")
        self.query_one("#canary-run", Static).update(Text(" · ".join(facts), no_wrap=True, overflow="ellipsis"))
        if run.alarm:
            alarm.say("error", "alarm", f"ALARM — {run.alarm}")
            alarm.display = True
        elif run.error or status.problems:
            alarm.say("warning", "warning", run.error or "; ".join(status.problems))
            alarm.display = True
        else:
            alarm.display = False
        weights = (
            dict(status.platform.weights)
            if status.platform is not None and status.platform.weights
            else dict(run.target_weights)
        )
        source = "" if status.platform is not None and status.platform.weights else "  (target; platform unread)"
        bar = traffic_bar(weights, run.champion, run.challenger)
        bar.append(source)
        self.query_one("#canary-traffic", Static).update(bar)
        self.query_one("#canary-shadow", Static).update(Text(shadow_line(status), no_wrap=True, overflow="ellipsis"))
        # No live window (the run ended, or its stats are unread): show the last judged window's, labelled so.
        last = run.judgements[-1] if run.judgements and not status.stats else None
        plan = plan_line(run)
        if last is not None:
            plan += f"  · numbers: {window_span(last)}"
        self.query_one("#canary-plan", Static).update(plan)
        stats_table = self.query_one("#canary-stats", DataTable)
        stats_table.clear()
        promoted = run.phase.value == "promoted"
        for version, role, side in (
            (run.champion, "previous" if promoted else "champion", "baseline"),
            (run.challenger, "champion" if promoted else "canary", "canary"),
        ):
            cells = (
                window_cells(last.get("judgement") or {}, side)
                if last is not None
                else stats_cells(status.stats.get(version))
            )
            stats_table.add_row(
                version, role, f"{weights.get(version, 0)}%", *(Text(cell, justify="right") for cell in cells)
            )
        self._show_verdicts(view)
        self.query_one("#canary-reason", Static).update(Text(f"why: {run.reason}", no_wrap=True, overflow="ellipsis"))

    def _show_verdicts(self, view: CanaryView) -> None:
        run = view.status.run
        if run is None:
            return
        rows: list[tuple[str, ...]] = []
        records: list[Mapping[str, Any]] = []
        if view.live is not None:
            live = view.live.to_json()
            in_shadow = run.phase.value == "shadowing"
            rows.append(
                (
                    "now (so far)",
                    "shadow" if in_shadow else f"{run.plan.steps[run.step].weight}%",
                    outcome_cell(str(live["outcome"]), live.get("score")),
                    *self._metric_cells(live),
                )
            )
            records.append(
                {"weight": run.plan.steps[run.step].weight, "judgement": live, "phase": "shadow" if in_shadow else ""}
            )
        for record in reversed(run.judgements[-VERDICTS_SHOWN:]):
            records.append(record)
            judgement = record.get("judgement") or {}
            at = record.get("at")
            rows.append(
                (
                    fmt.timestamp(float(at))[11:] if isinstance(at, int | float) else "–",
                    "shadow" if record.get("phase") == "shadow" else f"{record.get('weight', '?')}%",
                    outcome_cell(str(judgement.get("outcome", "")), judgement.get("score")),
                    *self._metric_cells(judgement),
                )
            )
        self._verdict_records = records
        shown = tuple(rows)
        if shown != self._shown_verdicts:
            self._shown_verdicts = shown
            table = self.query_one("#canary-verdicts", DataTable)
            table.clear()
            for row in rows:
                table.add_row(*row)
        self._show_note()

    @on(DataTable.RowHighlighted, "#canary-verdicts")
    def _verdict_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_note()

    def _show_note(self) -> None:
        """Explain the highlighted verdict (the newest until the user moves): why it passed with a metric the
        judge had no data for, or why it held or failed."""
        run = self.run
        table = self.query_one("#canary-verdicts", DataTable)
        row = table.cursor_row if 0 <= table.cursor_row < len(self._verdict_records) else 0
        note = (
            verdict_note(self._verdict_records[row], run.champion, run.challenger)
            if run is not None and self._verdict_records
            else ""
        )
        self.query_one("#canary-note", Static).update(note)

    @staticmethod
    def _metric_cells(judgement: dict[str, object]) -> list[str]:
        metrics = judgement.get("metrics")
        by_name = (
            {str(item.get("name")): item for item in metrics if isinstance(item, dict)}
            if isinstance(metrics, list)
            else {}
        )
        return [metric_cell(by_name[name]) if name in by_name else "–" for name in METRICS]

    # ----- keys -----------------------------------------------------------------------------------

    @property
    def run(self) -> CanaryRun | None:
        return self.view.status.run if self.view is not None else None

    def availability(self, action: str) -> bool | None:
        run = self.run
        if run is None or (run.phase.ended and run.phase.value != "failed"):
            return False  # nothing to act on: the footer shows none of the canary's keys
        if self.busy:
            return None
        phase = run.phase.value
        if action in ("canary_promote", "canary_promote_full"):
            return (phase in ("observing", "paused") and not run.busy) or None
        if action == "canary_pause":
            return False if phase == "paused" else ((phase == "observing" and not run.busy) or None)
        if action == "canary_resume":
            return phase == "paused"
        if action == "canary_rollback":
            return phase in ("deploying", "shadowing", "observing", "paused", "failed") or None
        if action == "canary_skip_shadow":
            return False if phase != "shadowing" else ((not run.busy) or None)
        return True

    def current_id(self) -> str:
        run = self.run
        return run.run_id if run is not None else ""

    def action_canary_promote(self) -> None:
        self._request("promote")

    def action_canary_promote_full(self) -> None:
        self._request("promote_full")

    def action_canary_pause(self) -> None:
        self._request("pause")

    def action_canary_resume(self) -> None:
        self._request("resume")

    def action_canary_rollback(self) -> None:
        self._request("rollback")

    def action_canary_skip_shadow(self) -> None:
        self._request("skip_shadow")

    def _request(self, name: str) -> None:
        """Confirm, then send `name` (promote, promote_full, pause, resume, rollback) to the controller."""
        run = self.run
        if run is None:
            return
        title, lines, label = confirmation(name, run)

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.busy = True
                self._say("info", "running", f"{label} …")
                self._log("info", f"canary {run.run_id}: {name} (change {run.seq})")
                self.app.refresh_bindings()
                self._command_worker(name, run.seq)

        self.app.push_screen(ConfirmScreen(title, lines, label), answered)

    @work(thread=True, group="canary-command", exit_on_error=False)
    def _command_worker(self, name: str, seq: int) -> None:
        from arsl_tui.domain.canary import Command

        command: Command = Command(name)
        try:
            run = self._open().command(command, expect_seq=seq)
        except Exception as error:  # refused (the run moved on), platform or registry errors: a message
            self.post_message(self.Commanded(name, error_text(error)))
        else:
            self.post_message(self.Commanded(f"{name}: {run.phase.value.replace('_', ' ')} — {run.reason}", ""))

    def on_canary_tab_commanded(self, message: Commanded) -> None:
        self.busy = False
        if message.error:
            self._say("error", "error", f"{message.what} not done: {message.error}")
            self._log("error", f"canary {message.what}: {message.error}")
        else:
            self._say("ok", "done", message.what)
            self._log("ok", f"canary {message.what}")
        self.app.refresh_bindings()
        self.reload()

    def _say(self, level: str, status: str, text: str) -> None:
        line = self.query_one("#canary-status", StatusLine)
        line.say(level, status, text)
        line.display = True


def window_span(record: Mapping[str, Any]) -> str:
    """`last window 10:15–10:20`: when the judged window whose numbers are shown ran."""
    at, length = record.get("at"), record.get("window_s")
    if not isinstance(at, int | float):
        return "last window"
    start = f"{fmt.timestamp(float(at) - float(length))[11:]}–" if isinstance(length, int | float) else ""
    return f"last window {start}{fmt.timestamp(float(at))[11:]}"


def confirmation(name: str, run: CanaryRun) -> tuple[str, list[str], str]:
    """(title, what happens, button label) for a command on `run`, naming the versions and weights."""
    champion, challenger = run.champion, run.challenger
    now = run.plan.steps[run.step].weight
    split = f"{champion} {100 - now}% / {challenger} {now}%"
    full = f"{champion} 0% / {challenger} 100%"
    restore = f"{champion} 100% / {challenger} 0%"
    logged = "Written to the promotion log with your user name."
    if name == "promote" and run.step < run.plan.last:
        after = run.plan.steps[run.step + 1].weight
        return (
            "Step the canary up?",
            [
                f"Move {challenger} from {now}% to {after}% without waiting for the judge.",
                f"Traffic: {split} → {champion} {100 - after}% / {challenger} {after}%.",
                "A new observation window starts at the new weight.",
                logged,
            ],
            "Promote",
        )
    if name in ("promote", "promote_full"):
        return (
            "Promote the canary fully?",
            [
                f"{challenger} takes all traffic and becomes champion now (the remaining steps are skipped).",
                f"Traffic: {split} → {full}; {champion} stops serving.",
                logged,
            ],
            "Promote fully",
        )
    if name == "pause":
        return (
            "Pause the canary?",
            [
                f"Stop judging {challenger}; traffic stays at {split}.",
                "Nothing steps up or rolls back until you resume (r).",
                logged,
            ],
            "Pause",
        )
    if name == "skip_shadow":
        first = run.plan.steps[0].weight
        return (
            "Skip the shadow step?",
            [
                f"Stop the copies to {challenger} and give it {first}% of traffic now, without a shadow verdict.",
                f"Traffic: {restore} → {champion} {100 - first}% / {challenger} {first}%.",
                logged,
            ],
            "Skip shadow",
        )
    if name == "resume":
        return (
            "Resume the canary?",
            [f"Judge {challenger} again at {split}: a new window starts now.", logged],
            "Resume",
        )
    return (
        "Roll the canary back?",
        [
            f"{champion} takes all traffic again, at once: {split} → {restore}.",
            f"{challenger} stays registered (challenger); the run ends rolled back.",
            logged,
        ],
        "Roll back",
    )
