"""The canary state machine: every transition, and crash/restart in the middle of each without repeating.

The first half drives `domain.canary` directly. The second half drives the real controller
(`ops.deployment`: real SQLite state, a real local registry and promotion log) on an in-memory
serving platform, and crashes it at every point where it changes something — before and after
each platform call, alias move, log write, alarm and state write — then restarts a new controller
on the same files and finishes the script. Every crashed run must end exactly like the run without
a crash: the same platform calls, the same promotion-log entries (each once), the same alarms.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain import canary
from arsl_tui.domain.canary import ActionKind, CanaryError, CanaryRun, Command, Phase, Plan, Step, Transition
from arsl_tui.domain.judge import Judgement, Outcome
from arsl_tui.domain.ports import CanaryStateStore, ModelSlot, ServingPlatformError, ServingStatus
from arsl_tui.domain.serving import VersionStats
from arsl_tui.ops.canary import CanaryController
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.canary_store import CanaryStore
from arsl_tui.state.object_canary_store import ObjectCanaryStore
from tests.fixtures.model_packages import gate_json, metrics_json, write_package

PLAN = Plan.uniform([10, 25, 50, 100], window_s=60, min_samples=20, deploy_timeout_s=600)
T0 = 1_700_000_000.0


def started(now: float = T0) -> Transition:
    return canary.start(None, run_id="r1", champion="v1", challenger="v2", plan=PLAN, now=now, user="ana")


def finish(run: CanaryRun, now: float) -> CanaryRun:
    """Complete every pending action in order (what a driver does when all succeed)."""
    while run.pending:
        result = canary.complete(run, run.pending[0].id, now=now)
        run = result.run if isinstance(result, Transition) else result
    return run


def observing(step: int = 0, now: float = T0) -> CanaryRun:
    run = finish(canary.deployed(finish(started(now).run, now), now=now).run, now)
    for _ in range(step):
        run = finish(canary.apply_command(run, Command.PROMOTE, now=now, user="ana").run, now)
    return run


def verdict(outcome: Outcome, reason: str = "synthetic") -> Judgement:
    return Judgement(
        outcome=outcome,
        score=100.0 if outcome is Outcome.PASS else 0.0,
        metrics=(),
        reason=reason,
        canary_requests=500,
        baseline_requests=4500,
    )


def kinds(actions: Sequence[canary.Action]) -> list[str]:
    return [action.kind.value for action in actions]


# --- plans ----------------------------------------------------------------------------------------


def test_plan_rules() -> None:
    assert PLAN.describe() == "10% → 25% → 50% → 100%, 60 s windows"
    with pytest.raises(CanaryError, match="must rise"):
        Plan.uniform([10, 50, 25, 100], 60, 20)
    with pytest.raises(CanaryError, match="last canary step must send 100%"):
        Plan.uniform([10, 50], 60, 20)
    with pytest.raises(CanaryError, match="whole percentage"):
        Plan.uniform([0, 100], 60, 20)
    with pytest.raises(CanaryError, match="window must be positive"):
        Plan((Step(50, 0, 10), Step(100, 60, 10)))


# --- transitions ----------------------------------------------------------------------------------


def test_start_deploys_beside_the_champion_at_the_first_weight_with_the_intent_logged() -> None:
    transition = started()
    run = transition.run
    assert (transition.previous, run.phase, run.step, run.seq) == (Phase.IDLE, Phase.DEPLOYING, 0, 1)
    assert kinds(transition.actions) == ["deploy"]
    assert transition.actions[0].weights == {"v1": 90, "v2": 10}
    assert (
        transition.log is not None
        and transition.log.event == "start"
        and "v2 beside champion v1" in transition.log.reason
    )
    assert [action.id for action in run.pending] == ["r1-1-1", "r1-1-0"]  # deterministic ids: effect, then log
    assert run.deploy_deadline == T0 + 600


def test_start_refusals() -> None:
    active = started().run
    with pytest.raises(CanaryError, match="deploying already"):
        canary.start(active, run_id="r2", champion="v1", challenger="v3", plan=PLAN, now=T0, user="ana")
    with pytest.raises(CanaryError, match="champion already"):
        canary.start(None, run_id="r2", champion="v1", challenger="v1", plan=PLAN, now=T0, user="ana")
    with pytest.raises(CanaryError, match="not a model version"):
        canary.start(None, run_id="r2", champion="v1", challenger="latest", plan=PLAN, now=T0, user="ana")
    ended = replace(active, phase=Phase.ROLLED_BACK, pending=())
    assert (
        canary.start(ended, run_id="r2", champion="v1", challenger="v3", plan=PLAN, now=T0, user="ana").run.run_id
        == "r2"
    )


def test_deployed_starts_the_first_window() -> None:
    run = finish(started().run, T0)
    transition = canary.deployed(run, now=T0 + 5)
    assert transition.run.phase is Phase.OBSERVING and transition.run.window_started_at == T0 + 5
    assert transition.run.next_judgement_at == T0 + 65
    assert transition.actions == () and transition.log is not None and transition.log.event == "deployed"
    with pytest.raises(CanaryError, match="still being applied"):
        canary.deployed(started().run, now=T0)  # the deploy itself has not been done yet


def test_a_passing_window_steps_up_and_the_next_window_starts_when_the_weights_are_applied() -> None:
    run = observing()
    assert not run.due(T0 + 59) and run.due(T0 + 60)
    transition = canary.judged(run, verdict(Outcome.PASS), now=T0 + 60, window_s=60)
    after = transition.run
    assert (after.phase, after.step) == (Phase.OBSERVING, 1)
    assert kinds(transition.actions) == ["set_weights"] and transition.actions[0].weights == {"v1": 75, "v2": 25}
    assert after.window_started_at is None and not after.due(T0 + 10_000)  # nothing judged before it applies
    assert len(after.judgements) == 1 and after.judgements[0]["weight"] == 10
    applied = finish(after, T0 + 61)
    assert applied.window_started_at == T0 + 61 and applied.next_judgement_at == T0 + 121


def test_passing_the_last_window_promotes() -> None:
    run = observing(step=3)
    assert run.target_weights == {"v1": 0, "v2": 100}
    transition = canary.judged(run, verdict(Outcome.PASS), now=T0, window_s=60)
    assert transition.run.phase is Phase.PROMOTING
    assert kinds(transition.actions) == ["set_weights", "promote_alias", "finalize"]
    assert transition.actions[2].weights == {"v2": 100}
    done = finish(transition.run, T0 + 1)
    assert done.phase is Phase.PROMOTED and done.seq == transition.run.seq + 1 and done.pending == ()


def test_a_failing_window_rolls_back_automatically_with_an_alarm() -> None:
    run = observing(step=1)
    transition = canary.judged(run, verdict(Outcome.FAIL, "critical metric failed: accuracy"), now=T0, window_s=60)
    after = transition.run
    assert after.phase is Phase.ROLLING_BACK
    assert kinds(transition.actions) == ["set_weights", "alarm"]
    assert transition.actions[0].weights == {"v1": 100, "v2": 0}
    assert "automatic rollback at 25%" in after.alarm and "accuracy" in after.alarm
    done = finish(after, T0)
    assert done.phase is Phase.ROLLED_BACK and "automatic rollback" in done.reason


@pytest.mark.parametrize("outcome", [Outcome.INCONCLUSIVE, Outcome.MARGINAL])
def test_inconclusive_and_marginal_windows_hold_without_a_log_entry(outcome: Outcome) -> None:
    run = observing(step=2)
    transition = canary.judged(run, verdict(outcome, "too few requests"), now=T0 + 60, window_s=60)
    after = transition.run
    assert transition.log is None and transition.actions == () and after.seq == run.seq
    assert (after.phase, after.step, after.holds) == (Phase.OBSERVING, 2, 1)
    assert after.next_judgement_at == T0 + 120 and after.window_started_at == run.window_started_at
    again = canary.judged(after, verdict(outcome), now=T0 + 120, window_s=120).run
    assert again.holds == 2 and again.step == 2


def test_pause_and_resume() -> None:
    run = observing(step=1)
    paused = canary.apply_command(run, Command.PAUSE, now=T0 + 10, user="ana").run
    assert paused.phase is Phase.PAUSED and not paused.due(T0 + 10_000)
    assert paused.target_weights == {"v1": 75, "v2": 25}  # traffic stays where it was
    resumed = canary.apply_command(finish(paused, T0), Command.RESUME, now=T0 + 500, user="ana")
    assert resumed.actions == ()
    assert resumed.run.phase is Phase.OBSERVING and resumed.run.window_started_at == T0 + 500
    with pytest.raises(CanaryError, match="cannot resume"):
        canary.apply_command(run, Command.RESUME, now=T0, user="ana")


def test_promote_steps_without_the_judge_and_promote_full_skips_the_rest() -> None:
    run = observing()
    stepped = canary.apply_command(run, Command.PROMOTE, now=T0, user="ana")
    assert stepped.run.step == 1 and stepped.actions[0].weights == {"v1": 75, "v2": 25}
    assert "by ana" in stepped.run.reason
    paused = canary.apply_command(finish(stepped.run, T0), Command.PAUSE, now=T0, user="ana").run
    full = canary.apply_command(finish(paused, T0), Command.PROMOTE_FULL, now=T0, user="ana")
    assert full.run.phase is Phase.PROMOTING
    assert kinds(full.actions) == ["set_weights", "promote_alias", "finalize"]
    assert full.actions[0].weights == {"v1": 0, "v2": 100}


def test_commands_wait_for_applied_effects_but_rollback_supersedes_them() -> None:
    run = canary.judged(observing(), verdict(Outcome.PASS), now=T0, window_s=60).run  # set_weights 25 pending
    for command in (Command.PAUSE, Command.PROMOTE, Command.PROMOTE_FULL):
        with pytest.raises(CanaryError, match="still being applied"):
            canary.apply_command(run, command, now=T0, user="ana")
    rollback = canary.apply_command(run, Command.ROLLBACK, now=T0, user="ana", reason="customer complaints")
    assert [action.weights for action in rollback.cancelled] == [{"v1": 75, "v2": 25}]
    assert kinds(rollback.run.pending) == ["set_weights", "log", "log"]  # the step's log entry is still written
    assert "customer complaints" in rollback.run.reason


def test_rollback_while_deploying_cancels_the_deploy() -> None:
    transition = canary.apply_command(started().run, Command.ROLLBACK, now=T0, user="ana")
    assert kinds(transition.cancelled) == ["deploy"]
    assert transition.run.phase is Phase.ROLLING_BACK
    assert finish(transition.run, T0).phase is Phase.ROLLED_BACK


@pytest.mark.parametrize("phase", [Phase.PROMOTING, Phase.PROMOTED, Phase.ROLLING_BACK, Phase.ROLLED_BACK])
def test_rollback_refused_once_promoting_or_rolling_back(phase: Phase) -> None:
    run = replace(observing(), phase=phase)
    with pytest.raises(CanaryError, match="cannot roll back"):
        canary.apply_command(run, Command.ROLLBACK, now=T0, user="ana")


def test_a_failed_deployment_restores_the_champion_and_can_still_be_rolled_back() -> None:
    run = finish(started().run, T0)
    failed = canary.deploy_failed(run, "service failed: image pull error", now=T0)
    assert failed.run.phase is Phase.FAILED and kinds(failed.actions) == ["set_weights"]
    assert failed.actions[0].weights == {"v1": 100, "v2": 0} and "image pull error" in failed.run.reason
    rollback = canary.apply_command(finish(failed.run, T0), Command.ROLLBACK, now=T0, user="ana")
    assert rollback.run.phase is Phase.ROLLING_BACK


def test_a_permanent_action_failure_fails_the_run_and_says_where_traffic_is() -> None:
    run = canary.judged(observing(), verdict(Outcome.PASS), now=T0, window_s=60).run
    effect = next(action for action in run.pending if action.kind is ActionKind.SET_WEIGHTS)
    result = canary.action_failed(run, effect.id, "HTTP 400 weights invalid", now=T0)
    assert isinstance(result, Transition) and result.run.phase is Phase.FAILED
    assert "set_weights" in result.run.reason and "HTTP 400" in result.run.error
    rolling = canary.apply_command(observing(), Command.ROLLBACK, now=T0, user="ana").run
    restore = next(action for action in rolling.pending if action.kind is ActionKind.SET_WEIGHTS)
    stuck = canary.action_failed(rolling, restore.id, "HTTP 403", now=T0)
    assert isinstance(stuck, Transition) and stuck.run.phase is Phase.FAILED
    assert "traffic may still reach v2" in stuck.run.reason


def test_a_failed_log_write_is_dropped_and_never_blocks_the_release() -> None:
    run = started().run
    log = next(action for action in run.pending if action.kind is ActionKind.LOG)
    result = canary.action_failed(run, log.id, "store unreachable", now=T0)
    assert isinstance(result, CanaryRun) and result.phase is Phase.DEPLOYING
    assert kinds(result.pending) == ["deploy"] and "store unreachable" in result.error


def test_completing_twice_or_an_unknown_action_changes_nothing() -> None:
    run = started().run
    once = canary.complete(run, "r1-1-1", now=T0)
    assert isinstance(once, CanaryRun)
    assert canary.complete(once, "r1-1-1", now=T0) is once
    assert canary.complete(once, "nope", now=T0) is once


def test_a_run_survives_a_json_round_trip_with_its_pending_actions() -> None:
    run = canary.judged(observing(step=1), verdict(Outcome.FAIL), now=T0, window_s=60).run
    assert CanaryRun.from_json(run.to_json()) == run
    with pytest.raises(CanaryError, match="not a canary run"):
        CanaryRun.from_json({"format": "other"})


# --- the controller, crashed at every point ---------------------------------------------------


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the code under test may swallow it)."""


