"""Training use cases on the `TrainingPlatform` port: submit, status, watch, logs, stop.

The CLI and the console drive exactly this code; neither knows which backend runs the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from arsl_tui.backends import backend_for
from arsl_tui.domain.events import EventSink, ignore_events
from arsl_tui.domain.jobs import (
    JobEnded,
    JobEpochReported,
    JobPhaseChanged,
    JobSpec,
    JobSpecError,
    JobStatus,
    LogChunk,
    MetricRecord,
    TrainingError,
    TrainingProgress,
    derive_progress,
)

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.domain.ports import TrainingPlatform

MAX_TRANSIENT_FAILURES = 5
"""Consecutive transient errors (timeouts, 5xx, 429) a watch rides out before giving up."""


def open_platform(settings: Settings) -> TrainingPlatform:
    return backend_for(settings).training_platform()


def resolve_dataset(settings: Settings, argument: str | None) -> str:
    """Where the data set to train on lives.

    No argument: the data set uploaded last to this backend. Otherwise a location (`obs://…`,
    `local:…`), a local folder, or the manifest id (or a unique prefix of it) of an uploaded data set.
    """
    from arsl_tui.ops.upload import list_upload_runs

    backend = backend_for(settings)
    scheme = backend.data_scheme
    done = [run for run in list_upload_runs(settings, limit=200) if run.status == "done"]
    if argument is None:
        for run in done:
            if run.destination.startswith(scheme):
                return run.destination
        raise JobSpecError(
            f"no data set given, and none has been uploaded to the {backend.name} backend yet: "
            "run `arsl upload DIR` first, or name a data set"
        )
    text = argument.strip()
    if text.startswith(("obs://", "local:")):
        return text
    folder = Path(text).expanduser()
    if folder.is_dir():
        return str(folder.absolute())
    matches = {
        run.manifest_id: run.destination
        for run in done
        if run.manifest_id.startswith(text) and run.destination.startswith(scheme)
    }
    if len(matches) == 1:
        return next(iter(matches.values()))
    if len(matches) > 1:
        raise JobSpecError(f"data set {argument!r} matches {len(matches)} uploaded data sets: give more of its id")
    raise JobSpecError(
        f"data set {argument!r} is not a folder, an obs:// or local: location, nor the id of a data "
        f"set uploaded to the {backend.name} backend"
    )


def build_spec(
    settings: Settings,
    dataset: str,
    *,
    epochs: int | None = None,
    nodes: int | None = None,
    gpus: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    seed: int | None = None,
    model: str | None = None,
    name: str = "",
    parameters: dict[str, str] | None = None,
) -> JobSpec:
    """A job spec from `[train]`, with the given values taking precedence; validated."""
    train, backend = settings.train, backend_for(settings)
    return JobSpec(
        dataset=dataset,
        epochs=train.epochs if epochs is None else epochs,
        batch_size=train.batch_size if batch_size is None else batch_size,
        learning_rate=train.learning_rate if learning_rate is None else learning_rate,
        seed=0 if seed is None else seed,
        model=model or train.model,
        nodes=backend.default_nodes() if nodes is None else nodes,
        processes_per_node=backend.default_processes() if gpus is None else gpus,
        name=name,
        parameters=dict(parameters or {}),
    ).validate()


def submit_job(platform: TrainingPlatform, spec: JobSpec) -> JobStatus:
    """Submit and return the job's first status."""
    return platform.status(platform.submit(spec))


def resume_job(platform: TrainingPlatform, job_id: str) -> JobStatus:
    """Continue an interrupted job from its last checkpoint; the first status of the job that does it.

    Only platforms that restart jobs on request have `resume` (the local one); ModelArts restarts a
    job's nodes itself and the trainer resumes from the checkpoints in its output.
    """
    resume: Callable[[str], str] | None = getattr(platform, "resume", None)
    if resume is None:
        raise JobSpecError(
            f"the {platform.backend} backend resumes jobs itself; submit a new job with the same "
            "output to continue one by hand"
        )
    return platform.status(resume(job_id))


