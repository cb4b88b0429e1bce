"""The whole workflow as phases: what each phase is, and whether a recorded run already did it.

Pure description (stdlib only): `ops.pipeline` runs the phases and records them; this module says
which phases a run has, in which order, and which of them a resumed run may skip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from arsl_tui.domain.events import Event


class PhaseName(StrEnum):
    DATA = "data"
    UPLOAD = "upload"
    CHAMPION = "champion"
    TRAIN = "train"
    GATE = "gate"
    DEPLOY = "deploy"
    SHADOW = "shadow"
    """Step 0 of the canary: copies of live requests to the challenger, judged before any user sees it."""
    CANARY = "canary"
    ALARMS = "alarms"


PHASES: tuple[PhaseName, ...] = tuple(phase for phase in PhaseName if phase is not PhaseName.SHADOW)
"""The phases a run's views list, in order. The shadow step runs inside the canary phase: its own events
carry `"phase": "shadow"` (began, then done, failed or not needed), and its progress is shown on the
canary's line, so the 80-column phase list keeps one entry per phase a user starts or resumes."""
PHASE_TITLES: Mapping[PhaseName, str] = {
    PhaseName.DATA: "generate the demo data set",
    PhaseName.UPLOAD: "upload the data set",
    PhaseName.CHAMPION: "train and gate a first version (the champion)",
    PhaseName.TRAIN: "train the challenger",
    PhaseName.GATE: "gate the challenger",
    PhaseName.DEPLOY: "serve the champion",
    PhaseName.SHADOW: "shadow: the challenger answers copies, no user sees them",
    PhaseName.CANARY: "canary steps with analysis → promote or roll back",
    PhaseName.ALARMS: "set up the alarms",
}


class PhaseState(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"
    """Done by an earlier run with the same data set and code."""
    NOT_NEEDED = "not needed"
    FAILED = "failed"


@dataclass(frozen=True)
class PhaseRecord:
    """What one phase produced (`detail` is shown; `values` feed the later phases)."""

    phase: PhaseName
    detail: str
    values: Mapping[str, Any] = field(default_factory=dict)
    run_id: str = ""


def skippable(phase: PhaseName, done: Mapping[PhaseName, PhaseRecord]) -> bool:
    """Whether an earlier run's record lets this phase be skipped.

    The canary's record counts only if it promoted: a rolled-back challenger is not a result to keep,
    so a re-run releases again (after training a new challenger only if the code or data changed).
    The shadow phase is part of the canary run and is never recorded on its own.
    """
    record = done.get(phase)
    if record is None:
        return False
    if phase is PhaseName.CANARY:
        return record.values.get("outcome") == "promoted"
    return True


@dataclass(frozen=True)
class PipelineStarted(Event):
    run_id: str
    dataset: str
    code: str
    resumed_from: str
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class PipelinePhase(Event):
    """A phase began (`state` empty) or ended (`state` a `PhaseState` value)."""

    phase: str
    title: str
    state: str
    detail: str
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class PipelineEnded(Event):
    run_id: str
    outcome: str
    """promoted, rolled_back or gate_failed; in the run's event file also failed or cancelled (SIGINT), for a
    run an exception ended (`ops.pipeline_log`)."""
    version: str | None
    detail: str
    elapsed_s: float


__all__ = [
    "PHASES",
    "PHASE_TITLES",
    "PhaseName",
    "PhaseRecord",
    "PhaseState",
    "PipelineEnded",
    "PipelinePhase",
    "PipelineStarted",
    "skippable",
]