class FakePlatform:
    """One in-memory service; canary stats come from each version's quality ('good' or 'bad')."""

    backend = "fake"

    def __init__(self, quality: Mapping[str, str]) -> None:
        self.weights: dict[str, int] = {"v1": 100}
        self.quality = dict(quality)
        self.calls: list[tuple[str, dict[str, int]]] = []

    def status(self, service: str) -> ServingStatus:
        return ServingStatus(
            service=service,
            phase="running",
            weights=dict(self.weights),
            ready={version: True for version in self.weights},
        )

    def endpoint(self, service: str) -> str | None:
        return "http://127.0.0.1:1"

    def deploy(self, service: str, slots: Sequence[ModelSlot], reason: str = "") -> ServingStatus:
        self.weights = {slot.version: slot.weight for slot in slots}
        self.calls.append(("deploy", dict(self.weights)))
        return self.status(service)

    def set_weights(self, service: str, weights: Mapping[str, int], reason: str = "") -> ServingStatus:
        if set(weights) != set(self.weights):
            raise ServingPlatformError(f"weights {dict(weights)} do not name {sorted(self.weights)}")
        self.weights = dict(weights)
        self.calls.append(("set_weights", dict(self.weights)))
        return self.status(service)

    def stats(self, service: str, versions: Sequence[str], window_s: float) -> dict[str, VersionStats]:
        result = {}
        for version in versions:
            requests = 4 * self.weights.get(version, 0)
            correct = 0 if self.quality.get(version) == "bad" else requests
            latency = tuple(20.0 + index % 7 for index in range(requests))
            result[version] = VersionStats(
                version=version,
                window_s=window_s,
                requests=requests,
                errors=0,
                latency_ms=latency,
                latency_samples_total=requests,
                feedback=requests,
                correct=correct,
            )
        return result


