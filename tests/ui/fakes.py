"""Deterministic backends for the console's tabs: a training platform that replays a recorded job, a
monitor state built on a fixed clock, a fixed status report.

The recorded metrics stream (`data/recorded_metrics.jsonl`) is the metrics.jsonl of a real run of the
bundled trainer (10 epochs on a synthetic set, CPU); the platform reveals it record by record, so a
test controls exactly what the console has seen.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from arsl_tui.config import Settings
from arsl_tui.domain.alarms import LOCAL_SERVICE, SERVICE_DIMENSION
from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.domain.jobs import (
    JobNotFound,
    JobPhase,
    JobResources,
    JobSpec,
    JobStatus,
    LogChunk,
    MetricsChunk,
    TrainingError,
    parse_metrics,
)
from arsl_tui.ops.status import PhaseState, PhaseStatus, StatusReport

DATA = Path(__file__).with_name("data")
RECORDED_METRICS = DATA / "recorded_metrics.jsonl"
T0 = 1_767_261_600.0  # 2026-01-01 10:00 UTC


def recorded_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDED_METRICS.read_text(encoding="utf-8").splitlines() if line.strip()]


def passing_records(test_acc: float = 0.978, worst_class: float = 0.93) -> list[dict[str, Any]]:
    """A clean 6-epoch history and a final record over the 32 classes that passes every default rule."""
    epochs = []
    for number, (val_acc, val_loss, train_acc) in enumerate(
        [
            (0.62, 1.20, 0.55),
            (0.88, 0.42, 0.86),
            (0.95, 0.16, 0.95),
            (0.968, 0.09, 0.975),
            (0.972, 0.082, 0.981),
            (0.974, 0.080, 0.984),
        ],
        start=1,
    ):
        epochs.append(
            {
                "type": "epoch",
                "epoch": number,
                "step": number * 40,
                "time": T0 + 60 * number,
                "train_loss": round(1.6 / number**1.6, 4),
                "train_acc": train_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "images_per_s": 812.0,
            }
        )
    per_class = {name: round(0.99 - (index % 7) * 0.008, 3) for index, name in enumerate(ARSL_CLASSES)}
    per_class["ain"] = worst_class
    confusion = [[0] * len(ARSL_CLASSES) for _ in ARSL_CLASSES]
    for index in range(len(ARSL_CLASSES)):
        confusion[index][index] = 60
    confusion[0][1], confusion[5][6], confusion[9][10] = 4, 3, 2
    final = {
        "type": "final",
        "epoch": 6,
        "test_acc": test_acc,
        "test_loss": 0.074,
        "test_samples": 1920,
        "val_acc": 0.974,
        "val_loss": 0.08,
        "train_val_gap": 0.01,
        "per_class_acc": per_class,
        "classes": list(ARSL_CLASSES),
        "confusion": confusion,
        "manifest_id": "m-ui",
        "best_epoch": 6,
    }
    return [*epochs, final]


@dataclass
class RecordedJob:
    status: JobStatus
    records: list[dict[str, Any]]
    revealed: int
    """How many records the platform shows now."""
    log: str = ""
    resources: JobResources | None = None

    def metrics_bytes(self) -> bytes:
        return b"".join(json.dumps(record).encode() + b"\n" for record in self.records[: self.revealed])


def job_status(
    job_id: str,
    phase: JobPhase,
    *,
    epochs: int = 10,
    started: float = T0,
    ended: float | None = None,
    output: str = "",
    reason: str = "",
) -> JobStatus:
    return JobStatus(
        job_id=job_id,
        name=job_id,
        phase=phase,
        backend="local",
        created_at=started - 5,
        started_at=started,
        ended_at=ended,
        reason=reason,
        dataset="local:/srv/arsl/datasets/m-ui/",
        output=output,
        epochs=epochs,
    )


@dataclass
class RecordedPlatform:
    """A `TrainingPlatform` over recorded jobs; every call is logged in `calls`."""

    jobs: list[RecordedJob]
    backend: str = "local"
    calls: list[tuple[str, str]] = field(default_factory=list)
    submitted: list[JobSpec] = field(default_factory=list)
    fail_with: TrainingError | None = None
    """Raised by every call while set (a backend outage)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _job(self, job_id: str) -> RecordedJob:
        self._check(job_id)
        for job in self.jobs:
            if job.status.job_id == job_id:
                return job
        raise JobNotFound(f"no local training job {job_id!r}")

    def _check(self, job_id: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def reveal(self, job_id: str, count: int) -> None:
        with self.lock:
            job = self._job(job_id)
            job.revealed = min(len(job.records), job.revealed + count)

    def set_phase(self, job_id: str, phase: JobPhase, ended: float | None = None) -> None:
        with self.lock:
            job = self._job(job_id)
            job.status = replace(job.status, phase=phase, ended_at=ended)

    def submit(self, spec: JobSpec) -> str:
        with self.lock:
            self.calls.append(("submit", spec.name))
            self._check("")
            job_id = spec.name or f"job-{len(self.jobs) + 1:04d}"
            self.submitted.append(spec)
            self.jobs.insert(0, RecordedJob(job_status(job_id, JobPhase.CREATING, epochs=spec.epochs), [], 0))
            return job_id

    def status(self, job_id: str) -> JobStatus:
        with self.lock:
            self.calls.append(("status", job_id))
            return self._job(job_id).status

    def list(self, limit: int = 20) -> list[JobStatus]:
        with self.lock:
            self.calls.append(("list", ""))
            self._check("")
            return [job.status for job in self.jobs[:limit]]

    def stop(self, job_id: str) -> JobStatus:
        with self.lock:
            self.calls.append(("stop", job_id))
            job = self._job(job_id)
            if not job.status.terminal:
                job.status = replace(
                    job.status,
                    phase=JobPhase.TERMINATED,
                    ended_at=job.status.started_at or T0,
                    reason="stopped on request",
                )
            return job.status

    def logs(self, job_id: str, since: int = 0) -> LogChunk:
        with self.lock:
            self.calls.append(("logs", job_id))
            data = self._job(job_id).log.encode()
            since = since if 0 <= since <= len(data) else 0
            return LogChunk(text=data[since:].decode(), cursor=len(data), start=since)

    def metrics(self, job_id: str, since: int = 0) -> MetricsChunk:
        with self.lock:
            self.calls.append(("metrics", f"{job_id}@{since}"))
            job = self._job(job_id)
            chunk = parse_metrics(job.metrics_bytes(), since, final=job.status.terminal)
            return chunk

    def resources(self, job_id: str) -> JobResources:
        with self.lock:
            self.calls.append(("resources", job_id))
            return self._job(job_id).resources or JobResources(sampled_at=T0)

    def count(self, method: str) -> int:
        with self.lock:
            return sum(1 for name, _ in self.calls if name == method)


RECORDED_LOG = (
    "\n".join(
        [
            "[trainer] data /srv/arsl/datasets/m-ui (folder): train 899, val 185, test 196, 32 classes",
            "[trainer] model compact (297,896 parameters), global batch 32 (29 steps/epoch), lr 0.003",
            *(f"[trainer] epoch {number}/10  train loss … val loss …" for number in range(1, 11)),
        ]
    )
    + "\n"
)


def recorded_platform(revealed: int | None = None, *, output: str = "") -> RecordedPlatform:
    """The recorded job running (its first `revealed` records shown), the same recording finished (it
    fails the gate: a short run on a small synthetic set), a job that passes, and one that crashed."""
    records = recorded_records()
    started = records[0]["time"] - 30
    running = RecordedJob(
        job_status("job-live", JobPhase.RUNNING, started=started, output=output),
        records,
        len(records) if revealed is None else revealed,
        RECORDED_LOG,
        JobResources(sampled_at=started, cpu_percent=187.5, memory_mb=1240.0, processes=3),
    )
    weak = RecordedJob(
        job_status("job-weak", JobPhase.COMPLETED, started=T0 - 3600, ended=T0 - 3400, output=output),
        records,
        len(records),
        RECORDED_LOG,
    )
    passed = RecordedJob(
        job_status("job-good", JobPhase.COMPLETED, epochs=6, started=T0 - 7200, ended=T0 - 6800, output=output),
        passing_records(),
        7,
        "[trainer] done\n",
    )
    crashed = RecordedJob(
        job_status(
            "job-crash",
            JobPhase.FAILED,
            epochs=6,
            started=T0 - 9000,
            ended=T0 - 8990,
            reason="torchrun ended with exit code 1: ValueError: no images",
        ),
        [],
        0,
        "ValueError: no images\n",
    )
    return RecordedPlatform([running, weak, passed, crashed])


def epoch_time(index: int) -> float:
    """When the recording's `index`-th epoch record (from 1) was written."""
    return [record["time"] for record in recorded_records() if record["type"] == "epoch"][index - 1]


def records_through_epoch(index: int) -> int:
    """How many records of the recording come up to and including its `index`-th epoch record."""
    seen = 0
    for position, record in enumerate(recorded_records(), start=1):
        seen += record["type"] == "epoch"
        if seen == index:
            return position
    raise ValueError(f"the recording has fewer than {index} epochs")


def clock_at(seconds: float) -> Callable[[], float]:
    return lambda: seconds


def fixed_report(states: Sequence[tuple[str, PhaseState, str, str]] | None = None) -> StatusReport:
    """A status report with a phase in every state the Overview shows."""
    rows = states or [
        ("data", PhaseState.DONE, "data set c0ffeec0ffee in local:/srv/arsl/store/arsl-ml/datasets/c0ffee…/", ""),
        ("training", PhaseState.DONE, "job job-good Completed", "arsl gate job-good"),
        ("models", PhaseState.DONE, "champion v1, challenger v2", "arsl deploy v2 --canary 10"),
        ("service", PhaseState.RUNNING, "serving v1 90%, v2 10% at http://127.0.0.1:8765", ""),
        ("canary", PhaseState.RUNNING, "v2 vs v1: observing, step 1/4 at 10%", "arsl canary watch"),
        ("alarms", PhaseState.ATTENTION, "1 in alarm: arsl-error-rate", "arsl alarms list"),
    ]
    details: dict[str, dict[str, Any]] = {
        "data": {"uploaded_at": T0 - 86400},
        "training": {"ended_at": T0 - 6800},
        "models": {"champion": "v1", "challenger": "v2"},
    }
    return StatusReport(
        backend="local",
        time=T0,
        phases=tuple(
            PhaseStatus(name, state, summary, details.get(name, {}), next_step)
            for name, state, summary, next_step in rows
        ),
    )


# ----- alarms --------------------------------------------------------------------------------------

ALARM_ROUNDS = 12


def scripted_samples(round_number: int) -> list[Any]:
    """Gateway points for one round: the error rate climbs past 5 % from round 6 on; accuracy is never fed."""
    from arsl_tui.domain.alarms import Sample

    service = ((SERVICE_DIMENSION, LOCAL_SERVICE),)
    error_rate = 0.01 if round_number < 6 else 0.09 + 0.01 * (round_number - 6)
    requests = 400 + 25 * (round_number % 5)
    return [
        Sample("service_up", service, 1.0),
        Sample("requests", service, float(requests), "count"),
        Sample("errors", service, round(error_rate * requests), "count"),
        Sample("error_rate", service, error_rate),
        Sample("p95_latency_ms", service, 120.0 + 9 * (round_number % 4), "ms"),
    ]


def build_alarm_state(settings: Settings, start: float = T0 - ALARM_ROUNDS * 60) -> float:
    """Run the real local monitor for `ALARM_ROUNDS` one-minute rounds on scripted points; returns the end time."""
    from arsl_tui.ops.monitoring import configured_rules, open_local_monitor

    rounds = {"n": 0}

    def sampler(now: float, window_s: float) -> list[Any]:
        return scripted_samples(rounds["n"])

    monitor = open_local_monitor(settings, sampler=sampler, clock=clock_at(start))
    try:
        monitor.ensure_rules(configured_rules(settings)[0])
        at = start
        for number in range(ALARM_ROUNDS):
            rounds["n"] = number
            at = start + 60 * (number + 1)
            monitor.run_once(at)
    finally:
        monitor.close()
    return at


def monitor_opener(clock: Callable[[], float]) -> Callable[[Settings], Any]:
    """Open the local monitor (no sampler: the console never runs rounds) on a fixed clock."""
    from arsl_tui.ops.monitoring import open_local_monitor

    def open_monitor(settings: Settings) -> Any:
        return open_local_monitor(settings, sampler=lambda now, window: [], clock=clock)

    return open_monitor


# ----- canary --------------------------------------------------------------------------------------


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeServingPlatform:
    """One in-memory service. Each version's window stats follow its quality: 'good' answers everything
    right in about 20 ms; 'bad' answers every labelled request wrong."""

    backend = "fake"

    def __init__(self, quality: dict[str, str]) -> None:
        self.weights: dict[str, int] = {"v1": 100}
        self.quality = quality
        self.changes: list[dict[str, int]] = []

    def status(self, service: str) -> Any:
        from arsl_tui.domain.ports import ServingStatus

        return ServingStatus(
            service=service,
            phase="running",
            weights=dict(self.weights),
            ready=dict.fromkeys(self.weights, True),
            endpoint="http://127.0.0.1:8765",
        )

    def endpoint(self, service: str) -> str | None:
        return "http://127.0.0.1:8765"

    def deploy(self, service: str, slots: Sequence[Any], reason: str = "") -> Any:
        self.weights = {slot.version: slot.weight for slot in slots}
        self.changes.append(dict(self.weights))
        return self.status(service)

    def set_weights(self, service: str, weights: Any, reason: str = "") -> Any:
        self.weights = dict(weights)
        self.changes.append(dict(self.weights))
        return self.status(service)

    def stats(self, service: str, versions: Sequence[str], window_s: float) -> dict[str, Any]:
        from arsl_tui.domain.serving import VersionStats

        result = {}
        for version in versions:
            requests = round(30 * self.weights.get(version, 0) * min(1.0, window_s / 300))
            good = self.quality.get(version, "good") == "good"
            latency = tuple(18.0 + (index * 7) % 11 + (0 if good else 3) for index in range(requests))
            result[version] = VersionStats(
                version=version,
                window_s=window_s,
                requests=requests,
                errors=0,
                latency_ms=latency,
                latency_samples_total=requests,
                feedback=requests,
                correct=requests if good else 0,
            )
        return result


@dataclass
class CanaryWorld:
    """A real `CanaryController` on a temporary home: the real registry (v1 champion, v2 challenger), the
    controller's state file, a fake serving platform and a hand-moved clock."""

    settings: Settings
    platform: FakeServingPlatform
    clock: Clock
    registry: Any

    def controller(self) -> Any:
        from arsl_tui.ops.canary import CanaryController
        from arsl_tui.state.canary_store import CanaryStore

        return CanaryController(
            self.settings,
            platform=self.platform,
            registry=self.registry,
            store=CanaryStore.open(self.settings.home_dir),
            service="arsl-local",
            user="ana",
            clock=self.clock,
        )

    def start(self) -> None:
        controller = self.controller()
        try:
            controller.start("v2")
        finally:
            controller.close()

    def window_passes(self, seconds: float | None = None) -> None:
        """Let the current window end (or `seconds` pass) and run one controller tick."""
        controller = self.controller()
        try:
            run = controller.current()
            assert run is not None
            self.clock.now = (
                run.next_judgement_at
                if seconds is None and run.next_judgement_at
                else self.clock.now + (seconds or 0.0)
            )
            controller.tick()
        finally:
            controller.close()


def canary_world(root: Path, challenger_quality: str = "good") -> CanaryWorld:
    from arsl_tui.ops.registry import ModelRegistry
    from arsl_tui.providers.local.store import LocalObjectStore
    from tests.fixtures.model_packages import gate_json, metrics_json, write_package

    clock = Clock(T0)
    registry = ModelRegistry(LocalObjectStore(root / "store"), "models/", clock=clock)
    for number in (1, 2):
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
    settings = Settings(home=str(root / "home"))
    return CanaryWorld(settings, FakeServingPlatform({"v1": "good", "v2": challenger_quality}), clock, registry)


# ----- pipeline --------------------------------------------------------------------------------------

DEMO_RUN = "p20260101-100000-ab12"
_HOLDER_SCRIPT = """
import json, os, sys
from pathlib import Path
from arsl_tui.ops.pipeline_log import EventLog, PipelineLock, events_path

home, run_id, script = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
lock = PipelineLock.acquire(home, run_id)
log = EventLog(home, run_id)
for payload in script["events"]:
    log.write(payload)
if script["torn"]:
    with open(events_path(home, run_id), "ab") as events:
        events.write(script["torn"].encode())
print("holding", flush=True)
try:
    sys.stdin.read()
except KeyboardInterrupt:
    log.write({"event": "PipelineEnded", "run_id": run_id, "outcome": "cancelled", "version": None,
               "detail": "interrupted (SIGINT); run it again to resume", "elapsed_s": 1.5})
    sys.exit(130)
finally:
    lock.release()
"""


def pipeline_events(run_id: str = DEMO_RUN, *, through: str = "champion-epoch") -> list[dict[str, Any]]:
    """A demo run's events, in the format `arsl pipeline run --json` prints them, up to `through`:
    `champion-epoch` (the champion's training at epoch 4 of 10), or `promoted` (the whole run)."""
    from arsl_tui.domain.pipeline import PHASE_TITLES, PhaseName, PipelineEnded, PipelinePhase, PipelineStarted
    from arsl_tui.ops.pipeline import PipelineProgress
    from arsl_tui.ops.pipeline_log import event_payload

    def phase(name: PhaseName, state: str, detail: str, elapsed_s: float = 0.0) -> dict[str, Any]:
        return event_payload(
            PipelinePhase(phase=name.value, title=PHASE_TITLES[name], state=state, detail=detail, elapsed_s=elapsed_s)
        )

    job = "job-20260101-100012-3f2a"
    events = [
        phase(PhaseName.DATA, "", "", 0.0),
        phase(PhaseName.DATA, "done", "9600 images in /srv/arsl/demo/data", 21.0),
        event_payload(
            PipelineStarted(
                run_id=run_id,
                dataset="/srv/arsl/demo/data",
                code="c0de",
                resumed_from="",
                settings={"train.epochs": 10},
            )
        ),
        phase(PhaseName.UPLOAD, "", ""),
        phase(
            PhaseName.UPLOAD,
            "done",
            "data set 6e7df9092327 at local:/srv/arsl/store/arsl-ml/datasets/6e7d…/ (5 sent, 0 already there)",
            9.0,
        ),
        phase(PhaseName.CHAMPION, "", "no champion yet: training seed 1"),
        *(
            event_payload(PipelineProgress(phase="champion", detail=f"{job} epoch {epoch}/10: val_acc {accuracy}"))
            for epoch, accuracy in ((1, "0.412"), (2, "0.733"), (3, "0.861"), (4, "0.912"))
        ),
    ]
    if through == "promoted":
        events += [
            phase(PhaseName.CHAMPION, "done", f"v1 from job {job} is champion", 250.0),
            phase(PhaseName.TRAIN, "done", "job job-20260101-100400-77aa completed (10 epochs)", 240.0),
            phase(PhaseName.GATE, "done", "v2 passed the gate (challenger)", 2.0),
            phase(PhaseName.DEPLOY, "done", "v1 serves 100% at http://127.0.0.1:8765", 3.0),
            phase(PhaseName.CANARY, "done", "v2 promoted to champion", 60.0),
            phase(PhaseName.ALARMS, "done", "4 created, 0 updated, 0 unchanged", 0.5),
            event_payload(
                PipelineEnded(
                    run_id=run_id, outcome="promoted", version="v2", detail="v2 promoted to champion", elapsed_s=662.0
                )
            ),
        ]
    return events


class PipelineHolder:
    """A real process that takes the pipeline lock and writes events as `run_pipeline` does, then waits.

    SIGINT ends its run as `run_pipeline` ends a cancelled one (a last `PipelineEnded`, outcome
    `cancelled`); SIGKILL leaves the run unfinished. Its own session, so signalling its process group
    reaches nothing else.
    """

    def __init__(
        self, home: Path, run_id: str = DEMO_RUN, events: Sequence[dict[str, Any]] = (), torn: str = ""
    ) -> None:
        import subprocess
        import sys

        script = json.dumps({"events": list(events), "torn": torn})
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER_SCRIPT, str(home), run_id, script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the lock is held once it says so (EOF if it died)
        assert line.strip() == "holding", f"the lock holder did not start (exit {self.process.poll()})"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout_s: float = 30.0) -> int:
        return self.process.wait(timeout_s)

    def close(self) -> None:
        """Kill it if it still runs, and reap it."""
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@dataclass
class FakeProcess:
    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class RecordingLauncher:
    """The console's `launch_pipeline`: records exactly what would run, starts nothing."""

    launches: list[Any] = field(default_factory=list)
    process: FakeProcess = field(default_factory=lambda: FakeProcess(pid=4242))

    def __call__(self, launch: Any) -> FakeProcess:
        self.launches.append(launch)
        return self.process


@dataclass
class RecordingSignals:
    """The console's `signal_pipeline`: records (pid, process group, signal), signals nothing."""

    sent: list[tuple[int, int, int]] = field(default_factory=list)

    def __call__(self, pid: int, pgid: int, signum: int) -> str:
        self.sent.append((pid, pgid, signum))
        return f"process group {pgid}"
