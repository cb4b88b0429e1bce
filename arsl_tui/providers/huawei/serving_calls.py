"""One ModelArts serving call with a total deadline, its failures turned into `ServingPlatformError`s.

Both serving adapters (`realtime_services`, `deployment_services`) call the service this way: a canary tick
holds the canary lock while it waits, so the SDK's per-read timeout is not enough, and a call that timed out
or stalled may still have been applied (the adapters check before any retry)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TypeVar

import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from arsl_tui.domain.ports import ServingPlatformError
from arsl_tui.providers.huawei.errors import failure_from_exception
from arsl_tui.providers.huawei.sdk_clients import CallStalled, call_deadline_s, call_with_deadline

T = TypeVar("T")


def serving_call(
    send: Callable[[], T],
    *,
    service: str,
    operation: str,
    target: str,
    timeout_s: float,
    secrets: Callable[[], Sequence[str]],
) -> T:
    """`send()` within `call_deadline_s(timeout_s)`; SDK, transport and answer-parsing failures become
    `ServingPlatformError`s that name the service, the operation and its target, and never a secret.

    `secrets` is asked only when a failure is described, so no frame of a traceback holds them as a value."""
    deadline = call_deadline_s(timeout_s)
    try:
        return call_with_deadline(lambda _: send(), None, deadline, operation)
    except CallStalled:
        raise ServingPlatformError(
            f"{service} {operation} for {target}: had not finished answering after "
            f"{deadline:g} s (it stalls or trickles its answer); the change may still "
            "have been applied (it is checked before any retry)",
            transient=True,
        ) from None
    except (SdkException, requests.exceptions.RequestException, OSError, json.JSONDecodeError) as error:
        failure = failure_from_exception(error, service=service, operation=operation, target=target, secrets=secrets())
        text = f"{failure.detail} {type(error).__name__}".lower()
        message = failure.message
        if failure.status is None and ("timed out" in text or "timeout" in text):
            message = (
                f"{service} {operation} for {target}: no answer within {timeout_s:g} s; "
                "the change may still have been applied (it is checked before any retry)"
            )
        elif failure.status == 429:
            message += " — throttled: retrying later"
        raise ServingPlatformError(
            message,
            transient=failure.transient,
            status=failure.status,
            code=failure.code,
            request_id=failure.request_id,
        ) from None
