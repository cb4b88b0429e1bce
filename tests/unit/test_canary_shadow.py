"""The shadow step: the state machine's transitions, the shadow verdict, and the controller driving both.

The controller half runs the real controller (real SQLite state, a real local registry and promotion
log) on the in-memory serving platform of `test_canary_state` and an in-memory mirror whose copies
are answered by each version's quality: "permuted" disagrees with the champion on every copy, "good"
agrees on all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain import canary
from arsl_tui.domain.canary import CanaryError, CanaryRun, Command, Phase, Plan, ShadowStep, Transition
from arsl_tui.domain.judge import Judgement, Outcome, ShadowConfig, ShadowStats, judge_shadow
from arsl_tui.ops.canary import CanaryController
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.canary_store import CanaryStore
from tests.unit.test_canary_state import T0, FakePlatform, copy_registry, finish, kinds, registry_template

__all__ = ["registry_template"]  # the module-scoped fixture, shared with the canary state tests

SHADOW = ShadowStep(share=100, window_s=30, min_samples=50)
PLAN = Plan(Plan.uniform([10, 50, 100], window_s=60, min_samples=20).steps, deploy_timeout_s=600, shadow=SHADOW)


def started(now: float = T0) -> Transition:
    return canary.start(None, run_id="r1", champion="v1", challenger="v2", plan=PLAN, now=now, user="ana")


def shadowing(now: float = T0) -> CanaryRun:
    return finish(canary.deployed(finish(started(now).run, now), now=now).run, now)


def verdict(outcome: Outcome, reason: str = "synthetic") -> Judgement:
    return Judgement(outcome=outcome, score=None, metrics=(), reason=reason, canary_requests=80, baseline_requests=80)


# --- the state machine ----------------------------------------------------------------------------


def test_start_deploys_the_challenger_without_traffic_and_turns_the_copies_on() -> None:
    transition = started()
    assert transition.run.phase is Phase.DEPLOYING
    assert kinds(transition.actions) == ["deploy", "shadow"]
    assert dict(transition.actions[0].weights) == {"v1": 100, "v2": 0}
    assert dict(transition.actions[1].weights) == {"v2": 100}
    assert transition.run.deploy_weights == {"v1": 100, "v2": 0}
    assert "first in shadow" in transition.run.reason


def test_deployed_starts_the_shadow_window_not_the_first_step() -> None:
    run = shadowing()
    assert run.phase is Phase.SHADOWING
    assert run.target_weights == {"v1": 100, "v2": 0}
    assert run.next_judgement_at == T0 + SHADOW.window_s
    assert run.due(T0 + SHADOW.window_s) and not run.due(T0 + 1)


def test_a_passing_shadow_stops_the_copies_then_gives_the_first_step() -> None:
    transition = canary.judged_shadow(shadowing(), verdict(Outcome.PASS), now=T0 + 30, window_s=30)
    assert transition.run.phase is Phase.OBSERVING and transition.run.step == 0
    assert kinds(transition.actions) == ["shadow", "set_weights"]
    assert dict(transition.actions[0].weights) == {"v2": 0}
    assert dict(transition.actions[1].weights) == {"v1": 90, "v2": 10}
    assert transition.run.shadow_result == "passed" and transition.log is not None
    assert transition.log.event == "shadow_pass"
    run = finish(transition.run, T0 + 31)
    assert run.window_started_at == T0 + 31  # the first step's window starts once its weights are set
    assert run.judgements[-1]["phase"] == "shadow"


def test_a_failing_shadow_ends_the_release_before_any_client_saw_the_challenger() -> None:
    transition = canary.judged_shadow(shadowing(), verdict(Outcome.FAIL, "agreement low"), now=T0 + 30, window_s=30)
    assert transition.run.phase is Phase.ROLLING_BACK
    assert kinds(transition.actions) == ["shadow", "set_weights", "alarm"]
    assert dict(transition.actions[1].weights) == {"v1": 100, "v2": 0}
    assert "stopped in shadow" in transition.run.alarm and "agreement low" in transition.run.alarm
    after = canary.complete(transition.run, transition.actions[0].id, now=T0 + 31)
    assert isinstance(after, CanaryRun)
    result = canary.complete(after, transition.actions[1].id, now=T0 + 31)
    assert isinstance(result, Transition) and result.run.phase is Phase.ROLLED_BACK
    assert result.run.shadow_result == "failed"


@pytest.mark.parametrize("outcome", [Outcome.INCONCLUSIVE, Outcome.MARGINAL])
def test_a_thin_shadow_window_is_held(outcome: Outcome) -> None:
    transition = canary.judged_shadow(shadowing(), verdict(outcome), now=T0 + 30, window_s=30)
    assert transition.run.phase is Phase.SHADOWING and transition.actions == () and transition.log is None
    assert transition.run.holds == 1 and transition.run.next_judgement_at == T0 + 60


def test_skip_and_rollback_from_shadow() -> None:
    skipped = canary.apply_command(shadowing(), Command.SKIP_SHADOW, now=T0 + 5, user="ana", reason="in a hurry")
    assert skipped.run.phase is Phase.OBSERVING and skipped.run.shadow_result == "skipped"
    assert kinds(skipped.actions) == ["shadow", "set_weights"] and "in a hurry" in skipped.run.reason
    rolled = canary.apply_command(shadowing(), Command.ROLLBACK, now=T0 + 5, user="ana")
    assert rolled.run.phase is Phase.ROLLING_BACK
    assert kinds(rolled.actions) == ["set_weights", "shadow"]
    with pytest.raises(CanaryError, match="skip the shadow step"):
        canary.apply_command(finish(skipped.run, T0 + 6), Command.SKIP_SHADOW, now=T0 + 7, user="ana")


def test_a_shadow_run_survives_a_json_round_trip() -> None:
    run = shadowing()
    again = CanaryRun.from_json(run.to_json())
    assert again == run and again.plan.shadow == SHADOW


def test_a_plan_without_shadow_is_unchanged() -> None:
    plan = PLAN.without_shadow()
    transition = canary.start(None, run_id="r1", champion="v1", challenger="v2", plan=plan, now=T0, user="ana")
    assert kinds(transition.actions) == ["deploy"] and dict(transition.actions[0].weights) == {"v1": 90, "v2": 10}
    assert "shadow" not in plan.to_json()


# --- the shadow verdict ---------------------------------------------------------------------------

CONFIG = ShadowConfig(min_samples=50, min_agreement=0.9, min_feedback=20)


def window(agreed: int, compared: int = 200, **changes: object) -> ShadowStats:
    values: dict[str, object] = {
        "version": "v2",
        "window_s": 30.0,
        "share": 100,
        "offered": compared,
        "sent": compared,
        "compared": compared,
        "agreed": agreed,
        "champion_latency_ms": tuple(10.0 + index % 5 for index in range(compared)),
        "challenger_latency_ms": tuple(10.0 + index % 5 for index in range(compared)),
        **changes,
    }
    return ShadowStats(**values)  # type: ignore[arg-type]


def test_permuted_labels_fail_on_agreement() -> None:
    judgement = judge_shadow(window(agreed=6), CONFIG)
    assert judgement.outcome is Outcome.FAIL
    assert "agrees with the champion on 3.00%" in judgement.reason


def test_an_agreeing_challenger_passes() -> None:
    judgement = judge_shadow(window(agreed=196), CONFIG)
    assert judgement.outcome is Outcome.PASS, judgement.reason
    assert {metric.name for metric in judgement.metrics} == {"agreement", "error_rate", "latency", "online_accuracy"}


def test_too_few_copies_hold_and_say_drops() -> None:
    judgement = judge_shadow(window(agreed=10, compared=10, dropped=40), CONFIG)
    assert judgement.outcome is Outcome.INCONCLUSIVE and "40 copies dropped" in judgement.reason


def test_accuracy_on_the_same_requests_fails_a_challenger_that_agrees_often_but_is_wrong_more() -> None:
    judgement = judge_shadow(
        window(agreed=186, feedback=200, champion_correct=196, challenger_correct=150), ShadowConfig(min_samples=50)
    )
    assert judgement.outcome is Outcome.FAIL
    assert next(metric for metric in judgement.metrics if metric.name == "online_accuracy").failed


def test_a_much_slower_challenger_is_flagged_by_mann_whitney_but_does_not_block() -> None:
    slow = tuple(40.0 + index % 5 for index in range(200))
    judgement = judge_shadow(window(agreed=198, challenger_latency_ms=slow), CONFIG)
    latency = next(metric for metric in judgement.metrics if metric.name == "latency")
    assert latency.failed and latency.p_value is not None and latency.p_value < 0.01
    assert judgement.outcome is Outcome.PASS and "not blocking" in judgement.reason


def test_errors_on_copies_fail_the_shadow() -> None:
    judgement = judge_shadow(window(agreed=190, compared=190, errors=10), CONFIG)
    assert judgement.outcome is Outcome.FAIL and "failed 5.00% of the copies" in judgement.reason


# --- the controller -------------------------------------------------------------------------------


class MemoryMirror:
    """Copies answered by each version's quality; counts of client requests stay on the platform."""

    how = "in memory"

    def __init__(self, quality: Mapping[str, str]) -> None:
        self.quality = dict(quality)
        self.target: tuple[str | None, int] = (None, 0)
        self.calls: list[tuple[str | None, int]] = []

    def set_shadow(self, service: str, version: str | None, share: int, reason: str = "") -> None:
        self.target = (version, share if version else 0)
        self.calls.append(self.target)

    def shadow(self, service: str) -> tuple[str | None, int]:
        return self.target

    def shadow_stats(self, service: str, window_s: float) -> ShadowStats:
        version = self.target[0] or ""
        agreed = 0 if self.quality.get(version) == "permuted" else 120
        return window(agreed=agreed, compared=120, version=version, window_s=window_s)


