"""One view of every phase of the workflow: pipeline, data → training → models → service → canary → alarms.

`collect(settings)` asks each part for where it stands and what to do next; a part that cannot be
read (a cloud error, a missing credential) is reported as `unknown` with the reason, and the others
are still shown. Used by `arsl status` and the console's Overview.

The latest pipeline run comes first, and every suggestion is weighed against the whole state
(`weigh`): while a pipeline runs it does the next steps itself, so the only suggestion is to follow
it; a job already registered as a version needs no gate; there is nothing to deploy before there is
a champion. `StatusReport.next_step` picks among the rows' suggestions, so it is empty only when no
row suggests anything.

Looking changes nothing: on the local backend a part whose state file or store folder does not exist
yet is reported as not started, without opening (and so creating) either.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from arsl_tui.backends import backend_for

if TYPE_CHECKING:
    from pathlib import Path

    from arsl_tui.config import Settings
    from arsl_tui.domain.pipeline_run import PipelineView


class PhaseState(StrEnum):
    NONE = "none"
    """Nothing happened in this phase yet."""
    RUNNING = "running"
    DONE = "done"
    ATTENTION = "attention"
    """Something needs a person: a failed job, an active alarm, an unfinished upload."""
    UNKNOWN = "unknown"
    """The phase could not be read (see `error`)."""


@dataclass(frozen=True)
class PhaseStatus:
    phase: str
    state: PhaseState
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    next_step: str = ""
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "state": self.state.value,
            "summary": self.summary,
            "details": self.details,
            "next": self.next_step or None,
            "error": self.error or None,
        }


@dataclass(frozen=True)
class StatusReport:
    backend: str
    time: float
    phases: tuple[PhaseStatus, ...]
    """The workflow's phases in order, each with the suggestion the whole state leaves it (`weigh`)."""
    pipeline: PhaseStatus | None = None
    """The latest pipeline run, shown before the phases (None: not read)."""
    as_read: tuple[PhaseStatus, ...] = ()
    """The phases as each part reported itself, before `weigh` (what `with_pipeline` weighs again)."""

    @property
    def rows(self) -> tuple[PhaseStatus, ...]:
        """What a view shows, in order: the pipeline, then each phase."""
        return ((self.pipeline,) if self.pipeline is not None else ()) + self.phases

    def phase(self, name: str) -> PhaseStatus:
        return next(item for item in self.rows if item.phase == name)

    @property
    def next_phase(self) -> PhaseStatus | None:
        """The row whose suggestion comes first: one needing attention, then one not started, then any
        other; None only when no row suggests anything."""
        suggesting = [item for item in self.rows if item.next_step]
        for wanted in (PhaseState.ATTENTION, PhaseState.NONE):
            for item in suggesting:
                if item.state is wanted:
                    return item
        return suggesting[0] if suggesting else None

    @property
    def next_step(self) -> str:
        chosen = self.next_phase
        return chosen.next_step if chosen is not None else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline.to_json() if self.pipeline is not None else None,
            "backend": self.backend,
            "time": self.time,
            "phases": [item.to_json() for item in self.phases],
            "next": self.next_step or None,
        }


def _data(settings: Settings) -> PhaseStatus:
    from arsl_tui.ops.upload import last_uploaded_dataset, resumable_run

    unfinished = resumable_run(settings)
    done = last_uploaded_dataset(settings)
    details: dict[str, Any] = {}
    if done is not None:
        details = {
            "manifest_id": done.manifest_id,
            "destination": done.destination,
            "objects": done.objects_total,
            "bytes": done.bytes_total,
            "uploaded_at": done.updated_at,
        }
    if unfinished is not None:
        details["unfinished_run"] = {
            "run_id": unfinished.run_id,
            "status": unfinished.status,
            "objects_confirmed": unfinished.objects_confirmed,
            "objects_total": unfinished.objects_total,
        }
        return PhaseStatus(
            "data",
            PhaseState.ATTENTION,
            f"upload {unfinished.status} at {unfinished.objects_confirmed}/{unfinished.objects_total} objects",
            details,
            f"arsl upload {unfinished.dataset_dir}  (resumes)",
        )
    if done is None:
        return PhaseStatus("data", PhaseState.NONE, "no data set uploaded", details, "arsl upload DIR")
    return PhaseStatus("data", PhaseState.DONE, f"data set {done.manifest_id[:12]} in {done.destination}", details)


def _no_local_state(settings: Settings) -> bool:
    """The local backend's state file is not there yet (opening it would create it, and the home)."""
    from arsl_tui.state.db import state_path

    return not state_path(settings.home_dir).exists()


