"""The `TrainingPlatform` port on ModelArts training jobs (v2 API) through `huaweicloudsdkmodelarts`.

A submit uploads `trainer/` to the OBS code prefix (only files whose MD5 differs from what is
there), then creates a preset-engine job: code dir + boot file `trainer/train.py`, the data set's
OBS prefix as input `data` and an output prefix as output `output` (ModelArts passes both to the
boot file as `--data=<local dir>` / `--output=<local dir>`), the hyper-parameters as job parameters
(`--epochs=12`, …), engine, flavor and node count from `[train]`. Before anything is uploaded or
billed, the engine name and version and the flavor are checked against what ModelArts offers the
project (`training_choices`): an unknown one stops the submit with the valid ones listed.

Loss and accuracy are not in any ModelArts API: they come from the trainer's `metrics.jsonl` in the
job's OBS output, read through the object store. `show_training_job_metrics` gives CPU/GPU/memory.

Credentials are always passed explicitly (never the SDK's default chain, which ends at the ECS
metadata service). SDK errors — and the raw `requests` exceptions that POST/PUT read timeouts leak —
become `TrainingError`s with the status, error code and request id.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import huaweicloudsdkmodelarts.v1 as ma
import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from arsl_tui.domain.jobs import (
    JobNotFound,
    JobPhase,
    JobResources,
    JobSpec,
    JobSpecError,
    JobStatus,
    LogChunk,
    MetricsChunk,
    PlatformUnavailable,
    TrainingError,
    failure_reason,
    parse_metrics,
)
from arsl_tui.domain.keys import join_key
from arsl_tui.domain.ports import ObjectNotFound, ObjectStore, StoreError
from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing, load_credentials
from arsl_tui.providers.huawei.errors import CloudFailure, failure_from_exception
from arsl_tui.providers.huawei.sdk_clients import basic_credentials, build_sdk_client

if TYPE_CHECKING:
    from arsl_tui.config import Settings

SERVICE = "ModelArts"
BOOT_FILE = "trainer/train.py"
DATA_INPUT = "data"
OUTPUT_NAME = "output"
METRICS_FILE = "metrics.jsonl"
MAIN_TASK = "worker-0"
SEARCH_PAGE_LIMIT = 50
_OBS_URL = re.compile(r"^obs://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.*)$")
_SKIPPED_PARTS = ("__pycache__",)
_RESOURCE_FIELDS = {
    "cpuUsage": "cpu_percent",
    "memUsage": "memory_percent",
    "gpuUtil": "gpu_percent",
    "gpuMemUsage": "gpu_memory_percent",
    "npuUtil": "gpu_percent",
    "npuMemUsage": "gpu_memory_percent",
}
_HINTS = {
    401: "the access key pair was refused: check HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK",
    403: "the account may not use ModelArts training in this project: check its IAM permissions and "
    "HUAWEICLOUD_SDK_PROJECT_ID",
    429: "ModelArts is throttling requests: try again in a moment",
}

T = TypeVar("T")


@dataclass(frozen=True)
class ObsLocation:
    bucket: str
    key: str
    """A '/'-terminated prefix (or a key) inside the bucket."""

    @classmethod
    def parse(cls, url: str, what: str) -> ObsLocation:
        found = _OBS_URL.match(url.strip())
        if not found:
            raise JobSpecError(
                f"{what} {url!r}: the huawei backend needs an OBS location obs://bucket/prefix/ "
                "(upload a local data set first with `arsl upload DIR`)"
            )
        return cls(found.group(1), found.group(2))

    @classmethod
    def from_modelarts(cls, path: str) -> ObsLocation:
        """ModelArts writes OBS paths as '/bucket/key'."""
        bucket, _, key = path.lstrip("/").partition("/")
        return cls(bucket, key)

    def folder(self) -> ObsLocation:
        return self if not self.key or self.key.endswith("/") else ObsLocation(self.bucket, self.key + "/")

    @property
    def modelarts_path(self) -> str:
        return f"/{self.bucket}/{self.key}"

    @property
    def url(self) -> str:
        return f"obs://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class TrainingChoices:
    """The preset engines and the public flavors ModelArts offers this project for training jobs."""

    engines: tuple[tuple[str, str], ...]
    """(engine_name, engine_version) pairs, in ModelArts' order."""
    flavors: tuple[str, ...]
    """Flavor ids."""

    @classmethod
    def from_responses(cls, engines: Any, flavors: Any) -> TrainingChoices:
        """From the answers of ShowTrainingJobEngines (`items`) and ShowTrainingJobFlavors (`flavors`)."""
        pairs = tuple(
            (str(item.engine_name), str(item.engine_version))
            for item in getattr(engines, "items", None) or []
            if getattr(item, "engine_name", None) and getattr(item, "engine_version", None)
        )
        ids = tuple(
            str(flavor.flavor_id)
            for flavor in getattr(flavors, "flavors", None) or []
            if getattr(flavor, "flavor_id", None)
        )
        return cls(engines=pairs, flavors=ids)

    def engine_problem(self, engine_name: str, engine_version: str) -> str | None:
        """Why ModelArts would refuse this engine (naming the valid names or versions), or None."""
        versions = [version for name, version in self.engines if name == engine_name]
        if not versions:
            names = dict.fromkeys(name for name, _ in self.engines)
            return (
                f"train.engine_name {engine_name!r} is not a preset engine of ModelArts here; valid: {_listed(names)}"
            )
        if engine_version not in versions:
            return (
                f"train.engine_version {engine_version!r} is not a {engine_name} preset of ModelArts here; "
                f"valid: {_listed(versions)}"
            )
        return None

    def flavor_problem(self, flavor_id: str) -> str | None:
        """Why ModelArts would refuse this flavor (naming the valid ones), or None."""
        if flavor_id in self.flavors:
            return None
        return (
            f"train.flavor_id {flavor_id!r} is not a training flavor ModelArts offers this project; "
            f"valid: {_listed(self.flavors)}"
        )

    def problems(self, engine_name: str, engine_version: str, flavor_id: str) -> list[str]:
        """What of `[train]`'s engine and flavor ModelArts does not offer, each naming the valid values."""
        found = (self.engine_problem(engine_name, engine_version), self.flavor_problem(flavor_id))
        return [problem for problem in found if problem]


