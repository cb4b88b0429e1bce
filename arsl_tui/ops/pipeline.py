"""`arsl pipeline run`: upload → train → gate → serve → canary → promote or roll back → alarms.

Every phase calls the use case that runs it by hand (`run_upload`, `submit_job`/`watch_job`, `gate`,
`serving.deploy`, the canary controller, `monitoring.setup`); this module only sequences them, emits
one `PipelinePhase` event per phase and records each finished phase in the state file (component
"pipeline"), keyed by the data set's fingerprint and the code's digest, so a re-run with the same
data and code skips what is done.

A canary needs a champion to compare with. On a registry without one, the pipeline first trains and
gates a version with seed S (the first version registered becomes champion), then the challenger with
seed S + 1: two real trainings that differ only in their seed.

`--demo` generates the data under `<home>/demo/data` and sizes every setting still at its default for
two CPU cores (`demo_settings`); it sends labelled traffic with feedback to the gateway during the canary
(`ops.demo_traffic`), so the judge has something to judge. `--broken-challenger` registers a package with
random weights in place of the trained challenger (`ops.broken_challenger`), to show an automatic rollback.

The record of runs and finished phases is `state.pipeline_store`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arsl_tui.backends import backend_for
from arsl_tui.domain.events import Event, EventSink, ignore_events
from arsl_tui.domain.pipeline import (
    PHASE_TITLES,
    PhaseName,
    PhaseRecord,
    PhaseState,
    PipelineEnded,
    PipelinePhase,
    PipelineStarted,
    skippable,
)
from arsl_tui.ops.broken_challenger import register_broken_challenger
from arsl_tui.state.pipeline_store import PipelineStore, new_run_id

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.domain.jobs import JobStatus
    from arsl_tui.ops.demo_traffic import DemoTraffic, ServiceDemoTraffic
    from arsl_tui.ops.pipeline_log import LockHolder

DEMO_DIR = "demo"
DEMO_PER_CLASS = 300
DEMO_SEED = 11
DEMO_TRAFFIC_SEED = DEMO_SEED + 1000
"""Seed of the demo traffic's images: one the training data never used."""


class PipelineError(Exception):
    """A phase cannot go on; the message says which and why."""


class PipelineBusy(PipelineError):
    """Another pipeline run holds this home's pipeline lock."""


@dataclass(frozen=True)
class PipelineProgress(Event):
    """Something worth a line inside a long phase (an epoch, a canary step)."""

    phase: str
    detail: str


@dataclass(frozen=True)
class PipelineRequest:
    dataset: Path | None = None
    """The data set folder (None with `demo`: the generated one)."""
    demo: bool = False
    broken_challenger: bool = False
    per_class: int = DEMO_PER_CLASS
    seed: int = 1
    """Seed of the champion's training; the challenger's is seed + 1."""


@dataclass(frozen=True)
class PipelineOutcome:
    run_id: str
    outcome: str
    version: str | None
    detail: str
    phases: tuple[tuple[str, str, str], ...]
    """(phase, state, detail) in order."""

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "outcome": self.outcome,
            "version": self.version,
            "detail": self.detail,
            "phases": [{"phase": phase, "state": state, "detail": detail} for phase, state, detail in self.phases],
        }


# --- demo sizing ----------------------------------------------------------------------------------

# The demo trains to the production gate (test accuracy > 95 %, loss < 0.1, stable, not overfitting)
# with the default training settings: the `small` model reaches it within its 7 epochs on two CPU cores in
# about a minute (bench/train.py --gate-only), so nothing about training changes. What changes is what two
# seeds on a 960-image test split cannot hold apart (one image a class is 3.3 % of that class), what a shared
# two-core machine cannot promise about latency, and the windows: the demo's three client apps send about
# 12 labelled samples a second (ops/demo_traffic.py), so a 10-second window holds about 60 samples a version
# at a 50 % split and 120 shadow copies, three times `min_samples`. Every changed value is printed first.
_DEMO_VALUES: Mapping[str, Mapping[str, Any]] = {
    "gate": {"max_regression": 0.01, "max_class_regression": 0.1},
    "canary": {
        "steps": (50, 100),
        "window_s": 10,
        "min_samples": 20,
        "shadow_window_s": 10,
        "shadow_min_samples": 20,
        "min_feedback": 15,
        "max_p95_latency_ms": 1000.0,
        "poll_s": 0.5,
    },
}