@dataclass
class Rig:
    root: Path
    platform: FakePlatform
    mirror: MemoryMirror
    now: float = T0

    @property
    def settings(self) -> Settings:
        return load_settings(
            None,
            environ={},
            cwd=self.root,
            cli_overrides={
                "home": str(self.root / "home"),
                "canary.steps": "25,100",
                "canary.window_s": 60,
                "canary.min_samples": 20,
                "canary.min_feedback": 10,
                "canary.shadow_window_s": 30,
                "canary.shadow_min_samples": 50,
            },
        )

    def controller(self, *, with_mirror: bool = True) -> CanaryController:
        return CanaryController(
            self.settings,
            platform=self.platform,
            registry=ModelRegistry(LocalObjectStore(self.root / "store"), "models/", clock=lambda: self.now),
            store=CanaryStore.open(self.root / "home"),
            service="svc",
            user="ana",
            clock=lambda: self.now,
            shadow_tap=(lambda: self.mirror) if with_mirror else None,
            shadow_unavailable="" if with_mirror else "nothing mirrors here",
        )

    def end_window(self, controller: CanaryController) -> CanaryRun:
        run = controller.current()
        assert run is not None and run.next_judgement_at is not None
        self.now = run.next_judgement_at + 0.5
        ticked = controller.tick()
        assert ticked is not None
        return ticked