def _training(settings: Settings) -> PhaseStatus:
    from arsl_tui.ops.training import open_platform

    if backend_for(settings).runs_here and _no_local_state(settings):
        return PhaseStatus("training", PhaseState.NONE, "no training job yet", {}, "arsl train submit")
    platform = open_platform(settings)
    try:
        jobs = platform.list(limit=1)
    finally:
        close = getattr(platform, "close", None)
        if close is not None:
            close()
    if not jobs:
        return PhaseStatus("training", PhaseState.NONE, "no training job yet", {}, "arsl train submit")
    job = jobs[0]
    details = {"job_id": job.job_id, "phase": job.phase.value, "created_at": job.created_at, "ended_at": job.ended_at}
    summary = f"job {job.job_id} {job.phase.value}"
    if not job.terminal:
        return PhaseStatus("training", PhaseState.RUNNING, summary, details, f"arsl train watch {job.job_id}")
    if job.phase.succeeded:
        version = _registered_as(settings, job.job_id, job.ended_at)
        if version is not None:
            details["version"] = version
            return PhaseStatus("training", PhaseState.DONE, f"{summary}, registered as {version}", details)
        return PhaseStatus("training", PhaseState.DONE, summary, details, f"arsl gate {job.job_id}")
    reason = job.reason.splitlines()[-1] if job.reason else ""
    return PhaseStatus(
        "training",
        PhaseState.ATTENTION,
        summary + (f": {reason}" if reason else ""),
        details,
        f"arsl train logs {job.job_id}",
    )


def _no_local_registry(settings: Settings) -> bool:
    """The local backend's store folder is not there yet (so no version is either)."""
    folder = backend_for(settings).store_folder()
    return folder is not None and not folder.is_dir()


def _registered_as(settings: Settings, job_id: str, ended_at: float | None) -> str | None:
    """The version a finished job was registered as, if it was."""
    from arsl_tui.ops.registry import ModelRegistry

    if _no_local_registry(settings):
        return None
    record = ModelRegistry.from_settings(settings).find_by_job(job_id, ended_at=ended_at)
    return record.version if record is not None else None


def _models(settings: Settings) -> PhaseStatus:
    from arsl_tui.ops.registry import ModelRegistry

    if _no_local_registry(settings):
        return PhaseStatus(
            "models",
            PhaseState.NONE,
            "no registered model",
            {"champion": None, "challenger": None, "versions": 0},
            "arsl gate JOB",
        )
    state = ModelRegistry.from_settings(settings).state()
    aliases = dict(state.aliases)
    champion, challenger = aliases.get("champion"), aliases.get("challenger")
    details = {"champion": champion, "challenger": challenger, "versions": len(state.registered)}
    if champion is None and challenger is None:
        return PhaseStatus("models", PhaseState.NONE, "no registered model", details, "arsl gate JOB")
    summary = f"champion {champion or '—'}, challenger {challenger or '—'}"
    next_step = f"arsl deploy {challenger} --canary 10" if challenger and challenger != champion else ""
    return PhaseStatus("models", PhaseState.DONE, summary, details, next_step)


def _cloud_service(settings: Settings) -> PhaseStatus:
    """The service the canary drives, as the serving platform reports it (a ModelArts real-time service)."""
    from arsl_tui.ops.canary_wiring import service_status

    backend = backend_for(settings)
    name = backend.service_name()
    status = service_status(settings)
    details: dict[str, Any] = {
        "service": name,
        "service_id": status.platform_id or None,
        "phase": status.phase,
        "running": status.running,
        "endpoint": status.endpoint,
        "weights": dict(status.weights),
    }
    where = f"{backend.service_platform} service {name}"
    if status.phase == "absent":
        return PhaseStatus("service", PhaseState.NONE, f"no {where} yet", details, "arsl pipeline run")
    weights = ", ".join(f"{version} {weight}%" for version, weight in status.weights.items() if weight) or "nothing"
    why = f": {status.detail}" if status.detail else ""
    if status.running:
        return PhaseStatus("service", PhaseState.RUNNING, f"{where} serving {weights}{why}", details)
    if status.phase == "deploying":
        return PhaseStatus("service", PhaseState.RUNNING, f"{where} deploying ({weights}){why}", details)
    return PhaseStatus("service", PhaseState.ATTENTION, f"{where} {status.phase}{why}", details, "arsl canary status")