@dataclass
class WatchUpdate:
    status: JobStatus
    new_records: list[MetricRecord]
    progress: TrainingProgress


@dataclass
class JobWatcher:
    """Follows one job: its status and every metric record so far, read incrementally."""

    platform: TrainingPlatform
    job_id: str
    clock: Callable[[], float] = time.time
    records: list[MetricRecord] = field(default_factory=list)
    status: JobStatus | None = None
    cursor: int = 0

    def poll(self) -> WatchUpdate:
        # Status first: once it says the job ended, the metrics read next are complete.
        status = self.platform.status(self.job_id)
        chunk = self.platform.metrics(self.job_id, self.cursor)
        if chunk.cursor < self.cursor:
            self.records.clear()  # the file was rewritten (a resumed run): its records start over
        self.cursor = chunk.cursor
        self.records.extend(chunk.records)
        self.status = status
        return WatchUpdate(status=status, new_records=list(chunk.records), progress=self.progress())

    def progress(self, upto: int | None = None) -> TrainingProgress:
        status = self.status
        records = self.records if upto is None else self.records[:upto]
        return derive_progress(
            records,
            status.epochs if status else None,
            started_at=status.started_at if status else None,
            now=self.clock(),
        )


def watch_job(
    platform: TrainingPlatform,
    job_id: str,
    on_event: EventSink = ignore_events,
    *,
    interval_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
) -> JobStatus:
    """Poll until the job ends (or `should_stop`), reporting phase changes, each epoch and the end.

    Transient errors (timeouts, throttling, 5xx) are ridden out up to `MAX_TRANSIENT_FAILURES` in a row.
    """
    watcher = JobWatcher(platform, job_id)
    previous = ""
    failures = 0
    while True:
        try:
            update = watcher.poll()
            failures = 0
        except TrainingError as error:
            failures += 1
            if not error.transient or failures >= MAX_TRANSIENT_FAILURES:
                raise
            sleep(interval_s)
            continue
        status = update.status
        if status.phase.value != previous:
            on_event(JobPhaseChanged(job_id=job_id, phase=status.phase.value, previous=previous, reason=status.reason))
            previous = status.phase.value
        first_new = len(watcher.records) - len(update.new_records)
        for offset, record in enumerate(update.new_records):
            if record.type == "epoch":
                on_event(
                    JobEpochReported(
                        job_id=job_id, record=record, progress=watcher.progress(upto=first_new + offset + 1)
                    )
                )
        if status.terminal:
            on_event(
                JobEnded(
                    job_id=job_id,
                    phase=status.phase.value,
                    reason=status.reason,
                    final=update.progress.final,
                    progress=update.progress,
                )
            )
            return status
        if should_stop():
            return status
        sleep(interval_s)


def job_progress(platform: TrainingPlatform, job_id: str) -> tuple[JobStatus, TrainingProgress]:
    """A job's status and its progress from all metric records so far."""
    update = JobWatcher(platform, job_id).poll()
    return update.status, update.progress


def read_logs(platform: TrainingPlatform, job_id: str, since: int = 0) -> LogChunk:
    return platform.logs(job_id, since)


def follow_logs(
    platform: TrainingPlatform,
    job_id: str,
    on_text: Callable[[str], None],
    *,
    since: int = 0,
    interval_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> JobStatus:
    """Hand over log text as it grows until the job has ended and its log is read to the end."""
    cursor = since
    while True:
        status = platform.status(job_id)
        chunk = platform.logs(job_id, cursor)
        if chunk.text:
            on_text(chunk.text)
        cursor = chunk.cursor
        if status.terminal and not chunk.text:
            return status
        if not status.terminal:
            sleep(interval_s)


def stop_job(platform: TrainingPlatform, job_id: str) -> JobStatus:
    return platform.stop(job_id)


__all__ = [
    "JobWatcher",
    "WatchUpdate",
    "build_spec",
    "follow_logs",
    "job_progress",
    "open_platform",
    "read_logs",
    "resolve_dataset",
    "resume_job",
    "stop_job",
    "submit_job",
    "watch_job",
]
