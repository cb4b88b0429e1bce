"""Canary routing over HTTP: exact splits, weight and version changes under load, persistence, admin auth."""

from __future__ import annotations

import asyncio
from collections import Counter

from arsl_tui.domain.serving import Deployment
from arsl_tui.providers.local.serving_control import ServingState
from tests.serving.conftest import GatewayFactory, LiveGateway, image_bytes

IMAGE = image_bytes(11)


def versions_of(live: LiveGateway, count: int) -> list[str]:
    with live.client(headers=live.headers) as client:
        return [
            client.post("/v1/predict", content=IMAGE, headers={"Content-Type": "image/jpeg"}).json()["model_version"]
            for _ in range(count)
        ]


def test_the_split_is_exact_over_every_hundred_requests(canary_gateway: LiveGateway) -> None:
    answered = versions_of(canary_gateway, 200)
    assert Counter(answered[:100]) == {"v1": 90, "v2": 10}
    assert Counter(answered[100:]) == {"v1": 90, "v2": 10}
    # Interleaved, not in a block: every run of ten has the canary once.
    assert all(Counter(answered[start : start + 10])["v2"] == 1 for start in range(0, 200, 10))


def test_weight_changes_are_persisted_and_validated(canary_gateway: LiveGateway) -> None:
    with canary_gateway.client(headers=canary_gateway.admin_headers) as admin:
        changed = admin.put("/admin/weights", json={"weights": {"v1": 75, "v2": 25}, "reason": "step 2"})
        bad_sum = admin.put("/admin/weights", json={"weights": {"v1": 75, "v2": 20}})
        unknown = admin.put("/admin/weights", json={"weights": {"v1": 50, "v3": 50}})
        not_a_number = admin.put("/admin/weights", json={"weights": {"v1": "all", "v2": 0}})
    assert changed.status_code == 200 and changed.json()["weights"] == {"v1": 75, "v2": 25}
    assert bad_sum.status_code == 422 and "sum to 100" in bad_sum.json()["error"]
    assert unknown.status_code == 422 and "deploy a version to add it" in unknown.json()["error"]
    assert not_a_number.status_code == 422
    assert Counter(versions_of(canary_gateway, 100)) == {"v1": 75, "v2": 25}
    stored = ServingState.open(canary_gateway.home)
    try:
        assert stored.deployment() == Deployment(stable="v1", canary="v2", weights={"v1": 75, "v2": 25})
        assert stored.changes()[-1]["reason"] == "step 2"
    finally:
        stored.close()


def test_admin_calls_need_the_admin_token(canary_gateway: LiveGateway) -> None:
    with canary_gateway.client() as client:
        anonymous = client.put("/admin/weights", json={"weights": {"v1": 0, "v2": 100}})
        with_app_key = client.get("/admin/stats", headers=canary_gateway.headers)
        wrong = client.get("/admin/deployment", headers={"Authorization": "Bearer " + "x" * 43})
    assert (anonymous.status_code, with_app_key.status_code, wrong.status_code) == (401, 401, 401)
    assert Counter(versions_of(canary_gateway, 10)) == {"v1": 9, "v2": 1}


async def drive(live: LiveGateway, total: int, changes: list[tuple[int, str, dict]]) -> list[tuple[int, str, int]]:
    """Send `total` predictions from 8 clients; when `at` answers are in, apply change (path, body).

    Returns (status, version, phase) per request: phase 2k means the request was sent after change k
    was acknowledged and answered before change k + 1 was asked for, so exactly the state after change
    k routed it; -1 means a change was under way while it was in flight, so either state may have.
    """
    results: list[tuple[int, str, int]] = []
    phase = 0
    reached = {at: asyncio.Event() for at, _path, _body in changes}
    sent = iter(range(total))
    async with (
        live.async_client(headers=live.headers) as client,
        live.async_client(headers=live.admin_headers) as admin,
    ):

        async def worker() -> None:
            for _ in sent:
                started_in = phase
                response = await client.post("/v1/predict", content=IMAGE, headers={"Content-Type": "image/jpeg"})
                version = response.json().get("model_version", "") if response.status_code == 200 else ""
                settled = started_in if started_in == phase and started_in % 2 == 0 else -1
                results.append((response.status_code, version, settled))
                if len(results) in reached:
                    reached[len(results)].set()

        async def operator() -> None:
            nonlocal phase
            for at, path, body in changes:
                await reached[at].wait()
                phase += 1
                response = await admin.put(path, json=body)
                assert response.status_code == 200, response.text
                phase += 1

        await asyncio.gather(operator(), *(worker() for _ in range(8)))
    return results


