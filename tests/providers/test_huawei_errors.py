"""SDK failures of every kind become one message shape and a right retry verdict."""

from __future__ import annotations

import http.client
import socket
from types import SimpleNamespace

import pytest
import requests
from huaweicloudsdkcore.exceptions.exceptions import (
    ClientRequestException,
    ConnectionException,
    SdkError,
    ServerResponseException,
    SslHandShakeException,
)

from arsl_tui.providers.huawei.errors import failure_from_exception, failure_from_obs_result

TARGET = "job 'train-1'"


def describe(error: BaseException, secrets: tuple[str, ...] = ()) -> tuple[str, bool]:
    failure = failure_from_exception(error, service="ModelArts", operation="show job", target=TARGET, secrets=secrets)
    return failure.message, failure.transient


def test_an_sdk_client_error_names_status_code_and_request_id() -> None:
    error = ClientRequestException(
        403, SdkError(request_id="req-7", error_code="ModelArts.0203", error_msg="no permission")
    )
    message, transient = describe(error)
    assert message == (
        "ModelArts show job failed for job 'train-1' (HTTP 403, error code ModelArts.0203, "
        "request id req-7): no permission"
    )
    assert not transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ServerResponseException(503, SdkError("r", "APIGW.0101", "busy")), True),
        (ClientRequestException(429, SdkError("", "429", "")), True),
        (ClientRequestException(400, SdkError("r", "ModelArts.2762", "bad flavor")), False),
        (ConnectionException("Read timed out"), True),
        (SslHandShakeException("wrong version number"), False),
        (requests.exceptions.ReadTimeout("read timeout"), True),
        (requests.exceptions.ConnectionError("refused"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (http.client.RemoteDisconnected("Remote end closed connection"), True),
        (socket.gaierror(-2, "Name or service not known"), False),
        (Exception("head bucket b failed. Please check. Status:503."), True),
        (Exception("errorCode:AccessDenied, errorMessage:denied"), False),
    ],
)
def test_the_retry_verdict(error: BaseException, transient: bool) -> None:
    assert describe(error)[1] is transient


def test_secrets_are_redacted_from_whatever_the_sdk_says() -> None:
    secret = "sk-0123456789abcdef"
    message, _ = describe(ConnectionException(f"failed signing with {secret}"), secrets=(secret,))
    assert secret not in message and "<redacted>" in message


def test_an_obs_result_keeps_its_status_code_and_request_id() -> None:
    result = SimpleNamespace(
        status=503,
        errorCode="ServiceUnavailable",
        errorMessage="slow down",
        requestId="0000ABC",
        reason="Service Unavailable",
    )
    failure = failure_from_obs_result(result, operation="put", target="bucket 'b', key 'k'")
    assert failure.transient and (failure.status, failure.code, failure.request_id) == (
        503,
        "ServiceUnavailable",
        "0000ABC",
    )
    assert failure.message == (
        "OBS put failed for bucket 'b', key 'k' (HTTP 503, error code ServiceUnavailable, "
        "request id 0000ABC): slow down"
    )
    head = SimpleNamespace(status=403, errorCode=None, errorMessage=None, requestId=None, reason="Forbidden")
    denied = failure_from_obs_result(head, operation="head", target="bucket 'b'")
    assert not denied.transient and denied.message == "OBS head failed for bucket 'b' (HTTP 403): Forbidden"
