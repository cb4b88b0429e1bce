"""The ports every backend implements; `ops` talks only to these."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from arsl_tui.domain.alarms import AlarmRule, DataPoint, Filter, HistoryEntry, RuleView, SetupReport
from arsl_tui.domain.jobs import JobResources, JobSpec, JobStatus, LogChunk, MetricsChunk
from arsl_tui.domain.serving import Deployment, VersionStats


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object."""

    key: str
    size: int
    md5: str | None
    """Hex MD5 of the content when the store knows it (ETag of a single-part upload, or recorded)."""
    etag: str | None = None


class StoreError(Exception):
    """A store operation failed; `transient` says whether retrying can help."""

    transient: bool = False

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id


class TransientStoreError(StoreError):
    """Timeouts, resets, 5xx, 429, a digest mismatch in transit: worth a retry."""

    transient = True


class PermanentStoreError(StoreError):
    """403, a missing bucket, a bad key: retrying cannot help."""


class ObjectNotFound(StoreError):
    """The key does not exist."""


class ObjectStore(Protocol):
    """A bucket-like store of immutable objects under '/'-separated keys.

    Implementations are thread-safe: the upload engine calls them from many threads at once.
    Every put verifies the content's MD5 before it returns the stored object's info.
    """

    @property
    def location(self) -> str:
        """Where the store points, for humans (`local:/path`, `obs://bucket`); never a credential."""
        ...

    def put_bytes(self, key: str, data: bytes, md5_hex: str) -> ObjectInfo: ...

    def put_file(self, key: str, path: Path, md5_hex: str) -> ObjectInfo:
        """Upload a file; big files go multipart and resume from a checkpoint after a crash."""
        ...

    def put_if_absent(self, key: str, data: bytes, md5_hex: str) -> bool:
        """Create `key` only if no object has it: True if this call created it, False if one existed.

        Atomic: of several writers racing for one key, exactly one gets True. A caller that may have
        lost the reply to its own successful create (a retried request answers False) tells the two
        apart by reading the object back and comparing it with what it wrote.
        """
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def download_file(self, key: str, destination: Path) -> None: ...

    def head(self, key: str) -> ObjectInfo | None:
        """Info of `key`, or None if it does not exist."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order, paging as needed."""
        ...

    def delete(self, key: str) -> None: ...


class TrainingPlatform(Protocol):
    """Where training jobs run: detached `torchrun` process groups locally, ModelArts on Huawei Cloud.

    Every method raises `TrainingError` (with `JobNotFound` for an unknown id) with a message fit
    to show as is. Cursors are byte offsets: pass the returned `cursor` as the next `since`.
    """

    @property
    def backend(self) -> str:
        """ "local" or "huawei"."""
        ...

    def submit(self, spec: JobSpec) -> str:
        """Start a job; returns its id as soon as the platform has accepted it."""
        ...

    def status(self, job_id: str) -> JobStatus: ...

    def list(self, limit: int = 20) -> list[JobStatus]:
        """The newest jobs first."""
        ...

    def stop(self, job_id: str) -> JobStatus:
        """Ask the job to end (a no-op for an ended job); returns the status after asking."""
        ...

    def logs(self, job_id: str, since: int = 0) -> LogChunk: ...

    def metrics(self, job_id: str, since: int = 0) -> MetricsChunk:
        """The trainer's metric records written after byte `since` of the job's metrics.jsonl."""
        ...

    def resources(self, job_id: str) -> JobResources: ...


class Monitor(Protocol):
    """Alarm rules with Cloud Eye semantics: the local monitor over the gateway's series, or Cloud Eye itself.

    Every method raises `MonitorError` (`RuleNotFound` for an unknown rule) with a message fit to show.
    """

    @property
    def backend(self) -> str: ...

    def ensure_rules(self, rules: Sequence[AlarmRule]) -> SetupReport:
        """Create the rules that are missing and update those that differ, matched by name (idempotent)."""
        ...

    def rules(self) -> list[RuleView]:
        """Every arsl rule with its state (ok, alarm, insufficient_data) and last value."""
        ...

    def history(self, rule: str | None = None, since: float | None = None, limit: int = 100) -> list[HistoryEntry]:
        """State changes, oldest first, at most the newest `limit`."""
        ...

    def put_metric(
        self,
        namespace: str,
        metric: str,
        value: float,
        dimensions: Mapping[str, str],
        *,
        unit: str = "",
        at: float | None = None,
    ) -> None:
        """Add one data point to a custom metric (namespace not starting with SYS)."""
        ...

    def series(
        self,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, str],
        *,
        since: float,
        until: float,
        period_s: int,
        filter: Filter,
    ) -> list[DataPoint]:
        """One value per period (reduced by `filter`) for the periods between `since` and `until` that have data."""
        ...