def _service(settings: Settings) -> PhaseStatus:
    backend = backend_for(settings)
    if not backend.runs_here:
        return _cloud_service(settings)
    from arsl_tui.ops import serving

    if _no_local_state(settings):
        return PhaseStatus("service", PhaseState.NONE, "nothing deployed", {"running": False}, "arsl deploy champion")
    status = serving.status(settings)
    deployment = status.deployment
    details: dict[str, Any] = {
        "running": status.running,
        "endpoint": status.process.endpoint if status.process else None,
        "stable": deployment.stable if deployment else None,
        "canary": deployment.canary if deployment else None,
        "weights": dict(deployment.weights) if deployment else {},
    }
    if deployment is None:
        return PhaseStatus("service", PhaseState.NONE, "nothing deployed", details, "arsl deploy champion")
    weights = ", ".join(f"{version} {weight}%" for version, weight in deployment.weights.items())
    if not status.running:
        return PhaseStatus(
            "service", PhaseState.ATTENTION, f"stopped (last served {weights})", details, "arsl service start"
        )
    return PhaseStatus("service", PhaseState.RUNNING, f"serving {weights} at {details['endpoint']}", details)


def _canary(settings: Settings) -> PhaseStatus:
    try:
        # The canary controller's module; read through its public `open_controller(...).status()`.
        deployment = importlib.import_module("arsl_tui.ops.canary_wiring")
    except ModuleNotFoundError:
        return PhaseStatus("canary", PhaseState.NONE, "not deployed", {"available": False})
    open_controller: Callable[..., Any] | None = getattr(deployment, "open_controller", None)
    if open_controller is None:
        return PhaseStatus("canary", PhaseState.NONE, "not deployed", {"available": False})
    if backend_for(settings).runs_here and _no_local_state(settings):
        # Here the controller's state is in the state file; off this machine it is shared (the object store),
        # and a home that never ran a canary still sees the team's release.
        return PhaseStatus("canary", PhaseState.NONE, "no canary in progress", {"phase": None})
    controller = open_controller(settings)
    try:
        data = controller.status(live=False).to_json()
    finally:
        controller.close()
    if not data.get("run_id"):
        return PhaseStatus("canary", PhaseState.NONE, "no canary in progress", {"phase": data.get("phase")})
    phase = str(data.get("phase") or "")
    details = {
        key: data.get(key)
        for key in ("run_id", "phase", "champion", "challenger", "step", "steps", "weight", "reason", "alarm", "error")
    }
    steps = data.get("steps") or []
    summary = (
        f"{data.get('challenger')} vs {data.get('champion')}: {phase}, step {data.get('step')}"
        f"/{len(steps)} at {data.get('weight')}%"
    )
    if phase in ("rolled_back", "failed") or data.get("error"):
        return PhaseStatus("canary", PhaseState.ATTENTION, summary, details, "arsl canary status")
    if phase in ("promoted", "completed", "done"):
        return PhaseStatus("canary", PhaseState.DONE, summary, details)
    return PhaseStatus("canary", PhaseState.RUNNING, summary, details, "arsl canary watch")


def _alarms(settings: Settings) -> PhaseStatus:
    from arsl_tui.domain.alarms import AlarmState
    from arsl_tui.ops.monitoring import list_rules

    if backend_for(settings).runs_here and _no_local_state(settings):
        return PhaseStatus("alarms", PhaseState.NONE, "no alarm rules", {"rules": 0}, "arsl alarms setup")
    views = list_rules(settings)
    if not views:
        return PhaseStatus("alarms", PhaseState.NONE, "no alarm rules", {"rules": 0}, "arsl alarms setup")
    active = [view for view in views if view.state is AlarmState.ALARM]
    counts = {state.value: sum(1 for view in views if view.state is state) for state in AlarmState}
    details = {
        "rules": len(views),
        "states": counts,
        "active": [
            {
                "name": view.rule.name,
                "since": view.since,
                "value": view.value,
                "acknowledged": view.acknowledged_at is not None,
            }
            for view in active
        ],
    }
    if active:
        names = ", ".join(view.rule.name for view in active)
        return PhaseStatus(
            "alarms", PhaseState.ATTENTION, f"{len(active)} in alarm: {names}", details, "arsl alarms list"
        )
    return PhaseStatus(
        "alarms",
        PhaseState.DONE,
        f"{len(views)} rules, none in alarm ({counts['insufficient_data']} without data)",
        details,
    )


PHASES: tuple[tuple[str, Callable[[Settings], PhaseStatus]], ...] = (
    ("data", _data),
    ("training", _training),
    ("models", _models),
    ("service", _service),
    ("canary", _canary),
    ("alarms", _alarms),
)


