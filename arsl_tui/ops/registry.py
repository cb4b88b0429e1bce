"""The model registry behind the `ObjectStore` port: identical on the local store and on OBS.

Layout under `settings.storage.models_prefix` (default `models/`):

    versions/v<N>.json            a version record (domain.registry.ModelVersion), immutable. Created
                                  with a conditional create: that create *is* the claim on number N,
                                  so two writers never both get vN.
    packages/<package_id>/<path>  the model package's files (config.json, model.safetensors, trainer/…),
                                  content-addressed (package_id = SHA-256 over path, size and MD5 of
                                  every file), uploaded and verified *before* the claim, so a record
                                  never points at files that are not there.
    log/<seq, 8 digits>.json      the promotion log, append-only: entry n+1 is created conditionally,
                                  and the aliases are the replay of the log, so appending is a
                                  compare-and-swap on the aliases (see domain.registry).
    imports/<platform>/v<N>.json  which model of a serving platform holds vN (domain.registry.ImportRecord),
                                  e.g. its ModelArts AI application id; replaced when the version is
                                  imported again (the platform owns the model and may lose it).
    packages/<package_id>/<platform>/…
                                  what that platform imports from: the package in the platform's layout
                                  (the files are copies; the package's own files stay as registered).
    aliases.json                  a cache of the replayed state after some entry n (alias positions,
                                  registered versions, the last promotion); a reader replays only the
                                  entries after n.
                                  It is rewritten freely and never trusted for entries past its n.

A writer whose conditional create was refused reads the object: if it holds exactly the bytes it
sent (each record carries a random writer id), the refusal answered a retry of its own successful
request, and it carries on; otherwise it lost the race and tries the next number or entry.

A misbehaving store (timeouts, resets, 5xx, 429, a body cut short) costs retries, never a wrong
registry: every store call is retried on a transient error, which is safe because every write is
idempotent (package files are content-addressed, a refused create is told from a lost reply as
above, the cache is a shortcut). A conditional create the store answers with an ETag of other bytes
than those sent (it kept a damaged body) is a claim only this writer can have made: it deletes it and
tries again, so no reader ever stumbles over it. Should one survive anyway (the writer died first),
a version record that cannot be read and that the log never registered is an abandoned claim:
`list` leaves it out (its number stays used); `get` of it still names the damage.

Model files are copied as bytes and checked, never loaded: weights must be safetensors (header and
SHA-256 checked), and files in formats that unpickle (.pt, .pth, .pkl, .ckpt, …) are refused.

Limits: registering the same job from two places at the same instant can create two versions of
it (each registration is still complete and numbered uniquely); `find_by_job` reads every version
record, which is fine for the tens to hundreds of versions a project keeps.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import json
import math
import random
import re
import secrets
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from arsl_tui.domain.keys import UnsafeKeyError, check_relative_path, join_key
from arsl_tui.domain.ports import ObjectInfo, ObjectNotFound, ObjectStore, StoreError
from arsl_tui.domain.registry import (
    ALIASES,
    CHAMPION,
    ImportRecord,
    Lineage,
    ModelVersion,
    PackageFile,
    PromotionLogEntry,
    RecordFormatError,
    RegistryError,
    RegistryState,
    check_platform,
    format_version,
    parse_version,
    plan_alias_move,
    plan_canary_entry,
    plan_registration,
    registration_action,
    replay,
)

if TYPE_CHECKING:
    from arsl_tui.config import Settings

CONFIG_NAME = "config.json"
DEFAULT_WEIGHTS = "model.safetensors"
CACHE_NAME = "aliases.json"
JOB_CLOCK_SKEW_S = 3600.0
"""How far a training platform's clock may be ahead of this machine's when telling when a job ended."""
MAX_ATTEMPTS = 64
"""Conditional creates a writer tries before giving up (each refusal means another writer progressed)."""
_LOG_DIGITS = 8
_VERSION_FILE = re.compile(r"^v([1-9][0-9]{0,8})\.json$")
_LOG_FILE = re.compile(r"^([0-9]{8})\.json$")
_UNPICKLING_SUFFIXES = frozenset(
    {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npy", ".npz", ".h5", ".keras", ".tar"}
)
_SKIPPED_PARTS = frozenset({"__pycache__"})
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_CHUNK = 1 << 20
STORE_ATTEMPTS = 6
"""Tries of one store call that keeps failing transiently, before its error is the caller's."""
_BACKOFF_BASE_S = 0.05
_BACKOFF_MAX_S = 1.0
_T = TypeVar("_T")


