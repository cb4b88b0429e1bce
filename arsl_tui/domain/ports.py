"""The ports every backend implements; `ops` talks only to these."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


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

    def get_bytes(self, key: str) -> bytes: ...

    def download_file(self, key: str, destination: Path) -> None: ...

    def head(self, key: str) -> ObjectInfo | None:
        """Info of `key`, or None if it does not exist."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order, paging as needed."""
        ...

    def delete(self, key: str) -> None: ...
