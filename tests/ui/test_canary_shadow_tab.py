"""The Canary tab's shadow line and plan at 80 columns: the shadow window before the traffic split."""

from __future__ import annotations

from arsl_tui.domain import canary
from arsl_tui.domain.canary import Phase, Plan, ShadowStep
from arsl_tui.domain.judge import Outcome, ShadowStats
from arsl_tui.ops.canary import CanaryStatus
from arsl_tui.ui.tabs.canary import plan_line, shadow_line
from tests.unit.test_canary_shadow import verdict

T0 = 1_700_000_000.0
PLAN = Plan(Plan.uniform([10, 50, 100], 60, 20).steps, shadow=ShadowStep(100, 30, 50))


def shadowing() -> canary.CanaryRun:
    run = canary.start(None, run_id="r1", champion="v1", challenger="v2", plan=PLAN, now=T0, user="ana").run
    for action in run.pending:
        done = canary.complete(run, action.id, now=T0)
        run = done.run if isinstance(done, canary.Transition) else done
    return canary.deployed(run, now=T0).run


def test_the_shadow_window_fits_one_line_of_80_columns() -> None:
    run = shadowing()
    window = ShadowStats(
        version="v2",
        window_s=12.0,
        share=100,
        offered=130,
        sent=120,
        dropped=10,
        compared=120,
        agreed=117,
        champion_latency_ms=(4.0, 5.0, 6.0),
        challenger_latency_ms=(5.0, 6.0, 7.0),
    )
    line = shadow_line(CanaryStatus(run=run, now=T0 + 12, service="gateway", shadow=window, shadow_how="local"))
    assert line == "shadow  120 sent · 10 dropped · agree 97.5% · p50 ms v1 5.0 / v2 6.0"
    assert len(line) <= 80
    assert plan_line(run).startswith("plan  ◐ shadow → 10% → 50% → 100%")
    assert run.phase is Phase.SHADOWING


def test_after_the_shadow_the_line_says_how_it_ended_and_the_plan_ticks_it() -> None:
    passed = canary.judged_shadow(shadowing(), verdict(Outcome.PASS, "agreement 98%"), now=T0 + 30, window_s=30).run
    status = CanaryStatus(run=passed, now=T0 + 31, service="gateway", shadow_how="local")
    assert shadow_line(status) == "shadow  passed: agreement 98%"
    assert plan_line(passed).startswith("plan  ✓ shadow → ► 10%")


def test_a_backend_that_cannot_mirror_says_so() -> None:
    status = CanaryStatus(run=None, now=T0, service="svc", shadow_how="no mirroring on real-time services")
    assert shadow_line(status) == "shadow  none: no mirroring on real-time services"