class VersionNotFound(RegistryError):
    """No record for that version; the message names the key looked up."""


class RegistryCorrupt(RegistryError):
    """A stored registry object cannot be read as what it should be; the message names the key."""


class RegistryBusy(RegistryError):
    """Too many concurrent writers won every conditional create this writer tried."""


class PackageError(RegistryError):
    """A model package that cannot be registered; the message names the file and the problem."""


# --- packages -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalPackageFile:
    path: str
    """'/'-separated, relative to the package folder."""
    source: Path
    size: int
    md5: str
    sha256: str


@dataclass(frozen=True)
class PackageContents:
    """A checked model package folder, ready to copy into the registry."""

    root: Path
    files: tuple[LocalPackageFile, ...]
    config: Mapping[str, Any]
    package_id: str
    trainer_code_sha256: str


def _digests(path: Path) -> tuple[int, str, str]:
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return size, md5.hexdigest(), sha.hexdigest()


def check_safetensors(path: Path, where: str) -> None:
    """A structural check of a safetensors file (8-byte header length, JSON header, offsets that fit)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise PackageError(f"{where}: too short to be a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, _MAX_SAFETENSORS_HEADER):
                raise PackageError(f"{where}: safetensors header length {length} does not fit the file ({size} bytes)")
            header = json.loads(handle.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PackageError(f"{where}: the safetensors header is not JSON") from None
    except OSError as error:
        raise PackageError(f"{where}: cannot read it ({error.strerror})") from None
    if not isinstance(header, dict):
        raise PackageError(f"{where}: the safetensors header is not a JSON object")
    body = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(item, int) for item in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body
        ):
            raise PackageError(f"{where}: tensor {name!r} has data offsets {offsets!r} outside the file")


def inspect_package(root: Path) -> PackageContents:
    """Check a package folder and describe it: files, digests, config, package id, trainer code hash."""
    root = Path(root)
    if not root.is_dir():
        raise PackageError(f"{root}: the model package folder does not exist")
    files: list[LocalPackageFile] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if _SKIPPED_PARTS & set(relative.parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink():
            raise PackageError(f"{path}: model packages may not hold symbolic links")
        if path.is_dir():
            continue
        name = relative.as_posix()
        try:
            check_relative_path(name)
        except UnsafeKeyError as error:
            raise PackageError(f"{path}: {error}") from None
        if path.suffix.lower() in _UNPICKLING_SUFFIXES:
            raise PackageError(
                f"{path}: {path.suffix} files can run code when loaded (pickle); a model package "
                "holds safetensors weights only"
            )
        size, md5, sha = _digests(path)
        files.append(LocalPackageFile(path=name, source=path, size=size, md5=md5, sha256=sha))
    by_path = {item.path: item for item in files}
    if CONFIG_NAME not in by_path:
        raise PackageError(f"{root}: no {CONFIG_NAME} (not a model package)")
    try:
        config = json.loads(by_path[CONFIG_NAME].source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PackageError(f"{root / CONFIG_NAME}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise PackageError(f"{root / CONFIG_NAME}: expected a JSON object")
    weights_name = config.get("weights", DEFAULT_WEIGHTS)
    weights = by_path.get(weights_name) if isinstance(weights_name, str) else None
    if weights is None:
        raise PackageError(f"{root}: the weights file {weights_name!r} named in {CONFIG_NAME} is missing")
    if not weights.path.endswith(".safetensors"):
        raise PackageError(f"{weights.source}: weights must be a .safetensors file")
    check_safetensors(weights.source, str(weights.source))
    expected = config.get("weights_sha256")
    if isinstance(expected, str) and expected and expected.lower() != weights.sha256:
        raise PackageError(
            f"{weights.source}: SHA-256 {weights.sha256} differs from weights_sha256 {expected} in "
            f"{CONFIG_NAME}; the package was changed after export"
        )
    package_id = hashlib.sha256(
        "".join(f"{item.path}\t{item.size}\t{item.md5}\n" for item in files).encode()
    ).hexdigest()
    code = [item for item in files if item.path.startswith("trainer/")]
    trainer_sha = (
        hashlib.sha256("".join(f"{item.path}\t{item.sha256}\n" for item in code).encode()).hexdigest() if code else ""
    )
    return PackageContents(
        root=root, files=tuple(files), config=config, package_id=package_id, trainer_code_sha256=trainer_sha
    )


# --- JSON -----------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """JSON has no NaN: non-finite numbers are stored as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _encode(payload: Mapping[str, Any]) -> bytes:
    return (json.dumps(json_safe(payload), ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# --- the registry ---------------------------------------------------------------------------------


class ModelRegistry:
    """Versions, aliases and the promotion log of one store prefix."""

    def __init__(
        self,
        store: ObjectStore,
        prefix: str = "models/",
        *,
        clock: Callable[[], float] = time.time,
        backend: str = "local",
    ) -> None:
        self.store = store
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.backend = backend
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, store: ObjectStore | None = None) -> ModelRegistry:
        from arsl_tui.backends import backend_for

        backend = backend_for(settings)
        return cls(
            backend.object_store() if store is None else store, settings.storage.models_prefix, backend=backend.name
        )

    # --- keys -------------------------------------------------------------------------------------

    def version_key(self, version: str) -> str:
        return join_key(self.prefix, f"versions/{format_version(parse_version(version))}.json")

    def log_key(self, seq: int) -> str:
        return join_key(self.prefix, f"log/{seq:0{_LOG_DIGITS}d}.json")

    def package_key(self, package_id: str, path: str) -> str:
        return join_key(self.prefix, f"packages/{package_id}/{path}")

    def import_key(self, version: str, platform: str) -> str:
        name = format_version(parse_version(version))
        return join_key(self.prefix, f"imports/{check_platform(platform)}/{name}.json")

    def import_folder(self, package_id: str, platform: str) -> str:
        """The folder (key prefix, ending in '/') a platform imports the package `package_id` from."""
        return join_key(self.prefix, f"packages/{package_id}/{check_platform(platform)}") + "/"

    def _where(self, key: str) -> str:
        return f"{self.store.location}/{key}"

    # --- the store, patiently ---------------------------------------------------------------------

    @staticmethod
    def _patiently(operation: Callable[[], _T]) -> _T:
        """`operation`, tried again after a transient store error (with jittered backoff); the last
        error, which names the object and the cause, is the caller's."""
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                return operation()
            except StoreError as error:
                if not error.transient or attempt == STORE_ATTEMPTS:
                    raise
            time.sleep(random.uniform(0, min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (attempt - 1))))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _get(self, key: str) -> bytes:
        return self._patiently(lambda: self.store.get_bytes(key))

    def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        return self._patiently(lambda: builtins.list(self.store.list(prefix)))

    # --- reading ----------------------------------------------------------------------------------

    def _read_json(self, key: str) -> Any:
        data = self._get(key)
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RegistryCorrupt(f"{self._where(key)}: not valid JSON ({error})") from None

    def _version_numbers(self) -> builtins.list[int]:
        base = self.prefix + "versions/"
        numbers = []
        for info in self._list(base):
            found = _VERSION_FILE.match(info.key[len(base) :])
            if found:
                numbers.append(int(found.group(1)))
        return sorted(numbers)

    def get(self, version: str) -> ModelVersion:
        """The record of `version`; VersionNotFound or RegistryCorrupt naming the key otherwise."""
        key = self.version_key(version)
        try:
            data = self._read_json(key)
        except ObjectNotFound:
            raise VersionNotFound(f"no model version {version}: {self._where(key)} does not exist") from None
        try:
            record = ModelVersion.from_json(data, self._where(key))
        except RecordFormatError as error:
            raise RegistryCorrupt(str(error)) from None
        if record.version != format_version(parse_version(version)):
            raise RegistryCorrupt(f"{self._where(key)}: holds version {record.version}, not {version}")
        return record

    def list(self) -> builtins.list[ModelVersion]:
        """Every version, oldest first; an abandoned claim (a record that cannot be read and that the
        log never registered) is left out, a damaged record of a registered version is an error."""
        records: builtins.list[ModelVersion] = []
        registered: frozenset[str] | None = None
        for number in self._version_numbers():
            version = format_version(number)
            try:
                records.append(self.get(version))
            except RegistryCorrupt:
                if registered is None:
                    registered = self.state().registered
                if version in registered:
                    raise
        return records

    def find_by_job(self, job_id: str, *, ended_at: float | None = None) -> ModelVersion | None:
        """The version registered from `job_id`, if any (the newest, should there be several).

        With `ended_at` (when the job ended) only the versions created since are read, newest first:
        a job is registered after it ended, so an older version ends the search (`JOB_CLOCK_SKEW_S`
        earlier, for the platform's clock against this machine's). Unreadable records are passed over.
        """
        if ended_at is None:
            for record in reversed(self.list()):
                if record.lineage.job_id == job_id:
                    return record
            return None
        earliest = _utc(ended_at - JOB_CLOCK_SKEW_S)
        for number in reversed(self._version_numbers()):
            try:
                record = self.get(format_version(number))
            except RegistryCorrupt:
                continue  # an abandoned claim, or damage that `list` and `get` name
            if record.lineage.job_id == job_id:
                return record
            if record.created_at < earliest:
                return None
        return None

    def _log_keys(self) -> builtins.list[tuple[int, str]]:
        base = self.prefix + "log/"
        found: builtins.list[tuple[int, str]] = []
        for info in self._list(base):
            match = _LOG_FILE.match(info.key[len(base) :])
            if match:
                found.append((int(match.group(1)), info.key))
        return sorted(found)

    def _read_entries(self, keys: builtins.list[tuple[int, str]]) -> builtins.list[tuple[str, PromotionLogEntry]]:
        entries = []
        for _seq, key in keys:
            try:
                data = self._read_json(key)
            except ObjectNotFound:
                raise RegistryCorrupt(
                    f"{self._where(key)}: listed but gone (promotion log entries are never deleted)"
                ) from None
            try:
                entries.append((self._where(key), PromotionLogEntry.from_json(data, self._where(key))))
            except RecordFormatError as error:
                raise RegistryCorrupt(str(error)) from None
        return entries

    def _cached_state(self) -> RegistryState:
        key = join_key(self.prefix, CACHE_NAME)
        try:
            data = json.loads(self._get(key))
            promoted = data["promoted"]  # a cache written before it was kept lacks it: replay the whole log
            return RegistryState(
                seq=int(data["seq"]),
                positions={str(k): str(v) for k, v in data["aliases"].items() if k in ALIASES},
                registered=frozenset(str(item) for item in data["registered"]),
                overridden=frozenset(str(item) for item in data["overridden"]),
                promoted=str(promoted) if promoted is not None else None,
            )
        except (StoreError, ValueError, KeyError, TypeError, AttributeError):
            return RegistryState()  # no cache, or an unreadable one: replay the whole log

    def state(self) -> RegistryState:
        """Aliases and registrations as the promotion log has them now."""
        keys = self._log_keys()
        start = self._cached_state()
        if start.seq and start.seq not in {seq for seq, _key in keys}:
            start = RegistryState()  # the cache names an entry the log lacks: replay everything
        try:
            return replay(self._read_entries([item for item in keys if item[0] > start.seq]), start)
        except RegistryError as error:
            raise RegistryCorrupt(str(error)) from None

    def aliases(self) -> dict[str, str]:
        return dict(self.state().aliases)

    def champion(self) -> ModelVersion | None:
        version = self.state().aliases.get(CHAMPION)
        return self.get(version) if version else None

    def log(self) -> builtins.list[PromotionLogEntry]:
        """The whole promotion log, oldest first (checked: no gaps, every move starts where its alias was)."""
        entries = self._read_entries(self._log_keys())
        try:
            replay(entries)
        except RegistryError as error:
            raise RegistryCorrupt(str(error)) from None
        return [entry for _where, entry in entries]

    # --- writing ----------------------------------------------------------------------------------

    def _create(self, key: str, data: bytes) -> bool:
        """Conditionally create `key`; True also when the object holds exactly `data` (our own lost reply)."""
        md5 = _md5(data)
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                if self.store.put_if_absent(key, data, md5):
                    return True
                break
            except StoreError as error:
                if error.transient and error.code == "ETagMismatch":
                    # The store answered this very request with the digest of other bytes: it created the
                    # key with a damaged body. Nobody else can have created it, so removing it is safe, and
                    # it must go (even when giving up): a record or log entry that cannot be read would
                    # stop every reader.
                    self._patiently(lambda: self.store.delete(key))
                if not error.transient or attempt == STORE_ATTEMPTS:
                    raise
            time.sleep(random.uniform(0, min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (attempt - 1))))
        try:
            return self._get(key) == data
        except ObjectNotFound:
            return False  # deleted since: the next attempt finds the number free again

    @staticmethod
    def _pause(attempt: int) -> None:
        """A short random pause after losing a race, so racing writers spread out."""
        time.sleep(random.uniform(0, min(0.2, 0.005 * attempt)))

    def _append(self, plan: Callable[[RegistryState], PromotionLogEntry | None]) -> PromotionLogEntry | None:
        """Append the entry `plan` makes from the current state; replan after losing a race."""
        for attempt in range(MAX_ATTEMPTS):
            state = self.state()
            entry = plan(state)
            if entry is None:
                return None
            if self._create(self.log_key(entry.seq), _encode(entry.to_json())):
                self._write_cache(state.apply(entry))
                return entry
            self._pause(attempt)
        raise RegistryBusy(
            f"gave up appending to the promotion log under {self._where(self.prefix)} after "
            f"{MAX_ATTEMPTS} attempts: other writers kept appending first"
        )

    def _write_cache(self, state: RegistryState) -> None:
        payload = {
            "seq": state.seq,
            "aliases": dict(state.positions),
            "registered": sorted(state.registered),
            "overridden": sorted(state.overridden),
            "promoted": state.promoted,
        }
        data = _encode(payload)
        # Only a shortcut for readers: the entry is appended already, and a reader without the cache replays.
        with contextlib.suppress(StoreError):
            self._patiently(lambda: self.store.put_bytes(join_key(self.prefix, CACHE_NAME), data, _md5(data)))

    def _upload_package(self, package: PackageContents) -> tuple[PackageFile, ...]:
        stored = []
        for item in package.files:
            key = self.package_key(package.package_id, item.path)
            present = self._patiently(functools.partial(self.store.head, key))
            if present is None or present.md5 != item.md5 or present.size != item.size:
                info = self._patiently(functools.partial(self.store.put_file, key, item.source, item.md5))
                if info.size != item.size:
                    raise PackageError(f"{self._where(key)}: stored {info.size} bytes, expected {item.size}")
            stored.append(PackageFile(path=item.path, key=key, size=item.size, md5=item.md5))
        return tuple(stored)

    def register(
        self,
        package_dir: Path,
        *,
        job_id: str,
        manifest_id: str,
        source: str,
        gate: Mapping[str, Any],
        metrics: Mapping[str, Any],
        user: str,
        override_reason: str | None = None,
    ) -> ModelVersion:
        """Copy the package in, claim the next version, log it and move the aliases the rules say.

        Registering a job that already has a version completes that version's log entries (after a
        crash part-way) and returns it, instead of creating a second version.
        """
        action = registration_action(str(gate.get("verdict", "")), override_reason)
        reason = (override_reason or "").strip() if action == "override" else f"passed the gate (job {job_id})"
        package = inspect_package(package_dir)
        record = self.find_by_job(job_id)
        if record is not None and record.lineage.package_id != package.package_id:
            raise RegistryError(
                f"job {job_id} is already registered as {record.version} with a different package "
                f"({record.lineage.package_id[:12]} ≠ {package.package_id[:12]})"
            )
        if record is None:
            record = self._create_version(
                package,
                job_id=job_id,
                manifest_id=manifest_id,
                source=source,
                gate=gate,
                metrics=metrics,
                user=user,
                override_reason=override_reason if action == "override" else None,
            )
        action = "override" if record.override_reason is not None else "register"
        writer = secrets.token_hex(8)
        version = record.version
        while self._append(
            lambda state: plan_registration(
                state, version, action, user=user, time=_utc(self._clock()), reason=reason, writer=writer
            )
        ):
            pass
        return record

    def _create_version(
        self,
        package: PackageContents,
        *,
        job_id: str,
        manifest_id: str,
        source: str,
        gate: Mapping[str, Any],
        metrics: Mapping[str, Any],
        user: str,
        override_reason: str | None,
    ) -> ModelVersion:
        files = self._upload_package(package)
        lineage = Lineage(
            manifest_id=manifest_id,
            job_id=job_id,
            backend=self.backend,
            trainer_code_sha256=str(package.config.get("trainer_code_sha256") or package.trainer_code_sha256),
            package_id=package.package_id,
            source=source,
            trainer_version=str(package.config.get("trainer_version") or ""),
        )
        writer = secrets.token_hex(8)
        floor = 0
        for attempt in range(MAX_ATTEMPTS):
            number = max([floor, *self._version_numbers()]) + 1
            record = ModelVersion(
                version=format_version(number),
                created_at=_utc(self._clock()),
                created_by=user,
                lineage=lineage,
                gate=json_safe(dict(gate)),
                metrics=json_safe(dict(metrics)),
                package=files,
                config=json_safe(dict(package.config)),
                override_reason=override_reason,
                writer=writer,
            )
            if self._create(self.version_key(record.version), _encode(record.to_json())):
                return record
            floor = number  # taken: never try it again, even if a listing lags behind
            self._pause(attempt)
        raise RegistryBusy(
            f"gave up claiming a version number under {self._where(self.prefix)} after {MAX_ATTEMPTS} attempts"
        )

    def set_alias(self, alias: str, version: str, reason: str, user: str) -> PromotionLogEntry:
        """Move `alias` to `version` (validated), logged with the user and the reason."""
        self.get(version)  # the record must exist and be readable, not only be named in the log
        writer = secrets.token_hex(8)
        entry = self._append(
            lambda state: plan_alias_move(
                state, alias, version, reason=reason, user=user, time=_utc(self._clock()), writer=writer
            )
        )
        assert entry is not None
        return entry

    def record_canary(
        self, version: str, baseline: str | None, reason: str, user: str, writer: str
    ) -> PromotionLogEntry:
        """Log a canary transition once: an entry already written by `writer` (a retry) is returned as is."""
        for entry in reversed(self.log()):
            if entry.writer == writer:
                return entry
        appended = self._append(
            lambda state: plan_canary_entry(
                state, version, baseline, reason=reason, user=user, time=_utc(self._clock()), writer=writer
            )
        )
        assert appended is not None
        return appended

    # --- imports into serving platforms ----------------------------------------------------------

    def imported(self, version: str, platform: str) -> ImportRecord | None:
        """The recorded import of `version` into `platform`, None when there is none yet."""
        key = self.import_key(version, platform)
        try:
            data = self._read_json(key)
        except ObjectNotFound:
            return None
        try:
            return ImportRecord.from_json(data, self._where(key))
        except RecordFormatError as error:
            raise RegistryCorrupt(str(error)) from None

    def record_import(self, record: ImportRecord) -> ImportRecord:
        """Record (or replace) which model of `record.platform` holds `record.version`."""
        self.get(record.version)  # only registered versions are imported
        key = self.import_key(record.version, record.platform)
        data = _encode(record.to_json())
        self._patiently(lambda: self.store.put_bytes(key, data, _md5(data)))
        return record

    def put_import_file(self, key: str, data: bytes) -> None:
        """Write one file of an import layout (under `import_folder`), unless it already holds `data`."""
        md5 = _md5(data)
        present = self._patiently(functools.partial(self.store.head, key))
        if present is None or present.md5 != md5 or present.size != len(data):
            self._patiently(lambda: self.store.put_bytes(key, data, md5))

    def copy_package_file(self, item: PackageFile, key: str) -> None:
        """Copy a registered package file to `key` (an import layout), checked against the record's MD5."""
        present = self._patiently(functools.partial(self.store.head, key))
        if present is not None and present.md5 == item.md5 and present.size == item.size:
            return
        data = self._get(item.key)
        if _md5(data) != item.md5 or len(data) != item.size:
            raise RegistryCorrupt(
                f"{self._where(item.key)}: MD5 {_md5(data)} / {len(data)} bytes, but the record says "
                f"{item.md5} / {item.size}; the stored package is damaged"
            )
        self._patiently(lambda: self.store.put_bytes(key, data, item.md5))

    # --- reading packages back --------------------------------------------------------------------

    def fetch_package(self, version: str, destination: Path) -> Path:
        """Download a version's package into `destination`, every file checked against its MD5.

        A file whose bytes differ from the record is removed before the error is raised, so nothing
        can load it by mistake."""
        record = self.get(version)
        destination = Path(destination)
        for item in record.package:
            try:
                check_relative_path(item.path)
            except UnsafeKeyError as error:
                raise RegistryCorrupt(f"{self._where(self.version_key(version))}: package path {error}") from None
            target = destination / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            self._patiently(functools.partial(self.store.download_file, item.key, target))
            size, md5, _sha = _digests(target)
            if md5 != item.md5 or size != item.size:
                target.unlink(missing_ok=True)
                raise RegistryCorrupt(
                    f"{self._where(item.key)}: MD5 {md5} / {size} bytes, but {version} records "
                    f"{item.md5} / {item.size}; the stored package is damaged"
                )
        return destination


def iter_versions_json(registry: ModelRegistry) -> Iterator[dict[str, Any]]:
    """Each version as the CLI's JSON shape, aliases included."""
    state = registry.state()
    for record in registry.list():
        yield version_json(record, state)


def version_json(record: ModelVersion, state: RegistryState) -> dict[str, Any]:
    """`version`, `aliases`, `metrics`, `lineage`, `gate` and the rest of the record, for `--json`."""
    return {
        "version": record.version,
        "aliases": state.alias_of(record.version),
        "metrics": dict(record.metrics),
        "lineage": record.lineage.to_json(),
        "gate": dict(record.gate),
        "created_at": record.created_at,
        "created_by": record.created_by,
        "override_reason": record.override_reason,
        "package": [item.to_json() for item in record.package],
        "config": dict(record.config),
    }


def open_registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry.from_settings(settings)


__all__ = [
    "ModelRegistry",
    "PackageContents",
    "PackageError",
    "RegistryBusy",
    "RegistryCorrupt",
    "VersionNotFound",
    "check_safetensors",
    "inspect_package",
    "iter_versions_json",
    "json_safe",
    "open_registry",
    "version_json",
]
