"""Every "next" hint comes from the whole state: the pipeline's row first, a running pipeline silences the steps it
is about to take, nothing is deployed before a champion exists, and "nothing waits" means no row suggests a thing."""

from __future__ import annotations

from pathlib import Path

import pytest

from arsl_tui.config import Settings
from arsl_tui.domain.pipeline_run import PhaseView, PipelineView, background_line, exit_status, run_state
from arsl_tui.ops.pipeline_log import EventLog, PipelineLock
from arsl_tui.ops.status import PhaseState, PhaseStatus, StatusReport, collect, weigh, with_pipeline
from tests.ui.fakes import DEMO_RUN, pipeline_events


def row(name: str, state: PhaseState, hint: str = "", **details: object) -> PhaseStatus:
    return PhaseStatus(name, state, f"{name} summary", dict(details), hint)


WORKFLOW = (
    row("data", PhaseState.DONE),
    row("training", PhaseState.DONE, "arsl gate job-1"),
    row("models", PhaseState.DONE, "arsl deploy v2 --canary 10", champion="v1", challenger="v2"),
    row("service", PhaseState.NONE, "arsl deploy champion"),
    row("canary", PhaseState.NONE),
    row("alarms", PhaseState.DONE),
)


def live_view() -> PipelineView:
    return PipelineView(
        run_id=DEMO_RUN,
        alive=True,
        pid=4242,
        pgid=4242,
        demo=True,
        elapsed_s=75.0,
        phases=(PhaseView("data", "", "done"), PhaseView("champion", "", "running", "seed 1")),
        progress="job-1 epoch 4/10",
    )


def test_a_running_pipeline_is_the_only_suggestion(tmp_path: Path) -> None:
    report = with_pipeline(StatusReport("local", 0.0, WORKFLOW), live_view(), tmp_path)
    assert report.rows[0].phase == "pipeline" and report.rows[0].state is PhaseState.RUNNING
    assert report.rows[0].summary == f"{DEMO_RUN} (demo) running 1m15s: champion (job-1 epoch 4/10)"
    assert [item.next_step for item in report.phases] == [""] * 6
    assert report.next_step == "arsl pipeline watch"
    ended = with_pipeline(report, PipelineView(run_id=DEMO_RUN, outcome="promoted", version="v2"), tmp_path)
    assert ended.next_step == "arsl deploy champion"  # the phases' own suggestions, weighed from as read
    assert ended.rows[0].state is PhaseState.DONE and ended.rows[0].next_step == ""


def test_nothing_is_deployed_before_there_is_a_champion() -> None:
    phases = (
        row("models", PhaseState.NONE, "arsl gate JOB", champion=None),
        row("service", PhaseState.NONE, "arsl deploy champion"),
    )
    assert [item.next_step for item in weigh(phases, None)] == ["arsl gate JOB", ""]


def test_the_next_step_is_empty_only_when_no_row_suggests_anything() -> None:
    done_with_hints = StatusReport(
        "local",
        0.0,
        (row("training", PhaseState.DONE, "arsl gate job-1"), row("canary", PhaseState.RUNNING, "arsl canary watch")),
    )
    assert done_with_hints.next_step == "arsl gate job-1"
    quiet = StatusReport("local", 0.0, (row("training", PhaseState.DONE), row("canary", PhaseState.RUNNING)))
    assert quiet.next_phase is None and quiet.next_step == ""
    attention = StatusReport(
        "local", 0.0, (*done_with_hints.phases, row("alarms", PhaseState.ATTENTION, "arsl alarms list"))
    )
    assert attention.next_step == "arsl alarms list"


@pytest.mark.parametrize(
    ("outcome", "state", "code", "hint"),
    [
        ("promoted", "done", 0, ""),
        ("rolled_back", "done", 1, "arsl canary status"),
        ("gate_failed", "done", 1, "arsl pipeline status"),
        ("failed", "failed", 1, "arsl pipeline run --demo  (resumes)"),
        ("cancelled", "cancelled", 1, "arsl pipeline run --demo  (resumes)"),
        ("interrupted", "interrupted", 1, "arsl pipeline run --demo  (resumes)"),
    ],
)
def test_each_end_of_a_run_has_its_state_exit_status_and_hint(
    tmp_path: Path, outcome: str, state: str, code: int, hint: str
) -> None:
    view = PipelineView(run_id=DEMO_RUN, outcome=outcome, demo=True, version="v2")
    assert (run_state(view), exit_status(view), background_line(view)) == (state, code, "")
    report = with_pipeline(StatusReport("local", 0.0, WORKFLOW), view, tmp_path)
    assert report.rows[0].next_step == hint
    assert report.rows[0].state is (PhaseState.DONE if outcome == "promoted" else PhaseState.ATTENTION)


def test_collect_puts_the_live_run_first_and_reads_no_state_it_would_create(tmp_path: Path) -> None:
    home = tmp_path / "home"
    lock = PipelineLock.acquire(home, DEMO_RUN)
    log = EventLog(home, DEMO_RUN)
    try:
        for payload in pipeline_events():
            log.write(payload)
        report = collect(Settings(home=str(home)))
    finally:
        log.close()
        lock.release()
    assert report.pipeline is not None and report.pipeline.details["current_phase"] == "champion"
    assert report.to_json()["pipeline"]["details"]["events_file"] == str(home / "pipeline" / f"{DEMO_RUN}.events.jsonl")
    assert report.next_step == "arsl pipeline watch"
    assert sorted(path.name for path in home.iterdir()) == ["pipeline"]  # no state file, no store created
    assert background_line(live_view()) == (
        f"pipeline {DEMO_RUN} goes on in the background (process 4242); "
        "follow it with `arsl pipeline watch`, stop it with "
        "`arsl pipeline cancel`"
    )