@dataclass(frozen=True)
class ModelSlot:
    """One model version a service serves, with its share of traffic (percent)."""

    version: str
    weight: int


@dataclass(frozen=True)
class ServingStatus:
    """What a serving platform reports about one service."""

    service: str
    phase: str
    """absent (no such service), deploying, running, failed, stopped (or another platform word, lower case)."""
    weights: Mapping[str, int] = field(default_factory=dict)
    """{version: percent} of every version the service holds (0 for one kept without traffic)."""
    ready: Mapping[str, bool] = field(default_factory=dict)
    """Whether each version's instances are up."""
    endpoint: str | None = None
    detail: str = ""
    """The platform's own words on a failure or a deployment in progress."""

    @property
    def running(self) -> bool:
        return self.phase == "running"

    def serves(self, weights: Mapping[str, int]) -> bool:
        """True when the versions with traffic and their shares are exactly `weights`' non-zero ones."""
        wanted = {version: weight for version, weight in weights.items() if weight}
        have = {version: weight for version, weight in self.weights.items() if weight}
        return wanted == have


class GatewayProcess(Protocol):
    """The record of a running gateway process: where it listens and since when."""

    @property
    def pid(self) -> int: ...

    @property
    def port(self) -> int: ...

    @property
    def started_at(self) -> float: ...

    @property
    def endpoint(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


class DeploymentLog(Protocol):
    """The stored deployment of a gateway and the log of its changes."""

    def deployment(self) -> Deployment | None: ...

    def save_deployment(self, deployment: Deployment, reason: str) -> None: ...

    def changes(self, limit: int = 50) -> list[dict[str, Any]]: ...


class GatewayControl(Protocol):
    """Start, find and stop the inference gateway that runs on this machine, and call its admin API.

    Methods raise `domain.serving.ServingError` (or `AlreadyRunning`) with a message for the operator.
    """

    @property
    def state(self) -> DeploymentLog: ...

    def close(self) -> None: ...

    def running(self) -> GatewayProcess | None:
        """The gateway's process when it is alive, else None."""
        ...

    def start(self) -> GatewayProcess:
        """Start the gateway on the stored deployment and wait until it answers."""
        ...

    def stop(self, grace_s: float = ...) -> GatewayProcess | None:
        """Stop the gateway (the record of the process that was stopped, None when none ran)."""
        ...

    def admin(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float = 120.0,
    ) -> Any:
        """Call the running gateway's admin API and return its JSON answer."""
        ...


class ServingPlatformError(Exception):
    """A serving platform call failed; `transient` says whether trying again later can help."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.code = code
        self.request_id = request_id


class ServingPlatform(Protocol):
    """Where model versions serve predictions: the local gateway, or a ModelArts real-time service.

    Methods raise `ServingPlatformError`. Changes may complete asynchronously (ModelArts deploys in
    the background): `status` tells when the service runs what was asked.
    """

    @property
    def backend(self) -> str: ...

    def deploy(self, service: str, slots: Sequence[ModelSlot], reason: str = "") -> ServingStatus:
        """Serve exactly `slots` (weights summing to 100; the first is the stable version): create the
        service, or add and drop versions."""
        ...

    def set_weights(self, service: str, weights: Mapping[str, int], reason: str = "") -> ServingStatus:
        """Change the traffic split between versions the service holds (summing to 100)."""
        ...

    def status(self, service: str) -> ServingStatus: ...

    def endpoint(self, service: str) -> str | None:
        """Where clients send predictions (None while the service has none)."""
        ...

    def stats(self, service: str, versions: Sequence[str], window_s: float) -> dict[str, VersionStats]:
        """Per-version requests, errors, latency samples and feedback accuracy over the last `window_s` seconds."""
        ...
