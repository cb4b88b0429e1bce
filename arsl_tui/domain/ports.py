"""The ports every backend implements; `ops` talks only to these."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from arsl_tui.domain.alarms import AlarmRule, DataPoint, Filter, HistoryEntry, RuleView, SetupReport
from arsl_tui.domain.jobs import JobResources, JobSpec, JobStatus, LogChunk, MetricsChunk
from arsl_tui.domain.serving import Deployment, VersionStats

if TYPE_CHECKING:
    from arsl_tui.domain.canary import Action, CanaryRun, Transition


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

    def copy(self, source_key: str, key: str, md5_hex: str) -> ObjectInfo:
        """Server-side copy of the object at `source_key` to `key`, replacing what `key` holds; no bytes
        pass through the client. Returns the new object's info.

        The copy must hold content with MD5 `md5_hex`: a source with other content leaves `key` as it was
        wherever the store can check before writing, and raises `TransientStoreError` (code "NotConfirmed",
        or "ETagMismatch" when the store's answer names another digest). A missing `source_key` is a
        `PermanentStoreError` naming it (code "NoSuchKey", status 404). Copying a key onto itself only
        checks it.
        """
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def download_file(self, key: str, destination: Path) -> None: ...

    def head(self, key: str) -> ObjectInfo | None:
        """Info of `key`, or None if it does not exist."""
        ...

    def list(self, prefix: str, after: str = "") -> Iterator[ObjectInfo]:
        """Every object under `prefix` whose key sorts after `after` ('' = all), in key order, paging as needed.

        `after` is what OBS calls the listing's `marker`: a reader that knows where it stopped lists only what
        came since, whatever the number of older keys."""
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
    platform_id: str = ""
    """The platform's own id of the service (the ModelArts `service_id` its Cloud Eye metrics carry); '' where
    the service is absent or the platform has no such id."""

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


@dataclass(frozen=True)
class ImportedModel:
    """A registered version as the serving platform holds it once imported (a ModelArts AI application)."""

    version: str
    """The registry's version (`v17`)."""
    model_id: str
    name: str
    platform_version: str
    """The version in the platform's own format (`1.0.17`)."""
    status: str
    """The platform's word for its state (`publishing`, `published`, `failed`, …)."""
    location: str
    """Where the platform read the model from."""
    ready: bool = False
    """It can be deployed."""
    failed: bool = False
    """The platform gave up on it; `detail` says why."""
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "model_id": self.model_id,
            "name": self.name,
            "platform_version": self.platform_version,
            "status": self.status,
            "location": self.location,
            "ready": self.ready,
            "failed": self.failed,
            "detail": self.detail,
        }


class ModelImportError(Exception):
    """An import call failed or the platform refused the model; `transient` says whether a retry can help."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ModelImporter(Protocol):
    """Turns a registered version into what the serving platform deploys (a ModelArts AI application).

    The importer never reads the registry: the use case copies the package next to the files `layout` names
    and hands over the folder. Methods raise `ModelImportError`.
    """

    @property
    def platform(self) -> str:
        """Whose models these are (`modelarts`): the registry keeps one import record per platform."""
        ...

    def layout(self, version: str, package_id: str, package_config: Mapping[str, object]) -> dict[str, bytes]:
        """The files the platform needs besides the package's own, by path under the import folder."""
        ...

    def package_path(self, path: str) -> str:
        """Where the package file `path` goes under the import folder."""
        ...

    def find(self, version: str) -> ImportedModel | None:
        """The platform's model of `version` when one was imported before (in any state), else None."""
        ...

    def create(self, version: str, folder_key: str) -> ImportedModel:
        """Ask the platform to import the folder at store key `folder_key` (it works in the background)."""
        ...

    def show(self, version: str, model_id: str) -> ImportedModel:
        """The model's current state."""
        ...

    def delete(self, version: str, model_id: str) -> None:
        """Delete the platform's model `model_id` of `version` (a failed import, so it can be imported again)."""
        ...


