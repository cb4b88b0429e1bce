"""Building huaweicloudsdk clients the one way every adapter needs them.

Credentials are always passed explicitly (never the SDK's default chain, which ends at the ECS
metadata service); the SDK's own retries are off, because it never retries a POST and our callers
retry on their own schedule after checking the effect; and the SDK's error logger gets a handler,
since it logs every connection error at ERROR on a handler-less logger that Python's last-resort
handler would print over the console's screen (the error itself is raised and reported by us).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig

from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing

CONNECT_TIMEOUT_S = 10.0
T = TypeVar("T")


def basic_credentials(credentials: Credentials, service: str) -> BasicCredentials:
    """The SDK's credentials for a project-scoped `service` (named in the error when the project is missing)."""
    if not credentials.project_id:
        raise CredentialsMissing(
            f"{service} needs a project id: set HUAWEICLOUD_SDK_PROJECT_ID (or project_id in "
            "the SDK credentials file) to the project of your region"
        )
    basic = BasicCredentials(credentials.access_key, credentials.secret_key, credentials.project_id)
    if credentials.security_token:
        basic.with_security_token(credentials.security_token)
    return basic


def build_sdk_client(client_class: Any, endpoint: str, basic: BasicCredentials, timeout_s: float) -> Any:
    """A client of `client_class` (e.g. `ModelArtsClient`) for `endpoint`, signing with `basic`."""
    config = HttpConfig.get_default_config()
    config.timeout = (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s)
    config.retry_times = 0
    sdk_logger = logging.getLogger(f"HuaweiCloud-SDK-{client_class.__name__}")
    if not sdk_logger.handlers:
        sdk_logger.addHandler(logging.NullHandler())
    return (
        client_class.new_builder().with_credentials(basic).with_endpoints([endpoint]).with_http_config(config).build()
    )


def call_deadline_s(timeout_s: float) -> float:
    """The most one call may take in all: the connect timeout, then two read timeouts (a server may think
    for up to one before answering and take up to another to send a large page)."""
    return min(CONNECT_TIMEOUT_S, timeout_s) + 2 * timeout_s


class CallStalled(Exception):
    """The call did not finish within its total deadline."""


def call_with_deadline(method: Callable[[Any], T], request: Any, deadline_s: float, name: str) -> T:
    """`method(request)` on a daemon thread; its result or its exception, or CallStalled after `deadline_s`."""
    outcome: list[tuple[bool, Any]] = []
    finished = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, method(request)))
        except BaseException as error:  # handed to the caller's thread as is
            outcome.append((False, error))
        finally:
            finished.set()

    threading.Thread(target=run, name=f"sdk-{name}", daemon=True).start()
    if not finished.wait(deadline_s):
        raise CallStalled
    done, value = outcome[0]
    if done:
        return value
    raise value