# Off the local backend no client sends feedback: a window's labelled answers are the canary's probes
# (`ops.canary_wiring.PROBE_IMAGES`, 32 a window), split between the versions by their weights, so at a 50 % step
# each version gets about 16 and often fewer than the 15 above. 10 labels are reached at 50 % in all but about
# 1 % of windows and still tell a broken model (near 3 %) from the gate's (over 95 %); a window short of them
# holds for another (`require_feedback`) instead of passing on the rest, which would let a broken challenger
# step on to 100 % before it is caught.
_DEMO_CLOUD_VALUES: Mapping[str, Mapping[str, Any]] = {"canary": {"min_feedback": 10, "require_feedback": True}}


class ShadowPhase:
    """The shadow phase's events, from the canary controller's status updates: began, then how it ended."""

    def __init__(self, runner: Any, started: float, left_out: str = "") -> None:
        self.runner = runner
        self.started = started
        self.left_out = left_out
        """Why the backend cannot have the shadow step that `[canary] shadow` asks for ('' where it can)."""
        self.began = False
        self.ended = False

    def follow(self, status: Any) -> None:
        from arsl_tui.domain.canary import Phase

        run = status.run
        if run is None or self.ended:
            return
        if run.plan.shadow is None:
            self.ended = True
            # Not from the run's reason: by the first update a decision may have replaced the note it began with.
            why = self.left_out or "[canary] shadow"
            self.runner.emit_shadow(PhaseState.NOT_NEEDED, f"no shadow step ({why})", self.started)
            return
        if run.phase is Phase.SHADOWING:
            window = status.shadow
            copies = (
                f": {window.sent} copies sent, {window.dropped} dropped, agreement "
                f"{'—' if window.agreement is None else f'{window.agreement:.0%}'}"
                if window is not None
                else ""
            )
            if not self.began:
                self.began = True
                self.runner.emit_shadow(
                    None, f"copies of {run.plan.shadow.share}% to {run.challenger}, no client traffic", self.started
                )
            # Shown on the canary's line: the shadow step is part of the canary phase in the run's views.
            self.runner.on_event(PipelineProgress(phase=PhaseName.CANARY.value, detail=f"shadow window{copies}"))
            return
        if run.shadow_result:
            self._end(run)

    def _end(self, run: Any) -> None:
        self.ended = True
        verdicts = [item for item in run.judgements if item.get("phase") == "shadow"]
        said = verdicts[-1]["judgement"]["reason"] if verdicts else run.reason
        state = PhaseState.FAILED if run.shadow_result in ("failed", "stopped") else PhaseState.DONE
        self.runner.emit_shadow(state, f"{run.shadow_result}: {said}", self.started)

    def close(self, run: Any) -> None:
        """The canary ended: report the shadow's end if no update did; one without a result never finished."""
        if self.ended or run.plan.shadow is None:
            return
        if run.shadow_result:
            self._end(run)
            return
        self.ended = True
        self.runner.emit_shadow(PhaseState.FAILED, f"not finished: {run.alarm or run.reason}", self.started)


def demo_settings(settings: Settings) -> tuple[Settings, dict[str, Any]]:
    """Settings sized for two CPU cores (and, off the local backend, for probes as the only feedback), and the
    values changed (`section.key` → value).

    Only values still at their defaults change: a config or environment that sets one wins.
    """
    changed: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    demo = {section: dict(values) for section, values in _DEMO_VALUES.items()}
    if not backend_for(settings).runs_here:
        for section, values in _DEMO_CLOUD_VALUES.items():
            demo.setdefault(section, {}).update(values)
    for section, values in demo.items():
        current = getattr(settings, section)
        defaults = type(current)()
        updates = {
            name: value
            for name, value in values.items()
            if getattr(current, name) == getattr(defaults, name) and getattr(current, name) != value
        }
        if updates:
            sections[section] = dataclasses.replace(current, **updates)
            changed.update({f"{section}.{name}": value for name, value in updates.items()})
    return dataclasses.replace(settings, **sections), changed


# --- what makes a run "the same" ------------------------------------------------------------------