@dataclass
class World:
    """The files a controller works on, and the clock; a restart builds new objects on the same files."""

    root: Path
    platform: FakePlatform
    now: float = T0
    state: str = "sqlite"
    """Where the controller keeps its records: the home's state file, or the object store (shared state)."""

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
            },
        )

    def registry(self) -> ModelRegistry:
        return ModelRegistry(LocalObjectStore(self.root / "store"), "models/", clock=lambda: self.now)

    def controller(self) -> CanaryController:
        return CanaryController(
            self.settings,
            platform=self.platform,
            registry=self.registry(),
            store=self.state_store(),
            service="svc",
            user="ana",
            clock=lambda: self.now,
        )

    def state_store(self) -> CanaryStateStore:
        if self.state == "sqlite":
            return CanaryStore.open(self.root / "home")
        return ObjectCanaryStore(
            LocalObjectStore(self.root / "store"),
            "models/",
            "svc",
            home=self.root / "home",
            user="ana",
            clock=lambda: self.now,
        )


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with v1 (champion), v2 and v3, copied for each run (registering is the slow part)."""
    root = tmp_path_factory.mktemp("template")
    registry = ModelRegistry(LocalObjectStore(root / "store"), "models/")
    for number in (1, 2, 3):
        package = write_package(root / "packages" / f"v{number}", seed=number, job_id=f"job-{number}")
        registry.register(
            package,
            job_id=f"job-{number}",
            manifest_id="m-test",
            source=str(package),
            gate=gate_json(),
            metrics=metrics_json(),
            user="tests",
        )
    assert registry.aliases() == {"champion": "v1", "challenger": "v3"}
    assert len(registry.log()) == TEMPLATE_LOG_ENTRIES
    return root


TEMPLATE_LOG_ENTRIES = 7
"""Three registrations, challenger moved to each, champion set to v1."""
Op = tuple[str, Any]
"""("start", version), ("command", Command) or ("window", None): let the current window end, then tick."""


def _seq(controller: CanaryController) -> int:
    current = controller.current()
    return current.seq if current is not None else 0


def do(controller: CanaryController, world: World, op: Op, expect_seq: int) -> None:
    kind, argument = op
    if kind == "start":
        controller.start(argument, expect_seq=expect_seq)
    elif kind == "command":
        controller.command(argument, expect_seq=expect_seq)
    else:
        current = controller.current()
        assert current is not None and current.next_judgement_at is not None, current
        world.now = max(world.now, current.next_judgement_at) + 1
        controller.tick()


WINDOW: Op = ("window", None)
SCRIPTS: dict[str, tuple[dict[str, str], list[Op]]] = {
    "promoted by the judge": ({"v2": "good"}, [("start", "v2"), WINDOW, WINDOW]),
    "rolled back by the judge": ({"v3": "bad"}, [("start", "v3"), WINDOW]),
    "operator commands": (
        {"v2": "good"},
        [
            ("start", "v2"),
            ("command", Command.PAUSE),
            ("command", Command.RESUME),
            ("command", Command.PROMOTE),
            ("command", Command.ROLLBACK),
        ],
    ),
    "promoted in full": ({"v2": "good"}, [("start", "v2"), ("command", Command.PROMOTE_FULL)]),
}
# Where a crash can happen: every call that changes something outside the controller's memory.
CRASH_POINTS = (
    ("platform", "deploy"),
    ("platform", "set_weights"),
    ("registry", "set_alias"),
    ("registry", "record_canary"),
    ("store", "raise_alarm"),
    ("store", "save_transition"),
    ("store", "finish_action"),
    ("store", "save"),
)


class Injector:
    """Counts calls to the crash points; raises Crash before or after the `crash_at`-th (once)."""

    def __init__(self, crash_at: int | None, mode: str) -> None:
        self.crash_at, self.mode, self.count, self.fired = crash_at, mode, 0, False

    def wrap(self, target: Any, name: str) -> None:
        original = getattr(target, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            due = not self.fired and self.count == self.crash_at
            if due and self.mode == "before":
                self.fired = True
                raise Crash(name)
            result = original(*args, **kwargs)
            if due and self.mode == "after":
                self.fired = True
                raise Crash(name)
            return result

        setattr(target, name, wrapper)

    def instrument(self, controller: CanaryController) -> CanaryController:
        owners = {"platform": controller.platform, "registry": controller.registry, "store": controller.store}
        for owner, name in CRASH_POINTS:
            self.wrap(owners[owner], name)
        return controller


@dataclass
class Played:
    phase: Phase
    calls: list[tuple[str, dict[str, int]]]
    log: list[tuple[Any, str | None, str, str]]
    alarms: int
    aliases: dict[str, str]
    crashed: bool
    crash_points: int


def copy_registry(template: Path, root: Path) -> None:
    """The template's registry records and log (not the package files: nothing here fetches them)."""
    shutil.copytree(template / "store", root / "store", ignore=shutil.ignore_patterns("packages"))


