"""The canary release as a pure, persisted state machine.

A *run* releases one challenger beside the champion along a plan of traffic steps (default
10 → 25 → 50 → 100 %), each observed for a window and judged (`domain.judge`). Phases:

    idle ─start→ deploying ─deployed→ observing(0) ─pass→ observing(1) … observing(last) ─pass→ promoting → promoted
                     │                   │ fail (automatic) / rollback (manual)
                     │                   └──────────────→ rolling_back → rolled_back
                     └─ platform failure → failed (traffic restored to the champion)

With a shadow step (`Plan.shadow`, step 0 of the plan), the challenger is deployed at 0 % and copies of
answered requests are mirrored to it before any split: deploying ─deployed→ shadowing ─pass (or skip)→
observing(0); a failing shadow goes straight to rolling_back, so no client is ever answered by it.
    observing ⇄ paused (pause / resume); promote: next step now; promote --full: straight to promoting.
    inconclusive or marginal windows hold the step (never promote) and judge again one window later.

Every transition is a `Transition`: the run after it, the effects to perform (`Action`s: deploy,
set weights, move the champion alias, serve the new champion alone, raise an alarm) and one log
action carrying the transition's reason for the promotion log.

**Never repeating an action.** A driver persists the run — including its `pending` actions, each
with a deterministic id (`<run>-<seq>-<n>`) — *before* it performs any of them (intent first), and
marks each one done (`complete`) only after it took effect. A driver that crashes and restarts
loads the run and finds exactly the actions that were decided and not confirmed: it never decides
anything twice, because a decision only exists once it is persisted. For an action that took
effect but whose completion was not persisted, the driver checks the effect before acting (the
weights already set, the alias already moved, the log entry with this id already written), so
the effect happens once. Operator commands can carry the `seq` the operator saw (`expect_seq`):
a command re-sent after a restart is then refused instead of stepping twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from arsl_tui.domain.events import Event
from arsl_tui.domain.judge import Judgement, Outcome
from arsl_tui.domain.registry import VersionFormatError, format_version, parse_version

RUN_FORMAT = "arsl-canary/1"
MAX_JUDGEMENTS_KEPT = 50
MAX_RETRIED_KEPT = 20
"""How many of the problems a run retried past it keeps (the oldest are dropped first)."""


class CanaryError(Exception):
    """A command the current state does not allow, or a bad plan; the message says why and what to do."""


class Phase(StrEnum):
    IDLE = "idle"
    DEPLOYING = "deploying"
    SHADOWING = "shadowing"
    """The champion answers every request; copies go to the challenger and are compared."""
    OBSERVING = "observing"
    PAUSED = "paused"
    PROMOTING = "promoting"
    PROMOTED = "promoted"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (
            Phase.DEPLOYING,
            Phase.SHADOWING,
            Phase.OBSERVING,
            Phase.PAUSED,
            Phase.PROMOTING,
            Phase.ROLLING_BACK,
        )

    @property
    def ended(self) -> bool:
        return self in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED)


class Command(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    PROMOTE_FULL = "promote_full"
    ROLLBACK = "rollback"
    SKIP_SHADOW = "skip_shadow"


class ActionKind(StrEnum):
    DEPLOY = "deploy"
    """Serve the champion and the challenger at `weights` (the challenger is loaded beside the champion)."""
    SET_WEIGHTS = "set_weights"
    PROMOTE_ALIAS = "promote_alias"
    """Move the registry's `champion` alias to the challenger."""
    FINALIZE = "finalize"
    """Serve the new champion alone (the old one is unloaded)."""
    SHADOW = "shadow"
    """Mirror `weights` ({challenger: percent}) of answered requests to the challenger; 0 stops the copies."""
    ALARM = "alarm"
    LOG = "log"
    """Append the transition to the promotion log."""

    @property
    def effect(self) -> bool:
        """True for actions on the serving platform or the registry's aliases (ordered, each after the last)."""
        return self not in (ActionKind.LOG, ActionKind.ALARM)


