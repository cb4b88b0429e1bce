"""The gateway's lifecycle through the real CLI: deploy, refuse a second start, canary, keys, stop, restart.

Each `arsl` call is a separate process, and the gateway is a detached process of its own (as when a
user runs it), so this is what a user sees. A finaliser stops the gateway by its recorded pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arsl_tui.ops import serving
from arsl_tui.providers.local.serving_control import ServingState, process_start_ticks
from tests.fixtures.cli import arsl
from tests.serving.conftest import gateway_settings, image_bytes
from tests.serving.packages import register_packages

pytestmark = pytest.mark.e2e


@pytest.fixture
def home(tmp_path: Path, packages: dict[str, Path]) -> Iterator[Path]:
    home = tmp_path / "home"
    register_packages(home, packages)
    yield home
    serving.stop(gateway_settings(home))


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    environment.update({"ARSL_HOME": str(home), "ARSL_GATEWAY_PORT": "0"})
    return environment


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def test_deploy_canary_keys_stop_and_restart(home: Path, env: dict[str, str], tmp_path: Path) -> None:
    deployed = arsl(env, tmp_path, "deploy", "champion", "--json")
    assert deployed.returncode == 0, deployed.stderr
    first = json_of(deployed)
    assert (first["version"], first["weights"], first["started"]) == ("v1", {"v1": 100}, True)
    endpoint, pid = first["endpoint"], first["pid"]
    assert endpoint.startswith("http://127.0.0.1:")
    assert httpx.get(endpoint + "/v1/health", trust_env=False).json()["weights"] == {"v1": 100}
    assert os.getsid(pid) != os.getsid(0)  # another session: closing the terminal does not end it

    again = arsl(env, tmp_path, "service", "start")
    assert again.returncode == 1 and "running already" in again.stderr
    direct = subprocess.run(
        [sys.executable, "-m", "arsl_tui.serving", "--home", str(home)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert direct.returncode == 1 and f"pid {pid}" in direct.stderr  # the lock refuses a second process

    canary = json_of(arsl(env, tmp_path, "deploy", "v2", "--canary", "10", "--json"))
    assert (canary["weights"], canary["canary"], canary["started"], canary["pid"]) == (
        {"v1": 90, "v2": 10},
        "v2",
        False,
        pid,
    )

    created = arsl(env, tmp_path, "gateway", "keys", "create", "ci", "--json")
    key = json_of(created)["key"]
    assert json_of(arsl(env, tmp_path, "gateway", "keys", "list", "--json"))["keys"][0]["name"] == "ci"
    image = tmp_path / "sign.jpg"
    image.write_bytes(image_bytes(5))
    predicted = arsl(env, tmp_path, "predict", str(image), "--key", key, "--json")
    assert predicted.returncode == 0, predicted.stderr
    answer = json_of(predicted)["results"][0]
    assert answer["status"] == 200 and answer["model_version"] in ("v1", "v2") and answer["label"]

    tested = arsl(env, tmp_path, "api-test", "--requests", "40", "--concurrency", "4", "--feedback", "--json")
    assert tested.returncode == 0, tested.stderr
    report = json_of(tested)
    assert (report["requests"], report["ok"], report["errors"], report["availability"]) == (40, 40, 0, 1.0)
    assert report["labelled"] == 40 and report["feedback_sent"] == 40 and report["passed"] is True
    assert sum(report["versions"].values()) == 40 and 3 <= report["versions"]["v2"] <= 5
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["p99"]
    assert [item["name"] for item in serving.list_keys(gateway_settings(home))] == ["ci"]  # its key is gone

    revoked = arsl(env, tmp_path, "gateway", "keys", "revoke", "ci", "--yes")
    assert revoked.returncode == 0, revoked.stderr
    refused = arsl(env, tmp_path, "predict", str(image), "--key", key, "--json")
    assert refused.returncode == 1 and json_of(refused)["results"][0]["status"] == 401

    settings = gateway_settings(home)
    assert serving.set_weights(settings, {"v1": 75, "v2": 25}, "canary step").weights == {"v1": 75, "v2": 25}
    stats = serving.version_stats(settings, window_s=600)
    assert stats["v1"].requests + stats["v2"].requests == 41 and stats["v2"].feedback >= 3

    status = json_of(arsl(env, tmp_path, "service", "status", "--json"))
    assert (status["running"], status["pid"], status["weights"]) == (True, pid, {"v1": 75, "v2": 25})
    assert status["health"]["status"] == "ok"

    stopped = arsl(env, tmp_path, "service", "stop", "--yes", "--json")
    assert json_of(stopped) == {"stopped": True, "pid": pid}
    assert process_start_ticks(pid) is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(endpoint + "/v1/health", trust_env=False)
    after = json_of(arsl(env, tmp_path, "service", "status", "--json"))
    assert (after["running"], after["weights"]) == (False, {"v1": 75, "v2": 25})

    restarted = json_of(arsl(env, tmp_path, "service", "start", "--json"))
    assert restarted["weights"] == {"v1": 75, "v2": 25} and restarted["pid"] != pid
    health = httpx.get(restarted["endpoint"] + "/v1/health", trust_env=False).json()
    assert (health["weights"], health["canary"]) == ({"v1": 75, "v2": 25}, "v2")
    state = ServingState.open(home)
    try:
        reasons = [change["reason"] for change in state.changes()]
    finally:
        state.close()
    assert reasons == ["deploy v1", "deploy v2 as canary at 10%", "canary step"]


def test_deploy_errors_are_clear(home: Path, env: dict[str, str], tmp_path: Path) -> None:
    unknown = arsl(env, tmp_path, "deploy", "v9")
    assert unknown.returncode == 2 and "v9" in unknown.stderr
    no_stable = arsl(env, tmp_path, "deploy", "v2", "--canary", "150")
    assert no_stable.returncode == 2 and "between 1 and 99" in no_stable.stderr
    nothing = arsl(env, tmp_path, "service", "start")
    assert nothing.returncode == 3 and "nothing is deployed" in nothing.stderr
    status = json_of(arsl(env, tmp_path, "service", "status", "--json"))
    assert status["running"] is False and status["endpoint"] is None
    not_running = arsl(env, tmp_path, "predict", str(tmp_path))
    assert not_running.returncode == 3 and "no local gateway is running" in not_running.stderr
    other_backend = arsl(env, tmp_path, "--backend", "huawei", "deploy", "v1")
    assert other_backend.returncode == 2 and "local gateway" in other_backend.stderr
    env_read_only = {**env, "ARSL_READ_ONLY": "true"}
    read_only = arsl(env_read_only, tmp_path, "deploy", "v1")
    assert read_only.returncode == 2 and "read-only" in read_only.stderr