def play(
    template: Path, root: Path, script: str, crash_at: int | None = None, mode: str = "before", state: str = "sqlite"
) -> Played:
    """Run `script`, crashing at the `crash_at`-th crash point; restart, resume and finish like an operator would."""
    copy_registry(template, root)
    quality, ops = SCRIPTS[script]
    world = World(root=root, platform=FakePlatform(quality), state=state)
    injector = Injector(crash_at, mode)
    controller = injector.instrument(world.controller())
    crashed = False

    def restart() -> CanaryController:
        nonlocal crashed
        crashed = True
        controller.close()
        resumed = injector.instrument(world.controller())  # a new process on the same files
        resumed.tick()  # perform what was decided and not confirmed; judge a window that is due
        return resumed

    for op in ops:
        seen = _seq(controller)
        try:
            do(controller, world, op, seen)
        except Crash:
            controller = restart()
            if op[0] == "window":
                continue  # the restarted tick judged the window (again, if its verdict was not persisted)
            if _seq(controller) == seen:
                do(controller, world, op, seen)  # nothing was persisted: the operator repeats the command
            else:
                with pytest.raises(CanaryError, match="changed since it was shown"):
                    do(controller, world, op, seen)  # persisted: a blind repeat is refused, never applied twice
    while (run := controller.current()) is not None and run.pending:
        try:
            controller.tick()
        except Crash:
            controller = restart()
    run = controller.current()
    assert run is not None
    log = [
        (entry.action, entry.alias, entry.to_version, entry.reason.replace(run.run_id, "<run>"))
        for entry in controller.registry.log()
        if entry.action in ("canary", "set_alias") and entry.writer != "" and entry.seq > TEMPLATE_LOG_ENTRIES
    ]
    played = Played(
        phase=run.phase,
        calls=world.platform.calls,
        log=log,
        alarms=len(controller.store.alarms()),
        aliases=controller.registry.aliases(),
        crashed=crashed,
        crash_points=injector.count,
    )
    controller.close()
    return played


