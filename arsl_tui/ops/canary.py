"""The canary controller: drives `domain.canary` on a `ServingPlatform`, judged by `domain.judge`.

`arsl canary status|watch|start|promote|pause|resume|rollback` and the console's Canary tab all
call a `CanaryController`; `tick` is the whole loop body (perform what was decided, see whether a
deployment finished, judge a window that ended), so a watcher is `tick` + wait.

**State** lives in a `CanaryStateStore` the composition root chooses (`Backend.canary_state`): the run
record (with its pending actions), a journal of every decision, every action's outcome, and the alarms
raised. The local backend keeps them in the home's state file (`state.canary_store`); the Huawei backend in
the object store (`state.object_canary_store`), so every console pointed at the bucket, on any host, shows
the same release, and a controller lease admits one controller at a time (another is refused, naming the
holder). The promotion log in the registry also gets every transition (a `canary` entry with its reason).
The store's lock makes each decision and its actions one critical section, so a `watch`, the console and a
CLI command can run at once without acting twice; waiting between windows holds no lock.

**Idempotency**: a decision is persisted with its actions before any is performed; each action
is marked done in the same transaction that saves the run without it; and before performing one,
the controller checks whether its effect is there already (a crash after the effect, before the
mark): the weights already set, the package already served, the alias already moved, the log
entry with this action's id already written, the alarm with this id already raised.

**Errors**: a transient failure (throttling, 5xx, timeout, the gateway restarting) leaves the
action pending and the run where it is, with the error shown, and the next tick retries; effects
run in order, so nothing after a failed effect happens first. A permanent failure fails the run,
saying what state traffic is in (see `domain.canary.action_failed`).

**Shadow** (step 0 of the plan, `[canary] shadow`): the challenger is deployed at 0 % and a `ShadowTap`
mirrors copies of answered requests to it; the shadow window is judged by `domain.judge.judge_shadow`
(agreement with the champion, errors, latency, accuracy on the same requests). A backend without a
tap (nothing can mirror there) starts the run without the shadow step, saying so in the run's reason.
**Probes** (`ops.probes`): where the platform's own stats carry no latency or accuracy (Huawei), a
`probe` function sends the labelled probe set to the service before each judgement; each answer names
its version, so the probes' latency and correctness are merged into that version's stats.

Building a controller for the configured backend (its serving platform, store and registry) is
`ops.canary_wiring`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from arsl_tui.domain import canary as machine
from arsl_tui.domain.canary import (
    Action,
    ActionKind,
    CanaryAlarm,
    CanaryChanged,
    CanaryError,
    CanaryJudged,
    CanaryRun,
    Command,
    Phase,
    Plan,
    ShadowStep,
    Transition,
)
from arsl_tui.domain.events import EventSink, ignore_events
from arsl_tui.domain.judge import JudgeConfig, ShadowConfig, ShadowStats, judge, judge_shadow
from arsl_tui.domain.ports import (
    CanaryStateStore,
    LeaseHolder,
    ModelSlot,
    ServingPlatform,
    ServingPlatformError,
    ServingStatus,
    StoreError,
)
from arsl_tui.domain.registry import ALIASES, CHALLENGER, CHAMPION, RegistryError
from arsl_tui.domain.serving import VersionStats
from arsl_tui.state.canary_store import CanaryStateUnavailable

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.ops.registry import ModelRegistry

MAX_ACTIONS_PER_TICK = 64


class ShadowTap(Protocol):
    """Mirrors copies of a service's answered requests to a version that answers no client.

    Methods raise `ServingPlatformError` (transient when trying again may help).
    """

    @property
    def how(self) -> str:
        """One line on how copies reach the challenger on this backend (shown on the Canary tab)."""
        ...

    def set_shadow(self, service: str, version: str | None, share: int, reason: str = "") -> None:
        """Copy `share` % of answered requests to `version`; None or 0 stops the copies."""
        ...

    def shadow(self, service: str) -> tuple[str | None, int]:
        """The version copies go to now and its share (None, 0 when none)."""
        ...

    def shadow_stats(self, service: str, window_s: float) -> ShadowStats:
        """The copies of the last `window_s` seconds, compared with the champion's answers."""
        ...


