"""The `ObjectStore` port on Huawei OBS, through the official esdk-obs-python `ObsClient`.

One `ObsClient` is shared by every thread (the SDK keeps per-thread signing state and a thread-safe
pool of kept-alive connections, `long_conn_mode=True`, about 3.7× faster than its default of a new
connection per request). The SDK reports HTTP errors as return values and transport errors as
exceptions; both become the port's `TransientStoreError` / `PermanentStoreError` / `ObjectNotFound`
with a message naming the bucket, key, status, error code and request id. SDK retries are kept low
on purpose: the upload engine owns the retry policy (backoff, jitter, counting retries in events).

Integrity: every put sends `Content-MD5` (the server refuses a body that does not match) and the
returned ETag is compared with the expected MD5; a multipart upload's ETag is compared with the
MD5-of-part-MD5s computed locally. A server-side copy (`copy`) is checked before it is sent (the
source's MD5, by a head) and held to the checked source by `x-obs-copy-source-if-match`. Every read
is checked against the content MD5 (the ETag, or the `arsl-md5` metadata of a multipart object), so a
body cut short or damaged on the way is an error, never data; a transfer cut off mid-body is transient
(worth a retry). 429 is transient too; its `Retry-After` cannot be honoured here, because the SDK
keeps only content-* and x-amz-/x-obs- headers of an answer, so the caller's backoff paces the retries.
Big files go through `uploadFile` with a checkpoint file under the state folder, so an upload killed
half-way resumes with the parts not yet confirmed.

Conditional create (`put_if_absent`, what the model registry claims version numbers with): the PUT
carries both `x-obs-forbid-overwrite: true` (OBS's own header; the server answers 409
ObjectAlreadyExists) and `If-None-Match: *` (the S3 form; 412 PreconditionFailed). OBS's public API
reference does not list either header for PUT, so nothing here trusts that a given endpoint honours
them: the first conditional create of each store object writes a unique probe key twice and
requires the second write to be refused. An endpoint that overwrites anyway (no such feature, or a
bucket with versioning, where forbid-overwrite headers are documented elsewhere as ignored) gets a
PermanentStoreError `ConditionalCreateUnsupported` instead of a silently unsafe create.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import ipaddress
import os
import re
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlparse

from obs import CopyObjectHeader, ObsClient, PutObjectHeader

from arsl_tui.domain.ports import (
    ObjectInfo,
    ObjectNotFound,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
)
from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing, load_credentials
from arsl_tui.providers.huawei.errors import CloudFailure, failure_from_exception, failure_from_obs_result

if TYPE_CHECKING:
    from arsl_tui.config import Settings

MIB = 1024 * 1024
LIST_PAGE_SIZE = 1000
DEFAULT_SDK_RETRIES = 1
"""One quiet SDK retry absorbs a kept-alive connection the server closed while it sat in the pool."""
MD5_METADATA = "arsl-md5"
"""User metadata holding the content MD5 of multipart objects, whose ETag is not an MD5."""
CREATE_ONLY_HEADERS = {"x-obs-forbid-overwrite": "true", "If-None-Match": "*"}
"""Sent with every conditional create: OBS's header and the S3 one (whichever the server knows)."""
PROBE_NAME = ".arsl-probe-"
"""The conditional-create probe writes (and then deletes) `<folder of the first key>/.arsl-probe-<random>`,
beside the keys it vouches for, so it needs no permission those keys do not need."""
_CONDITIONAL_CONFLICT = "ConditionalRequestConflict"
"""S3's 409 for two conditional writes in flight at once: the key may still be free; retry."""

# The SDK caps a multipart upload at 10,000 parts and clamps the part size to [100 KiB, 5 GiB];
# the expected ETag must be computed with the part size the SDK will really use.
_SDK_MAX_PARTS = 10_000
_SDK_MIN_PART = 100 * 1024
_SDK_MAX_PART = 5 * 1024 * MIB

_CUT_TRANSFER = ("premature end of Content-Length", "IncompleteRead")
"""What the SDK (or http.client) says when a body stops before its Content-Length: a transfer cut short."""