@pytest.mark.parametrize("state", ["sqlite", "object"])
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_a_crash_at_any_point_never_repeats_an_action(
    script: str, state: str, registry_template: Path, tmp_path: Path
) -> None:
    """On both state stores: the home's state file, and the object store's event chain under the lease."""
    reference = play(registry_template, tmp_path / "reference", script, state=state)
    assert not reference.crashed and reference.crash_points >= 5
    expected_phase = {
        "promoted by the judge": Phase.PROMOTED,
        "rolled back by the judge": Phase.ROLLED_BACK,
        "operator commands": Phase.ROLLED_BACK,
        "promoted in full": Phase.PROMOTED,
    }[script]
    assert reference.phase is expected_phase
    for mode in ("before", "after"):
        for crash_at in range(1, reference.crash_points + 1):
            crashed = play(registry_template, tmp_path / f"{mode}-{crash_at}", script, crash_at, mode, state)
            where = f"crash {mode} call {crash_at} of {reference.crash_points}"
            assert crashed.crashed, where
            assert crashed.phase is reference.phase, where
            assert crashed.calls == reference.calls, where  # every platform change exactly once, in order
            assert crashed.log == reference.log, where  # every log entry once, same reasons, same order
            assert crashed.alarms == reference.alarms, where
            assert crashed.aliases == reference.aliases, where