Probe = Callable[[Sequence[str]], Mapping[str, VersionStats]]
"""Sends the labelled probe set to the service; per answering version, the probes' latency and correctness."""


# --- settings → plan and judge --------------------------------------------------------------------


def plan_from_settings(settings: Settings, *, shadow: bool | None = None) -> Plan:
    """The `[canary]` plan; `shadow` overrides `[canary] shadow` (True: with the shadow step, False: without)."""
    canary = settings.canary
    try:
        plan = Plan.uniform(canary.steps, canary.window_s, canary.min_samples, canary.deploy_timeout_s)
        if canary.shadow if shadow is None else shadow:
            step = ShadowStep(canary.shadow_share, float(canary.shadow_window_s), canary.shadow_min_samples)
            plan = Plan(plan.steps, deploy_timeout_s=plan.deploy_timeout_s, shadow=step)
        return plan
    except CanaryError as error:
        raise CanaryError(f"{settings.source}: [canary] {error}") from None


def shadow_config(settings: Settings) -> ShadowConfig:
    canary = settings.canary
    try:
        return ShadowConfig(
            min_samples=canary.shadow_min_samples,
            min_agreement=canary.min_agreement,
            max_error_rate=canary.max_error_rate,
            min_online_accuracy=canary.min_online_accuracy,
            min_feedback=canary.min_feedback,
            max_accuracy_drop=canary.max_accuracy_drop,
            max_latency_increase=canary.max_latency_increase,
            min_latency_increase_ms=canary.min_latency_increase_ms,
            confidence=canary.confidence,
        )
    except ValueError as error:
        raise CanaryError(f"{settings.source}: [canary] {error}") from None


def judge_config(settings: Settings, min_samples: int) -> JudgeConfig:
    canary = settings.canary
    try:
        return JudgeConfig(
            min_samples=min_samples,
            max_error_rate=canary.max_error_rate,
            max_p95_latency_ms=canary.max_p95_latency_ms,
            min_online_accuracy=canary.min_online_accuracy,
            min_feedback=canary.min_feedback,
            require_feedback=canary.require_feedback,
            confidence=canary.confidence,
            max_error_increase=canary.max_error_increase,
            max_latency_increase=canary.max_latency_increase,
            min_latency_increase_ms=canary.min_latency_increase_ms,
            max_accuracy_drop=canary.max_accuracy_drop,
            pass_score=canary.pass_score,
            marginal_score=canary.marginal_score,
        )
    except ValueError as error:
        raise CanaryError(f"{settings.source}: [canary] {error}") from None


