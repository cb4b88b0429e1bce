"""The ports every backend implements; `ops` talks only to these."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from arsl_tui.domain.jobs import JobResources, JobSpec, JobStatus, LogChunk, MetricsChunk


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

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 request_id: str | None = None) -> None:
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
        """"local" or "huawei"."""
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