@dataclass(frozen=True)
class Action:
    id: str
    kind: ActionKind
    reason: str
    weights: Mapping[str, int] = field(default_factory=dict)
    event: str = ""
    """For LOG: the transition's name (start, deployed, step, hold, pause, …)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "reason": self.reason,
            "weights": dict(self.weights),
            "event": self.event,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Action:
        return cls(
            id=str(data["id"]),
            kind=ActionKind(data["kind"]),
            reason=str(data.get("reason", "")),
            weights={str(k): int(v) for k, v in dict(data.get("weights") or {}).items()},
            event=str(data.get("event", "")),
        )


@dataclass(frozen=True)
class Step:
    weight: int
    """The challenger's share of traffic, percent."""
    window_s: float
    min_samples: int


@dataclass(frozen=True)
class ShadowStep:
    """Step 0: the challenger gets copies of `share` % of answered requests for a window, no client traffic."""

    share: int
    window_s: float
    min_samples: int

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not isinstance(self.share, int) or not 1 <= self.share <= 100:
            raise CanaryError(f"shadow share {self.share!r} must be a whole percentage from 1 to 100")
        if self.window_s <= 0 or self.min_samples < 1:
            raise CanaryError("the shadow window must be positive and its min samples at least 1")

    def to_json(self) -> dict[str, Any]:
        return {"share": self.share, "window_s": self.window_s, "min_samples": self.min_samples}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShadowStep:
        return cls(int(data["share"]), float(data["window_s"]), int(data["min_samples"]))


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    deploy_timeout_s: float = 1200.0
    shadow: ShadowStep | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise CanaryError("a canary plan needs at least one step")
        previous = 0
        for index, step in enumerate(self.steps):
            if isinstance(step.weight, bool) or not isinstance(step.weight, int) or not 1 <= step.weight <= 100:
                raise CanaryError(
                    f"canary step {index + 1}: weight {step.weight!r} must be a whole percentage from 1 to 100"
                )
            if step.weight <= previous:
                raise CanaryError(f"canary steps must rise: step {index + 1} ({step.weight}%) is not above {previous}%")
            if step.window_s <= 0 or step.min_samples < 1:
                raise CanaryError(f"canary step {index + 1}: the window must be positive and min samples at least 1")
            previous = step.weight
        if self.steps[-1].weight != 100:
            raise CanaryError(f"the last canary step must send 100% to the challenger (it is {self.steps[-1].weight}%)")

    @classmethod
    def uniform(
        cls, weights: Sequence[int], window_s: float, min_samples: int, deploy_timeout_s: float = 1200.0
    ) -> Plan:
        return cls(
            tuple(Step(int(weight), float(window_s), int(min_samples)) for weight in weights),
            deploy_timeout_s=float(deploy_timeout_s),
        )

    @property
    def last(self) -> int:
        return len(self.steps) - 1

    def describe(self) -> str:
        windows = {step.window_s for step in self.steps}
        window = f", {next(iter(windows)):g} s windows" if len(windows) == 1 else ""
        shadow = f"shadow {self.shadow.share}% → " if self.shadow is not None else ""
        return shadow + " → ".join(f"{step.weight}%" for step in self.steps) + window

    def without_shadow(self) -> Plan:
        return replace(self, shadow=None)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "steps": [
                {"weight": step.weight, "window_s": step.window_s, "min_samples": step.min_samples}
                for step in self.steps
            ],
            "deploy_timeout_s": self.deploy_timeout_s,
        }
        if self.shadow is not None:
            data["shadow"] = self.shadow.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            tuple(
                Step(int(item["weight"]), float(item["window_s"]), int(item["min_samples"])) for item in data["steps"]
            ),
            deploy_timeout_s=float(data.get("deploy_timeout_s", 1200.0)),
            shadow=ShadowStep.from_json(data["shadow"]) if data.get("shadow") else None,
        )


