"""One object made confirmed in the store: the sending policy the upload engine's threads run, and each of
its sending processes (`ops.upload_senders`) runs alike.

An object an earlier run may have sent is headed first; a put is checked against the store's MD5 (and,
where the answer carries none, a head); transient failures are retried with exponential backoff and full
jitter; a permanent one, or too many attempts, halts every transfer sharing the `halt` event.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from arsl_tui.config import UploadSettings
from arsl_tui.domain.ports import ObjectInfo, ObjectStore, StoreError, TransientStoreError
from arsl_tui.ops.shards import file_md5
from arsl_tui.ops.upload_sources import UploadItem

_T = TypeVar("_T")

RetryListener = Callable[[str, int, str, float], None]
"""Told of each retry: the key, the attempt that failed, the error in words, the delay before the next."""


class Stop(Exception):
    """Sending stops: cancelled by the user, or another object failed for good."""


class Failure(Exception):
    """A permanent error: the run stops with this message."""


class Transfer:
    """`transfer(item, recheck)`: make `item` confirmed in `store`; True if it was sent, False if it was
    already there (`recheck`: head it first). Raises `Stop` once `halt` is set, `Failure` for good."""

    def __init__(self, store: ObjectStore, limits: UploadSettings, halt: threading.Event, on_retry: RetryListener):
        self.store = store
        self.limits = limits
        self.halt = halt
        self.on_retry = on_retry

    def __call__(self, item: UploadItem, recheck: bool) -> bool:
        if recheck and self.retrying(item.key, lambda: self.matches(self.store.head(item.key), item)):
            return False
        self.retrying(item.key, lambda: self._put_confirmed(item))
        return True

    def matches(self, info: ObjectInfo | None, item: UploadItem) -> bool:
        if info is None or info.size != item.size:
            return False
        if info.md5 is None:
            info = self.store.head(item.key)
        return info is not None and info.md5 is not None and info.md5.lower() == item.md5

    def _put_confirmed(self, item: UploadItem) -> None:
        try:
            if item.data is not None:
                info = self.store.put_bytes(item.key, item.data, item.md5)
            else:
                assert item.source is not None
                info = self.store.put_file(item.key, Path(item.source), item.md5)
        except StoreError as error:
            if error.transient and error.code == "BadDigest" and item.source is not None:
                _check_source_unchanged(item)
            raise
        if not self.matches(info, item) and not self.matches(self.store.head(item.key), item):
            raise TransientStoreError(
                f"the store does not confirm {item.key!r} (MD5 {item.md5}, {item.size} bytes) after the put",
                code="NotConfirmed",
            )

    def retrying(self, key: str, operation: Callable[[], _T]) -> _T:
        """Run `operation`, retrying transient failures with exponential backoff and full jitter."""
        limits = self.limits
        attempt = 0
        while True:
            attempt += 1
            if self.halt.is_set():
                raise Stop
            try:
                return operation()
            except Failure:
                self.halt.set()
                raise
            except StoreError as error:
                if not error.transient:
                    # Halt here, not when the coordinator notices: no other worker may start a request.
                    self.halt.set()
                    raise Failure(f"{key}: {error}") from None
                problem: Exception = error
            except (TimeoutError, ConnectionError) as error:
                problem = error
            if attempt >= limits.max_attempts:
                self.halt.set()
                raise Failure(f"gave up on {key} after {attempt} attempt(s); last error: {_describe(problem)}")
            delay = random.uniform(0, min(limits.backoff_max_s, limits.backoff_base_s * 2 ** (attempt - 1)))
            self.on_retry(key, attempt, _describe(problem), delay)
            if self.halt.wait(delay):
                raise Stop


def _check_source_unchanged(item: UploadItem) -> None:
    assert item.source is not None
    try:
        current = file_md5(Path(item.source))
    except OSError as error:
        raise Failure(f"{item.source}: cannot be read ({error.strerror})") from None
    if current != item.md5:
        raise Failure(
            f"{item.source} changed since it was validated (MD5 {current}, manifest says {item.md5}); "
            "validate and upload again"
        )


def _describe(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


__all__ = ["Failure", "RetryListener", "Stop", "Transfer"]
