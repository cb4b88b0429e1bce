"""Huawei SDK failures → one plain record with a clear message and a retry verdict.

The OBS SDK reports HTTP errors as return values (`GetResult` with `status`, `errorCode`,
`errorMessage`, `requestId`) and transport errors as builtin exceptions (`ConnectionRefusedError`,
`TimeoutError`, `http.client` errors) or bare `Exception`s from its transfer helpers. The
huaweicloudsdk clients (ModelArts, CES, APIG) raise the `SdkException` family, and raw
`requests.exceptions.RequestException`s leak out of PUT/POST timeouts. Every adapter turns all of
them into a `CloudFailure` here, so messages look alike everywhere: what was done, to what, the HTTP
status, the service's error code, its message and the request id — never a credential.
"""

from __future__ import annotations

import http.client
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

# Status codes that say "try again later" whatever the service.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# 4xx error codes that are about the request's timing or transit, not about what it asks for.
TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "BadDigest",
        "IncompleteBody",
        "OperationAborted",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "RequestLimitExceeded",
        "APIGW.0308",
    }
)
_REDACTED = "<redacted>"


@dataclass(frozen=True)
class CloudFailure:
    """One failed cloud call, described for humans and classified for retry logic."""

    service: str
    operation: str
    target: str
    """What the call was about, e.g. "bucket 'arsl-ml', key 'datasets/x'" (never a credential)."""
    status: int | None = None
    code: str | None = None
    detail: str = ""
    request_id: str | None = None
    transient: bool = False

    @property
    def message(self) -> str:
        parts = [f"{self.service} {self.operation} failed for {self.target}"]
        facts = []
        if self.status is not None:
            facts.append(f"HTTP {self.status}")
        if self.code:
            facts.append(f"error code {self.code}")
        if self.request_id:
            facts.append(f"request id {self.request_id}")
        if facts:
            parts.append("(" + ", ".join(facts) + ")")
        text = " ".join(parts)
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return self.message