def dataset_fingerprint(folder: Path) -> str:
    """A digest of every file's path, size and modification time under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(item for item in folder.rglob("*") if item.is_file()):
        info = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def code_digest(*, broken_challenger: bool) -> str:
    """A digest of the trainer's source (what makes the model) and arsl's version: a change to either trains again.

    The console's own code is left out on purpose: editing it does not change what a training produces.
    """
    from arsl_tui import __version__

    digest = hashlib.sha256(f"arsl {__version__} broken={broken_challenger}\n".encode())
    spec = importlib.util.find_spec("trainer")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        root = Path(location)
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# --- the runner -----------------------------------------------------------------------------------


class _Runner:
    def __init__(self, settings: Settings, request: PipelineRequest, on_event: EventSink, run_id: str) -> None:
        self.settings = settings
        self.request = request
        self.on_event = on_event
        self.phases: list[tuple[str, str, str]] = []
        self.store: PipelineStore | None = None
        self.run_id = run_id
        self.stopped_job = ""
        """A training job this run stopped because it was interrupted."""
        self.done: dict[PhaseName, PhaseRecord] = {}

    # --- phase bookkeeping --------------------------------------------------------------------------

    def _emit(self, phase: PhaseName, state: PhaseState | None, detail: str, started: float) -> None:
        self.on_event(
            PipelinePhase(
                phase=phase.value,
                title=PHASE_TITLES[phase],
                state=state.value if state else "",
                detail=detail,
                elapsed_s=round(time.monotonic() - started, 1),
            )
        )
        if state is not None:
            self.phases.append((phase.value, state.value, detail))

    def _skip(self, phase: PhaseName) -> PhaseRecord | None:
        """The earlier record, announced as skipped, when the phase may be skipped."""
        if not skippable(phase, self.done):
            return None
        record = self.done[phase]
        self._emit(phase, PhaseState.SKIPPED, f"done in run {record.run_id}: {record.detail}", time.monotonic())
        return record

    def _finish(self, phase: PhaseName, detail: str, values: Mapping[str, Any], started: float) -> PhaseRecord:
        record = PhaseRecord(phase, detail, dict(values), self.run_id)
        assert self.store is not None
        self.store.record(self.run_id, record, time.time())
        self._emit(phase, PhaseState.DONE, detail, started)
        return record

    # --- the phases ---------------------------------------------------------------------------------

    def data(self) -> Path:
        started = time.monotonic()
        if not self.request.demo:
            if self.request.dataset is None:
                raise PipelineError("no data set: name a folder, or pass --demo to generate one")
            folder = self.request.dataset.expanduser().absolute()
            if not folder.is_dir():
                raise PipelineError(f"{folder}: not a folder")
            self._emit(PhaseName.DATA, PhaseState.NOT_NEEDED, f"using {folder}", started)
            return folder
        from arsl_tui.ops.synth import synthesize

        folder = self.settings.home_dir / DEMO_DIR / "data"
        if folder.is_dir() and any(folder.iterdir()):
            self._emit(PhaseName.DATA, PhaseState.SKIPPED, f"{folder} is there already", started)
            return folder
        self._emit(PhaseName.DATA, None, "", started)
        summary = synthesize(folder, per_class=self.request.per_class, seed=DEMO_SEED)
        self._emit(PhaseName.DATA, PhaseState.DONE, f"{summary.images} images in {folder}", started)
        return folder

    def upload(self, folder: Path) -> PhaseRecord:
        if (record := self._skip(PhaseName.UPLOAD)) is not None:
            return record
        from arsl_tui.ops.upload import UploadRequest, run_upload

        started = time.monotonic()
        self._emit(PhaseName.UPLOAD, None, "", started)
        outcome = run_upload(self.settings, UploadRequest(dataset_dir=folder))
        if outcome.status != "done":
            raise PipelineError(
                f"upload {outcome.run_id} ended {outcome.status}: {outcome.error or 'see arsl upload'}"
                " — run the pipeline again to resume it"
            )
        detail = (
            f"data set {outcome.manifest_id[:12]} at {outcome.destination} ({outcome.objects_sent} sent, "
            f"{outcome.objects_skipped} already there)"
        )
        return self._finish(
            PhaseName.UPLOAD, detail, {"manifest_id": outcome.manifest_id, "destination": outcome.destination}, started
        )

    def _train(self, phase: PhaseName, destination: str, seed: int, role: str) -> JobStatus:
        from arsl_tui.domain.jobs import JobEpochReported, JobPhase
        from arsl_tui.ops.training import build_spec, open_platform, submit_job, watch_job

        platform = open_platform(self.settings)
        try:
            spec = build_spec(self.settings, destination, seed=seed, name=f"pipeline-{role}-{self.run_id[-4:]}")
            job = submit_job(platform, spec)

            def progress(event: Event) -> None:
                if isinstance(event, JobEpochReported):
                    record = event.record
                    accuracy = "—" if record.val_acc is None else f"{record.val_acc:.3f}"
                    self.on_event(
                        PipelineProgress(
                            phase=phase.value,
                            detail=(f"{job.job_id} epoch {record.epoch}/{spec.epochs}: val_acc {accuracy}"),
                        )
                    )

            try:
                status = watch_job(platform, job.job_id, progress)
            except KeyboardInterrupt:
                # Left running, the job would fight the resumed run's own training for the same cores.
                self._stop_job(platform, job.job_id)
                raise
        finally:
            close = getattr(platform, "close", None)
            if close is not None:
                close()
        if status.phase is not JobPhase.COMPLETED:
            raise PipelineError(
                f"training job {status.job_id} ended {status.phase.value}: {status.reason} "
                f"(`arsl train logs {status.job_id}`)"
            )
        return status

    def _stop_job(self, platform: Any, job_id: str) -> None:
        from arsl_tui.domain.jobs import TrainingError

        try:
            platform.stop(job_id)
        except TrainingError:
            return  # it ends on its own; `arsl train status` lists it
        self.stopped_job = job_id

    def _gate(self, job_id: str) -> Any:
        from arsl_tui.ops.gating import gate

        outcome = gate(self.settings, job_id)
        if outcome.version is None:
            failed = [rule.rule for rule in outcome.evaluation.record.rules if rule.verdict == "fail"]
            raise _GateFailed(
                f"job {job_id} failed the gate ({', '.join(failed)}): `arsl gate {job_id}` shows each rule"
            )
        return outcome

    def champion(self, upload: PhaseRecord) -> str:
        if (record := self._skip(PhaseName.CHAMPION)) is not None:
            return str(record.values["version"])
        from arsl_tui.ops.registry import open_registry

        started = time.monotonic()
        existing = open_registry(self.settings).champion()
        if existing is not None:
            self._emit(PhaseName.CHAMPION, PhaseState.NOT_NEEDED, f"{existing.version} is champion", started)
            return existing.version
        self._emit(PhaseName.CHAMPION, None, f"no champion yet: training seed {self.request.seed}", started)
        status = self._train(PhaseName.CHAMPION, str(upload.values["destination"]), self.request.seed, "champion")
        outcome = self._gate(status.job_id)
        version = outcome.version.version
        if "champion" not in outcome.aliases:
            raise PipelineError(f"{version} was registered but is not champion (aliases: {list(outcome.aliases)})")
        return self._finish(
            PhaseName.CHAMPION,
            f"{version} from job {status.job_id} is champion",
            {"version": version, "job_id": status.job_id},
            started,
        ).values["version"]

    def train(self, upload: PhaseRecord) -> str:
        if (record := self._skip(PhaseName.TRAIN)) is not None:
            return str(record.values["job_id"])
        started = time.monotonic()
        seed = self.request.seed + 1
        self._emit(PhaseName.TRAIN, None, f"seed {seed}", started)
        status = self._train(PhaseName.TRAIN, str(upload.values["destination"]), seed, "challenger")
        return str(
            self._finish(
                PhaseName.TRAIN,
                f"job {status.job_id} completed ({status.epochs} epochs)",
                {"job_id": status.job_id},
                started,
            ).values["job_id"]
        )

    def gate(self, job_id: str, upload: PhaseRecord) -> str:
        if (record := self._skip(PhaseName.GATE)) is not None:
            return str(record.values["version"])
        started = time.monotonic()
        self._emit(PhaseName.GATE, None, job_id, started)
        if self.request.broken_challenger:
            version = register_broken_challenger(self.settings, job_id, str(upload.values.get("manifest_id", "")))
            detail = f"{version}: random weights registered by override in place of job {job_id} (--broken-challenger)"
        else:
            outcome = self._gate(job_id)
            version = outcome.version.version
            detail = f"{version} passed the gate ({', '.join(outcome.aliases) or 'no alias'})"
        return str(self._finish(PhaseName.GATE, detail, {"version": version}, started).values["version"])

    def deploy(self, challenger: str) -> str:
        """Serve the champion alone (the canary starts from there); the endpoint, or '' off the local backend.

        Off the local backend the canary deploys both versions to the cloud service itself; where that service
        deploys imported models (ModelArts AI applications), both are imported here first, waiting until each
        can be deployed: a canary tick does not wait for an import, and a failed one is named here, before any
        traffic moves.
        """
        started = time.monotonic()
        backend = backend_for(self.settings)
        if not backend.runs_here:
            if backend.imports_before_serving():
                self._import_models(challenger, backend.service_platform, started)
            else:
                self._emit(PhaseName.DEPLOY, PhaseState.NOT_NEEDED, "the canary deploys to ModelArts itself", started)
            return ""
        from arsl_tui.ops import serving

        self._emit(PhaseName.DEPLOY, None, "", started)
        outcome = serving.deploy(self.settings, "champion")
        detail = f"{outcome.version} serves 100% at {outcome.process.endpoint}"
        self._finish(
            PhaseName.DEPLOY, detail, {"version": outcome.version, "endpoint": outcome.process.endpoint}, started
        )
        return outcome.process.endpoint

    def _import_models(self, challenger: str, platform: str, started: float) -> None:
        from arsl_tui.domain.ports import ModelImportError
        from arsl_tui.ops.model_import import import_for_settings
        from arsl_tui.ops.registry import open_registry

        champion = open_registry(self.settings).champion()
        versions = list(
            dict.fromkeys(version for version in (champion.version if champion else "", challenger) if version)
        )
        self._emit(PhaseName.DEPLOY, None, f"importing {' and '.join(versions)} into {platform}", started)

        def progress(text: str) -> None:
            self.on_event(PipelineProgress(phase=PhaseName.DEPLOY.value, detail=text))

        models: dict[str, str] = {}
        for version in versions:
            try:
                outcome = import_for_settings(self.settings, version, progress=progress)
            except ModelImportError as error:
                raise PipelineError(
                    f"importing {version} into {platform} failed: {error} — run the pipeline again to resume"
                ) from None
            if outcome is not None:
                models[version] = outcome.model.model_id
        detail = ", ".join(f"{version} is {platform} model {model}" for version, model in models.items())
        self._finish(PhaseName.DEPLOY, f"{detail}; the canary deploys them", {"models": models}, started)

    def canary(self, challenger: str, endpoint: str) -> PhaseRecord:
        if (record := self._skip(PhaseName.CANARY)) is not None:
            self._emit(
                PhaseName.SHADOW, PhaseState.SKIPPED, f"part of the canary of run {record.run_id}", time.monotonic()
            )
            return record
        from arsl_tui.domain.canary import Phase
        from arsl_tui.ops.canary_wiring import open_controller

        started = time.monotonic()
        self._emit(
            PhaseName.CANARY,
            None,
            f"{challenger}, steps {list(self.settings.canary.steps)}%, windows of {self.settings.canary.window_s} s",
            started,
        )
        traffic = self._demo_traffic(endpoint)
        controller = open_controller(self.settings)
        try:
            current = controller.current()
            if current is None or current.phase.ended or current.challenger != challenger:
                controller.start(challenger)
            reported: list[str] = []
            left_out = controller.shadow_how if self.settings.canary.shadow and controller.shadow_tap is None else ""
            shadow = ShadowPhase(self, time.monotonic(), left_out)

            def progress(status: Any) -> None:
                run = status.run
                if run is None:
                    return
                shadow.follow(status)
                if run.phase is Phase.SHADOWING:
                    return  # the shadow phase reports itself
                line = f"{run.phase.value} at {run.plan.steps[run.step].weight}%"
                if not reported or reported[-1] != line:
                    reported.append(line)
                    self.on_event(
                        PipelinePhase(
                            phase=PhaseName.CANARY.value, title=PHASE_TITLES[PhaseName.CANARY], state="", detail=line
                        )
                    )

            run = controller.watch(on_update=progress)
            if run is not None:
                shadow.close(run)
        finally:
            controller.close()
            if traffic is not None:
                traffic.close()
        if run is None:
            raise PipelineError("the canary run disappeared from the state file")
        sent = f"; demo traffic: {traffic.sent} answered, {traffic.failed} failed" if traffic is not None else ""
        if run.retried:
            # Passed problems leave no error behind; the run still says it went through them.
            sent += f"; retried past {len(run.retried)} problem(s), the last: {run.retried[-1]}"
        if run.phase is Phase.PROMOTED:
            return self._finish(
                PhaseName.CANARY,
                f"{challenger} promoted to champion{sent}",
                {"outcome": "promoted", "version": challenger, "canary_run": run.run_id},
                started,
            )
        reason = run.alarm or run.reason or run.error
        record = PhaseRecord(
            PhaseName.CANARY,
            f"{run.phase.value}: {reason}{sent}",
            {"outcome": run.phase.value, "version": challenger, "canary_run": run.run_id},
            self.run_id,
        )
        assert self.store is not None
        self.store.record(self.run_id, record, time.time())
        self._emit(PhaseName.CANARY, PhaseState.FAILED, record.detail, started)
        return record

    def emit_shadow(self, state: PhaseState | None, detail: str, started: float) -> None:
        self._emit(PhaseName.SHADOW, state, detail, started)

    def _demo_traffic(self, endpoint: str) -> DemoTraffic | ServiceDemoTraffic | None:
        if not self.request.demo:
            return None
        if endpoint:
            from arsl_tui.ops.demo_traffic import start_demo_traffic

            return start_demo_traffic(
                self.settings, endpoint, key_name=f"pipeline-demo-{self.run_id}", seed=DEMO_TRAFFIC_SEED
            )
        return self._service_traffic()

    def _service_traffic(self) -> ServiceDemoTraffic:
        """Clients of the cloud service the canary deploys: its inference address once it has one, with the app
        code clients send (`ARSL_APP_CODE`, as the probes and `arsl predict` send it)."""
        import os

        from arsl_tui.domain.ports import ServingPlatformError
        from arsl_tui.ops.canary_wiring import open_serving_platform
        from arsl_tui.ops.demo_traffic import start_service_traffic
        from arsl_tui.ops.registry import open_registry
        from arsl_tui.ops.serving import KEY_ENV

        backend = backend_for(self.settings)
        platform = open_serving_platform(self.settings, lambda: open_registry(self.settings))
        service = backend.service_name()

        def resolve() -> str | None:
            try:
                return platform.endpoint(service)
            except ServingPlatformError:
                return None  # not created yet, or a transient failure: asked again on the next round

        return start_service_traffic(resolve, os.environ.get(KEY_ENV, ""), seed=DEMO_TRAFFIC_SEED)

    def alarms(self) -> None:
        if self._skip(PhaseName.ALARMS) is not None:
            return
        from arsl_tui.ops import monitoring

        started = time.monotonic()
        self._emit(PhaseName.ALARMS, None, "", started)
        report = monitoring.setup(self.settings)
        detail = f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged" + (
            f", {len(report.skipped)} skipped" if report.skipped else ""
        )
        if report.notes:
            detail += "; " + "; ".join(report.notes)
        self._finish(
            PhaseName.ALARMS,
            detail,
            {
                "rules": [*report.created, *report.updated, *report.unchanged],
                "skipped": [item.name for item in report.skipped],
            },
            started,
        )

    # --- the whole --------------------------------------------------------------------------------

    def run(self, changed: Mapping[str, Any]) -> PipelineOutcome:
        began = time.monotonic()
        folder = self.data()
        dataset_key = dataset_fingerprint(folder)
        code = code_digest(broken_challenger=self.request.broken_challenger)
        self.store = PipelineStore.open(self.settings.home_dir)
        started = False
        try:
            self.done = self.store.done_phases(dataset_key, code)
            self.store.start_run(dataset_key, code, time.time(), self.run_id)
            started = True
            resumed = sorted({record.run_id for record in self.done.values()})
            self.on_event(
                PipelineStarted(
                    run_id=self.run_id,
                    dataset=str(folder),
                    code=code,
                    resumed_from=", ".join(resumed),
                    settings=dict(changed),
                )
            )
            outcome, version, detail = self._phases(folder)
            self.store.finish(self.run_id, outcome, time.time())
        except BaseException as error:
            if started:
                self.store.finish(
                    self.run_id, "cancelled" if isinstance(error, KeyboardInterrupt) else "failed", time.time()
                )
            raise
        finally:
            self.store.close()
        self.on_event(
            PipelineEnded(
                run_id=self.run_id,
                outcome=outcome,
                version=version,
                detail=detail,
                elapsed_s=round(time.monotonic() - began, 1),
            )
        )
        return PipelineOutcome(self.run_id, outcome, version, detail, tuple(self.phases))

    def _phases(self, folder: Path) -> tuple[str, str | None, str]:
        upload = self.upload(folder)
        try:
            self.champion(upload)
            job_id = self.train(upload)
            challenger = self.gate(job_id, upload)
        except _GateFailed as failure:
            self._emit(PhaseName.GATE, PhaseState.FAILED, str(failure), time.monotonic())
            return "gate_failed", None, str(failure)
        endpoint = ""
        if not skippable(PhaseName.CANARY, self.done):
            endpoint = self.deploy(challenger)
        else:
            self._skip(PhaseName.DEPLOY)
        canary = self.canary(challenger, endpoint)
        self.alarms()
        outcome = str(canary.values.get("outcome"))
        return outcome, challenger, canary.detail


class _GateFailed(PipelineError):
    pass


def run_pipeline(
    settings: Settings,
    request: PipelineRequest,
    *,
    on_event: EventSink = ignore_events,
    changed: Mapping[str, Any] | None = None,
) -> PipelineOutcome:
    """Blocking: every phase in order, skipping those a run with the same data and code finished.

    Holds the home's pipeline lock throughout (PipelineBusy if another run holds it) and appends every
    event to the run's event file, where the console follows it (`ops.pipeline_log`).
    """
    from arsl_tui.ops.pipeline_log import EventLog, LockHeld, PipelineLock

    began = time.monotonic()
    run_id = new_run_id(time.time())
    try:
        lock = PipelineLock.acquire(settings.home_dir, run_id)
    except LockHeld as held:
        raise PipelineBusy(busy_message(settings.home_dir, held.holder)) from None
    try:
        log = EventLog(settings.home_dir, run_id)
        runner = _Runner(settings, request, _tee(log, on_event), run_id)
        try:
            return runner.run(changed or {})
        except BaseException as error:
            log.write(_ended_by(run_id, error, runner, round(time.monotonic() - began, 1)))
            raise
        finally:
            log.close()
    finally:
        lock.release()


def busy_message(home: Path, holder: LockHolder | None) -> str:
    from arsl_tui.ops.pipeline_log import describe_holder

    pid = f"kill -INT {holder.pid}, or " if holder is not None else ""
    return (
        f"another pipeline run is going on in {home}: {describe_holder(holder)}. Two runs would fight over "
        f"the canary: wait for it to end, or stop it ({pid}X on the console's Overview)"
    )


def _tee(log: Any, on_event: EventSink) -> EventSink:
    def both(event: Event) -> None:
        log.event(event)
        on_event(event)

    return both


def _ended_by(run_id: str, error: BaseException, runner: _Runner, elapsed_s: float) -> dict[str, Any]:
    """The event file's last line for a run an exception ended (the terminal shows the error instead)."""
    if isinstance(error, KeyboardInterrupt):
        stopped = f"; training job {runner.stopped_job} stopped" if runner.stopped_job else ""
        outcome, detail = "cancelled", f"interrupted (SIGINT){stopped}; run it again to resume"
    else:
        outcome = "failed"
        detail = (str(error) or type(error).__name__).splitlines()[0]
    return {
        "event": "PipelineEnded",
        "run_id": run_id,
        "outcome": outcome,
        "version": None,
        "detail": detail,
        "elapsed_s": elapsed_s,
    }


__all__ = [
    "DEMO_DIR",
    "DEMO_PER_CLASS",
    "DEMO_SEED",
    "PipelineBusy",
    "PipelineError",
    "PipelineOutcome",
    "PipelineProgress",
    "PipelineRequest",
    "busy_message",
    "code_digest",
    "dataset_fingerprint",
    "demo_settings",
    "run_pipeline",
]