def _listed(values: Any) -> str:
    shown = [str(value) for value in values]
    return ", ".join(shown) if shown else "none (ModelArts listed nothing)"


@dataclass(frozen=True)
class CodeUpload:
    """What a code upload did: keys written, files already there, and the code's digest."""

    code_dir: ObsLocation
    uploaded: tuple[str, ...]
    skipped: int
    digest: str
    """SHA-256 over every file's relative path and MD5: the trainer version a job ran."""


def trainer_root() -> Path:
    """The `trainer` package folder (located without importing it, so torch stays unloaded)."""
    spec = importlib.util.find_spec("trainer")
    if spec is None or not spec.submodule_search_locations:
        raise TrainingError("the bundled trainer package `trainer` cannot be found next to arsl")
    return Path(next(iter(spec.submodule_search_locations)))


def _code_files(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.suffix in (".pyc", ".pyo"):
            continue
        if any(part.startswith(".") or part in _SKIPPED_PARTS for part in relative.parts):
            continue
        yield relative.as_posix(), path


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_client(endpoint: str, credentials: Credentials, timeout_s: float) -> Any:
    """A ModelArts client for `endpoint` signing with `credentials` (never the SDK's credential chain)."""
    return build_sdk_client(ma.ModelArtsClient, endpoint, basic_credentials(credentials, "ModelArts"), timeout_s)


def _seconds(milliseconds: Any) -> float | None:
    if isinstance(milliseconds, int | float) and not isinstance(milliseconds, bool) and milliseconds > 0:
        return milliseconds / 1000.0
    return None


def _parameter(parameters: Any, name: str) -> str | None:
    for parameter in parameters or []:
        if getattr(parameter, "name", None) == name:
            value = getattr(parameter, "value", None)
            return None if value is None else str(value)
    return None


def _obs_path(entries: Any, name: str) -> str:
    for entry in entries or []:
        if getattr(entry, "name", None) == name:
            remote = getattr(entry, "remote", None)
            obs = getattr(remote, "obs", None)
            return str(getattr(obs, "obs_url", "") or "")
    return ""


class ModelArtsTrainingPlatform:
    """Training jobs on ModelArts; thread-safe (the SDK client is, and the caches are locked)."""

    backend = "huawei"

    def __init__(
        self,
        *,
        client: Any,
        store: ObjectStore,
        bucket: str,
        endpoint: str,
        settings: Settings,
        secrets: tuple[str, ...] = (),
        code_root: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._store = store
        self._bucket = bucket
        self._endpoint = endpoint
        self._train = settings.train
        self._storage = settings.storage
        self._timeout_s = settings.huawei.timeout_s
        self._secrets = secrets
        self._code_root = code_root
        self._clock = clock
        self._lock = threading.Lock()
        self._outputs: dict[str, ObsLocation] = {}
        self._reasons: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, *, credentials: Credentials | None = None, store: ObjectStore | None = None
    ) -> ModelArtsTrainingPlatform:
        """The configured region's ModelArts, and the configured OBS bucket for code and metrics."""
        try:
            credentials = credentials or load_credentials()
            endpoint = settings.huawei.endpoint("modelarts")
            client = build_client(endpoint, credentials, settings.huawei.timeout_s)
        except CredentialsMissing as missing:
            raise PlatformUnavailable(f"cannot use ModelArts: {missing}") from None
        if store is None:
            from arsl_tui.providers.huawei.obs import ObsObjectStore

            try:
                store = ObsObjectStore.from_settings(settings, credentials=credentials)
            except StoreError as error:
                raise PlatformUnavailable(f"cannot use OBS for the trainer code and metrics: {error}") from None
        return cls(
            client=client,
            store=store,
            bucket=settings.storage.bucket,
            endpoint=endpoint,
            settings=settings,
            secrets=credentials.secrets(),
        )

    # --- errors ---------------------------------------------------------------------------------

    def _call(self, operation: str, target: str, method: Callable[[Any], T], request: Any) -> T:
        try:
            return method(request)
        except (SdkException, requests.exceptions.RequestException, OSError) as error:
            failure = failure_from_exception(
                error, service=SERVICE, operation=operation, target=target, secrets=self._secrets
            )
            raise self._training_error(failure, error) from None

    def _training_error(self, failure: CloudFailure, error: BaseException) -> TrainingError:
        text = f"{failure.detail} {type(error).__name__}"
        lowered = text.lower()
        where = f"{SERVICE} at {self._endpoint}"
        if failure.status is None and ("timed out" in lowered or "timeout" in lowered):
            message = (
                f"{SERVICE} {failure.operation} for {failure.target}: no answer from {where} within "
                f"{self._timeout_s:g} s (read timeout); the request may still have been carried out"
            )
        elif failure.status is None and ("refused" in lowered or "failed to establish" in lowered):
            message = (
                f"{SERVICE} {failure.operation} for {failure.target}: cannot connect to {where} "
                "(connection refused); check huawei.modelarts_endpoint and the network"
            )
        elif failure.status is None and failure.code:
            message = f"{SERVICE} {failure.operation} for {failure.target}: cannot reach {where} ({failure.code})"
        else:
            message = failure.message
            hint = _HINTS.get(failure.status or 0) or (
                "ModelArts had an internal error: try again later" if (failure.status or 0) >= 500 else ""
            )
            if hint:
                message += f" — {hint}"
        kind = JobNotFound if failure.status == 404 else TrainingError
        return kind(
            message,
            status=failure.status,
            code=failure.code,
            request_id=failure.request_id,
            transient=failure.transient,
        )

    # --- code -----------------------------------------------------------------------------------

    def upload_code(self) -> CodeUpload:
        """Put `trainer/` under the code prefix, skipping files whose MD5 is already there."""
        root = self._code_root or trainer_root()
        prefix = join_key(self._storage.code_prefix, "trainer") + "/" if self._storage.code_prefix else "trainer/"
        code_dir = ObsLocation(self._bucket, prefix[: -len("trainer/")])
        try:
            remote = {info.key: info.md5 for info in self._store.list(prefix)}
            uploaded: list[str] = []
            skipped = 0
            lines: list[str] = []
            for relative, path in _code_files(root):
                md5 = _md5_file(path)
                lines.append(f"{relative} {md5}")
                key = prefix + relative
                if remote.get(key) == md5:
                    skipped += 1
                    continue
                self._store.put_file(key, path, md5)
                uploaded.append(key)
        except StoreError as error:
            raise TrainingError(
                f"uploading the trainer code to {code_dir.url} failed: {error}",
                status=error.status,
                code=error.code,
                request_id=error.request_id,
                transient=error.transient,
            ) from None
        if not lines:
            raise TrainingError(f"{root}: the trainer folder holds no files to upload")
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        return CodeUpload(code_dir=code_dir, uploaded=tuple(uploaded), skipped=skipped, digest=digest)

    # --- engine and flavor ----------------------------------------------------------------------

    def training_choices(self) -> TrainingChoices:
        """The engines and flavors ModelArts offers this project (two read calls)."""
        # ShowTrainingJobEngines, GET /v2/{project_id}/training-job-engines ("Obtaining the Preset AI
        # Frameworks Supported by a Training Job", api-modelarts/ShowTrainingJobEngines.html).
        engines = self._call(
            "show_training_job_engines",
            "the preset training engines",
            self._client.show_training_job_engines,
            ma.ShowTrainingJobEnginesRequest(),
        )
        # ShowTrainingJobFlavors, GET /v2/{project_id}/training-job-flavors ("Obtaining the General
        # Specifications Supported by a Training Job", api-modelarts/ShowTrainingJobFlavors.html).
        flavors = self._call(
            "show_training_job_flavors",
            "the training flavors",
            self._client.show_training_job_flavors,
            ma.ShowTrainingJobFlavorsRequest(),
        )
        return TrainingChoices.from_responses(engines, flavors)

    def check_engine_and_flavor(self) -> None:
        """`JobSpecError` naming the valid values when `[train]`'s engine or flavor is not offered: a job
        created with one would be refused, or worse, billed and then fail."""
        train = self._train
        problems = self.training_choices().problems(train.engine_name, train.engine_version, train.flavor_id)
        if problems:
            raise JobSpecError("; ".join(problems) + " — nothing was submitted (set them in [train] of config.toml)")

    # --- the port -------------------------------------------------------------------------------

    def new_job_name(self) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self._clock()))
        return f"arsl-{stamp}-{secrets.token_hex(2)}"

    def build_job(self, spec: JobSpec, name: str, code: CodeUpload) -> Any:
        """The create-job body for `spec` (an SDK model; exposed for inspection in tests)."""
        dataset = ObsLocation.parse(spec.dataset, "dataset").folder()
        output = (
            ObsLocation.parse(spec.output, "output").folder()
            if spec.output
            else ObsLocation(self._bucket, join_key(self._storage.output_prefix, name) + "/")
        )
        description = f"arsl: data {dataset.url}; trainer {code.digest[:12]}"[:256]
        algorithm = ma.JobAlgorithm(
            code_dir=code.code_dir.modelarts_path,
            boot_file=code.code_dir.modelarts_path + BOOT_FILE,
            parameters=[ma.Parameters(name=flag, value=value) for flag, value in spec.hyperparameters()],
            inputs=[
                ma.Input(
                    name=DATA_INPUT, remote=ma.InputDataInfo(obs=ma.InputDataInfoObs(obs_url=dataset.modelarts_path))
                )
            ],
            outputs=[ma.Output(name=OUTPUT_NAME, remote=ma.Remote(obs=ma.RemoteObs(obs_url=output.modelarts_path)))],
            engine=ma.JobEngine(engine_name=self._train.engine_name, engine_version=self._train.engine_version),
            # The id is only known once the job exists; the name is unique in the project and is what
            # the trainer records in the model package for lineage.
            environments={"ARSL_JOB_ID": name},
        )
        return ma.Job(
            kind="job",
            metadata=ma.JobMetadata(name=name, description=description),
            algorithm=algorithm,
            spec=ma.Spec(resource=ma.SpecResource(flavor_id=self._train.flavor_id, node_count=spec.nodes)),
        )

    def submit(self, spec: JobSpec) -> str:
        spec.validate()
        name = spec.name or self.new_job_name()
        # Check the locations before anything is uploaded.
        ObsLocation.parse(spec.dataset, "dataset")
        if spec.output:
            ObsLocation.parse(spec.output, "output")
        self.check_engine_and_flavor()
        code = self.upload_code()
        body = self.build_job(spec, name, code)
        response = self._call(
            "create_training_job",
            f"job {name!r}",
            self._client.create_training_job,
            ma.CreateTrainingJobRequest(body=body),
        )
        job_id = getattr(response.metadata, "id", None) if response.metadata else None
        if not job_id:
            raise TrainingError(f"{SERVICE} accepted job {name!r} but returned no job id")
        self._remember_output(job_id, response)
        return str(job_id)

    def _details(self, job_id: str) -> Any:
        if not job_id or "/" in job_id:
            raise JobNotFound(f"{job_id!r} is not a ModelArts training job id")
        return self._call(
            "show_training_job_details",
            f"job {job_id!r}",
            self._client.show_training_job_details,
            ma.ShowTrainingJobDetailsRequest(training_job_id=job_id),
        )

    def _remember_output(self, job_id: str, job: Any) -> ObsLocation | None:
        path = _obs_path(getattr(job.algorithm, "outputs", None), OUTPUT_NAME) if job.algorithm else ""
        if not path:
            return None
        location = ObsLocation.from_modelarts(path).folder()
        with self._lock:
            self._outputs[job_id] = location
        return location

    def _status_of(self, job: Any) -> JobStatus:
        metadata, state = job.metadata, job.status
        job_id = str(getattr(metadata, "id", "") or "")
        raw_phase = str(getattr(state, "phase", "") or "")
        try:
            phase = JobPhase.parse(raw_phase)
        except ValueError as error:
            raise TrainingError(f"{SERVICE} job {job_id!r}: {error}") from None
        started = _seconds(getattr(state, "start_time", None))
        duration = _seconds(getattr(state, "duration", None))
        ended = started + duration if phase.terminal and started is not None and duration is not None else None
        algorithm = job.algorithm
        dataset_path = _obs_path(getattr(algorithm, "inputs", None), DATA_INPUT) if algorithm else ""
        output = self._remember_output(job_id, job)
        epochs_text = _parameter(getattr(algorithm, "parameters", None), "epochs") if algorithm else None
        return JobStatus(
            job_id=job_id,
            name=str(getattr(metadata, "name", "") or ""),
            phase=phase,
            backend=self.backend,
            created_at=_seconds(getattr(metadata, "create_time", None)),
            started_at=started,
            ended_at=ended,
            reason=self._reason(job_id, phase, str(getattr(state, "secondary_phase", "") or "")),
            dataset=ObsLocation.from_modelarts(dataset_path).url if dataset_path else "",
            output=output.url if output else "",
            epochs=int(epochs_text) if epochs_text and epochs_text.isdigit() else None,
        )

    def _reason(self, job_id: str, phase: JobPhase, secondary: str) -> str:
        if phase is JobPhase.TERMINATED:
            return "terminated on request"
        if phase not in (JobPhase.FAILED, JobPhase.ABNORMAL):
            return ""
        with self._lock:
            cached = self._reasons.get(job_id)
        if cached is not None:
            return cached
        detail = f"ModelArts reports {phase.value}" + (f" ({secondary})" if secondary and secondary != phase else "")
        try:
            tail = failure_reason(self.logs(job_id).text)
        except TrainingError:
            tail = ""
        reason = f"{detail}: {tail}" if tail else detail
        with self._lock:
            self._reasons[job_id] = reason
        return reason

    def status(self, job_id: str) -> JobStatus:
        return self._status_of(self._details(job_id))

    def list(self, limit: int = 20) -> list[JobStatus]:
        statuses: list[JobStatus] = []
        offset = 0
        while len(statuses) < limit:
            page_size = min(SEARCH_PAGE_LIMIT, limit - len(statuses))
            body = ma.JobSearches(offset=offset, limit=page_size, sort_by="create_time", order="desc")
            response = self._call(
                "list_training_jobs",
                "the project's training jobs",
                self._client.list_training_jobs,
                ma.ListTrainingJobsRequest(body=body),
            )
            items = list(response.items or [])
            statuses += [self._status_of(item) for item in items]
            offset += len(items)
            if len(items) < page_size or (response.total is not None and offset >= response.total):
                break
        return statuses[:limit]

    def stop(self, job_id: str) -> JobStatus:
        current = self.status(job_id)
        if current.terminal or current.phase is JobPhase.TERMINATING:
            return current
        response = self._call(
            "stop_training_job",
            f"job {job_id!r}",
            self._client.stop_training_job,
            ma.StopTrainingJobRequest(training_job_id=job_id, body=ma.JobActionType(action_type="terminate")),
        )
        if getattr(response, "status", None) is not None and getattr(response, "metadata", None) is not None:
            return self._status_of(response)
        return self.status(job_id)

    def logs(self, job_id: str, since: int = 0) -> LogChunk:
        response = self._call(
            "show_training_job_logs_preview",
            f"job {job_id!r} task {MAIN_TASK}",
            self._client.show_training_job_logs_preview,
            ma.ShowTrainingJobLogsPreviewRequest(training_job_id=job_id, task_id=MAIN_TASK),
        )
        content = str(response.content or "").encode("utf-8")
        full = response.full_size if isinstance(response.full_size, int) else len(content)
        # The preview holds at most the last few MB: its first byte sits at full - len(content).
        first = max(0, full - len(content))
        since = max(0, since)
        if since > full:
            since = 0  # the log was restarted (a retried job): read it from the top
        if since < first:
            return LogChunk(
                text=content.decode("utf-8", "replace"), cursor=first + len(content), start=first, truncated=True
            )
        return LogChunk(
            text=content[since - first :].decode("utf-8", "replace"), cursor=first + len(content), start=since
        )

    def _output(self, job_id: str) -> ObsLocation:
        with self._lock:
            known = self._outputs.get(job_id)
        if known is not None:
            return known
        self.status(job_id)
        with self._lock:
            known = self._outputs.get(job_id)
        if known is None:
            raise TrainingError(
                f"{SERVICE} job {job_id!r} has no output named {OUTPUT_NAME!r}: it was not "
                "submitted by arsl, so it has no metrics.jsonl to read"
            )
        return known

    def metrics(self, job_id: str, since: int = 0) -> MetricsChunk:
        output = self._output(job_id)
        if output.bucket != self._bucket:
            raise TrainingError(
                f"job {job_id!r} writes to {output.url}, outside the configured bucket "
                f"{self._bucket!r}: its metrics cannot be read"
            )
        key = output.key + METRICS_FILE
        try:
            data = self._store.get_bytes(key)
        except ObjectNotFound:
            return MetricsChunk(records=(), cursor=max(0, since))
        except StoreError as error:
            raise TrainingError(
                f"reading {output.url}{METRICS_FILE} failed: {error}",
                status=error.status,
                code=error.code,
                request_id=error.request_id,
                transient=error.transient,
            ) from None
        # The trainer ends every record with a newline: an unterminated last line is a record still
        # being written (or synced), read again next time.
        return parse_metrics(data, since)

    def resources(self, job_id: str) -> JobResources:
        response = self._call(
            "show_training_job_metrics",
            f"job {job_id!r} task {MAIN_TASK}",
            self._client.show_training_job_metrics,
            ma.ShowTrainingJobMetricsRequest(training_job_id=job_id, task_id=MAIN_TASK),
        )
        values: dict[str, float] = {}
        for metric in response.metrics or []:
            field_name = _RESOURCE_FIELDS.get(str(getattr(metric, "metric", "")))
            samples = [
                float(v)
                for v in (getattr(metric, "value", None) or [])
                if isinstance(v, int | float) and math.isfinite(v) and v >= 0
            ]
            if field_name and samples and field_name not in values:
                values[field_name] = samples[-1]
        return JobResources(
            sampled_at=self._clock(),
            cpu_percent=values.get("cpu_percent"),
            memory_percent=values.get("memory_percent"),
            gpu_percent=values.get("gpu_percent"),
            gpu_memory_percent=values.get("gpu_memory_percent"),
        )


__all__ = [
    "CodeUpload",
    "ModelArtsTrainingPlatform",
    "ObsLocation",
    "TrainingChoices",
    "build_client",
    "trainer_root",
]