# --- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryStatus:
    """Everything the CLI and the console show: the run, the platform's split and the window's live stats."""

    run: CanaryRun | None
    now: float
    service: str
    platform: ServingStatus | None = None
    stats: Mapping[str, VersionStats] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    """Why the platform or the stats could not be read (the run itself is still shown)."""
    alarms: tuple[Mapping[str, Any], ...] = ()
    journal: tuple[Mapping[str, Any], ...] = ()
    shadow: ShadowStats | None = None
    """The shadow window's copies so far (while shadowing), or None."""
    shadow_how: str = ""
    """How this backend mirrors (or why it cannot)."""
    controller: LeaseHolder | None = None
    """The controller holding the release's lease, where the state is shared between hosts (else None)."""
    state_unavailable: bool = False
    """The stored release could not be read (`problems` says why): `run` None means unknown, not idle."""

    @property
    def phase(self) -> Phase:
        return self.run.phase if self.run is not None else Phase.IDLE

    @property
    def rolled_back(self) -> bool:
        return self.phase in (Phase.ROLLED_BACK, Phase.FAILED)

    def controller_text(self) -> str:
        """Who holds the release's lease and how fresh it is (shared state), or "" where there is none."""
        holder = self.controller
        if holder is None:
            return ""
        left = holder.expires_at - self.now
        fresh = f"lease good for {left:.0f} s unless renewed" if left > 0 else f"lease expired {-left:.0f} s ago"
        return f"{holder.describe()}, {fresh}"

    def shadow_json(self) -> dict[str, Any]:
        """The shadow step: planned or not, how it ended, and the window's figures (without raw samples)."""
        run = self.run
        plan = run.plan.shadow if run is not None else None
        return {
            "planned": plan is not None,
            "how": self.shadow_how,
            "share": plan.share if plan is not None else None,
            "window_s": plan.window_s if plan is not None else None,
            "min_samples": plan.min_samples if plan is not None else None,
            "result": (run.shadow_result or None) if run is not None else None,
            "active": self.phase is Phase.SHADOWING,
            "window": self.shadow.to_json(samples=False) if self.shadow is not None else None,
            "verdicts": [
                dict(item) for item in (run.judgements if run is not None else ()) if item.get("phase") == "shadow"
            ],
        }

    def to_json(self) -> dict[str, Any]:
        run = self.run
        base: dict[str, Any] = {
            "phase": self.phase.value,
            "service": self.service,
            "weights": dict(self.platform.weights) if self.platform else {},
            "platform": (
                {"phase": self.platform.phase, "endpoint": self.platform.endpoint, "detail": self.platform.detail}
                if self.platform
                else None
            ),
            "problems": list(self.problems),
            "alarms": [dict(item) for item in self.alarms],
            "shadow": self.shadow_json(),
            "controller": self.controller.to_json() if self.controller is not None else None,
            "state_unavailable": self.state_unavailable,
        }
        if run is None:
            return {**base, "run_id": None, "champion": None, "challenger": None}
        step = run.plan.steps[run.step]
        return {
            **base,
            "run_id": run.run_id,
            "seq": run.seq,
            "champion": run.champion,
            "challenger": run.challenger,
            "step": run.step + 1,
            "steps": [s.weight for s in run.plan.steps],
            "weight": step.weight,
            "target_weights": run.target_weights,
            "window_s": step.window_s,
            "min_samples": step.min_samples,
            "time_left_s": run.time_left(self.now),
            "window_started_at": run.window_started_at,
            "next_judgement_at": run.next_judgement_at,
            "holds": run.holds,
            "reason": run.reason,
            "alarm": run.alarm or None,
            "error": run.error or None,
            "retried": list(run.retried),
            "pending": [action.to_json() for action in run.pending],
            "started_at": run.started_at,
            "started_by": run.started_by,
            "stats": {
                version: {key: value for key, value in item.to_json().items() if key != "latency_ms"}
                for version, item in self.stats.items()
            },
            "judgements": [dict(item) for item in run.judgements],
            "journal": [dict(item) for item in self.journal],
        }


# --- the controller -------------------------------------------------------------------------------


class _Retry(Exception):
    """An action failed in a way that may pass; it stays pending."""


class _GiveUp(Exception):
    """An action failed in a way retrying cannot fix."""