# What a server (or a proxy in front of it) may repeat of a signed request in its error text: the
# Authorization value of each signing scheme the SDKs use (scheme, access key, signed headers and
# signature), and a signature on its own (presigned query strings, S3's <SignatureProvided>).
_SIGNED_REQUEST = (
    (re.compile(r"\b(?:SDK|AWS4|OBS4?)-HMAC-SHA256\s+[^\n]*?Signature\s*=\s*[0-9A-Fa-f]+"), _REDACTED),
    (re.compile(r"\b(?:OBS|AWS)\s+[A-Za-z0-9_.-]{8,}:[A-Za-z0-9+/]{16,}=*"), _REDACTED),
    (
        re.compile(r"(?i)\b((?:x-(?:amz|obs)-)?signature(?:provided)?\s*(?:=|:|>)\s*)[A-Za-z0-9+/%_-]{16,}=*"),
        rf"\g<1>{_REDACTED}",
    ),
)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` without signed-request material or any secret value; used on anything that came back from a
    server or SDK."""
    for pattern, replacement in _SIGNED_REQUEST:
        text = pattern.sub(replacement, text)
    for secret in secrets:
        if secret:
            # As sent, and as a URL (query strings) or JSON ("\/") would carry it.
            for form in dict.fromkeys((secret, quote(secret, safe=""), quote(secret), secret.replace("/", "\\/"))):
                text = text.replace(form, _REDACTED)
    return text


def _server_text(value: Any, secrets: Iterable[str]) -> str | None:
    """A short field the server chose (error code, request id), redacted like the message."""
    text = _text(value)
    return redact(text, secrets) if text is not None else None


def is_transient(status: int | None, code: str | None = None) -> bool:
    if status is not None and (status in TRANSIENT_STATUSES or status >= 500):
        return True
    return bool(code) and code in TRANSIENT_CODES


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def failure_from_obs_result(result: Any, *, operation: str, target: str, secrets: Iterable[str] = ()) -> CloudFailure:
    """A failed OBS `GetResult` (status >= 300) as a `CloudFailure`."""
    secrets = tuple(secrets)
    status = getattr(result, "status", None)
    status = int(status) if status is not None else None
    code = _server_text(getattr(result, "errorCode", None), secrets)
    detail = _text(getattr(result, "errorMessage", None)) or _text(getattr(result, "reason", None)) or ""
    request_id = _server_text(getattr(result, "requestId", None), secrets)
    return CloudFailure(
        service="OBS",
        operation=operation,
        target=target,
        status=status,
        code=code,
        detail=redact(detail, secrets),
        request_id=request_id,
        transient=is_transient(status, code),
    )


def _sdk_core_failure(
    error: BaseException, service: str, operation: str, target: str, secrets: Iterable[str]
) -> CloudFailure | None:
    """The huaweicloudsdkcore `SdkException` family, imported only when such an error is seen."""
    module = type(error).__module__
    if not module.startswith("huaweicloudsdkcore"):
        return None
    from huaweicloudsdkcore.exceptions import exceptions as core

    if isinstance(error, core.ServiceResponseException):
        status = int(error.status_code) if error.status_code is not None else None
        code = _server_text(error.error_code, secrets)
        return CloudFailure(
            service=service,
            operation=operation,
            target=target,
            status=status,
            code=code,
            detail=redact(_text(error.error_msg) or "", secrets),
            request_id=_server_text(error.request_id, secrets),
            transient=is_transient(status, code),
        )
    if isinstance(error, core.HostUnreachableException | core.SslHandShakeException):
        # DNS failure or TLS against a plain port: configuration, not a passing hiccup.
        return CloudFailure(
            service=service,
            operation=operation,
            target=target,
            code=type(error).__name__,
            detail=redact(_text(error.error_msg) or "", secrets),
            transient=False,
        )
    if isinstance(error, core.ConnectionException | core.RequestTimeoutException):
        return CloudFailure(
            service=service,
            operation=operation,
            target=target,
            code=type(error).__name__,
            detail=redact(_text(error.error_msg) or "", secrets),
            transient=True,
        )
    if isinstance(error, core.SdkException):
        return CloudFailure(
            service=service,
            operation=operation,
            target=target,
            code=type(error).__name__,
            detail=redact(_text(error.error_msg) or str(error), secrets),
            transient=False,
        )
    return None


def _requests_failure(
    error: BaseException, service: str, operation: str, target: str, secrets: Iterable[str]
) -> CloudFailure | None:
    if not type(error).__module__.startswith("requests"):
        return None
    import requests

    if not isinstance(error, requests.exceptions.RequestException):
        return None
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    transient = isinstance(
        error,
        requests.exceptions.ConnectionError | requests.exceptions.Timeout | requests.exceptions.ChunkedEncodingError,
    ) or is_transient(status)
    return CloudFailure(
        service=service,
        operation=operation,
        target=target,
        status=status,
        code=type(error).__name__,
        detail=redact(str(error), secrets),
        transient=transient,
    )


_SDK_STATUS = re.compile(r"[Ss]tatus\s*[:=]\s*(\d{3})")
_SDK_CODE = re.compile(r"[Ee]rror[Cc]ode\s*[:=]\s*([A-Za-z0-9_.]+)")


def failure_from_exception(
    error: BaseException, *, service: str, operation: str, target: str, secrets: Iterable[str] = ()
) -> CloudFailure:
    """Any exception raised by an SDK call as a `CloudFailure`."""
    secrets = tuple(secrets)
    for convert in (_sdk_core_failure, _requests_failure):
        failure = convert(error, service, operation, target, secrets)
        if failure is not None:
            return failure
    name = type(error).__name__
    detail = redact(str(error) or name, secrets)
    if isinstance(error, TimeoutError | socket.timeout):
        plain = detail in (name, "timed out")
        return CloudFailure(
            service=service,
            operation=operation,
            target=target,
            code=name,
            detail="timed out" if plain else f"timed out ({detail})",
            transient=True,
        )
    if isinstance(error, ConnectionError | http.client.HTTPException | EOFError):
        # Refused, reset, aborted, a closed keep-alive connection, a truncated or garbled response.
        return CloudFailure(
            service=service, operation=operation, target=target, code=name, detail=detail, transient=True
        )
    if isinstance(error, socket.gaierror):
        return CloudFailure(
            service=service,
            operation=operation,
            target=target,
            code=name,
            detail=f"cannot resolve the endpoint's host name ({detail})",
            transient=False,
        )
    if isinstance(error, OSError):
        # Other socket-level errors (unreachable network, broken pipe): the network, not the request.
        return CloudFailure(
            service=service, operation=operation, target=target, code=name, detail=detail, transient=True
        )
    # The OBS transfer helpers raise bare `Exception`s whose text carries the status or error code.
    status_match, code_match = _SDK_STATUS.search(detail), _SDK_CODE.search(detail)
    status = int(status_match.group(1)) if status_match else None
    code = code_match.group(1).rstrip(".") if code_match else None
    code = None if code == "None" else code
    transient = is_transient(status, code) if (status or code) else False
    if code is None and name != "Exception":
        code = name
    return CloudFailure(
        service=service,
        operation=operation,
        target=target,
        status=status,
        code=code,
        detail=detail,
        transient=transient,
    )


__all__ = ["CloudFailure", "failure_from_exception", "failure_from_obs_result", "is_transient", "redact"]