async def test_weight_changes_under_load_drop_no_request(canary_gateway: LiveGateway) -> None:
    plan = [
        (60, "/admin/weights", {"weights": {"v1": 0, "v2": 100}}),
        (120, "/admin/weights", {"weights": {"v1": 100, "v2": 0}}),
        (180, "/admin/weights", {"weights": {"v1": 50, "v2": 50}}),
    ]
    results = await drive(canary_gateway, 240, plan)
    assert len(results) == 240
    assert {status for status, _version, _phase in results} == {200}
    by_phase: dict[int, Counter[str]] = {}
    for _status, version, phase in results:
        by_phase.setdefault(phase, Counter())[version] += 1
    assert set(by_phase[0]) == {"v1", "v2"}
    assert len(by_phase[-1]) > 0  # some requests were in flight during the changes, and none failed
    assert set(by_phase[2]) == {"v2"}  # sent after 0/100 was acknowledged: all canary
    assert set(by_phase[4]) == {"v1"}
    assert set(by_phase[6]) == {"v1", "v2"}


async def test_a_challenger_is_loaded_beside_the_champion_under_load(make_gateway: GatewayFactory) -> None:
    live = make_gateway(Deployment(stable="v1", weights={"v1": 100}))
    plan = [
        (
            40,
            "/admin/deployment",
            {"stable": "v1", "canary": "v2", "weights": {"v1": 50, "v2": 50}, "reason": "canary"},
        ),
        (120, "/admin/deployment", {"stable": "v2", "canary": None, "weights": {"v2": 100}, "reason": "promote"}),
    ]
    results = await drive(live, 200, plan)
    assert {status for status, _version, _phase in results} == {200}
    versions = {phase: {version for _status, version, at in results if at == phase} for phase in (0, 2, 4)}
    assert versions[0] == {"v1"} and versions[2] == {"v1", "v2"} and versions[4] == {"v2"}
    with live.client(headers=live.headers) as client:
        info = client.get("/v1/model/info").json()
    assert [item["version"] for item in info["versions"]] == ["v2"]  # v1 was let go after its last request
    assert live.state.deployment() == Deployment(stable="v2", weights={"v2": 100})


def test_deploying_a_version_without_a_package_keeps_serving(make_gateway: GatewayFactory) -> None:
    live = make_gateway(Deployment(stable="v1", weights={"v1": 100}))
    with live.client(headers=live.admin_headers) as admin:
        refused = admin.put("/admin/deployment", json={"stable": "v1", "canary": "v7", "weights": {"v1": 90, "v7": 10}})
    assert refused.status_code == 409 and "arsl deploy v7" in refused.json()["error"]
    assert set(versions_of(live, 5)) == {"v1"}


def test_stats_window_counts_server_and_client_errors_apart(canary_gateway: LiveGateway) -> None:
    versions_of(canary_gateway, 10)
    with canary_gateway.client(headers=canary_gateway.admin_headers) as admin:
        stats = admin.get("/admin/stats", params={"window_s": 30, "max_samples": 3}).json()
        bad = admin.get("/admin/stats", params={"window_s": "soon"})
    v1 = stats["versions"]["v1"]
    assert (v1["requests"], v1["errors"], v1["client_errors"]) == (9, 0, 0)
    assert len(v1["latency_ms"]) == 3 and v1["latency_samples_total"] == 9
    assert stats["weights"] == {"v1": 90, "v2": 10}
    assert bad.status_code == 422
