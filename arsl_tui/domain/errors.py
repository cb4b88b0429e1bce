"""The base of errors raised by a backend call: what the service said, and whether a retry can help."""

from __future__ import annotations


class BackendCallError(Exception):
    """A backend call failed; carries the HTTP status, the service's error code and request id."""

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.transient = transient