def test_the_reference_runs_log_every_transition(registry_template: Path, tmp_path: Path) -> None:
    promoted = play(registry_template, tmp_path / "promoted", "promoted by the judge")
    events = [reason.split(":", 1)[0] for action, _alias, _to, reason in promoted.log if action == "canary"]
    assert events == ["start", "deployed", "step", "promote", "promoted"]
    assert ("set_alias", "champion", "v2") in [item[:3] for item in promoted.log]
    assert promoted.aliases["champion"] == "v2"
    assert promoted.calls == [
        ("deploy", {"v1": 75, "v2": 25}),
        ("set_weights", {"v1": 0, "v2": 100}),
        ("deploy", {"v2": 100}),
    ]
    rolled = play(registry_template, tmp_path / "rolled", "rolled back by the judge")
    assert rolled.calls[-1] == ("set_weights", {"v1": 100, "v3": 0}) and rolled.alarms == 1
    assert [reason.split(":", 1)[0] for *_rest, reason in rolled.log] == [
        "start",
        "deployed",
        "auto_rollback",
        "rolled_back",
    ]
    assert rolled.aliases["champion"] == "v1"


def test_transient_platform_errors_leave_the_run_where_it_is_and_retry(registry_template: Path, tmp_path: Path) -> None:
    copy_registry(registry_template, tmp_path)
    world = World(root=tmp_path, platform=FakePlatform({"v2": "good"}))
    controller = world.controller()
    original = world.platform.set_weights
    failures = iter([ServingPlatformError("HTTP 503 busy", transient=True)] * 2)

    def flaky(service: str, weights: Mapping[str, int], reason: str = "") -> ServingStatus:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return original(service, weights, reason)

    world.platform.set_weights = flaky  # type: ignore[method-assign]
    controller.start("v2")
    rolling = controller.command(Command.ROLLBACK)
    assert rolling.phase is Phase.ROLLING_BACK and "HTTP 503" in rolling.error and rolling.busy
    retried = controller.tick()
    assert retried is not None and retried.phase is Phase.ROLLING_BACK
    done = controller.tick()
    assert done is not None and done.phase is Phase.ROLLED_BACK and done.error == ""
    assert world.platform.weights == {"v1": 100, "v2": 0}
    controller.close()


