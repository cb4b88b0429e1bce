"""The Gate tab: the evaluation gate on a finished job, and the registered model versions.

Picking a job runs `ops.gating.gate(..., dry_run=True)` (what `arsl gate JOB --dry-run` runs: every
rule against the current champion, nothing written) in a worker; `R` (passed jobs only) and `O`
(failed jobs, with a typed reason that goes into the promotion log) run `ops.gating.gate` for real
after a confirmation. The lower pane (`v` cycles it) shows the learning curves the stability and
overfitting rules read, per-class accuracy with the top confusions, the champion comparison, and
the registry's versions with their aliases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import ContentSwitcher, DataTable, Label, Select, Static

from arsl_tui.config import Settings
from arsl_tui.domain.jobs import JobStatus
from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.curves import Chart, epoch_charts
from arsl_tui.ui.formatting import error_text, phase_word
from arsl_tui.ui.gate_report import champion_rows, per_class_values, rule_cells, top_confusions, verdict_line
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.form import FormField, FormScreen, FormValues
from arsl_tui.ui.services import ConsoleServices, no_state_line, no_state_yet
from arsl_tui.ui.tabs.live import LiveTab, poll_interval
from arsl_tui.ui.widgets.accuracy_bars import AccuracyBars
from arsl_tui.ui.widgets.plot_slot import PlotSlot
from arsl_tui.ui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from arsl_tui.domain.ports import TrainingPlatform
    from arsl_tui.domain.registry import ModelVersion, RegistryState
    from arsl_tui.ops.gating import GateEvaluation, GateOutcome
    from arsl_tui.ops.registry import ModelRegistry

JOBS_SHOWN = 30
LIST_REFRESH_S = 10.0
"""Finished jobs and versions change rarely: the list is re-read this often while the tab is visible."""
VIEWS: tuple[tuple[str, str], ...] = (
    ("curves", "learning curves"),
    ("classes", "per class, confusions"),
    ("champion", "vs champion"),
    ("versions", "versions"),
)


@dataclass(frozen=True)
class VersionRow:
    version: str
    aliases: tuple[str, ...]
    verdict: str
    override: bool
    test_acc: float | None
    job_id: str
    created: str

    @classmethod
    def of(cls, record: ModelVersion, state: RegistryState) -> VersionRow:
        test_acc = record.metrics.get("test_acc")
        return cls(
            record.version,
            tuple(state.alias_of(record.version)),
            record.gate_verdict,
            record.override_reason is not None,
            float(test_acc) if isinstance(test_acc, int | float) and not isinstance(test_acc, bool) else None,
            record.lineage.job_id,
            f"{record.created_at[:16].replace('T', ' ')} {record.created_by}",
        )


class VersionsTable(DataTable[str | Text]):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id=id)
        self.shown_rows: tuple[VersionRow, ...] = ()

    def on_mount(self) -> None:
        self.add_columns("version", "aliases", "gate", "test acc", "job", "created")

    def show_versions(self, rows: list[VersionRow]) -> None:
        if tuple(rows) == self.shown_rows:
            return
        self.shown_rows = tuple(rows)
        self.clear()
        for row in reversed(rows):  # newest first
            gate = fmt.status_text(row.verdict or "unknown") + (" override" if row.override else "")
            self.add_row(
                row.version,
                ", ".join(row.aliases) or "–",
                gate,
                Text(fmt.metric(row.test_acc), justify="right"),
                row.job_id,
                row.created,
                key=row.version,
            )


class GateTab(LiveTab):
    """The gate's verdict on a finished job, and the `gate` actions: next view, register, override."""

    scope = "gate"
    focus_id = "gate-rules"

    class JobsRead(Message):
        def __init__(
            self, jobs: list[JobStatus], versions: list[VersionRow], error: str, no_state: bool = False
        ) -> None:
            super().__init__()
            self.jobs = jobs
            self.versions = versions
            self.error = error
            self.no_state = no_state
            """Read-only and nothing to read yet (no state file, or no store): not an error."""

    class Evaluated(Message):
        def __init__(self, job_id: str, outcome: GateOutcome | None, registered: str | None, error: str) -> None:
            super().__init__()
            self.job_id = job_id
            self.outcome = outcome
            self.registered = registered
            self.error = error

    class Registered(Message):
        def __init__(self, job_id: str, outcome: GateOutcome | None, error: str) -> None:
            super().__init__()
            self.job_id = job_id
            self.outcome = outcome
            self.error = error

    def __init__(self, settings: Settings, services: ConsoleServices) -> None:
        super().__init__(settings, services, id="gate-body")
        self.jobs: list[JobStatus] = []
        self.selected: str | None = None
        self.evaluation: GateEvaluation | None = None
        self.registered: str | None = None
        """The version this job is registered as, if it is."""
        self.versions: list[VersionRow] = []
        self.view_index = 0
        self.busy = False
        self.evaluations = 0
        """Evaluations shown so far (tests wait on it)."""
        self._verdicts: dict[str, str] = {}
        self._job_options: list[tuple[str, str]] = []
        self._list_error = ""

    def compose(self) -> ComposeResult:
        with Horizontal(id="gate-pick"):
            yield Label("Finished job ", id="gate-pick-label")
            yield Select[str]([], prompt="no finished training job yet", id="gate-job", compact=True)
        yield StatusLine(
            "○ Pick a finished job: every gate rule is evaluated against the champion (nothing is written).",
            id="gate-verdict",
        )
        yield DataTable[str | Text](id="gate-rules", cursor_type="row", zebra_stripes=False)
        yield Static("", id="gate-pane-title")
        with ContentSwitcher(initial="gate-curves", id="gate-pane"):
            with Horizontal(id="gate-curves"):
                yield PlotSlot(id="gate-accuracy-plot")
                yield PlotSlot(id="gate-loss-plot")
            with Horizontal(id="gate-classes"):
                yield AccuracyBars(id="gate-class-bars")
                yield Static("", id="gate-confusions", markup=False)
            yield Static("", id="gate-champion", markup=False)
            yield VersionsTable(id="gate-versions")

    def on_mount(self) -> None:
        rules = self.query_one("#gate-rules", DataTable)
        for column in ("", "rule", "measured", "threshold", "detail"):
            rules.add_column(column, key=column or "verdict")
        self._show_pane_title()
        self.start_timer(max(LIST_REFRESH_S, poll_interval(self.settings, LIST_REFRESH_S)), self.reload)

    # ----- workers --------------------------------------------------------------------------------

    def _open(self) -> tuple[TrainingPlatform, ModelRegistry]:
        return self._open_platform(), self._open_registry()

    def _open_platform(self) -> TrainingPlatform:
        return self.adapter("platform", lambda: self.services.open_training_platform(self.settings))

    def _open_registry(self) -> ModelRegistry:
        return self.adapter("registry", lambda: self.services.open_registry(self.settings))

    def read(self) -> None:
        self._list_worker()

    @work(thread=True, group="gate-list", exit_on_error=False)
    def _list_worker(self) -> None:
        jobs: list[JobStatus] = []
        versions: list[VersionRow] = []
        errors: list[str] = []
        no_state = False
        try:
            jobs = [job for job in self._open_platform().list(limit=JOBS_SHOWN) if job.terminal]
        except Exception as error:  # TrainingError, or a provider bug: shown, the versions still load
            if no_state_yet(error):
                no_state = True
            else:
                errors.append(f"training jobs: {error_text(error)}")
        try:
            registry = self._open_registry()
            state = registry.state()
            versions = [VersionRow.of(record, state) for record in registry.list()]
        except Exception as error:
            if no_state_yet(error):
                no_state = True
            else:
                errors.append(f"registry: {error_text(error)}")
        self.post_message(self.JobsRead(jobs, versions, "; ".join(errors), no_state))

    @work(thread=True, exclusive=True, group="gate-evaluate", exit_on_error=False)
    def _evaluate_worker(self, job_id: str) -> None:
        from arsl_tui.ops.gating import gate

        try:
            platform, registry = self._open()
            outcome = gate(self.settings, job_id, dry_run=True, platform=platform, registry=registry)
            found = registry.find_by_job(job_id)
        except Exception as error:  # GateError, TrainingError, MetricsFormatError, RegistryError: a message
            self.post_message(self.Evaluated(job_id, None, None, error_text(error)))
        else:
            self.post_message(self.Evaluated(job_id, outcome, found.version if found else None, ""))

    @work(thread=True, group="gate-register", exit_on_error=False)
    def _register_worker(self, job_id: str, reason: str | None) -> None:
        from arsl_tui.ops.gating import gate

        try:
            platform, registry = self._open()
            outcome = gate(self.settings, job_id, reason, platform=platform, registry=registry)
        except Exception as error:  # every failure is a message; the registry's writes are all-or-nothing
            self.post_message(self.Registered(job_id, None, error_text(error)))
        else:
            self.post_message(self.Registered(job_id, outcome, ""))

    # ----- results (UI thread) --------------------------------------------------------------------

    def on_gate_tab_jobs_read(self, message: JobsRead) -> None:
        self.read_ended()
        if message.error:
            if message.error != self._list_error:  # logged once, not at every refresh
                self._log("error", f"gate: {message.error}")
            if not message.jobs and self.evaluation is None:
                self._verdict("error", "error", message.error)
        elif message.no_state and not message.jobs and self.evaluation is None:
            self._verdict("info", "none", no_state_line(self.settings, "training jobs or model versions"))
        self._list_error = message.error
        self.jobs = message.jobs
        self.versions = message.versions
        self.query_one("#gate-versions", VersionsTable).show_versions(message.versions)
        self._show_job_options()
        if self.selected is None and self.jobs:
            self.select_job(self.jobs[0].job_id)

    def _show_job_options(self) -> None:
        picker = self.query_one("#gate-job", Select)
        options = [(self._job_label(job), job.job_id) for job in self.jobs]
        if options != self._job_options:
            self._job_options = options
            with picker.prevent(Select.Changed):
                picker.set_options(options)
                if self.selected is not None and self.selected in {job.job_id for job in self.jobs}:
                    picker.value = self.selected

    def _job_label(self, job: JobStatus) -> str:
        verdict = self._verdicts.get(job.job_id)
        ended = f" · ended {fmt.timestamp(job.ended_at)}" if job.ended_at else ""
        return f"{job.job_id} · {fmt.status_text(phase_word(job))}{ended}" + (
            f" · gate {fmt.status_text(verdict)}" if verdict else ""
        )

    @on(Select.Changed, "#gate-job")
    def _job_picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.selected:
            self.select_job(event.value)

    def select_job(self, job_id: str) -> None:
        self.selected = job_id
        picker = self.query_one("#gate-job", Select)
        if picker.value != job_id and job_id in {value for _, value in self._job_options}:
            with picker.prevent(Select.Changed):
                picker.value = job_id
        self.evaluation = None
        self.registered = None
        self._verdict("info", "validating", f"Evaluating the gate on {job_id} …")
        self.app.refresh_bindings()
        self._evaluate_worker(job_id)

    def on_gate_tab_evaluated(self, message: Evaluated) -> None:
        if message.job_id != self.selected:
            return
        self.evaluations += 1
        if message.outcome is None:
            self.evaluation = None
            self._verdict("error", "error", f"{message.job_id}: {message.error}")
            self._log("error", f"gate on {message.job_id}: {message.error}")
            self.query_one("#gate-rules", DataTable).clear()
            self.app.refresh_bindings()
            return
        evaluation = message.outcome.evaluation
        self.evaluation = evaluation
        self.registered = message.registered
        self._verdicts[message.job_id] = evaluation.record.verdict
        self._show_job_options()
        read_only = bool(getattr(self.app, "read_only", False))
        level, status, text = verdict_line(
            evaluation.record, evaluation.record.champion_version, self.registered, read_only
        )
        if evaluation.job.phase.value != "Completed":
            text += f" The job ended {evaluation.job.phase.value}: there is no model to register."
        self._verdict(level, status, text)
        rules = self.query_one("#gate-rules", DataTable)
        rules.clear()
        rules.styles.height = len(evaluation.record.rules) + 1
        for rule in evaluation.record.rules:
            glyph, name, measured, threshold, detail = rule_cells(rule)
            rules.add_row(
                glyph, name, Text(measured, justify="right"), Text(threshold, justify="right"), detail, key=rule.rule
            )
        self._show_details(evaluation)
        self.app.refresh_bindings()

    def _show_details(self, evaluation: GateEvaluation) -> None:
        loss, accuracy = epoch_charts(evaluation.summary.epochs)
        window = self.settings.gate.stability_epochs
        self.query_one("#gate-accuracy-plot", PlotSlot).show(_titled(accuracy, f"accuracy (stability: last {window})"))
        self.query_one("#gate-loss-plot", PlotSlot).show(_titled(loss, f"loss (trend: last {window})"))
        final = evaluation.summary.final
        classes = (evaluation.final or {}).get("classes")
        self.query_one("#gate-class-bars", AccuracyBars).set_values(
            per_class_values(final, classes if isinstance(classes, list) else None),
            self.settings.gate.min_class_accuracy,
        )
        confusions = top_confusions(evaluation.final)
        self.query_one("#gate-confusions", Static).update(
            "Top confusions (true → predicted)\n"
            + ("\n".join(item.line() for item in confusions) if confusions else "none recorded")
        )
        champion = evaluation.champion
        table = Table(box=None, show_edge=False, pad_edge=False, expand=False)
        for column in ("figure", "this job", f"champion {champion.version}" if champion else "champion", "change"):
            table.add_column(column, justify="left" if column == "figure" else "right")
        for row in champion_rows(final, champion.final_metrics() if champion else None):
            table.add_row(*row)
        caption = (
            f"champion {champion.version}: job {champion.lineage.job_id}, registered {champion.created_at[:10]}"
            if champion
            else "No champion yet: the first version to pass becomes champion as well."
        )
        self.query_one("#gate-champion", Static).update(
            Text.assemble(caption, "\n") if not final else _stack(caption, table)
        )

    # ----- keys -----------------------------------------------------------------------------------

    def availability(self, action: str) -> bool | None:
        evaluation = self.evaluation
        finished = evaluation is not None and evaluation.job.phase.value == "Completed"
        # Of register and override only the one that fits the verdict is offered (the footer has no room for both).
        if action == "gate_register":
            if evaluation is not None and not evaluation.passed:
                return False
            return bool(finished and evaluation is not None and self.registered is None and not self.busy) or None
        if action == "gate_override":
            if evaluation is None or evaluation.passed:
                return False
            return bool(finished and self.registered is None and not self.busy) or None
        return True

    def current_id(self) -> str:
        return self.selected or ""

    def action_gate_next_view(self) -> None:
        self.view_index = (self.view_index + 1) % len(VIEWS)
        self.query_one("#gate-pane", ContentSwitcher).current = f"gate-{VIEWS[self.view_index][0]}"
        self._show_pane_title()

    def _show_pane_title(self) -> None:
        title = Text("v ▸ ", style="bold")
        for index, (_, label) in enumerate(VIEWS):
            if index:
                title.append(" · ")
            title.append(
                f"[{label}]" if index == self.view_index else label,
                style="bold reverse" if index == self.view_index else "dim",
            )
        self.query_one("#gate-pane-title", Static).update(title)

    def action_gate_register(self) -> None:
        evaluation = self.evaluation
        if evaluation is None or not evaluation.passed or self.registered is not None:
            return
        job = evaluation.job
        champion = evaluation.record.champion_version
        lines = [
            f"Register job {job.job_id}'s model (passed all {len(evaluation.record.rules)} rules) as the next version.",
            f"Copies its package from {fmt.shorten_ids(job.output) or 'the job output'}/model into the registry "
            f"({self.settings.storage.models_prefix}); the gate record is stored with it.",
            "The new version becomes challenger"
            + (f"; champion stays {champion}." if champion else " and champion (there is none yet)."),
            "Written to the promotion log with your user name. Nothing is deleted.",
        ]

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._start_registration(job.job_id, None)

        self.app.push_screen(ConfirmScreen("Register this model version?", lines, "Register"), answered)

    def action_gate_override(self, error: str = "") -> None:
        evaluation = self.evaluation
        if evaluation is None or evaluation.passed or self.registered is not None:
            return
        job = evaluation.job
        failed = ", ".join(rule.rule for rule in evaluation.record.failed_rules)
        explanation = [
            f"Job {job.job_id} FAILED the gate ({failed}).",
            "Registering it anyway makes it challenger (never champion without a separate, reasoned "
            "move); the override and your reason go into the promotion log for good.",
            "Type why, then Enter to register; Esc changes nothing.",
        ]

        def answered(values: FormValues | None) -> None:
            if values is None:
                self._log("info", f"override of {job.job_id} cancelled")
                return
            self._start_registration(job.job_id, values["reason"])

        self.app.push_screen(
            FormScreen(
                "Register a failed model by override?",
                explanation,
                [FormField("reason", "reason", placeholder="why this model should be registered although it failed")],
                "Register anyway",
                check=_check_reason,
                error=error,
            ),
            answered,
        )

    def _start_registration(self, job_id: str, reason: str | None) -> None:
        self.busy = True
        what = f"by override ({reason})" if reason else "after a passed gate"
        self._verdict("info", "running", f"Registering {job_id} {what} …")
        self._log("info", f"registering {job_id} {what}")
        self.app.refresh_bindings()
        self._register_worker(job_id, reason)

    def on_gate_tab_registered(self, message: Registered) -> None:
        self.busy = False
        outcome = message.outcome
        if outcome is None or outcome.version is None:
            error = message.error or "the gate did not pass, so nothing was registered"
            self._verdict("error", "error", f"Not registered: {error}")
            self._log("error", f"registering {message.job_id}: {error}")
        else:
            aliases = " and ".join(outcome.aliases) or "no alias"
            how = " by override" if outcome.overridden else ""
            verb = "was already registered as" if outcome.already_registered else f"registered{how} as"
            self._verdict("ok", "done", f"{message.job_id} {verb} {outcome.version.version} ({aliases}).")
            self._log("ok", f"{message.job_id} {verb} {outcome.version.version} ({aliases})")
        self.reload()
        if self.selected is not None:
            self.select_job(self.selected)

    # ----- helpers --------------------------------------------------------------------------------

    def _verdict(self, level: str, status: str, text: str) -> None:
        self.query_one("#gate-verdict", StatusLine).say(level, status, text)


def _check_reason(values: Mapping[str, str]) -> str:
    return "" if values.get("reason", "").strip() else "a reason is required: it goes into the promotion log"


def _titled(chart: Chart, title: str) -> Chart:
    return dataclasses.replace(chart, title=title)


def _stack(caption: str, table: Table) -> Table:
    outer = Table.grid()
    outer.add_row(Text(caption))
    outer.add_row(table)
    return outer
