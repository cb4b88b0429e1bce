"""Documented ModelArts operations the SDK has no route for (v1 AI applications and v1 real-time
services), sent through an SDK client's own signing and transport.

The SDK 3.1.219 knows only the v2 service API; the v1 model and service API that public resource pools
serve is called with `client.do_http_request`, which signs with SDK-HMAC-SHA256, fills in
`{project_id}` and raises the same `SdkException` family as the generated methods (callers map those
with `errors.failure_from_exception`, as for any other call).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

# `do_http_request` needs a response class to parse into; one with no fields keeps the raw body intact.
_FIELDLESS_RESPONSE = "DeleteTrainingJobResponse"


def rest_json(
    client: Any,
    method: str,
    path: str,
    *,
    path_params: Mapping[str, str] | None = None,
    query: Sequence[tuple[str, str]] = (),
    body: Any = None,
) -> Any:
    """Send `method path` (e.g. `"/v1/{project_id}/models/{model_id}"`, `{project_id}` filled in by the
    SDK, other `{name}`s from `path_params`) with a JSON `body`; the decoded JSON answer ({} for an empty one).

    HTTP errors raise the SDK's `ClientRequestException`/`ServerResponseException`; transport errors its
    `ConnectionException` or a raw `requests` exception, exactly as the generated methods do.
    """
    response = client.do_http_request(
        method=method,
        resource_path=path,
        path_params=dict(path_params or {}),
        query_params=list(query),
        header_params={"Content-Type": "application/json"},
        body=body,
        response_type=_FIELDLESS_RESPONSE,
    )
    raw = getattr(response, "raw_content", b"") or b""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return json.loads(raw) if raw.strip() else {}


__all__ = ["rest_json"]