def test_a_command_repeated_after_it_was_applied_is_refused(registry_template: Path, tmp_path: Path) -> None:
    copy_registry(registry_template, tmp_path)
    world = World(root=tmp_path, platform=FakePlatform({"v2": "good"}))
    controller = world.controller()
    run = controller.start("v2")
    seen = run.seq
    controller.command(Command.PROMOTE, expect_seq=seen)
    with pytest.raises(CanaryError, match="changed since it was shown"):
        controller.command(Command.PROMOTE, expect_seq=seen)
    assert world.platform.weights == {"v1": 0, "v2": 100}
    controller.close()


def test_opening_the_controller_needs_no_credentials_or_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Huawei the release state lives in OBS: without credentials it is shown as unreadable (not as idle),
    next to the platform's own problem, and nothing raises."""
    from arsl_tui.ops.canary_wiring import open_controller

    for name in [name for name in os.environ if name.startswith(("HUAWEICLOUD_", "OBS_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", str(tmp_path / "absent"))
    settings = load_settings(
        None,
        environ={},
        cwd=tmp_path,
        cli_overrides={
            "backend": "huawei",
            "home": str(tmp_path / "home"),
            "huawei.modelarts_endpoint": "http://127.0.0.1:9",
            "huawei.obs_endpoint": "http://127.0.0.1:9",
            "huawei.ces_endpoint": "http://127.0.0.1:9",
        },
    )
    controller = open_controller(settings)
    try:
        stored = controller.status(live=False)
        assert stored.phase is Phase.IDLE and stored.run is None and stored.state_unavailable
        assert "release state" in stored.problems[0] and "credentials" in stored.problems[0].lower()
        live = controller.status()
        assert live.platform is None and "credentials" in live.problems[0].lower()
    finally:
        controller.close()
