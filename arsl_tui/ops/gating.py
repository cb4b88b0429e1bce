"""The evaluation gate as a use case: a finished job's metrics → the rules → a registered version.

`evaluate_job` reads the job's metric records through the training platform (the same on both
backends), finds the champion's test figures in the registry for the no-regression rules, and
evaluates every rule with the thresholds of `[gate]`. `gate` does that and then, when the job
passed — or failed and an override with a reason was given — copies the job's model package
(`<job output>/model/`, a local folder or an OBS prefix in the configured bucket) into the
registry as the next version, which the promotion log makes `challenger` (and `champion` when
there is none yet and it passed). Every evaluation that is not a dry run is also stored under
`<models_prefix>gate-records/<job id>/`, so failed gates leave a record too.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import re
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arsl_tui.domain.gate import GateRecord, GateThresholds, MetricsSummary, evaluate_gate, summarise_metrics
from arsl_tui.domain.jobs import JobPhase, JobStatus
from arsl_tui.domain.keys import UnsafeKeyError, check_relative_path, join_key
from arsl_tui.domain.registry import ModelVersion
from arsl_tui.ops.registry import ModelRegistry, PackageError, json_safe

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.domain.ports import TrainingPlatform

PACKAGE_DIR = "model"
GATE_RECORDS_DIR = "gate-records"
_OBS_URL = re.compile(r"^obs://([^/]+)/(.*)$")
# Final-record fields a version keeps beside the gate's own reading (the Gate tab and `models show` use them).
_FINAL_FIELDS = (
    "test_acc",
    "test_loss",
    "test_samples",
    "val_acc",
    "val_loss",
    "train_eval_acc",
    "train_eval_loss",
    "train_val_gap",
    "best_epoch",
    "stopped_early",
    "per_class_acc",
    "classes",
    "confusion",
    "manifest_id",
    "model",
    "world_size",
)


class GateError(Exception):
    """The gate cannot run on this job as asked (not finished, no package); the message says why."""


@dataclass(frozen=True)
class GateEvaluation:
    """The verdict on one job and what it was based on."""

    job: JobStatus
    summary: MetricsSummary
    record: GateRecord
    final: Mapping[str, Any] | None
    """The job's raw final record (confusion matrix, classes, …), if it wrote one."""
    champion: ModelVersion | None
    skipped_records: int = 0
    """metrics.jsonl lines that were not valid records."""

    @property
    def passed(self) -> bool:
        return self.record.verdict == "pass"

    def metrics(self) -> dict[str, Any]:
        """What a registered version keeps as its metrics: the final figures and the epoch history."""
        final = dict(self.final or {})
        kept = {name: final[name] for name in _FINAL_FIELDS if name in final}
        kept["epochs"] = [dataclasses.asdict(epoch) for epoch in self.summary.epochs]
        return kept

    def to_json(self) -> dict[str, Any]:
        return {
            **self.record.to_json(),
            "job_id": self.job.job_id,
            "phase": self.job.phase.value,
            "skipped_records": self.skipped_records,
        }


@dataclass(frozen=True)
class GateOutcome:
    evaluation: GateEvaluation
    version: ModelVersion | None = None
    """The version registered (or found registered before) for this job; None when nothing was registered."""
    aliases: tuple[str, ...] = ()
    """The aliases that point at `version` afterwards."""
    already_registered: bool = False
    overridden: bool = False
    record_key: str | None = None
    """Where this evaluation was stored (None for a dry run)."""

    def to_json(self) -> dict[str, Any]:
        return {
            **self.evaluation.to_json(),
            "registered": self.version is not None,
            "version": self.version.version if self.version else None,
            "aliases": list(self.aliases),
            "already_registered": self.already_registered,
            "override": self.overridden,
            "override_reason": self.version.override_reason if self.version else None,
            "gate_record_key": self.record_key,
        }


def thresholds(settings: Settings) -> GateThresholds:
    gate = settings.gate
    return GateThresholds(**{field.name: getattr(gate, field.name) for field in dataclasses.fields(GateThresholds)})


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def evaluate_job(
    platform: TrainingPlatform, registry: ModelRegistry, job_id: str, limits: GateThresholds
) -> GateEvaluation:
    """Every gate rule on a finished job, against the current champion; nothing is written."""
    status = platform.status(job_id)
    if not status.terminal:
        raise GateError(
            f"job {job_id} is {status.phase.value}: the gate reads a finished job's metrics "
            f"(follow it with `arsl train watch {job_id}`)"
        )
    chunk = platform.metrics(job_id, 0)
    raw = [dict(record.data) for record in chunk.records]
    summary = summarise_metrics(raw)
    final = next((record for record in reversed(raw) if record.get("type") == "final"), None)
    champion = registry.champion()
    record = evaluate_gate(
        summary,
        limits,
        champion=champion.final_metrics() if champion else None,
        champion_version=champion.version if champion else None,
    )
    return GateEvaluation(
        job=status, summary=summary, record=record, final=final, champion=champion, skipped_records=chunk.skipped
    )