def pipeline_status(view: PipelineView, home: Path, *, starting_pid: int = 0) -> PhaseStatus:
    """The pipeline's row: the latest run (or one starting), and what to do about it."""
    from arsl_tui.domain.pipeline_run import WATCH_COMMAND, describe, next_command, run_state
    from arsl_tui.ops.pipeline_control import status_json

    details = status_json(view, home)
    if starting_pid and not view.alive:
        details = {**details, "state": "starting", "pid": starting_pid}
        return PhaseStatus("pipeline", PhaseState.RUNNING, f"starting (process {starting_pid})", details, WATCH_COMMAND)
    if not view.exists:
        return PhaseStatus("pipeline", PhaseState.NONE, "no pipeline run yet", details)
    state = run_state(view)
    summary = f"{view.run_id}{' (demo)' if view.demo else ''} {describe(view)}"
    if state == "running":
        return PhaseStatus("pipeline", PhaseState.RUNNING, summary, details, next_command(view))
    if view.outcome == "promoted":
        return PhaseStatus("pipeline", PhaseState.DONE, summary, details)
    reason = f": {view.outcome_detail}" if view.outcome_detail else ""
    return PhaseStatus("pipeline", PhaseState.ATTENTION, summary + reason, details, next_command(view))


def _pipeline(settings: Settings) -> PhaseStatus:
    from arsl_tui.ops.pipeline_log import PipelineLogReader

    return pipeline_status(PipelineLogReader(settings.home_dir).read(), settings.home_dir)


def weigh(phases: Sequence[PhaseStatus], pipeline: PhaseStatus | None) -> tuple[PhaseStatus, ...]:
    """Each phase's suggestion as the whole state leaves it.

    While a pipeline runs (or starts) it does the next steps itself: no phase suggests one, the
    pipeline's row says how to follow it. Without a champion there is nothing to deploy: the service
    suggests nothing (the models row says how to get one).
    """
    running = pipeline is not None and pipeline.state is PhaseState.RUNNING
    models = next((item for item in phases if item.phase == "models"), None)
    no_champion = models is not None and models.state is not PhaseState.UNKNOWN and not models.details.get("champion")
    weighed = []
    for item in phases:
        if item.next_step and (running or (item.phase == "service" and item.state is PhaseState.NONE and no_champion)):
            item = replace(item, next_step="")
        weighed.append(item)
    return tuple(weighed)


def with_pipeline(report: StatusReport, view: PipelineView, home: Path, *, starting_pid: int = 0) -> StatusReport:
    """The report with a newer read of the pipeline (the console reads it more often), weighed again."""
    as_read = report.as_read or report.phases
    pipeline = pipeline_status(view, home, starting_pid=starting_pid)
    return replace(report, phases=weigh(as_read, pipeline), pipeline=pipeline, as_read=as_read)


def _read(name: str, read: Callable[[Settings], PhaseStatus], settings: Settings) -> PhaseStatus:
    try:
        return read(settings)
    except Exception as error:  # any part's failure is shown in its row, the others still are
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        return PhaseStatus(name, PhaseState.UNKNOWN, "cannot be read", {}, error=message)


def collect(
    settings: Settings, *, phases: tuple[tuple[str, Callable[[Settings], PhaseStatus]], ...] = PHASES
) -> StatusReport:
    """The pipeline and every phase; one that fails to read is `unknown` with its error, never the whole report."""
    pipeline = _read("pipeline", _pipeline, settings)
    as_read = tuple(_read(name, read, settings) for name, read in phases)
    return StatusReport(
        backend=backend_for(settings).name,
        time=time.time(),
        phases=weigh(as_read, pipeline),
        pipeline=pipeline,
        as_read=as_read,
    )


def is_first_run(report: StatusReport, *, upload_runs: int, pipeline_runs: int) -> bool:
    """Nothing was ever done from this home: no upload run (not even a failed one), no training job, no
    model version and no pipeline run. A part that could not be read does not count as empty."""
    by_name = {item.phase: item for item in report.phases}
    data, training, models = by_name.get("data"), by_name.get("training"), by_name.get("models")
    if data is None or training is None or models is None:
        return False
    return (
        upload_runs == 0
        and pipeline_runs == 0
        and data.state is PhaseState.NONE
        and training.state is PhaseState.NONE
        and models.state is PhaseState.NONE
        and not models.details.get("versions")
    )


__all__ = [
    "PHASES",
    "PhaseState",
    "PhaseStatus",
    "StatusReport",
    "collect",
    "is_first_run",
    "pipeline_status",
    "weigh",
    "with_pipeline",
]