@dataclass(frozen=True)
class LeaseHolder:
    """Who drives a release now: one controller's lease as the store keeps it (host, pid, user: no secrets)."""

    controller: str
    """The holding controller's id (one per home: the processes of one home share the lease)."""
    host: str
    pid: int
    """The process that last took or renewed it."""
    user: str
    since: float
    """When this controller took the lease (the holder's clock)."""
    renewed_at: float
    expires_at: float
    """`renewed_at` + the lease's time to live, by the holder's clock."""
    generation: int
    released: bool = False
    """The holder gave it up (its run ended): anyone may take it at once."""

    def describe(self) -> str:
        """`ana@jump-1 (pid 4242) since 2026-12-05 20:59:51 UTC`."""
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"{self.user}@{self.host} (pid {self.pid}) since {since}"

    def to_json(self) -> dict[str, Any]:
        return {
            "controller": self.controller,
            "host": self.host,
            "pid": self.pid,
            "user": self.user,
            "since": self.since,
            "renewed_at": self.renewed_at,
            "expires_at": self.expires_at,
            "generation": self.generation,
            "released": self.released,
        }


class ControllerLease(Protocol):
    """The right to drive one release: at most one controller holds it; it lapses unless renewed.

    `acquire` raises the store's `ControllerBusy` (its `LeaseHeld` names the holder) while another holds it.
    """

    def holder(self) -> LeaseHolder | None:
        """The latest lease as stored (None when none was ever taken)."""
        ...

    def acquire(self) -> LeaseHolder:
        """Take the lease (free, released or lapsed) or renew our own; refused while another holds it."""
        ...

    def release(self) -> None:
        """Give our lease up so another controller may take it at once (a no-op when we do not hold it)."""
        ...


class CanaryStateStore(Protocol):
    """The canary controller's records: the run (with its pending actions), a journal of every decision, every
    action's outcome and the alarms raised; and the lock that makes each decision one critical section.

    The local backend keeps them in the home's state file under a file lock (one controller per home); a
    backend whose operators work from several hosts keeps them in the object store, where every console
    pointed at the bucket reads the same release and a `ControllerLease` admits one controller at a time.
    Writes happen inside `lock()`. Reads raise `CanaryStateUnavailable` (a `CanaryError`) when the
    records cannot be reached.
    """

    @property
    def where(self) -> str:
        """Where the records are, for humans (a file path, `obs://bucket/prefix`); never a credential."""
        ...

    def lock(self, timeout_s: float = ...) -> AbstractContextManager[None]:
        """Exclusive across threads, processes and (where shared) controllers; decisions and actions run inside."""
        ...

    def holder(self) -> LeaseHolder | None:
        """The controller holding the release's lease, where there is one to show (None on a one-home store)."""
        ...

    def close(self) -> None: ...

    def current(self) -> CanaryRun | None: ...

    def runs(self, limit: int = 20) -> list[CanaryRun]:
        """The newest runs first."""
        ...

    def save(self, run: CanaryRun) -> None: ...

    def save_transition(self, transition: Transition, *, make_current: bool = False) -> None:
        """The run after a decision and its journal line, at once (the intent, before acting)."""
        ...

    def finish_action(self, after: CanaryRun | Transition, action: Action, outcome: str, detail: str) -> None:
        """Record `action`'s outcome and save the run without it (and any decision that follows), at once."""
        ...

    def action_outcome(self, action_id: str) -> str | None: ...

    def actions(self, run_id: str) -> list[dict[str, Any]]: ...

    def raise_alarm(self, action: Action, run: CanaryRun, now: float) -> bool:
        """Record the alarm of `action`; False if it was raised already (a retry after a crash)."""
        ...

    def alarms(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest alarms first."""
        ...

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        """The run's decisions, oldest first."""
        ...
