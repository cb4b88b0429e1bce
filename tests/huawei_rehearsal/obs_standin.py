"""The OBS stand-in: the OBS contract server with its objects on disk, conditional creates and faults.

Every request still goes through `tests.fixtures.obs_contract.ObsContractServer`'s checks (OBS's own
header signature, virtual-host addressing, the clock, Content-MD5, multipart rules); this module only
swaps the in-memory buckets for a directory and adds the behaviour the rehearsal needs:

- Objects live under `<root>/<bucket>/<key>` (the key's folders become directories, so a person can
  look at what the pipeline wrote), with a JSON sidecar per object under `<root>/.obs-meta/` holding
  its ETag, user metadata, content type and time. A stack restarted on the same root sees the same
  objects.
- Conditional create, which the model registry claims version numbers with
  (`ObsObjectStore.put_if_absent` and its once-per-client probe): a PUT carrying
  `x-obs-forbid-overwrite: true` on an existing key is refused 409 ObjectAlreadyExists, one carrying
  `If-None-Match: *` 412 PreconditionFailed. Real OBS's support for either header on PUT is
  undocumented in its API reference (obs_04_0080 Uploading an Object - PUT lists neither), which is why
  the adapter probes it before trusting it; the stand-in gives the answer the adapter requires, so the
  rehearsal cannot prove that a given real bucket honours it (`arsl doctor` runs the same probe there).
- The fault `drop_connection_after_put`: the PUT is applied, then the connection is closed without an
  answer (the client sees a reset on a write that did happen).

`ObsStore` is the API the other stand-ins use to reach the same objects without HTTP (the training
stand-in downloads code and inputs and uploads outputs; the serving stand-in reads model packages):

    store.read(bucket, key) -> bytes                 # KeyError when absent
    store.write(bucket, key, data, content_type=..., metadata=None) -> str   # the ETag (MD5 hex)
    store.exists(bucket, key) -> bool
    store.list(bucket, prefix="") -> list[str]       # sorted keys under prefix
    store.delete(bucket, key) -> None
    store.download_prefix(bucket, prefix, destination) -> list[Path]   # folder objects skipped
    store.upload_folder(source, bucket, prefix, skip_hidden=False) -> list[str]   # keys written
    split_obs_url("obs://bucket/a/b/" or "/bucket/a/b/" or "s3://...") -> ("bucket", "a/b/")

It takes the same lock as the HTTP side, so a write through `ObsStore` and a request never interleave.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from tests.fixtures.obs_contract import (
    DEFAULT_REGION,
    ObsContractServer,
    StoredObject,
    _Handler,
    _Refusal,
    _Reply,
)
from tests.huawei_rehearsal.faults import Faults

_META_FOLDER = ".obs-meta"
_FOLDER_MARKER = "folder-object"
"""A key ending in `/` (a "folder" object, which consoles create) has no file: its bytes stay in the sidecar."""


def split_obs_url(url: str) -> tuple[str, str]:
    """(bucket, key or prefix) of `obs://bucket/key`, `s3://bucket/key` or ModelArts' `/bucket/key` form."""
    text = url.strip()
    for scheme in ("obs://", "s3://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    else:
        text = text.lstrip("/")
    bucket, _, key = text.partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket")
    return bucket, key


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class _DiskBucket(MutableMapping[str, StoredObject]):
    """One bucket's objects on disk, with an in-memory index of the sidecars (data read on demand)."""

    def __init__(self, root: Path, meta_root: Path, bucket: str) -> None:
        self._data_root = root / bucket
        self._meta_root = meta_root / bucket
        self._data_root.mkdir(parents=True, exist_ok=True)
        self._meta_root.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, dict[str, Any]] = {}
        for sidecar in self._meta_root.glob("*.json"):
            try:
                record = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            self._index[str(record["key"])] = record

    def _data_path(self, key: str) -> Path:
        path = (self._data_root / key).resolve()
        if not path.is_relative_to(self._data_root.resolve()):
            raise _Refusal(400, "InvalidObjectName", f"{key!r} leaves the bucket folder")
        return path

    def _meta_path(self, key: str) -> Path:
        return self._meta_root / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def __getitem__(self, key: str) -> StoredObject:
        record = self._index[key]
        if record.get("kind") == _FOLDER_MARKER:
            data = bytes.fromhex(record.get("inline", ""))
        else:
            data = self._data_path(key).read_bytes()
        return StoredObject(data, record["etag"], dict(record["metadata"]), record["content_type"], record["modified"])

    def __setitem__(self, key: str, stored: StoredObject) -> None:
        record: dict[str, Any] = {
            "key": key,
            "etag": stored.etag,
            "metadata": stored.metadata,
            "content_type": stored.content_type,
            "modified": stored.modified,
            "size": len(stored.data),
        }
        if key.endswith("/") or not key:
            record["kind"] = _FOLDER_MARKER
            record["inline"] = stored.data.hex()
        else:
            path = self._data_path(key)
            # Real OBS has a flat namespace, so `a` and `a/b` can both exist; a folder tree cannot hold
            # both. No key the pipeline writes collides this way; refuse loudly rather than lose one.
            if path.is_dir() or any(parent.is_file() for parent in path.parents if parent != self._data_root):
                raise _Refusal(409, "StandinKeyConflict", f"the stand-in cannot store {key!r} beside a file/folder")
            _atomic_write(path, stored.data)
        _atomic_write(self._meta_path(key), json.dumps(record).encode())
        self._index[key] = record

    def __delitem__(self, key: str) -> None:
        record = self._index.pop(key)
        self._meta_path(key).unlink(missing_ok=True)
        if record.get("kind") != _FOLDER_MARKER:
            path = self._data_path(key)
            path.unlink(missing_ok=True)
            for parent in path.parents:  # drop folders the object left empty
                if parent == self._data_root or any(parent.iterdir()):
                    break
                parent.rmdir()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._index))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index


