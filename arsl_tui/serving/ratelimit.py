"""Token buckets that mirror an APIG throttling policy: api, app (per key) and ip call limits.

APIG counts calls per `time_unit` (SECOND, MINUTE, HOUR, DAY): `api_call_limits` for all callers
together, `app_call_limits` for each app (here: each key), `ip_call_limits` for each client address.
Each becomes a bucket holding up to `limit` tokens, refilled at `limit / period` tokens per second, so
a quiet caller may burst up to the limit and a steady one gets the limit per period. A call takes
one token from every bucket that applies, and only when all of them have one, so a refused call
costs nothing. A refusal says which limit refused and when a token will be there (`Retry-After`).

Not thread-safe: the gateway calls it from its event loop only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

PERIOD_S = {"SECOND": 1.0, "MINUTE": 60.0, "HOUR": 3600.0, "DAY": 86400.0}
_MAX_TRACKED = 10_000
"""Per-key and per-address buckets kept; beyond that, full (idle) ones are forgotten."""


class TokenBucket:
    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait_s(self, now: float) -> float:
        """Seconds until a token is there (0 when one is there now)."""
        self.refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    @property
    def full(self) -> bool:
        return self.tokens >= self.capacity


@dataclass(frozen=True)
class Refusal:
    limit: str
    """Which limit refused: "api", "app" or "ip"."""
    retry_after_s: int
    """Whole seconds until the call would be accepted (at least 1), for the Retry-After header."""
    allowed: int
    period: str

    @property
    def message(self) -> str:
        scope = {"api": "for the whole API", "app": "for this key", "ip": "for this client address"}[self.limit]
        return (
            f"rate limit exceeded: {self.allowed} calls per {self.period.lower()} {scope}; "
            f"retry after {self.retry_after_s} s"
        )


class RateLimiter:
    def __init__(
        self,
        *,
        api_limit: int,
        app_limit: int,
        ip_limit: int = 0,
        time_unit: str = "MINUTE",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_unit not in PERIOD_S:
            raise ValueError(f"time unit {time_unit!r} is not one of {', '.join(PERIOD_S)}")
        self.period_s = PERIOD_S[time_unit]
        self.time_unit = time_unit
        self.api_limit, self.app_limit, self.ip_limit = api_limit, app_limit, ip_limit
        self._clock = clock
        now = clock()
        self._api = TokenBucket(api_limit, api_limit / self.period_s, now) if api_limit > 0 else None
        self._apps: dict[str, TokenBucket] = {}
        self._ips: dict[str, TokenBucket] = {}

    def _bucket(self, table: dict[str, TokenBucket], name: str, limit: int, now: float) -> TokenBucket:
        bucket = table.get(name)
        if bucket is None:
            if len(table) >= _MAX_TRACKED:
                for stale in [key for key, item in table.items() if item.wait_s(now) == 0 and item.full]:
                    del table[stale]
            bucket = table[name] = TokenBucket(limit, limit / self.period_s, now)
        return bucket

    def acquire(self, key: str, address: str | None = None) -> Refusal | None:
        """Take a token for one call by `key` from `address`; a Refusal (nothing taken) if a limit is spent."""
        now = self._clock()
        buckets: list[tuple[str, int, TokenBucket]] = []
        if self.app_limit > 0:
            buckets.append(("app", self.app_limit, self._bucket(self._apps, key, self.app_limit, now)))
        if self.ip_limit > 0 and address:
            buckets.append(("ip", self.ip_limit, self._bucket(self._ips, address, self.ip_limit, now)))
        if self._api is not None:
            buckets.append(("api", self.api_limit, self._api))
        worst: tuple[float, str, int] | None = None
        for name, limit, bucket in buckets:
            wait = bucket.wait_s(now)
            if wait > 0 and (worst is None or wait > worst[0]):
                worst = (wait, name, limit)
        if worst is not None:
            return Refusal(
                limit=worst[1], retry_after_s=max(1, math.ceil(worst[0])), allowed=worst[2], period=self.time_unit
            )
        for _name, _limit, bucket in buckets:
            bucket.tokens -= 1.0
        return None


__all__ = ["PERIOD_S", "RateLimiter", "Refusal", "TokenBucket"]
