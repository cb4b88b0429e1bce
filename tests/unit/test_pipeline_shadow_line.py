"""The pipeline's shadow line when the backend cannot have the step: it names why, whatever the run says by then."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from arsl_tui.domain.pipeline import PhaseState
from arsl_tui.ops.pipeline import ShadowPhase


@dataclass
class Runner:
    lines: list[tuple[PhaseState | None, str]] = field(default_factory=list)

    def emit_shadow(self, state: PhaseState | None, detail: str, started: float) -> None:
        self.lines.append((state, detail))

    def on_event(self, event: Any) -> None:
        raise AssertionError(f"no canary line expected: {event}")


@dataclass
class Plan:
    shadow: Any = None


@dataclass
class Run:
    reason: str
    plan: Plan = field(default_factory=Plan)


@dataclass
class Status:
    run: Run


def test_a_left_out_shadow_step_names_the_backend_even_after_the_runs_reason_moved_on() -> None:
    runner = Runner()
    phase = ShadowPhase(runner, 0.0, left_out="ModelArts real-time services have no traffic mirroring")
    # The first update the pipeline sees may already carry a decision's reason, not the note the run began with.
    phase.follow(Status(Run(reason="deploying v2 at 50%")))
    phase.follow(Status(Run(reason="observing")))
    assert runner.lines == [
        (PhaseState.NOT_NEEDED, "no shadow step (ModelArts real-time services have no traffic mirroring)")
    ]


def test_a_shadow_step_turned_off_by_configuration_says_so() -> None:
    runner = Runner()
    ShadowPhase(runner, 0.0).follow(Status(Run(reason="deploying v2 at 50%")))
    assert runner.lines == [(PhaseState.NOT_NEEDED, "no shadow step ([canary] shadow)")]
