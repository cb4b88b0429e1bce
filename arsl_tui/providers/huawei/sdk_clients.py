"""Building huaweicloudsdk clients the one way every adapter needs them.

Credentials are always passed explicitly (never the SDK's default chain, which ends at the ECS
metadata service); the SDK's own retries are off, because it never retries a POST and our callers
retry on their own schedule after checking the effect; and the SDK's error logger gets a handler,
since it logs every connection error at ERROR on a handler-less logger that Python's last-resort
handler would print over the console's screen (the error itself is raised and reported by us).
"""

from __future__ import annotations

import logging
from typing import Any

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig

from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing

CONNECT_TIMEOUT_S = 10.0


def basic_credentials(credentials: Credentials, service: str) -> BasicCredentials:
    """The SDK's credentials for a project-scoped `service` (named in the error when the project is missing)."""
    if not credentials.project_id:
        raise CredentialsMissing(f"{service} needs a project id: set HUAWEICLOUD_SDK_PROJECT_ID (or project_id in "
                                 "the SDK credentials file) to the project of your region")
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
    return client_class.new_builder().with_credentials(basic).with_endpoints([endpoint]).with_http_config(
        config).build()
