"""A directory-backed object store: the local backend's stand-in for an OBS bucket.

Layout under `root`:

    <key>                       the object's bytes, at its key (so local tools can read them directly)
    .arsl-store/meta/<key>.json the object's MD5 and the identity (inode, size, mtime) of the file it describes
    .arsl-store/tmp/            files being written; never listed

Writes are atomic: the bytes go to a temporary file, are hashed while written, checked against
the declared MD5, fsynced and renamed over the key. The sidecar is written after the rename and
trusted only while the inode, size and mtime it records still match the object's file, so a crash
between the two renames (or a file changed behind the store's back) costs a re-hash, never a wrong
MD5. The top-level name `.arsl-store` is reserved and refused as a key.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from arsl_tui.domain.keys import UnsafeKeyError, check_relative_path
from arsl_tui.domain.ports import (
    ObjectInfo,
    ObjectNotFound,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
)

if TYPE_CHECKING:
    from hashlib import _Hash

    _Writer = Callable[[BinaryIO, _Hash], None]

RESERVED_DIR = ".arsl-store"
_CHUNK = 1 << 20
_STALE_TMP_S = 24 * 3600

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_CONFLICT = frozenset({errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY})
_RETRYABLE = frozenset({errno.EIO, errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT, errno.ESTALE})


class LocalObjectStore:
    """`ObjectStore` over a folder; thread-safe and safe for several processes at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self._meta_root = self.root / RESERVED_DIR / "meta"
        self._tmp_root = self.root / RESERVED_DIR / "tmp"
        try:
            self._tmp_root.mkdir(parents=True, exist_ok=True)
            self._meta_root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._os_error(error, "create the store folder", None) from None
        self._remove_stale_temporaries()

    @property
    def location(self) -> str:
        return f"local:{self.root}"

    # -- writing -------------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, md5_hex: str) -> ObjectInfo:
        def write(handle: BinaryIO, digest: _Hash) -> None:
            digest.update(data)
            handle.write(data)

        return self._put(key, md5_hex, write)

    def put_file(self, key: str, path: Path, md5_hex: str) -> ObjectInfo:
        source = _open_source(Path(path), key)

        def write(handle: BinaryIO, digest: _Hash) -> None:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                handle.write(chunk)

        with source:
            return self._put(key, md5_hex, write)

    def copy(self, source_key: str, key: str, md5_hex: str) -> ObjectInfo:
        """Copy `source_key` to `key` the way a put writes (temporary file, hashed, fsynced, renamed).

        The source's bytes are hashed on the way; other content than `md5_hex` never reaches `key`.
        """
        source_path = self._path(source_key)
        self._path(key)
        try:
            source = source_path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise PermanentStoreError(
                f"cannot copy {source_key!r} to {key!r} in {self.location}: no object {source_key!r}",
                code="NoSuchKey",
                status=404,
            ) from None
        except OSError as error:
            raise self._os_error(error, "read", source_key) from None
        with source:
            if source_key == key:
                info = self._info(key, source_path, os.fstat(source.fileno()))
                if info.md5 != md5_hex.lower():
                    raise self._not_confirmed(source_key, key, info.md5, md5_hex)
                return info
            received: list[str] = []

            def write(handle: BinaryIO, digest: _Hash) -> None:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
                received.append(digest.hexdigest())

            try:
                return self._put(key, md5_hex, write)
            except TransientStoreError as error:
                if error.code != "BadDigest" or not received:
                    raise
                raise self._not_confirmed(source_key, key, received[0], md5_hex) from None

    def _not_confirmed(self, source_key: str, key: str, found: str | None, md5_hex: str) -> TransientStoreError:
        return TransientStoreError(
            f"cannot copy {source_key!r} to {key!r} in {self.location}: the source holds content with MD5 "
            f"{found}, not {md5_hex}; {key!r} is left as it was",
            code="NotConfirmed",
        )

    def _put(self, key: str, md5_hex: str, write: _Writer) -> ObjectInfo:
        target = self._path(key)
        temporary = self._tmp_root / uuid.uuid4().hex
        digest = hashlib.md5(usedforsecurity=False)
        try:
            try:
                with temporary.open("xb") as handle:
                    write(handle, digest)
                    handle.flush()
                    os.fsync(handle.fileno())
                    status = os.fstat(handle.fileno())
                if digest.hexdigest() != md5_hex.lower():
                    raise TransientStoreError(
                        f"MD5 mismatch storing {key!r}: received {digest.hexdigest()}, declared {md5_hex}",
                        code="BadDigest",
                    )
                self._publish(temporary, target)
            finally:
                temporary.unlink(missing_ok=True)
            self._write_meta(key, digest.hexdigest(), status)
        except OSError as error:
            raise self._os_error(error, "write", key) from None
        return ObjectInfo(key=key, size=status.st_size, md5=digest.hexdigest(), etag=digest.hexdigest())

    def put_if_absent(self, key: str, data: bytes, md5_hex: str) -> bool:
        """Create `key` only if it does not exist: the complete file is hard-linked into place.

        `link()` fails with EEXIST when the name exists, atomically, across threads and processes,
        so exactly one of several racing writers wins and a reader never sees a partial file.
        """
        target = self._path(key)
        temporary = self._tmp_root / uuid.uuid4().hex
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if digest != md5_hex.lower():
            raise TransientStoreError(
                f"MD5 mismatch storing {key!r}: received {digest}, declared {md5_hex}", code="BadDigest"
            )
        try:
            try:
                with temporary.open("xb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                    status = os.fstat(handle.fileno())
                created = self._link(temporary, target, key)
            finally:
                temporary.unlink(missing_ok=True)
            if created:
                self._write_meta(key, digest, status)
        except OSError as error:
            raise self._os_error(error, "create", key) from None
        return created

    def _link(self, temporary: Path, target: Path, key: str) -> bool:
        # A concurrent delete may prune the freshly made parent folder; make it again and retry.
        for attempt in range(3):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(temporary, target)
                break
            except FileExistsError:
                if target.is_dir():
                    raise PermanentStoreError(
                        f"cannot create {key!r} in {self.location}: a folder has that name", code="KeyConflict"
                    ) from None
                return False
            except FileNotFoundError:
                if attempt == 2 or not temporary.exists():
                    raise
        _fsync_dir(target.parent)
        return True

    def _publish(self, temporary: Path, target: Path) -> None:
        # A concurrent delete may prune the freshly made parent folder; make it again and retry.
        for attempt in range(3):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(temporary, target)
                break
            except FileNotFoundError:
                if attempt == 2 or not temporary.exists():
                    raise
        _fsync_dir(target.parent)

    def _write_meta(self, key: str, md5_hex: str, status: os.stat_result) -> None:
        """Record the MD5 beside the object, if the disk lets us.

        Best effort, and not fsynced: a missing or stale sidecar only costs a re-hash, so a full disk
        here must not turn a put that stored the object whole into a failure (nor fail a read).
        """
        meta_path = self._meta_path(key)
        temporary = self._tmp_root / f"{uuid.uuid4().hex}.meta"
        body = json.dumps(
            {"md5": md5_hex, "size": status.st_size, "ino": status.st_ino, "mtime_ns": status.st_mtime_ns}
        ).encode()
        try:
            temporary.write_bytes(body)
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, meta_path)
        except OSError:
            # An older sidecar may remain; it names another inode, size or mtime, so it is never trusted.
            return
        finally:
            temporary.unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            if path.is_dir():
                raise ObjectNotFound(f"no object {key!r} in {self.location}", code="NoSuchKey", status=404)
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.location}", code="NoSuchKey", status=404) from None
        except OSError as error:
            raise self._os_error(error, "read", key) from None

    def download_file(self, key: str, destination: Path) -> None:
        source_path = self._path(key)
        destination = Path(destination)
        temporary = destination.with_name(f".{destination.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            with source_path.open("rb") as source, temporary.open("wb") as handle:
                while chunk := source.read(_CHUNK):
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, destination)
        except (FileNotFoundError, IsADirectoryError):
            temporary.unlink(missing_ok=True)
            if not source_path.is_file():
                raise ObjectNotFound(f"no object {key!r} in {self.location}", code="NoSuchKey", status=404) from None
            raise
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise self._os_error(error, f"download to {destination}", key) from None

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            status = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise self._os_error(error, "inspect", key) from None
        if not _is_file(status):
            return None
        return self._info(key, path, status)

    def list(self, prefix: str, after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` and sorts after `after`, in key (UTF-8 byte) order."""
        folder, _, name_start = prefix.rpartition("/")
        if folder:
            try:
                check_relative_path(folder)
            except UnsafeKeyError:
                return
            if folder.split("/", 1)[0] == RESERVED_DIR:
                return
        start = self.root / folder if folder else self.root
        key_base = f"{folder}/" if folder else ""
        yield from self._walk(start, key_base, name_start, after, top=not folder)

    def _walk(self, folder: Path, key_base: str, name_start: str, after: str, *, top: bool) -> Iterator[ObjectInfo]:
        """Keys under `folder` that sort after `after`, in order. Code-point order is UTF-8 byte order."""
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as error:
            raise self._os_error(error, "list", key_base or "(all keys)") from None
        ordered: list[tuple[str, os.DirEntry[str], bool]] = []
        for entry in entries:
            if not entry.name.startswith(name_start) or (top and entry.name == RESERVED_DIR):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            # Sorting a folder by "name/" puts every key below it exactly where it belongs among its siblings.
            ordered.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
        ordered.sort(key=lambda item: item[0])
        for _, entry, is_dir in ordered:
            key = key_base + entry.name
            if is_dir:
                below = key + "/"
                # Every key below sorts before `after` when `after` is past the folder and not inside it.
                if not (below < after and not after.startswith(below)):
                    yield from self._walk(Path(entry.path), below, "", after, top=False)
                continue
            if key <= after:
                continue
            try:
                status = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if _is_file(status):
                yield self._info(key, Path(entry.path), status)

    def _info(self, key: str, path: Path, status: os.stat_result) -> ObjectInfo:
        md5 = self._recorded_md5(key, status)
        if md5 is None:
            md5 = self._rehash(key, path)
        return ObjectInfo(key=key, size=status.st_size, md5=md5, etag=md5)

    def _recorded_md5(self, key: str, status: os.stat_result) -> str | None:
        try:
            meta = json.loads(self._meta_path(key).read_bytes())
        except (OSError, ValueError):
            return None
        if (
            isinstance(meta, dict)
            and meta.get("size") == status.st_size
            and meta.get("ino") == status.st_ino
            and meta.get("mtime_ns") == status.st_mtime_ns
            and isinstance(meta.get("md5"), str)
        ):
            return str(meta["md5"])
        return None

    def _rehash(self, key: str, path: Path) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with path.open("rb") as handle:
                status = os.fstat(handle.fileno())
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
            self._write_meta(key, digest.hexdigest(), status)
        except OSError as error:
            raise self._os_error(error, "read", key) from None
        return digest.hexdigest()

    # -- deleting ------------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            if not path.is_dir():
                path.unlink(missing_ok=True)
            self._meta_path(key).unlink(missing_ok=True)
        except OSError as error:
            raise self._os_error(error, "delete", key) from None
        self._prune(path.parent, self.root)
        self._prune(self._meta_path(key).parent, self._meta_root)

    @staticmethod
    def _prune(folder: Path, stop: Path) -> None:
        """Remove folders left empty, up to (not including) `stop`; a folder someone writes into stays."""
        while folder != stop and stop in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    # -- helpers -------------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        try:
            check_relative_path(key)
        except UnsafeKeyError as error:
            raise PermanentStoreError(f"invalid object key: {error}", code="InvalidKey") from None
        if key.split("/", 1)[0] == RESERVED_DIR:
            raise PermanentStoreError(
                f"invalid object key {key!r}: {RESERVED_DIR!r} is reserved by the local store", code="InvalidKey"
            )
        return self.root / key

    def _meta_path(self, key: str) -> Path:
        return self._meta_root / f"{key}.json"

    def _os_error(self, error: OSError, action: str, key: str | None) -> StoreError:
        reason = error.strerror or str(error)
        if key is None:
            return PermanentStoreError(f"cannot {action} {error.filename or self.root}: {reason}", code="StoreUnusable")
        what = f"{action} {key!r} in {self.location}"
        if error.errno in _FULL:
            return PermanentStoreError(
                f"cannot {what}: the disk holding {self.root} is full ({reason})", code="NoSpace"
            )
        if error.errno in _DENIED:
            return PermanentStoreError(
                f"cannot {what}: permission denied on {error.filename or self.root} ({reason})",
                code="AccessDenied",
                status=403,
            )
        if error.errno in _CONFLICT:
            return PermanentStoreError(
                f"cannot {what}: the key clashes with an existing object or folder ({error.filename or key}: {reason})",
                code="KeyConflict",
            )
        if error.errno in _RETRYABLE:
            return TransientStoreError(f"cannot {what}: {reason}", code="IOError")
        return PermanentStoreError(f"cannot {what}: {reason}", code="OSError")

    def _remove_stale_temporaries(self) -> None:
        """Drop temporaries that a killed writer left behind long ago (recent ones may still be in use)."""
        cutoff = time.time() - _STALE_TMP_S
        try:
            for entry in os.scandir(self._tmp_root):
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                except OSError:
                    continue
        except OSError:
            return


def _open_source(path: Path, key: str) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as error:
        raise PermanentStoreError(
            f"cannot read {path} to store it as {key!r}: {error.strerror}", code="SourceUnreadable"
        ) from None


def _is_file(status: os.stat_result) -> bool:
    return stat.S_ISREG(status.st_mode)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