MAX_COPY_SIZE = 5 * 1024 * MIB
"""The largest object one Copy Object request may create (obs_04_0082: "up to 5 GB"; bigger ones copy in parts)."""

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
_COMPOSITE_ETAG = re.compile(r"^[0-9a-f]{32}-\d+$")
_HEAD_BUCKET_STATUS = re.compile(r"head bucket .* Status:(\d{3})")
# Error codes after which a fresh multipart attempt can succeed (the SDK has dropped its checkpoint).
_RESTARTABLE_MULTIPART_CODES = frozenset({"NoSuchUpload", "InvalidPart", "InvalidPartOrder"})
_PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "NoSuchBucket",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidBucketName",
        "AccountProblem",
        "InvalidToken",
        "ExpiredToken",
        "InvalidSecurity",
        "EntityTooLarge",
        "EntityTooSmall",
        "KeyTooLongError",
        "InvalidArgument",
        "QuotaExceeded",
    }
)

ProgressCallback = Callable[[str, int, int], None]
"""(key, bytes sent so far, bytes in total) while a multipart upload runs."""


def _strip_etag(etag: Any) -> str | None:
    if etag is None:
        return None
    text = str(etag).strip().strip('"').lower()
    return text or None


def _md5_of(etag: str | None) -> str | None:
    """The content MD5 an ETag stands for: only a single-part ETag is one."""
    return etag if etag is not None and _PLAIN_MD5.match(etag) else None


def _b64_md5(md5_hex: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(md5_hex)).decode("ascii")
    except ValueError:
        raise PermanentStoreError(f"{md5_hex!r} is not a hex MD5 digest") from None


