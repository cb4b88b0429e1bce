"""Throttling: token buckets per key, per address and overall, as APIG's api/app/ip call limits."""

from __future__ import annotations

import pytest

from arsl_tui.serving.ratelimit import RateLimiter
from tests.serving.conftest import GatewayFactory, image_bytes


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_limit_then_waits_for_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(api_limit=100, app_limit=3, time_unit="MINUTE", clock=clock)
    assert [limiter.acquire("alice") for _ in range(3)] == [None, None, None]
    refusal = limiter.acquire("alice")
    assert refusal is not None and refusal.limit == "app" and refusal.retry_after_s == 20  # 3 per minute
    assert limiter.acquire("bob") is None  # another key has its own bucket
    clock.now += 19.9
    assert limiter.acquire("alice") is not None
    clock.now += 0.2
    assert limiter.acquire("alice") is None
    assert limiter.acquire("alice") is not None


def test_the_overall_limit_binds_every_key_and_a_refusal_costs_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(api_limit=4, app_limit=3, time_unit="SECOND", clock=clock)
    assert [limiter.acquire(name) for name in ("a", "a", "a", "b")] == [None] * 4
    refusal = limiter.acquire("c")
    assert refusal is not None and refusal.limit == "api" and refusal.retry_after_s == 1
    clock.now += 0.25  # one api token back; "c" was not charged for its refused call
    assert limiter.acquire("c") is None


def test_per_address_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(api_limit=100, app_limit=100, ip_limit=2, time_unit="HOUR", clock=clock)
    assert limiter.acquire("a", "127.0.0.2") is None and limiter.acquire("b", "127.0.0.2") is None
    refusal = limiter.acquire("c", "127.0.0.2")
    assert refusal is not None and refusal.limit == "ip" and refusal.retry_after_s == 1800
    assert limiter.acquire("c", "127.0.0.3") is None


def test_unknown_time_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="WEEK"):
        RateLimiter(api_limit=1, app_limit=1, time_unit="WEEK")


def test_429_with_retry_after_over_http(make_gateway: GatewayFactory) -> None:
    live = make_gateway(
        overrides={"gateway.app_call_limit": 3, "gateway.api_call_limit": 5, "gateway.time_unit": "MINUTE"}
    )
    other = live.keys().create("other")
    data = image_bytes(1)
    with live.client() as client:

        def post(key: str) -> object:
            return client.post(
                "/v1/predict", content=data, headers={"X-Apig-AppCode": key, "Content-Type": "image/jpeg"}
            )

        first = [post(live.key).status_code for _ in range(3)]
        limited = post(live.key)
        others = [post(other).status_code for _ in range(2)]
        overall = post(other)
        metrics = client.get("/metrics").text
        health = client.get("/v1/health")
    assert first == [200, 200, 200] and others == [200, 200]
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "20"
    assert "3 calls per minute for this key" in limited.json()["error"]
    assert overall.status_code == 429 and overall.headers["Retry-After"] == "12"  # 5 per minute overall
    assert limited.json()["code"] == "rate_limited_app" and overall.json()["code"] == "rate_limited_api"
    assert 'arsl_gateway_errors_total{endpoint="predict",version="none",reason="rate_limited_app"} 1' in metrics
    assert health.status_code == 200  # health is never throttled
