"""Shadow traffic in the gateway: copies reach the challenger, never a client's answer; the queue is bounded.

The gateway is the real app under uvicorn with real model packages: v1 and v2 have different random
weights (they disagree), v3 has v1's weights under another name (it agrees with v1 on everything).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from arsl_tui.domain.serving import Deployment
from arsl_tui.serving.shadow import ShadowMirror
from tests.serving.conftest import GatewayFactory, LiveGateway, image_bytes
from tests.serving.packages import export_random_package

REQUESTS = 40


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shadow-packages")
    return {
        "v1": export_random_package(root / "v1", seed=1),
        "v2": export_random_package(root / "v2", seed=2),
        "v3": export_random_package(root / "v3", seed=1),
    }


def shadowed(make_gateway: GatewayFactory, challenger: str) -> LiveGateway:
    live = make_gateway(Deployment(stable="v1", canary=challenger, weights={"v1": 100, challenger: 0}))
    with live.client() as client:
        answer = client.put(
            "/admin/shadow", json={"version": challenger, "share": 100, "reason": "test"}, headers=live.admin_headers
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == challenger
    return live


def shadow_window(live: LiveGateway) -> dict[str, Any]:
    with live.client() as client:
        answer = client.get("/admin/shadow", params={"window_s": 600}, headers=live.admin_headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["window"])


def settled(live: LiveGateway, offered: int, bound_s: float = 60.0) -> dict[str, Any]:
    """The shadow window once every offered copy was compared, failed or dropped (bounded wait on that condition)."""
    deadline = time.monotonic() + bound_s
    while True:
        window = shadow_window(live)
        if window["offered"] >= offered and window["sent"] + window["dropped"] >= window["offered"]:
            return window
        assert time.monotonic() < deadline, f"copies still pending after {bound_s} s: {window}"
        time.sleep(0.05)


def predict_all(live: LiveGateway, count: int) -> list[dict[str, Any]]:
    answers = []
    with live.client() as client:
        for seed in range(count):
            answer = client.post(
                "/v1/predict", content=image_bytes(seed), headers={**live.headers, "Content-Type": "image/jpeg"}
            )
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
    return answers


def client_requests(live: LiveGateway) -> dict[str, int]:
    with live.client() as client:
        stats = client.get("/admin/stats", params={"window_s": 600}, headers=live.admin_headers).json()
    return {version: int(item["requests"]) for version, item in stats["versions"].items()}


def test_a_disagreeing_challenger_gets_copies_but_answers_no_client(make_gateway: GatewayFactory) -> None:
    live = shadowed(make_gateway, "v2")
    answers = predict_all(live, REQUESTS)
    assert {answer["model_version"] for answer in answers} == {"v1"}
    window = settled(live, REQUESTS)
    assert window["offered"] == REQUESTS
    assert window["sent"] + window["dropped"] == REQUESTS
    assert window["compared"] == window["sent"] > 0
    assert window["agreement"] is not None and window["agreement"] < 0.5  # different random weights
    assert window["champion_p50_ms"] is not None and window["challenger_p50_ms"] is not None
    counts = client_requests(live)
    assert counts.get("v2", 0) == 0, counts  # copies are not client requests
    assert counts["v1"] == REQUESTS


def test_a_same_weights_challenger_agrees_and_feedback_scores_both(make_gateway: GatewayFactory) -> None:
    live = shadowed(make_gateway, "v3")
    answers = predict_all(live, 10)
    window = settled(live, 10)
    assert window["compared"] == window["sent"]
    assert window["agreed"] == window["compared"] > 0
    compared = window["compared"]
    with live.client() as client:
        for answer in answers:
            sent = client.post(
                "/v1/feedback",
                json={"request_id": answer["request_id"], "label": answer["label"]},
                headers=live.headers,
            )
            assert sent.status_code == 200, sent.text
    window = shadow_window(live)
    # Labels only count for requests that were copied; both versions were right on each of them.
    assert window["feedback"] == compared
    assert window["champion_correct"] == window["challenger_correct"] == compared


def test_stopping_the_shadow_stops_copies(make_gateway: GatewayFactory) -> None:
    live = shadowed(make_gateway, "v2")
    predict_all(live, 5)
    before = settled(live, 5)
    with live.client() as client:
        stopped = client.put("/admin/shadow", json={"version": None, "share": 0}, headers=live.admin_headers)
    assert stopped.status_code == 200 and stopped.json()["version"] is None
    predict_all(live, 5)
    after = shadow_window(live)
    assert before["offered"] == after["offered"] == 5  # the window so far is kept; nothing new is copied


def test_copies_only_to_a_loaded_version_without_traffic(make_gateway: GatewayFactory) -> None:
    live = make_gateway(Deployment(stable="v1", canary="v2", weights={"v1": 90, "v2": 10}))
    with live.client() as client:
        serving = client.put("/admin/shadow", json={"version": "v2", "share": 100}, headers=live.admin_headers)
        absent = client.put("/admin/shadow", json={"version": "v3", "share": 100}, headers=live.admin_headers)
        stable = client.put("/admin/shadow", json={"version": "v1", "share": 100}, headers=live.admin_headers)
        bad_share = client.put("/admin/shadow", json={"version": "v2", "share": 101}, headers=live.admin_headers)
        anonymous = client.put("/admin/shadow", json={"version": "v2", "share": 100})
    assert serving.status_code == 422 and "answers clients already" in serving.json()["error"]
    assert absent.status_code == 409 and absent.json()["code"] == "version_not_loaded"
    assert stable.status_code == 422
    assert bad_share.status_code == 422
    assert anonymous.status_code == 401


def test_the_queue_is_bounded_and_drops_are_counted() -> None:
    """No copy task runs here: every offer beyond the capacity is dropped at once, never waited for."""
    now = [100.0]
    mirror = ShadowMirror(capacity=3, clock=lambda: now[0])
    mirror.configure("v2", 100)
    pixels = np.zeros((64, 64), dtype=np.uint8)
    started = time.perf_counter()
    for index in range(10):
        mirror.offer(f"r{index}", "v1", pixels, "ain", 1.0)
    assert time.perf_counter() - started < 0.5
    window = mirror.stats(60)
    assert (window.offered, window.dropped, window.sent) == (10, 7, 0)
    assert mirror.to_json()["queued"] == 3


def test_the_share_is_spread_evenly_and_answers_by_the_shadow_version_are_not_copied() -> None:
    mirror = ShadowMirror(capacity=1000)
    mirror.configure("v2", 25)
    pixels = np.zeros((64, 64), dtype=np.uint8)
    for index in range(100):
        mirror.offer(f"r{index}", "v1", pixels, "ain", 1.0)
    mirror.offer("by-v2", "v2", pixels, "ain", 1.0)
    assert mirror.stats(60).offered == 25


def test_a_window_without_samples_keeps_its_counts() -> None:
    mirror = ShadowMirror(capacity=10)
    mirror.configure("v2", 100)
    mirror._events.append((time.monotonic(), 2, 1.0, 3.0, 4.0))  # one compared copy, as the copy task records it
    window = mirror.stats(60, max_samples=0)
    assert (window.compared, window.agreed, window.champion_latency_ms) == (1, 1, ())