class ObsStandin(ObsContractServer):
    """`ObsContractServer` with disk-backed buckets, conditional creates and the OBS faults."""

    def __init__(
        self,
        *,
        root: Path,
        credentials: Mapping[str, str],
        buckets: tuple[str, ...] = ("arsl-ml",),
        region: str = DEFAULT_REGION,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(credentials=credentials, buckets=buckets, region=region)
        self.root = root
        self.faults = faults if faults is not None else Faults()
        meta_root = root / _META_FOLDER
        disk: dict[str, Any] = {name: _DiskBucket(root, meta_root, name) for name in buckets}
        self._buckets = disk
        self._server.RequestHandlerClass = _StandinHandler
        self.store = ObsStore(self)

    def start(self) -> ObsStandin:
        super().start()
        return self

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> _Reply:
        reply = super().handle(method, target, headers, body)
        if (
            method == "PUT"
            and reply.status == 200
            and "uploadId=" not in target
            and self.faults.take("drop_connection_after_put", detail=target) is not None
        ):
            raise _DropConnection
        return reply

    def _put(self, objects: dict[str, StoredObject], key: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        # Conditional create (see the module docstring: undocumented for real OBS, probed by the adapter).
        # The check and the write run under the server's lock (`_dispatch` holds it): atomic, as required.
        if key in objects:
            if headers.get("x-obs-forbid-overwrite", "").lower() == "true":
                raise _Refusal(409, "ObjectAlreadyExists", "The object already exists and overwriting is forbidden.")
            if headers.get("if-none-match", "").strip() == "*":
                raise _Refusal(
                    412, "PreconditionFailed", "At least one of the preconditions you specified did not hold."
                )
        return super()._put(objects, key, headers, body)


class ObsStore:
    """The stand-in's objects for the other stand-ins, without HTTP (see the module docstring)."""

    def __init__(self, server: ObsStandin) -> None:
        self._server = server

    @property
    def _lock(self) -> threading.Lock:
        return self._server._lock

    def _bucket(self, bucket: str) -> MutableMapping[str, StoredObject]:
        objects = self._server._buckets.get(bucket)
        if objects is None:
            raise KeyError(f"no bucket {bucket!r} in the OBS stand-in")
        return objects

    def read(self, bucket: str, key: str) -> bytes:
        with self._lock:
            return self._bucket(bucket)[key].data

    def exists(self, bucket: str, key: str) -> bool:
        with self._lock:
            return key in self._bucket(bucket)

    def write(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str = "binary/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        with self._lock:
            self._bucket(bucket)[key] = StoredObject(data, etag, dict(metadata or {}), content_type, time.time())
        return etag

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(key for key in self._bucket(bucket) if key.startswith(prefix))

    def delete(self, bucket: str, key: str) -> None:
        with self._lock:
            self._bucket(bucket).pop(key, None)

    def download_prefix(self, bucket: str, prefix: str, destination: Path) -> builtins.list[Path]:
        """Copy every object under `prefix` to `destination/<key without prefix>`, as ModelArts stages inputs."""
        written: builtins.list[Path] = []
        for key in self.list(bucket, prefix):
            relative = key[len(prefix) :].lstrip("/")
            if not relative or key.endswith("/"):
                continue
            target = (destination / relative).resolve()
            if not target.is_relative_to(destination.resolve()):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read(bucket, key))
            written.append(target)
        return written

    def upload_folder(self, source: Path, bucket: str, prefix: str, *, skip_hidden: bool = False) -> builtins.list[str]:
        """Write every file under `source` to `prefix/<relative path>` (ModelArts' output sync); `skip_hidden`
        leaves out paths with a dot-name part (files still being written under a temporary name)."""
        keys: builtins.list[str] = []
        base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if skip_hidden and any(part.startswith(".") for part in relative.parts):
                continue
            if not path.is_file():
                continue
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # renamed away while the folder was walked: the next sync has it
                continue
            key = base + relative.as_posix()
            with self._lock:
                current = self._bucket(bucket).get(key)
            if current is not None and current.etag == hashlib.md5(data, usedforsecurity=False).hexdigest():
                continue  # unchanged since the last sync
            self.write(bucket, key, data)
            keys.append(key)
        return keys


class _DropConnection(Exception):
    """Raised by `ObsStandin.handle` after a PUT was applied, so the handler hangs up without answering."""


class _StandinHandler(_Handler):
    def _serve(self) -> None:
        try:
            super()._serve()
        except _DropConnection:
            # drop_connection_after_put: the object is stored (and the request recorded); the client
            # never hears so.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


__all__ = ["ObsStandin", "ObsStore", "split_obs_url"]