def _package_source(status: JobStatus, registry: ModelRegistry, bucket: str, workspace: Path) -> tuple[Path, str]:
    """The job's model package as a local folder (downloaded from OBS if need be) and where it came from."""
    output = status.output.strip()
    if not output:
        raise GateError(f"job {status.job_id} has no output location: nothing to register")
    found = _OBS_URL.match(output)
    if found is None:
        folder = Path(output.removeprefix("local:")).expanduser() / PACKAGE_DIR
        if not (folder / "config.json").is_file():
            raise GateError(f"job {status.job_id} wrote no model package: {folder / 'config.json'} does not exist")
        return folder, str(folder)
    if found.group(1) != bucket:
        raise GateError(f"job {status.job_id} wrote its package to {output}, outside the configured bucket {bucket!r}")
    prefix = found.group(2)
    prefix = f"{prefix}{'' if not prefix or prefix.endswith('/') else '/'}{PACKAGE_DIR}/"
    target = workspace / PACKAGE_DIR
    count = 0
    for info in registry.store.list(prefix):
        relative = info.key[len(prefix) :]
        try:
            check_relative_path(relative)
        except UnsafeKeyError as error:
            raise PackageError(f"obs://{bucket}/{info.key}: {error}") from None
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        registry.store.download_file(info.key, destination)
        count += 1
    if count == 0:
        raise GateError(f"job {status.job_id} wrote no model package: nothing under obs://{bucket}/{prefix}")
    return target, f"obs://{bucket}/{prefix}"


def _store_evaluation(registry: ModelRegistry, evaluation: GateEvaluation, user: str, now: float) -> str:
    try:
        key = join_key(
            registry.prefix,
            f"{GATE_RECORDS_DIR}/{evaluation.job.job_id}/"
            f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-"
            f"{secrets.token_hex(3)}.json",
        )
    except UnsafeKeyError as error:
        raise GateError(f"job id {evaluation.job.job_id!r} cannot name a record: {error}") from None
    payload = {**evaluation.to_json(), "evaluated_at": _utc(now), "evaluated_by": user}
    data = (json.dumps(json_safe(payload), ensure_ascii=False, indent=1, sort_keys=True, default=str) + "\n").encode()
    registry.store.put_bytes(key, data, hashlib.md5(data, usedforsecurity=False).hexdigest())
    return key


def gate(
    settings: Settings,
    job_id: str,
    override_reason: str | None = None,
    *,
    user: str | None = None,
    dry_run: bool = False,
    platform: TrainingPlatform | None = None,
    registry: ModelRegistry | None = None,
) -> GateOutcome:
    """Evaluate a finished job; on pass (or a failed one with an override reason) register it.

    `dry_run` evaluates and writes nothing. An override on a job that passed is not needed and
    not recorded as one.
    """
    if override_reason is not None and not override_reason.strip():
        raise GateError("--override needs a reason (it goes into the promotion log)")
    if platform is None:
        from arsl_tui.backends import backend_for

        platform = backend_for(settings).training_platform()
    registry = registry or ModelRegistry.from_settings(settings)
    user = user or current_user()
    evaluation = evaluate_job(platform, registry, job_id, thresholds(settings))
    if dry_run:
        return GateOutcome(evaluation=evaluation)
    record_key = _store_evaluation(registry, evaluation, user, time.time())
    override = None if evaluation.passed else override_reason
    if not evaluation.passed and override is None:
        return GateOutcome(evaluation=evaluation, record_key=record_key)
    if evaluation.job.phase is not JobPhase.COMPLETED:
        raise GateError(f"job {job_id} ended {evaluation.job.phase.value}: there is no finished model to register")
    previous = registry.find_by_job(job_id)
    gate_json = {**evaluation.to_json(), "record_key": record_key}
    with tempfile.TemporaryDirectory(prefix="arsl-gate-") as workspace:
        folder, source = _package_source(evaluation.job, registry, settings.storage.bucket, Path(workspace))
        _check_package_job(folder, evaluation.job)
        manifest_id = str((evaluation.final or {}).get("manifest_id") or "")
        version = registry.register(
            folder,
            job_id=job_id,
            manifest_id=manifest_id,
            source=source,
            gate=gate_json,
            metrics=evaluation.metrics(),
            user=user,
            override_reason=override,
        )
    state = registry.state()
    return GateOutcome(
        evaluation=evaluation,
        version=version,
        aliases=tuple(state.alias_of(version.version)),
        already_registered=previous is not None,
        overridden=version.override_reason is not None,
        record_key=record_key,
    )


def _check_package_job(folder: Path, status: JobStatus) -> None:
    """Refuse a package that says another job trained it (an output folder reused by two jobs)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PackageError(f"{folder / 'config.json'}: cannot be read as JSON ({error})") from None
    trained_by = str(config.get("training_job_id") or "") if isinstance(config, dict) else ""
    if trained_by and trained_by not in (status.job_id, status.name):
        raise PackageError(f"{folder}: the package says job {trained_by!r} trained it, not {status.job_id}")


__all__ = ["GateError", "GateEvaluation", "GateOutcome", "current_user", "evaluate_job", "gate", "thresholds"]