def sdk_part_size(size: int, part_size: int) -> int:
    """The part size `ObsClient.uploadFile` uses for a file of `size` bytes when asked for `part_size`."""
    part = min(max(part_size, _SDK_MIN_PART), _SDK_MAX_PART)
    if size // part >= _SDK_MAX_PARTS:
        part = -(-size // _SDK_MAX_PARTS)
    return part


def file_digests(path: Path, part_size: int) -> tuple[str, str]:
    """(MD5 of the whole file, the S3/OBS multipart ETag for these parts), in one read."""
    whole = hashlib.md5(usedforsecurity=False)
    part_digests = []
    with path.open("rb") as handle:
        while True:
            part = hashlib.md5(usedforsecurity=False)
            remaining = part_size
            while remaining:
                chunk = handle.read(min(remaining, MIB))
                if not chunk:
                    break
                part.update(chunk)
                whole.update(chunk)
                remaining -= len(chunk)
            if remaining == part_size:
                break
            part_digests.append(part.digest())
            if remaining:
                break
    composite = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()
    return whole.hexdigest(), f"{composite}-{max(len(part_digests), 1)}"


def _header_value(result: Any, name: str) -> str | None:
    for header_name, value in getattr(result, "header", None) or ():
        if str(header_name).lower() == name:
            return str(value)
    return None


def _verified_tls_context() -> ssl.SSLContext:
    """Certificate and host-name checks for https endpoints (the SDK's own context checks neither)."""
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


def _uses_path_style(host: str) -> bool:
    """Virtual-host style needs DNS for `<bucket>.<host>`; an IP address or localhost cannot give it."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ObsObjectStore:
    """A bucket on OBS (or any S3-protocol server speaking what OBS speaks) as an `ObjectStore`."""

    def __init__(
        self,
        *,
        server: str,
        bucket: str,
        credentials: Credentials,
        checkpoint_dir: Path,
        region: str = "",
        timeout_s: float = 30.0,
        max_retry_count: int = DEFAULT_SDK_RETRIES,
        multipart_threshold: int = 32 * MIB,
        part_size: int = 16 * MIB,
        multipart_tasks: int = 4,
        multipart_progress: ProgressCallback | None = None,
        signature: str | None = None,
    ) -> None:
        parsed = urlparse(server if "://" in server else f"https://{server}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PermanentStoreError(f"OBS endpoint {server!r} is not an http(s) URL")
        if not bucket:
            raise PermanentStoreError("no OBS bucket configured (storage.bucket is empty)")
        self._server = f"{parsed.scheme}://{parsed.netloc}"
        self._bucket = bucket
        self._secrets = credentials.secrets()
        self._checkpoint_dir = checkpoint_dir
        self._multipart_threshold = max(multipart_threshold, 1)
        self._part_size = part_size
        self._multipart_tasks = max(multipart_tasks, 1)
        self._multipart_progress = multipart_progress
        path_style = _uses_path_style(parsed.hostname)
        # Real OBS endpoints get OBS's own signature. Path-style endpoints (IPs, localhost: private or
        # test servers speaking S3) get AWS v4, which every S3-protocol server parses; the SDK would
        # otherwise fall back to v2, whose signature text moto sometimes misreads as a v4 scope.
        signature = signature or ("v4" if path_style else "obs")
        # Credentials are always explicit, and no security-provider policy is set: the SDK then never
        # consults its provider chain, whose ECS provider would call the metadata service.
        self._client = ObsClient(
            access_key_id=credentials.access_key,
            secret_access_key=credentials.secret_key,
            security_token=credentials.security_token or None,
            server=self._server,
            signature=signature,
            path_style=path_style,
            is_signature_negotiation=False,
            region=region or "region",
            long_conn_mode=True,
            timeout=timeout_s,
            max_retry_count=max_retry_count,
            security_provider_policy=None,
        )
        if self._client.is_secure:
            self._client.context = _verified_tls_context()
        self._conditional_lock = threading.Lock()
        self._conditional_verified = False

    @classmethod
    def from_settings(
        cls, settings: Settings, *, credentials: Credentials | None = None, max_retry_count: int = DEFAULT_SDK_RETRIES
    ) -> ObsObjectStore:
        """The configured bucket; credentials from the SDK environment or credentials file."""
        if credentials is None:
            try:
                credentials = load_credentials()
            except CredentialsMissing as missing:
                raise PermanentStoreError(f"cannot open obs://{settings.storage.bucket}: {missing}") from None
        upload = settings.upload
        return cls(
            server=settings.huawei.endpoint("obs"),
            bucket=settings.storage.bucket,
            credentials=credentials,
            checkpoint_dir=settings.home_dir / "obs-checkpoints",
            region=settings.huawei.region,
            timeout_s=settings.huawei.timeout_s,
            max_retry_count=max_retry_count,
            multipart_threshold=upload.multipart_threshold_mb * MIB,
            part_size=upload.part_size_mb * MIB,
        )

    @property
    def location(self) -> str:
        return f"obs://{self._bucket}"

    @property
    def bucket(self) -> str:
        return self._bucket

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._client.close()

    # --- error mapping -------------------------------------------------------------------------

    def _target(self, key: str | None) -> str:
        where = f"bucket {self._bucket!r}"
        if key is not None:
            where += f", key {key!r}"
        return f"{where} at {self._server}"

    @staticmethod
    def _store_error(failure: CloudFailure, *, not_found: bool = False) -> StoreError:
        kind: type[StoreError]
        if not_found:
            kind = ObjectNotFound
        elif failure.transient:
            kind = TransientStoreError
        else:
            kind = PermanentStoreError
        return kind(failure.message, status=failure.status, code=failure.code, request_id=failure.request_id)

    def _raise_result(
        self, result: Any, operation: str, key: str | None, *, missing_key_is_not_found: bool = False
    ) -> NoReturn:
        failure = failure_from_obs_result(result, operation=operation, target=self._target(key), secrets=self._secrets)
        not_found = missing_key_is_not_found and failure.status == 404 and failure.code in (None, "NoSuchKey")
        raise self._store_error(failure, not_found=not_found)

    def _call(self, operation: str, key: str | None, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one SDK call; exceptions (refused, reset, timed out, a body cut short) become the port's errors."""
        try:
            return method(*args, **kwargs)
        except StoreError:
            raise
        except Exception as error:
            failure = failure_from_exception(
                error, service="OBS", operation=operation, target=self._target(key), secrets=self._secrets
            )
            if not failure.transient and any(mark in f"{type(error).__name__}: {error}" for mark in _CUT_TRANSFER):
                failure = dataclasses.replace(failure, transient=True, code=failure.code or "IncompleteBody")
            raise self._store_error(failure) from None

    def _content_md5(self, result: Any) -> str | None:
        """The MD5 an answer's body must have: a single-part ETag, else the MD5 this adapter recorded."""
        recorded = _header_value(result, MD5_METADATA)
        return _md5_of(_strip_etag(getattr(result.body, "etag", None))) or (
            recorded.lower() if recorded and _PLAIN_MD5.match(recorded.lower()) else None
        )

    def _check_etag(self, key: str, operation: str, etag: str | None, expected: tuple[str, ...], result: Any) -> None:
        """Refuse an ETag that is a digest of other content; an opaque one (e.g. encrypted) says nothing."""
        if etag is None or etag in expected:
            return
        if _md5_of(etag) is not None or _COMPOSITE_ETAG.match(etag):
            raise TransientStoreError(
                f"OBS {operation} of {self._target(key)}: the server stored ETag {etag}, expected "
                f"{' or '.join(expected)}; the content was damaged in transit",
                status=getattr(result, "status", None),
                code="ETagMismatch",
                request_id=getattr(result, "requestId", None),
            )

    # --- the port --------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, md5_hex: str) -> ObjectInfo:
        md5_hex = md5_hex.lower()
        header = PutObjectHeader(md5=_b64_md5(md5_hex))
        result = self._call("put", key, self._client.putContent, self._bucket, key, content=data, headers=header)
        if result.status >= 300:
            self._raise_result(result, "put", key)
        etag = _strip_etag(getattr(result.body, "etag", None))
        self._check_etag(key, "put", etag, (md5_hex,), result)
        return ObjectInfo(key=key, size=len(data), md5=md5_hex, etag=etag)

    def put_file(self, key: str, path: Path, md5_hex: str) -> ObjectInfo:
        md5_hex = md5_hex.lower()
        try:
            size = path.stat().st_size
        except OSError as error:
            raise PermanentStoreError(f"cannot upload {path} to {self._target(key)}: {error.strerror}") from None
        if size > self._multipart_threshold:
            return self._put_multipart(key, path, size, md5_hex)
        header = PutObjectHeader(md5=_b64_md5(md5_hex))
        result = self._call("put", key, self._client.putFile, self._bucket, key, str(path), headers=header)
        if result.status >= 300:
            self._raise_result(result, "put", key)
        etag = _strip_etag(getattr(result.body, "etag", None))
        self._check_etag(key, "put", etag, (md5_hex,), result)
        return ObjectInfo(key=key, size=size, md5=md5_hex, etag=etag)

    def put_if_absent(self, key: str, data: bytes, md5_hex: str) -> bool:
        """Create `key` unless it exists (the server decides, atomically); see the module docstring."""
        self.verify_conditional_create(key)
        return self._create_only(key, data, md5_hex.lower())

    def _create_only(self, key: str, data: bytes, md5_hex: str) -> bool:
        header = PutObjectHeader(md5=_b64_md5(md5_hex))
        result = self._call(
            "conditional put",
            key,
            self._client.putContent,
            self._bucket,
            key,
            content=data,
            headers=header,
            extensionHeaders=dict(CREATE_ONLY_HEADERS),
        )
        if result.status == 412:
            return False
        if result.status == 409:
            if result.errorCode == _CONDITIONAL_CONFLICT:
                raise TransientStoreError(
                    f"OBS conditional put of {self._target(key)}: another conditional "
                    "write of this key was in flight; try again",
                    status=409,
                    code=_CONDITIONAL_CONFLICT,
                    request_id=getattr(result, "requestId", None),
                )
            if self.head(key) is not None:
                return False
        if result.status >= 300:
            self._raise_result(result, "conditional put", key)
        etag = _strip_etag(getattr(result.body, "etag", None))
        self._check_etag(key, "conditional put", etag, (md5_hex,), result)
        return True

    def verify_conditional_create(self, near: str) -> None:
        """Once per store object: a second create of a fresh key must be refused, or nothing is safe."""
        with self._conditional_lock:
            if self._conditional_verified:
                return
            folder = near.rpartition("/")[0]
            key = f"{folder}/{PROBE_NAME}{uuid.uuid4().hex}" if folder else f"{PROBE_NAME}{uuid.uuid4().hex}"
            body = b"arsl conditional-create probe\n"
            digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
            try:
                created = self._create_only(key, body, digest)
                overwritten = created and self._create_only(key, body, digest)
            finally:
                # A leftover probe object is harmless; the verdict below stands either way.
                with contextlib.suppress(StoreError):
                    self.delete(key)
            if not created:
                raise PermanentStoreError(
                    f"OBS conditional create check on {self._target(key)}: a fresh random key "
                    "was reported as existing; the endpoint's answers cannot be trusted",
                    code="ConditionalCreateUnsupported",
                )
            if overwritten:
                raise PermanentStoreError(
                    f"{self._target(None)} does not honour conditional creates (x-obs-forbid-overwrite / "
                    "If-None-Match: * on PUT): a second create of the same key overwrote the first. Writers could "
                    "then claim the same model version; use a bucket without versioning on an endpoint that "
                    "supports it",
                    code="ConditionalCreateUnsupported",
                )
            self._conditional_verified = True

    def copy(self, source_key: str, key: str, md5_hex: str) -> ObjectInfo:
        """Copy Object (OBS API reference obs_04_0082): `PUT /<key>` with `x-obs-copy-source: /<bucket>/<source>`
        (`x-amz-copy-source` under the v4 signature), no body; the bytes never leave the server.

        A head of the source first: a missing source is refused, other content than `md5_hex` leaves `key`
        untouched, and a source past the single-copy limit (5 GB) is refused before any request writes.
        The copy then carries `x-obs-copy-source-if-match: <the source's ETag>`, so a source replaced in
        between is refused (412) instead of copied. A 200 means only that the server started the copy: it
        succeeded when the body holds an ETag. That ETag is the content MD5 for a copy of a single-part
        object; anything else (a multipart source) is confirmed by a head of the copy, whose `arsl-md5`
        metadata came along (the default metadata directive is COPY).
        """
        md5_hex = md5_hex.lower()
        _b64_md5(md5_hex)
        source = self.head(source_key)
        if source is None:
            raise self._missing_source(source_key, key, None)
        if source.md5 != md5_hex:
            raise TransientStoreError(
                f"OBS copy of {self._target(source_key)} to {key!r}: the source holds content with MD5 "
                f"{source.md5 or 'unknown'}, not {md5_hex}; {key!r} is left as it was",
                code="NotConfirmed",
            )
        if source_key == key:
            return source
        if source.size > MAX_COPY_SIZE:
            raise PermanentStoreError(
                f"OBS copy of {self._target(source_key)} to {key!r}: the object has {source.size} bytes, past "
                f"the {MAX_COPY_SIZE} bytes one copy may create",
                code="EntityTooLarge",
            )
        # The bare ETag: the SDK percent-encodes header values, quotes included.
        header = CopyObjectHeader(if_match=source.etag) if source.etag else None
        result = self._call(
            "copy", key, self._client.copyObject, self._bucket, source_key, self._bucket, key, headers=header
        )
        if result.status == 412:
            raise TransientStoreError(
                f"OBS copy of {self._target(source_key)} to {key!r}: the source changed since it was checked "
                f"(its ETag is no longer {source.etag}); {key!r} is left as it was",
                status=412,
                code="NotConfirmed",
                request_id=getattr(result, "requestId", None),
            )
        if result.status >= 300:
            failure = failure_from_obs_result(result, operation="copy", target=self._target(key), secrets=self._secrets)
            if failure.status == 404 and failure.code in (None, "NoSuchKey"):
                raise self._missing_source(source_key, key, result)
            raise self._store_error(failure)
        etag = _strip_etag(getattr(result.body, "etag", None))
        if etag is None:
            raise TransientStoreError(
                f"OBS copy of {self._target(source_key)} to {key!r}: the answer has no ETag, so the copy did not "
                "complete (obs_04_0082: only an ETag in the body means success)",
                status=getattr(result, "status", None),
                code="NotConfirmed",
                request_id=getattr(result, "requestId", None),
            )
        if etag == md5_hex:
            return ObjectInfo(key=key, size=source.size, md5=md5_hex, etag=etag)
        if _md5_of(etag) is not None:
            raise TransientStoreError(
                f"OBS copy of {self._target(source_key)} to {key!r}: the server answered ETag {etag}, the MD5 of "
                f"other content than {md5_hex}",
                status=getattr(result, "status", None),
                code="ETagMismatch",
                request_id=getattr(result, "requestId", None),
            )
        copied = self.head(key)
        if copied is None or copied.md5 != md5_hex or copied.size != source.size:
            found = "no object" if copied is None else f"MD5 {copied.md5 or 'unknown'}, {copied.size} bytes"
            raise TransientStoreError(
                f"OBS copy of {self._target(source_key)} to {key!r}: the copy could not be confirmed (ETag "
                f"{etag}; the key now shows {found}, expected MD5 {md5_hex}, {source.size} bytes)",
                code="NotConfirmed",
                request_id=getattr(result, "requestId", None),
            )
        return ObjectInfo(key=key, size=copied.size, md5=md5_hex, etag=copied.etag)

    def _missing_source(self, source_key: str, key: str, result: Any) -> PermanentStoreError:
        return PermanentStoreError(
            f"OBS copy to {key!r}: no object {source_key!r} to copy ({self._target(source_key)})",
            status=404,
            code="NoSuchKey",
            request_id=getattr(result, "requestId", None),
        )

    def checkpoint_path(self, key: str) -> Path:
        """Where the multipart checkpoint of `key` lives (stable across processes)."""
        digest = hashlib.sha256(f"{self._server}\n{self._bucket}\n{key}".encode()).hexdigest()[:40]
        return self._checkpoint_dir / f"{digest}.json"

    def _put_multipart(self, key: str, path: Path, size: int, md5_hex: str) -> ObjectInfo:
        part_size = sdk_part_size(size, self._part_size)
        local_md5, expected_etag = file_digests(path, part_size)
        if local_md5 != md5_hex:
            raise PermanentStoreError(
                f"{path} has MD5 {local_md5} but {md5_hex} was expected for "
                f"{self._target(key)}; the file changed since it was recorded"
            )
        self._checkpoint_dir.mkdir(parents=True, exist_ok=True)
        progress: Callable[[int, int, float], None] | None = None
        if self._multipart_progress is not None:
            report = self._multipart_progress

            def report_progress(transferred: int, total: int, _seconds: float) -> None:
                report(key, int(transferred), int(total))

            progress = report_progress

        try:
            result = self._client.uploadFile(
                self._bucket,
                key,
                str(path.resolve()),
                partSize=part_size,
                taskNum=self._multipart_tasks,
                enableCheckpoint=True,
                checkpointFile=str(self.checkpoint_path(key)),
                metadata={MD5_METADATA: md5_hex},
                progressCallback=progress,
            )
        except StoreError:
            raise
        except Exception as error:
            raise self._multipart_error(key, error) from None
        if result.status >= 300:
            failure = failure_from_obs_result(
                result, operation="multipart complete", target=self._target(key), secrets=self._secrets
            )
            if failure.code == "NoSuchUpload":
                # An earlier attempt's complete may have succeeded with its answer lost on the way.
                existing = self.head(key)
                if existing is not None and existing.etag == expected_etag and existing.size == size:
                    return ObjectInfo(key=key, size=size, md5=md5_hex, etag=existing.etag)
            if failure.code in _RESTARTABLE_MULTIPART_CODES:
                failure = dataclasses.replace(failure, transient=True)
            raise self._store_error(failure)
        etag = _strip_etag(getattr(result.body, "etag", None))
        self._check_etag(key, "multipart upload", etag, (expected_etag, md5_hex), result)
        return ObjectInfo(key=key, size=size, md5=md5_hex, etag=etag)

    def _multipart_error(self, key: str, error: Exception) -> StoreError:
        """Errors of `uploadFile`, which raises bare `Exception`s with the status or code in the text."""
        failure = failure_from_exception(
            error, service="OBS", operation="multipart upload", target=self._target(key), secrets=self._secrets
        )
        bucket_status = _HEAD_BUCKET_STATUS.search(str(error))
        if bucket_status:
            status = int(bucket_status.group(1))
            code = {403: "AccessDenied", 404: "NoSuchBucket"}.get(status, failure.code)
            if status == 404:
                detail = "the bucket does not exist"
            elif status == 403:
                # A HEAD answer has no body, so OBS's error code (AccessDenied, SignatureDoesNotMatch,
                # RequestTimeTooSkewed, ...) is lost; name every cause a 403 can have.
                detail = "access to the bucket is denied: check the secret key, the clock and the bucket's permissions"
            else:
                detail = failure.detail
            failure = CloudFailure(
                service="OBS",
                operation="multipart upload",
                target=self._target(key),
                status=status,
                code=code,
                detail=detail,
                transient=failure.transient,
            )
        elif type(error) is Exception:
            # A part failed on the way (reset, timeout, 5xx) and the checkpoint is kept, or a 4xx made the
            # SDK abort the upload and drop the checkpoint; only the codes that no retry can fix stop the run.
            permanent = failure.code in _PERMANENT_CODES or failure.status in (401, 403)
            failure = dataclasses.replace(failure, transient=not permanent)
            if str(error).startswith("some parts are failed"):
                failure = dataclasses.replace(
                    failure, detail="some parts did not reach the server; the next attempt resumes from the checkpoint"
                )
        return self._store_error(failure)

    def get_bytes(self, key: str) -> bytes:
        result = self._call("get", key, self._client.getObject, self._bucket, key, loadStreamInMemory=True)
        if result.status >= 300:
            self._raise_result(result, "get", key, missing_key_is_not_found=True)
        data = getattr(result.body, "buffer", None) or b""
        expected = self._content_md5(result)
        received = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if expected is not None and received != expected:
            raise TransientStoreError(
                f"OBS get of {self._target(key)}: received {len(data)} bytes with MD5 "
                f"{received}, but the object's MD5 is {expected}; damaged or cut short in "
                "transit",
                code="ETagMismatch",
                request_id=getattr(result, "requestId", None),
            )
        return bytes(data)

    def download_file(self, key: str, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.part")
        try:
            result = self._call("download", key, self._client.getObject, self._bucket, key, downloadPath=str(partial))
            if result.status >= 300:
                self._raise_result(result, "download", key, missing_key_is_not_found=True)
            expected = self._content_md5(result)
            if expected is not None:
                digest = hashlib.md5(usedforsecurity=False)
                size = 0
                with partial.open("rb") as handle:
                    while chunk := handle.read(MIB):
                        digest.update(chunk)
                        size += len(chunk)
                if digest.hexdigest() != expected:
                    raise TransientStoreError(
                        f"OBS download of {self._target(key)}: received {size} bytes with MD5 "
                        f"{digest.hexdigest()}, but the object's MD5 is {expected}; damaged or "
                        "cut short in transit",
                        code="ETagMismatch",
                        request_id=getattr(result, "requestId", None),
                    )
            os.replace(partial, destination)
        finally:
            partial.unlink(missing_ok=True)

    def head(self, key: str) -> ObjectInfo | None:
        result = self._call("head", key, self._client.getObjectMetadata, self._bucket, key)
        if result.status == 404:
            return None
        if result.status >= 300:
            self._raise_result(result, "head", key)
        etag = _strip_etag(getattr(result.body, "etag", None))
        md5 = _md5_of(etag) or _header_value(result, MD5_METADATA)
        size = getattr(result.body, "contentLength", None)
        if size is None:
            size = int(_header_value(result, "content-length") or 0)
        return ObjectInfo(key=key, size=int(size), md5=md5, etag=etag)

    def list(self, prefix: str, after: str = "") -> Iterator[ObjectInfo]:
        marker: str | None = after or None
        while True:
            result = self._call(
                "list",
                prefix or None,
                self._client.listObjects,
                self._bucket,
                prefix=prefix or None,
                marker=marker,
                max_keys=LIST_PAGE_SIZE,
            )
            if result.status >= 300:
                self._raise_result(result, "list", None)
            contents = getattr(result.body, "contents", None) or []
            for content in contents:
                etag = _strip_etag(content.etag)
                md5 = _md5_of(etag)
                if md5 is None and etag is not None and _COMPOSITE_ETAG.match(etag):
                    # A multipart object: its MD5 is in the metadata this adapter recorded. Such
                    # objects are big (past the multipart threshold), so one head each is cheap.
                    recorded = self.head(content.key)
                    md5 = recorded.md5 if recorded is not None and recorded.etag == etag else None
                yield ObjectInfo(key=content.key, size=int(content.size or 0), md5=md5, etag=etag)
            if not getattr(result.body, "is_truncated", False) or not contents:
                return
            # The last key is the portable marker: without a delimiter S3 sends no NextMarker, and
            # some servers send an opaque one.
            marker = contents[-1].key

    def delete(self, key: str) -> None:
        result = self._call("delete", key, self._client.deleteObject, self._bucket, key)
        if result.status >= 300 and not (result.status == 404 and result.errorCode in (None, "NoSuchKey")):
            self._raise_result(result, "delete", key)


__all__ = ["ObsObjectStore", "file_digests", "sdk_part_size"]