@dataclass(frozen=True)
class CanaryRun:
    run_id: str
    champion: str
    challenger: str
    plan: Plan
    phase: Phase
    step: int
    seq: int
    started_at: float
    updated_at: float
    started_by: str
    reason: str
    pending: tuple[Action, ...] = ()
    window_started_at: float | None = None
    """When the current step's weights took effect (None while they are being applied or when paused)."""
    next_judgement_at: float | None = None
    deploy_deadline: float | None = None
    holds: int = 0
    """Consecutive windows at this step that were inconclusive or marginal."""
    alarm: str = ""
    """Why the run was rolled back automatically (shown as an alarm)."""
    error: str = ""
    """The last failed attempt at a pending action (retried), or why the run failed."""
    judgements: tuple[Mapping[str, Any], ...] = ()
    """The judge's result per judged window, newest last: step, weight, at, window_s, judgement."""
    shadow_result: str = ""
    """How the shadow step ended: passed, failed or skipped ("" while it runs, or with no shadow step)."""
    retried: tuple[str, ...] = ()
    """The problems the run met and retried past (throttling, a dropped answer, a 5xx), oldest first, the last
    `MAX_RETRIED_KEPT`: `error` is cleared once an attempt succeeds, so without this a release that went
    through them would not say so."""

    # --- what the run means for traffic -----------------------------------------------------------

    def weights_at(self, step: int) -> dict[str, int]:
        weight = self.plan.steps[step].weight
        return {self.champion: 100 - weight, self.challenger: weight}

    @property
    def restore_weights(self) -> dict[str, int]:
        return {self.champion: 100, self.challenger: 0}

    @property
    def full_weights(self) -> dict[str, int]:
        return {self.champion: 0, self.challenger: 100}

    @property
    def shadowed(self) -> bool:
        """The plan has a shadow step and the run has not left it yet."""
        return self.plan.shadow is not None and not self.shadow_result

    @property
    def deploy_weights(self) -> dict[str, int]:
        """The split the first deployment serves: the champion alone while the challenger is shadowed."""
        return self.restore_weights if self.shadowed else self.weights_at(0)

    @property
    def target_weights(self) -> dict[str, int]:
        """The split the platform has (or is being brought to) in this phase."""
        if self.phase in (Phase.PROMOTING, Phase.PROMOTED):
            return self.full_weights
        if self.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED, Phase.IDLE):
            return self.restore_weights
        if self.phase in (Phase.DEPLOYING, Phase.SHADOWING):
            return self.deploy_weights
        return self.weights_at(self.step)

    @property
    def busy(self) -> bool:
        """Effects are still being applied: only a rollback may interrupt them."""
        return any(action.kind.effect for action in self.pending)

    def due(self, now: float) -> bool:
        """The current window has ended and should be judged."""
        return (
            self.phase in (Phase.OBSERVING, Phase.SHADOWING)
            and not self.busy
            and self.next_judgement_at is not None
            and now >= self.next_judgement_at
        )

    def time_left(self, now: float) -> float | None:
        if self.phase not in (Phase.OBSERVING, Phase.SHADOWING) or self.next_judgement_at is None:
            return None
        return max(0.0, self.next_judgement_at - now)

    # --- persistence ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "run_id": self.run_id,
            "champion": self.champion,
            "challenger": self.challenger,
            "plan": self.plan.to_json(),
            "phase": self.phase.value,
            "step": self.step,
            "seq": self.seq,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "started_by": self.started_by,
            "reason": self.reason,
            "pending": [action.to_json() for action in self.pending],
            "window_started_at": self.window_started_at,
            "next_judgement_at": self.next_judgement_at,
            "deploy_deadline": self.deploy_deadline,
            "holds": self.holds,
            "alarm": self.alarm,
            "error": self.error,
            "judgements": [dict(item) for item in self.judgements],
            "shadow_result": self.shadow_result,
            "retried": list(self.retried),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "canary run") -> CanaryRun:
        if not isinstance(data, Mapping) or data.get("format") != RUN_FORMAT:
            raise CanaryError(f"{where}: not a canary run record (format {RUN_FORMAT!r} expected)")

        def optional(name: str) -> float | None:
            value = data.get(name)
            return None if value is None else float(value)

        try:
            return cls(
                run_id=str(data["run_id"]),
                champion=str(data["champion"]),
                challenger=str(data["challenger"]),
                plan=Plan.from_json(data["plan"]),
                phase=Phase(data["phase"]),
                step=int(data["step"]),
                seq=int(data["seq"]),
                started_at=float(data["started_at"]),
                updated_at=float(data["updated_at"]),
                started_by=str(data["started_by"]),
                reason=str(data.get("reason", "")),
                pending=tuple(Action.from_json(item) for item in data.get("pending", ())),
                window_started_at=optional("window_started_at"),
                next_judgement_at=optional("next_judgement_at"),
                deploy_deadline=optional("deploy_deadline"),
                holds=int(data.get("holds", 0)),
                alarm=str(data.get("alarm", "")),
                error=str(data.get("error", "")),
                judgements=tuple(dict(item) for item in data.get("judgements", ())),
                shadow_result=str(data.get("shadow_result", "")),
                retried=tuple(str(item) for item in data.get("retried", ())),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CanaryError(f"{where}: unreadable canary run record ({type(error).__name__}: {error})") from None


@dataclass(frozen=True)
class Transition:
    """The run after a decision, the effects it calls for and its promotion-log entry."""

    run: CanaryRun
    actions: tuple[Action, ...]
    log: Action | None
    """None only for a hold (recorded in the run's window history, not in the promotion log)."""
    previous: Phase
    cancelled: tuple[Action, ...] = ()
    """Pending effects a rollback superseded (never performed)."""


# --- transitions ----------------------------------------------------------------------------------


def _decide(
    run: CanaryRun,
    phase: Phase,
    now: float,
    event: str,
    reason: str,
    effects: Sequence[tuple[ActionKind, Mapping[str, int]]] = (),
    **changes: Any,
) -> Transition:
    """A new decision: seq + 1, fresh action ids, the log entry; unwritten log/alarm actions are kept and
    pending effects (only a rollback or a failure can find some) are superseded."""
    seq = run.seq + 1
    actions = tuple(
        Action(id=f"{run.run_id}-{seq}-{index + 1}", kind=kind, reason=reason, weights=dict(weights))
        for index, (kind, weights) in enumerate(effects)
    )
    log = Action(id=f"{run.run_id}-{seq}-0", kind=ActionKind.LOG, reason=reason, event=event)
    kept = tuple(action for action in run.pending if not action.kind.effect)
    cancelled = tuple(action for action in run.pending if action.kind.effect)
    after = replace(run, phase=phase, seq=seq, updated_at=now, reason=reason, pending=(*actions, *kept, log), **changes)
    return Transition(run=after, actions=actions, log=log, previous=run.phase, cancelled=cancelled)


def check_version(text: str, what: str) -> str:
    try:
        return format_version(parse_version(text))
    except VersionFormatError as error:
        raise CanaryError(f"{what}: {error}") from None


def start(
    previous: CanaryRun | None,
    *,
    run_id: str,
    champion: str,
    challenger: str,
    plan: Plan,
    now: float,
    user: str,
    note: str = "",
) -> Transition:
    """Begin a run: deploy the challenger beside the champion at the first step's weight (0 with a shadow step).

    `note` is added to the reason (e.g. why a configured shadow step is left out on this backend)."""
    if previous is not None and previous.phase.active:
        raise CanaryError(
            f"a canary of {previous.challenger} is {previous.phase.value} already; promote it or roll it back first"
        )
    champion = check_version(champion, "champion")
    challenger = check_version(challenger, "challenger")
    if champion == challenger:
        raise CanaryError(f"{challenger} is the champion already: a canary needs another version")
    reason = (
        f"canary {challenger} beside champion {champion}: {plan.describe()}, "
        f"{plan.steps[0].min_samples} requests per window at least"
    )
    if plan.shadow is not None:
        reason += (
            f"; first in shadow: {challenger} answers copies of {plan.shadow.share}% of requests for "
            f"{plan.shadow.window_s:g} s, no client sees its answers"
        )
    seed = CanaryRun(
        run_id=run_id,
        champion=champion,
        challenger=challenger,
        plan=plan,
        phase=Phase.IDLE,
        step=0,
        seq=0,
        started_at=now,
        updated_at=now,
        started_by=user,
        reason="",
    )
    if note:
        reason += f"; {note}"
    effects: list[tuple[ActionKind, Mapping[str, int]]] = [(ActionKind.DEPLOY, seed.deploy_weights)]
    if plan.shadow is not None:
        effects.append((ActionKind.SHADOW, {challenger: plan.shadow.share}))
    return _decide(
        seed,
        Phase.DEPLOYING,
        now,
        "start",
        reason,
        effects,
        deploy_deadline=now + plan.deploy_timeout_s,
    )


def _require(run: CanaryRun, allowed: Sequence[Phase], command: str) -> None:
    if run.phase not in allowed:
        names = ", ".join(phase.value for phase in allowed)
        raise CanaryError(
            f"cannot {command}: the canary of {run.challenger} is {run.phase.value} (allowed when {names})"
        )


def _require_idle(run: CanaryRun, command: str) -> None:
    if run.busy:
        doing = ", ".join(action.kind.value for action in run.pending if action.kind.effect)
        raise CanaryError(
            f"cannot {command} yet: {doing} is still being applied; try again in a moment (only a "
            "rollback may interrupt it)"
        )


def _step_up(run: CanaryRun, now: float, event: str, reason: str) -> Transition:
    if run.step >= run.plan.last:
        return _decide(
            run,
            Phase.PROMOTING,
            now,
            event,
            reason,
            [
                (ActionKind.SET_WEIGHTS, run.full_weights),
                (ActionKind.PROMOTE_ALIAS, {}),
                (ActionKind.FINALIZE, {run.challenger: 100}),
            ],
            window_started_at=None,
            next_judgement_at=None,
            holds=0,
        )
    step = run.step + 1
    return _decide(
        run,
        Phase.OBSERVING,
        now,
        event,
        reason,
        [(ActionKind.SET_WEIGHTS, run.weights_at(step))],
        step=step,
        window_started_at=None,
        next_judgement_at=None,
        holds=0,
    )


def apply_command(run: CanaryRun, command: Command, *, now: float, user: str, reason: str = "") -> Transition:
    """An operator's command (pause, resume, promote, promote --full, rollback) on `run`."""
    why = f" ({reason.strip()})" if reason and reason.strip() else ""
    if command is Command.PAUSE:
        _require(run, (Phase.OBSERVING,), "pause")
        _require_idle(run, "pause")
        weight = run.plan.steps[run.step].weight
        return _decide(
            run,
            Phase.PAUSED,
            now,
            "pause",
            f"paused by {user} at {weight}%{why}",
            window_started_at=None,
            next_judgement_at=None,
        )
    if command is Command.RESUME:
        _require(run, (Phase.PAUSED,), "resume")
        step = run.plan.steps[run.step]
        return _decide(
            run,
            Phase.OBSERVING,
            now,
            "resume",
            f"resumed by {user} at {step.weight}%: a new {step.window_s:g} s window starts{why}",
            window_started_at=now,
            next_judgement_at=now + step.window_s,
            holds=0,
        )
    if command is Command.PROMOTE:
        _require(run, (Phase.OBSERVING, Phase.PAUSED), "promote")
        _require_idle(run, "promote")
        if run.step >= run.plan.last:
            return _step_up(run, now, "promote", f"promoted by {user} at 100%: {run.challenger} becomes champion{why}")
        weight = run.plan.steps[run.step + 1].weight
        return _step_up(run, now, "promote", f"stepped to {weight}% by {user} without waiting for the judge{why}")
    if command is Command.PROMOTE_FULL:
        _require(run, (Phase.OBSERVING, Phase.PAUSED), "promote --full")
        _require_idle(run, "promote --full")
        return _decide(
            run,
            Phase.PROMOTING,
            now,
            "promote_full",
            f"promoted fully by {user}: {run.challenger} takes all traffic and becomes champion, skipping "
            f"the remaining steps{why}",
            [
                (ActionKind.SET_WEIGHTS, run.full_weights),
                (ActionKind.PROMOTE_ALIAS, {}),
                (ActionKind.FINALIZE, {run.challenger: 100}),
            ],
            window_started_at=None,
            next_judgement_at=None,
        )
    if command is Command.ROLLBACK:
        _require(run, (Phase.DEPLOYING, Phase.SHADOWING, Phase.OBSERVING, Phase.PAUSED, Phase.FAILED), "roll back")
        effects: list[tuple[ActionKind, Mapping[str, int]]] = [(ActionKind.SET_WEIGHTS, run.restore_weights)]
        if run.plan.shadow is not None:
            effects.append((ActionKind.SHADOW, {run.challenger: 0}))
        return _decide(
            run,
            Phase.ROLLING_BACK,
            now,
            "rollback",
            f"rolled back by {user}: {run.champion} takes all traffic again{why}",
            effects,
            window_started_at=None,
            next_judgement_at=None,
            shadow_result=run.shadow_result or ("stopped" if run.plan.shadow is not None else ""),
        )
    if command is Command.SKIP_SHADOW:
        _require(run, (Phase.SHADOWING,), "skip the shadow step")
        _require_idle(run, "skip the shadow step")
        return _leave_shadow(
            run,
            now,
            "shadow_skip",
            f"shadow skipped by {user}: {run.challenger} gets {run.plan.steps[0].weight}% of traffic without a "
            f"shadow verdict{why}",
            "skipped",
        )
    raise CanaryError(f"{command.value} is not a command on a running canary (start begins a new one)")


def deployed(run: CanaryRun, *, now: float) -> Transition:
    """The platform serves both versions at the first weights: the first window starts."""
    _require(run, (Phase.DEPLOYING,), "mark deployed")
    _require_idle(run, "mark deployed")
    if run.shadowed and run.plan.shadow is not None:
        shadow = run.plan.shadow
        return _decide(
            run,
            Phase.SHADOWING,
            now,
            "shadow",
            f"{run.challenger} is loaded beside {run.champion} with no traffic: copies of {shadow.share}% of "
            f"answered requests go to it; shadow window of {shadow.window_s:g} s starts",
            window_started_at=now,
            next_judgement_at=now + shadow.window_s,
            deploy_deadline=None,
        )
    step = run.plan.steps[0]
    return _decide(
        run,
        Phase.OBSERVING,
        now,
        "deployed",
        f"{run.challenger} serves {step.weight}% beside {run.champion}: window 1 of {step.window_s:g} s starts",
        window_started_at=now,
        next_judgement_at=now + step.window_s,
        deploy_deadline=None,
    )


def deploy_failed(run: CanaryRun, problem: str, *, now: float) -> Transition:
    """The platform could not serve the challenger: give up and restore the champion's traffic."""
    _require(run, (Phase.DEPLOYING,), "fail the deployment")
    return _decide(
        run,
        Phase.FAILED,
        now,
        "deploy_failed",
        f"deploying {run.challenger} failed: {problem}; {run.champion} takes all traffic",
        [(ActionKind.SET_WEIGHTS, run.restore_weights)],
        error=problem,
        deploy_deadline=None,
    )


def judged(run: CanaryRun, judgement: Judgement, *, now: float, window_s: float) -> Transition:
    """The judge's verdict on the window that just ended: step up, promote, roll back, or hold."""
    _require(run, (Phase.OBSERVING,), "judge a window")
    _require_idle(run, "judge a window")
    step = run.plan.steps[run.step]
    record = {
        "step": run.step,
        "weight": step.weight,
        "at": now,
        "window_s": window_s,
        "judgement": judgement.to_json(),
    }
    history = (*run.judgements, record)[-MAX_JUDGEMENTS_KEPT:]
    window_number = run.holds + 1
    if judgement.outcome is Outcome.PASS:
        if run.step >= run.plan.last:
            reason = f"window at 100% passed ({judgement.reason}): {run.challenger} becomes champion"
        else:
            reason = (
                f"window at {step.weight}% passed ({judgement.reason}): stepping to "
                f"{run.plan.steps[run.step + 1].weight}%"
            )
        stepped = _step_up(run, now, "step" if run.step < run.plan.last else "promote", reason)
        return replace(stepped, run=replace(stepped.run, judgements=history))
    if judgement.outcome is Outcome.FAIL:
        reason = f"automatic rollback at {step.weight}%: {judgement.reason}"
        return _decide(
            run,
            Phase.ROLLING_BACK,
            now,
            "auto_rollback",
            reason,
            [(ActionKind.SET_WEIGHTS, run.restore_weights), (ActionKind.ALARM, {})],
            window_started_at=None,
            next_judgement_at=None,
            alarm=reason,
            judgements=history,
        )
    # Inconclusive or marginal: hold this step and judge again one window later, on everything since it began.
    after = replace(
        run,
        updated_at=now,
        holds=window_number,
        next_judgement_at=now + step.window_s,
        judgements=history,
        error="",
        reason=f"holding at {step.weight}% after window {window_number}: {judgement.reason}",
    )
    return Transition(run=after, actions=(), log=None, previous=run.phase)


def _leave_shadow(run: CanaryRun, now: float, event: str, reason: str, result: str, **changes: Any) -> Transition:
    """Stop the copies and give the challenger the first step's share; that step's window starts once it is set."""
    return _decide(
        run,
        Phase.OBSERVING,
        now,
        event,
        reason,
        [(ActionKind.SHADOW, {run.challenger: 0}), (ActionKind.SET_WEIGHTS, run.weights_at(0))],
        step=0,
        window_started_at=None,
        next_judgement_at=None,
        holds=0,
        shadow_result=result,
        **changes,
    )


def judged_shadow(run: CanaryRun, judgement: Judgement, *, now: float, window_s: float) -> Transition:
    """The shadow verdict: on to the first traffic step, end the release before any user saw it, or hold."""
    _require(run, (Phase.SHADOWING,), "judge the shadow window")
    _require_idle(run, "judge the shadow window")
    assert run.plan.shadow is not None
    record = {
        "step": -1,
        "phase": "shadow",
        "weight": 0,
        "at": now,
        "window_s": window_s,
        "judgement": judgement.to_json(),
    }
    history = (*run.judgements, record)[-MAX_JUDGEMENTS_KEPT:]
    if judgement.outcome is Outcome.PASS:
        reason = f"{judgement.reason}: {run.challenger} gets {run.plan.steps[0].weight}% of traffic"
        return _leave_shadow(run, now, "shadow_pass", reason, "passed", judgements=history)
    if judgement.outcome is Outcome.FAIL:
        reason = f"stopped in shadow, no client was answered by {run.challenger}: {judgement.reason}"
        return _decide(
            run,
            Phase.ROLLING_BACK,
            now,
            "shadow_fail",
            reason,
            [
                (ActionKind.SHADOW, {run.challenger: 0}),
                (ActionKind.SET_WEIGHTS, run.restore_weights),
                (ActionKind.ALARM, {}),
            ],
            window_started_at=None,
            next_judgement_at=None,
            alarm=reason,
            judgements=history,
            shadow_result="failed",
        )
    window_number = run.holds + 1
    after = replace(
        run,
        updated_at=now,
        holds=window_number,
        next_judgement_at=now + run.plan.shadow.window_s,
        judgements=history,
        error="",
        reason=f"holding in shadow after window {window_number}: {judgement.reason}",
    )
    return Transition(run=after, actions=(), log=None, previous=run.phase)


def complete(run: CanaryRun, action_id: str, *, now: float) -> Transition | CanaryRun:
    """`action_id` took effect. Returns the next transition when that finishes a phase, else the updated run.

    Completing an action that is not pending (done already, or superseded) changes nothing.
    """
    done = next((action for action in run.pending if action.id == action_id), None)
    if done is None:
        return run
    remaining = tuple(action for action in run.pending if action.id != action_id)
    after = replace(run, pending=remaining, updated_at=now)
    if done.kind.effect or not after.busy:
        after = replace(after, error="")  # an effect still waiting keeps the error of its last attempt
    if after.busy:
        return after
    finished = run.busy  # this completion applied the last effect
    if not finished:
        return after
    if after.phase is Phase.OBSERVING and after.window_started_at is None:
        step = after.plan.steps[after.step]
        return replace(after, window_started_at=now, next_judgement_at=now + step.window_s)
    if after.phase is Phase.PROMOTING:
        return _decide(
            after,
            Phase.PROMOTED,
            now,
            "promoted",
            f"{after.challenger} is champion and serves all traffic ({after.champion} unloaded)",
        )
    if after.phase is Phase.ROLLING_BACK:
        return _decide(
            after,
            Phase.ROLLED_BACK,
            now,
            "rolled_back",
            f"{after.champion} serves all traffic again, {after.challenger} gets none — {after.reason}",
        )
    return after


def action_failed(run: CanaryRun, action_id: str, problem: str, *, now: float) -> Transition | CanaryRun:
    """`action_id` failed in a way retrying cannot fix: the run fails, saying what state traffic is in."""
    action = next((item for item in run.pending if item.id == action_id), None)
    if action is None:
        return run
    if not action.kind.effect:
        # A log or alarm write that cannot be done is dropped, never allowed to block the release.
        return replace(
            run,
            pending=tuple(item for item in run.pending if item.id != action_id),
            updated_at=now,
            error=f"could not {action.kind.value} ({problem})",
        )
    if run.phase is Phase.FAILED:
        return replace(
            run,
            pending=tuple(item for item in run.pending if not item.kind.effect),
            updated_at=now,
            error=f"{action.kind.value} abandoned: {problem}",
            reason=f"{run.reason}; restoring {run.champion} failed: {problem} — traffic may still reach "
            f"{run.challenger}: `arsl canary rollback` tries again",
        )
    split = " / ".join(f"{version} {weight}%" for version, weight in action.weights.items())
    if run.phase is Phase.ROLLING_BACK:
        reason = (
            f"rollback failed: setting {split} was refused ({problem}); traffic may still reach "
            f"{run.challenger}: `arsl canary rollback` tries again"
        )
    elif run.phase is Phase.DEPLOYING:
        return deploy_failed(run, problem, now=now)
    else:
        what = f"{action.kind.value} {split}".strip()
        reason = f"{what} failed ({problem}) while {run.phase.value}; nothing further is done automatically"
    return _decide(
        run, Phase.FAILED, now, "failed", reason, error=problem, window_started_at=None, next_judgement_at=None
    )


def note_error(run: CanaryRun, problem: str, *, now: float) -> CanaryRun:
    """A pending action failed in a way that may pass (throttling, 5xx, timeout): it is retried.

    The problem is also kept in `retried` (once while it repeats), so the run says what it went through."""
    retried = run.retried if run.retried[-1:] == (problem,) else (*run.retried, problem)[-MAX_RETRIED_KEPT:]
    return replace(run, error=problem, updated_at=now, retried=retried)


# --- events for the console and `arsl canary watch` -----------------------------------------------


@dataclass(frozen=True)
class CanaryChanged(Event):
    run_id: str
    phase: str
    step: int
    weights: Mapping[str, int]
    reason: str


@dataclass(frozen=True)
class CanaryJudged(Event):
    run_id: str
    step: int
    weight: int
    outcome: str
    score: float | None
    reason: str


@dataclass(frozen=True)
class CanaryAlarm(Event):
    run_id: str
    champion: str
    challenger: str
    reason: str


__all__ = [
    "RUN_FORMAT",
    "Action",
    "ActionKind",
    "CanaryAlarm",
    "CanaryChanged",
    "CanaryError",
    "CanaryJudged",
    "CanaryRun",
    "Command",
    "Phase",
    "Plan",
    "ShadowStep",
    "Step",
    "Transition",
    "action_failed",
    "apply_command",
    "check_version",
    "complete",
    "deploy_failed",
    "deployed",
    "judged",
    "judged_shadow",
    "note_error",
    "start",
]