def rig(root: Path, template: Path, quality: Mapping[str, str]) -> Rig:
    copy_registry(template, root)
    return Rig(root=root, platform=FakePlatform(quality), mirror=MemoryMirror(quality))


def test_a_permuted_challenger_is_stopped_in_shadow_and_never_gets_traffic(
    registry_template: Path, tmp_path: Path
) -> None:
    world = rig(tmp_path, registry_template, {"v3": "permuted"})
    controller = world.controller()
    try:
        run = controller.start("v3")
        assert run.phase is Phase.SHADOWING
        assert world.mirror.target == ("v3", 100)
        run = world.end_window(controller)
        assert run.phase is Phase.ROLLED_BACK and run.shadow_result == "failed"
        # Every split the platform was ever given kept v3 at 0 %.
        assert all(weights.get("v3", 0) == 0 for _call, weights in world.platform.calls), world.platform.calls
        assert world.mirror.target == (None, 0)
        reasons = [entry.reason for entry in controller.registry.log() if entry.action == "canary"]
        assert any(reason.startswith("shadow_fail: stopped in shadow") for reason in reasons), reasons
        status = controller.status()
        assert status.rolled_back and status.to_json()["shadow"]["result"] == "failed"
        assert controller.store.alarms()[0]["reason"] == run.alarm
    finally:
        controller.close()


def test_a_good_challenger_passes_shadow_and_is_promoted(registry_template: Path, tmp_path: Path) -> None:
    world = rig(tmp_path, registry_template, {"v3": "good"})
    controller = world.controller()
    try:
        assert controller.start("v3").phase is Phase.SHADOWING
        run = world.end_window(controller)
        assert run.phase is Phase.OBSERVING and run.step == 0 and run.shadow_result == "passed"
        assert world.platform.weights == {"v1": 75, "v3": 25}
        while run.phase is Phase.OBSERVING:
            run = world.end_window(controller)
        assert run.phase is Phase.PROMOTED
        events = [entry.reason.split(":", 1)[0] for entry in controller.registry.log() if entry.action == "canary"]
        assert events[:3] == ["start", "shadow", "shadow_pass"]
    finally:
        controller.close()


def test_a_restarted_gateway_gets_its_mirror_back_at_the_next_judgement(
    registry_template: Path, tmp_path: Path
) -> None:
    world = rig(tmp_path, registry_template, {"v3": "good"})
    controller = world.controller()
    try:
        controller.start("v3")
        world.mirror.target = (None, 0)  # what a restarted gateway reports
        world.end_window(controller)
        assert ("v3", 100) in world.mirror.calls[1:]
    finally:
        controller.close()


def test_without_a_mirror_the_run_starts_at_the_first_step_and_says_why(
    registry_template: Path, tmp_path: Path
) -> None:
    world = rig(tmp_path, registry_template, {"v3": "good"})
    controller = world.controller(with_mirror=False)
    try:
        run = controller.start("v3")
        assert run.phase is Phase.OBSERVING and run.plan.shadow is None
        start = next(entry for entry in controller.registry.log() if entry.reason.startswith("start:"))
        assert "no shadow step: nothing mirrors here" in start.reason
        controller.command(Command.ROLLBACK)
        with pytest.raises(CanaryError, match="nothing mirrors here"):
            controller.start("v3", shadow=True)
    finally:
        controller.close()