class CanaryController:
    """One home's canary: commands, `tick` and `watch`, on a serving platform and the model registry."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: CanaryStateStore,
        service: str,
        user: str,
        platform: ServingPlatform | None = None,
        registry: ModelRegistry | None = None,
        platform_factory: Callable[[], ServingPlatform] | None = None,
        registry_factory: Callable[[], ModelRegistry] | None = None,
        clock: Callable[[], float] = time.time,
        events: EventSink = ignore_events,
        shadow_tap: Callable[[], ShadowTap | None] | None = None,
        shadow_unavailable: str = "",
        probe: Probe | None = None,
    ) -> None:
        if (platform is None and platform_factory is None) or (registry is None and registry_factory is None):
            raise ValueError("a controller needs a platform and a registry (or factories for them)")
        self.settings = settings
        self._platform, self._platform_factory = platform, platform_factory
        self._registry, self._registry_factory = registry, registry_factory
        self.store = store
        self.service = service
        self.user = user
        self.clock = clock
        self.events = events
        self._shadow_tap_factory = shadow_tap
        self._shadow_tap: ShadowTap | None = None
        self.shadow_unavailable = shadow_unavailable
        """Why this backend cannot mirror (empty when it can)."""
        self.probe = probe

    @property
    def shadow_tap(self) -> ShadowTap | None:
        """Made on first use, like the platform; None where nothing can mirror."""
        if self._shadow_tap is None and self._shadow_tap_factory is not None:
            self._shadow_tap = self._shadow_tap_factory()
        return self._shadow_tap

    @property
    def may_shadow(self) -> bool:
        """Whether this backend has a way to mirror at all (without building the tap)."""
        return self._shadow_tap_factory is not None

    @property
    def shadow_how(self) -> str:
        if self._shadow_tap_factory is None:
            return self.shadow_unavailable or "this backend cannot mirror requests"
        tap = self.shadow_tap
        return tap.how if tap is not None else self.shadow_unavailable

    @property
    def platform(self) -> ServingPlatform:
        """Made on first use, so reading the stored run needs no credentials or network."""
        if self._platform is None:
            assert self._platform_factory is not None
            self._platform = self._platform_factory()
        return self._platform

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            assert self._registry_factory is not None
            self._registry = self._registry_factory()
        return self._registry

    def close(self) -> None:
        self.store.close()

    # --- reading ----------------------------------------------------------------------------------

    def current(self) -> CanaryRun | None:
        return self.store.current()

    def status(self, *, live: bool = True) -> CanaryStatus:
        """The run as stored; with `live`, the platform's split and the current window's stats too.

        A store that cannot be read (the object store unreachable, no credentials) is a problem shown with
        `state_unavailable`, not an error: the platform's side is still shown.
        """
        now = self.clock()
        problems: list[str] = []
        run: CanaryRun | None = None
        controller: LeaseHolder | None = None
        journal: tuple[Mapping[str, Any], ...] = ()
        alarms: tuple[Mapping[str, Any], ...] = ()
        unavailable = False
        try:
            run = self.store.current()
            journal = tuple(self.store.journal(run.run_id)) if run is not None else ()
            alarms = tuple(self.store.alarms(5))
            controller = self.store.holder()
        except CanaryStateUnavailable as error:
            problems.append(str(error))
            unavailable = True
        platform: ServingStatus | None = None
        stats: dict[str, VersionStats] = {}
        if live:
            try:
                platform = self.platform.status(self.service)
            except (ServingPlatformError, StoreError, RegistryError) as error:
                problems.append(f"serving platform: {error}")
            if run is not None and platform is not None and platform.phase not in ("absent",):
                window = (now - run.window_started_at) if run.window_started_at is not None else None
                if window is not None and window > 0:
                    try:
                        stats = self.platform.stats(self.service, [run.champion, run.challenger], window)
                    except ServingPlatformError as error:
                        problems.append(f"stats: {error}")
        shadow: ShadowStats | None = None
        if live and run is not None and run.phase is Phase.SHADOWING and run.window_started_at is not None:
            tap = self.shadow_tap
            if tap is not None:
                try:
                    shadow = tap.shadow_stats(self.service, max(now - run.window_started_at, 0.001))
                except ServingPlatformError as error:
                    problems.append(f"shadow: {error}")
        return CanaryStatus(
            run=run,
            now=now,
            service=self.service,
            platform=platform,
            stats=stats,
            problems=tuple(problems),
            alarms=alarms,
            journal=journal,
            shadow=shadow,
            shadow_how=self.shadow_how,
            controller=controller,
            state_unavailable=unavailable,
        )

    # --- commands ---------------------------------------------------------------------------------

    def _check_expected(self, run: CanaryRun | None, expect_seq: int | None) -> None:
        if expect_seq is None:
            return
        seq = run.seq if run is not None else 0
        if seq != expect_seq:
            where = f"{run.phase.value} at step {run.step + 1}" if run is not None else "idle"
            raise CanaryError(
                f"the canary changed since it was shown (it is now {where}, change {seq}, not "
                f"{expect_seq}); nothing was done — look again and repeat the command if still meant"
            )

    def start(
        self, version: str | None = None, *, expect_seq: int | None = None, shadow: bool | None = None
    ) -> CanaryRun:
        """Begin a canary of `version` (default: the registry's challenger) beside the champion.

        `shadow` overrides `[canary] shadow`; a backend that cannot mirror starts without the shadow step
        (or refuses, when the shadow step was asked for explicitly).
        """
        with self.store.lock():
            previous = self.store.current()
            self._check_expected(previous, expect_seq)
            try:
                aliases = self.registry.state().aliases
            except (RegistryError, StoreError) as error:
                raise CanaryError(f"cannot read the model registry: {error}") from None
            champion = aliases.get(CHAMPION)
            if champion is None:
                raise CanaryError(
                    "there is no champion to compare a canary with: deploy and promote a first "
                    "version (`arsl models list`)"
                )
            name = version or aliases.get(CHALLENGER)
            if name is None:
                raise CanaryError(
                    "no version to release: name one, or pass the gate with a new one (it becomes challenger)"
                )
            if name in ALIASES:
                resolved = aliases.get(name)
                if resolved is None:
                    raise CanaryError(f"no version is {name}")
                name = resolved
            challenger = machine.check_version(name, "version")
            try:
                self.registry.get(challenger)
            except (RegistryError, StoreError) as error:
                raise CanaryError(str(error)) from None
            now = self.clock()
            run_id = time.strftime("c%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(2)
            plan = plan_from_settings(self.settings, shadow=shadow)
            left_out = plan.shadow is not None and self.shadow_tap is None
            if left_out:
                if shadow:
                    raise CanaryError(f"no shadow step on this backend: {self.shadow_how}")
                plan = plan.without_shadow()
            transition = machine.start(
                previous,
                run_id=run_id,
                champion=champion,
                challenger=challenger,
                plan=plan,
                now=now,
                user=self.user,
                # Said in the run's reason and the promotion log, so nobody believes a shadow verdict was given.
                note=f"no shadow step: {self.shadow_how}" if shadow is None and left_out else "",
            )
            self.store.save_transition(transition, make_current=True)
            self._announce(transition)
            return self._advance(transition.run)

    def command(self, command: Command, *, reason: str = "", expect_seq: int | None = None) -> CanaryRun:
        """pause, resume, promote, promote --full or rollback; performs what it decides before returning."""
        with self.store.lock():
            run = self.store.current()
            self._check_expected(run, expect_seq)
            if run is None:
                raise CanaryError("no canary has been started (`arsl canary start [VERSION]`)")
            transition = machine.apply_command(run, command, now=self.clock(), user=self.user, reason=reason)
            self.store.save_transition(transition)
            self._announce(transition)
            return self._advance(transition.run)

    # --- the loop body ----------------------------------------------------------------------------

    def tick(self) -> CanaryRun | None:
        """Perform pending actions, notice a finished deployment, judge a window that ended."""
        with self.store.lock():
            run = self.store.current()
            if run is None:
                return None
            return self._advance(run)

    def _advance(self, run: CanaryRun) -> CanaryRun:
        run = self._drain(run)
        if run.phase is Phase.DEPLOYING and not run.busy:
            run = self._drain(self._check_deployment(run))
        if run.due(self.clock()):
            run = self._drain(self._judge(run))
        return run

    def watch(
        self,
        *,
        stop: threading.Event | None = None,
        on_update: Callable[[CanaryStatus], None] | None = None,
        drive: bool = True,
    ) -> CanaryRun | None:
        """Tick (if `drive`) and report each change until the run has ended with nothing pending, or `stop` is set.

        Between ticks it waits until the current window ends, or `[canary] poll_s`, whichever is sooner.
        """
        stop = stop or threading.Event()
        poll = self.settings.canary.poll_s
        reported: tuple[Any, ...] | None = None
        while True:
            run = self.tick() if drive else self.store.current()
            # The live status reads the platform and its metrics: build it only when the run changed.
            key = (run.run_id, run.seq, run.holds, run.error, len(run.pending)) if run is not None else (None,)
            if on_update is not None and key != reported:
                reported = key
                on_update(self.status())
            if run is None or (run.phase.ended and not run.pending):
                return run
            now = self.clock()
            wait = poll
            if run.next_judgement_at is not None and run.phase in (Phase.OBSERVING, Phase.SHADOWING) and not run.busy:
                wait = min(poll, max(0.0, run.next_judgement_at - now))
            if run.error:
                wait = poll
            if stop.wait(wait):
                return self.store.current()

    # --- deployment progress and windows ----------------------------------------------------------

    def _check_deployment(self, run: CanaryRun) -> CanaryRun:
        now = self.clock()
        try:
            status = self.platform.status(self.service)
        except ServingPlatformError as error:
            if error.transient:
                run = machine.note_error(run, f"cannot read the service: {error}", now=now)
                self.store.save(run)
                return run
            return self._save(machine.deploy_failed(run, str(error), now=now))
        wanted = run.deploy_weights
        ready = all(status.ready.get(version, True) for version in wanted)
        if status.running and status.serves(wanted) and ready:
            return self._save(machine.deployed(run, now=now))
        if status.phase == "failed":
            return self._save(
                machine.deploy_failed(run, status.detail or "the platform reports the service failed", now=now)
            )
        if run.deploy_deadline is not None and now >= run.deploy_deadline:
            return self._save(
                machine.deploy_failed(
                    run,
                    f"not serving {run.challenger} after {run.plan.deploy_timeout_s:g} s (service {status.phase}"
                    f"{': ' + status.detail if status.detail else ''})",
                    now=now,
                )
            )
        if status.phase in ("stopped", "absent"):
            # A stopped service never comes up by itself (the gateway was killed or stopped after the deploy
            # took effect): say why the deployment waits, or a watch would wait in silence until the deadline.
            problem = (
                f"service {self.service} is {status.phase}{' — ' + status.detail if status.detail else ''}; "
                "the deployment waits for it to run"
            )
            if run.error != problem:
                run = machine.note_error(run, problem, now=now)
                self.store.save(run)
        return run

    def _judge_shadow(self, run: CanaryRun) -> CanaryRun:
        now = self.clock()
        assert run.window_started_at is not None
        window_s = max(now - run.window_started_at, 0.001)
        tap = self.shadow_tap
        try:
            if tap is None:
                raise ServingPlatformError(f"the shadow tap is gone: {self.shadow_how}", transient=True)
            share = run.plan.shadow.share if run.plan.shadow is not None else 0
            if tap.shadow(self.service) != (run.challenger, share):
                # The mirror lives in the gateway's memory: a restarted gateway lost it. Set it again; the window
                # it lost copies from is then too thin and is held, not judged.
                tap.set_shadow(self.service, run.challenger, share, "shadow restored after a gateway restart")
            stats = tap.shadow_stats(self.service, window_s)
        except ServingPlatformError as error:
            run = machine.note_error(run, f"cannot read the shadow window: {error}", now=now)
            self.store.save(run)
            return run
        judgement = judge_shadow(stats, shadow_config(self.settings))
        transition = machine.judged_shadow(run, judgement, now=now, window_s=window_s)
        self.store.save_transition(transition)
        self.events(
            CanaryJudged(
                run_id=run.run_id,
                step=0,
                weight=0,
                outcome=judgement.outcome.value,
                score=judgement.score,
                reason=judgement.reason,
            )
        )
        self._announce(transition)
        return transition.run

    def _window_stats(self, run: CanaryRun, window_s: float) -> dict[str, VersionStats]:
        """The platform's per-version stats, with the labelled probes' evidence merged in where probes run."""
        stats = self.platform.stats(self.service, [run.champion, run.challenger], window_s)
        if self.probe is None:
            return stats
        from arsl_tui.ops.probes import merge_stats

        try:
            probed = self.probe([run.champion, run.challenger])
        except (ServingPlatformError, OSError, ValueError):
            return stats  # probes add evidence; the platform's own counts still judge without them
        return merge_stats(stats, probed)

    def _judge(self, run: CanaryRun) -> CanaryRun:
        if run.phase is Phase.SHADOWING:
            return self._judge_shadow(run)
        now = self.clock()
        assert run.window_started_at is not None
        window_s = max(now - run.window_started_at, 0.001)
        try:
            stats = self._window_stats(run, window_s)
        except ServingPlatformError as error:
            run = machine.note_error(run, f"cannot read the window's stats: {error}", now=now)
            self.store.save(run)
            return run
        canary = stats.get(run.challenger) or VersionStats(
            version=run.challenger, window_s=window_s, requests=0, errors=0
        )
        baseline = stats.get(run.champion)
        if baseline is not None and baseline.requests == 0:
            baseline = None
        step = run.plan.steps[run.step]
        judgement = judge(canary, baseline, judge_config(self.settings, step.min_samples))
        transition = machine.judged(run, judgement, now=now, window_s=window_s)
        self.store.save_transition(transition)
        self.events(
            CanaryJudged(
                run_id=run.run_id,
                step=run.step + 1,
                weight=step.weight,
                outcome=judgement.outcome.value,
                score=judgement.score,
                reason=judgement.reason,
            )
        )
        self._announce(transition)
        return transition.run

    def _save(self, transition: Transition) -> CanaryRun:
        self.store.save_transition(transition)
        self._announce(transition)
        return transition.run

    def _announce(self, transition: Transition) -> None:
        run = transition.run
        self.events(
            CanaryChanged(
                run_id=run.run_id,
                phase=run.phase.value,
                step=run.step + 1,
                weights=run.target_weights,
                reason=run.reason,
            )
        )

    # --- actions ----------------------------------------------------------------------------------

    def _drain(self, run: CanaryRun) -> CanaryRun:
        """Perform pending actions: effects in order (stopping at one that must be retried), then logs and alarms."""
        retry_later: set[str] = set()
        for _ in range(MAX_ACTIONS_PER_TICK):
            action = next((item for item in run.pending if item.kind.effect), None)
            if action is None or action.id in retry_later:
                action = next(
                    (item for item in run.pending if not item.kind.effect and item.id not in retry_later), None
                )
            if action is None:
                return run
            try:
                detail = self._perform(run, action)
            except _Retry as problem:
                retry_later.add(action.id)
                run = machine.note_error(run, f"{action.kind.value}: {problem} (retrying)", now=self.clock())
                self.store.save(run)
                continue
            except _GiveUp as problem:
                after = machine.action_failed(run, action.id, str(problem), now=self.clock())
                self.store.finish_action(after, action, "failed", str(problem))
                if isinstance(after, Transition):
                    self._announce(after)
                    run = after.run
                else:
                    run = after
                continue
            after = machine.complete(run, action.id, now=self.clock())
            self.store.finish_action(after, action, "done", detail)
            if isinstance(after, Transition):
                self._announce(after)
                run = after.run
            else:
                run = after
        return run

    def _perform(self, run: CanaryRun, action: Action) -> str:
        """Make `action`'s effect true, unless it is already (then say so); raise _Retry or _GiveUp."""
        if self.store.action_outcome(action.id) == "done":
            return "done before"
        try:
            return self._effect(run, action)
        except ServingPlatformError as error:
            raise (_Retry if error.transient else _GiveUp)(str(error)) from None
        except StoreError as error:
            raise (_Retry if error.transient else _GiveUp)(str(error)) from None
        except RegistryError as error:
            from arsl_tui.ops.registry import RegistryBusy

            raise (_Retry if isinstance(error, RegistryBusy) else _GiveUp)(str(error)) from None

    def _effect(self, run: CanaryRun, action: Action) -> str:
        kind = action.kind
        if kind is ActionKind.LOG:
            entry = self.registry.record_canary(
                run.challenger, run.champion, f"{action.event}: {action.reason}", self.user, action.id
            )
            return f"promotion log entry {entry.seq}"
        if kind is ActionKind.ALARM:
            if self.store.raise_alarm(action, run, self.clock()):
                self.events(
                    CanaryAlarm(
                        run_id=run.run_id, champion=run.champion, challenger=run.challenger, reason=action.reason
                    )
                )
                return "alarm raised"
            return "alarm raised before"
        if kind is ActionKind.PROMOTE_ALIAS:
            if self.registry.state().aliases.get(CHAMPION) == run.challenger:
                return f"champion is {run.challenger} already"
            entry = self.registry.set_alias(
                CHAMPION, run.challenger, f"canary {run.run_id}: {action.reason}", self.user
            )
            return f"promotion log entry {entry.seq}"
        if kind is ActionKind.SHADOW:
            return self._set_shadow(run, action)
        status = self.platform.status(self.service)
        if kind is ActionKind.SET_WEIGHTS and status.phase == "absent":
            return "the service does not exist: no traffic to move"
        if kind is ActionKind.DEPLOY:
            if (
                status.phase not in ("absent", "failed")
                and status.serves(action.weights)
                and set(action.weights) <= set(status.weights)
            ):
                return "served already"
            self.platform.deploy(
                self.service, [ModelSlot(version, weight) for version, weight in action.weights.items()], action.reason
            )
            return "deployed"
        if kind is ActionKind.FINALIZE:
            if set(status.weights) == set(action.weights) and status.serves(action.weights):
                return f"{run.challenger} serves alone already"
            self.platform.deploy(
                self.service, [ModelSlot(version, weight) for version, weight in action.weights.items()], action.reason
            )
            return f"{run.challenger} serves alone"
        if kind is ActionKind.SET_WEIGHTS:
            if status.serves(action.weights):
                return "weights set already"
            missing = [
                version for version, weight in action.weights.items() if weight and version not in status.weights
            ]
            if missing:
                raise _GiveUp(
                    f"the service does not hold {', '.join(missing)} (it holds "
                    f"{', '.join(status.weights) or 'nothing'})"
                )
            weights = {version: action.weights.get(version, 0) for version in status.weights}
            self.platform.set_weights(self.service, weights, action.reason)
            return "weights set"
        raise _GiveUp(f"unknown action {kind.value}")

    def _set_shadow(self, run: CanaryRun, action: Action) -> str:
        share = int(action.weights.get(run.challenger, 0))
        tap = self.shadow_tap
        if tap is None:
            if share:
                raise _GiveUp(f"cannot mirror requests: {self.shadow_how}")
            return "no shadow tap: nothing to stop"
        version = run.challenger if share else None
        current = tap.shadow(self.service)
        if current == (version, share) or (not share and current[1] == 0):
            return "copies set already" if share else "copies stopped already"
        tap.set_shadow(self.service, version, share, action.reason)
        return f"copies of {share}% go to {run.challenger}" if share else "copies stopped"


def describe_weights(weights: Mapping[str, int]) -> str:
    return " / ".join(f"{version} {weight}%" for version, weight in weights.items()) or "—"


def stats_rows(status: CanaryStatus) -> Sequence[tuple[str, VersionStats | None]]:
    """(version, stats) for the champion then the challenger, for tables."""
    if status.run is None:
        return ()
    return [(version, status.stats.get(version)) for version in (status.run.champion, status.run.challenger)]


__all__ = [
    "CanaryController",
    "CanaryStatus",
    "Probe",
    "ShadowTap",
    "describe_weights",
    "judge_config",
    "plan_from_settings",
    "shadow_config",
    "stats_rows",
]
