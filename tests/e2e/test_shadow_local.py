"""The shadow step end to end on the local backend: the real gateway process, the real CLI, live clients.

A challenger with the champion's weights but its labels permuted (every answer names another class)
is stopped in shadow: `arsl canary watch` exits 1, the reason is in the promotion log, and the
gateway's own per-version counts show that no client request was answered by it. A challenger with
the champion's weights passes shadow and goes on through the canary steps to promotion. Windows are
2 s; the test waits only on the CLI's processes exiting, each with a bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("torch")

import torch

from arsl_tui.config import load_settings
from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.ops import serving
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.local.serving_control import read_admin_token
from tests.e2e.test_canary_local import CANARY_ENV, IMAGES, Stage, Traffic
from tests.fixtures.model_packages import gate_json, metrics_json
from tests.serving.conftest import image_bytes
from tests.serving.packages import export_random_package
from trainer.export import export_package
from trainer.predict import Predictor

pytestmark = pytest.mark.e2e

SHADOW_ENV = {
    **CANARY_ENV,
    "ARSL_CANARY_SHADOW": "true",
    "ARSL_CANARY_SHADOW_WINDOW_S": "2",
    "ARSL_CANARY_SHADOW_MIN_SAMPLES": "15",
    "ARSL_CANARY_MIN_AGREEMENT": "0.9",
}


def permuted_package(champion: Path, output: Path) -> Path:
    """The champion's weights with its class names rotated by one: the same argmax, always another label."""
    predictor = Predictor.load(champion)
    rotated = (*ARSL_CLASSES[1:], ARSL_CLASSES[0])
    return export_package(
        output,
        predictor.model,
        architecture="compact",
        classes=rotated,
        mean=0.5,
        std=0.25,
        manifest_id="m-e2e",
        metrics={"test_acc": 0.97},
        job_id="job-permuted",
    )


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    root = tmp_path_factory.mktemp("shadow-e2e")
    home, packages = root / "home", root / "packages"
    champion = export_random_package(packages / "champion", seed=1)
    with torch.no_grad():
        permuted = permuted_package(champion, packages / "permuted")
    registry = ModelRegistry.from_settings(load_settings(None, environ={}, cwd=root, cli_overrides={"home": str(home)}))
    # v1 and v2 carry the same weights and labels (a good challenger); v3 the same weights, labels permuted.
    for job, package in (("job-v1", champion), ("job-v2", champion), ("job-v3", permuted)):
        registry.register(
            package,
            job_id=job,
            manifest_id="m-e2e",
            source=str(package),
            gate=gate_json(),
            metrics=metrics_json(),
            user="tests",
        )
    images = [image_bytes(seed) for seed in range(IMAGES)]
    labels = [answer[0].label for answer in Predictor.load(champion).predict(images)]
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    env.update({"ARSL_HOME": str(home), **SHADOW_ENV})
    settings = load_settings(None, environ=env, cwd=root, cli_overrides={"home": str(home)})
    traffic: Traffic | None = None
    try:
        first = subprocess.run(
            [sys.executable, "-m", "arsl_tui", "deploy", "champion", "--yes", "--json"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )
        assert first.returncode == 0, first.stderr
        traffic = Traffic(
            endpoint=json.loads(first.stdout)["endpoint"],
            key=serving.create_key(settings, "load"),
            images=images,
            labels=labels,
        )
        traffic.start()
        yield Stage(home=home, cwd=root, env=env, traffic=traffic)
    finally:
        if traffic is not None:
            traffic.close()
        serving.stop(settings)


def client_requests(stage: Stage, window_s: float) -> dict[str, int]:
    """The gateway's own per-version counts of client requests over the last `window_s` seconds."""
    answer = httpx.get(
        stage.traffic.endpoint + "/admin/stats",
        params={"window_s": window_s, "max_samples": 0},
        headers={"Authorization": f"Bearer {read_admin_token(stage.home)}"},
        trust_env=False,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return {version: int(item["requests"]) for version, item in answer.json()["versions"].items()}


def canary_events(stage: Stage) -> list[str]:
    code, log = stage.json("models", "log")
    assert code == 0
    return [entry["reason"] for entry in log["log"] if entry["action"] == "canary"]


def test_a_challenger_with_permuted_labels_is_stopped_in_shadow(stage: Stage) -> None:
    champion = stage.serve_champion_alone()
    began = time.monotonic()
    _before_status, before_versions = stage.traffic.snapshot()
    started = stage.arsl("canary", "start", "v3", "--yes", "--json")
    assert started.returncode == 0, started.stderr
    shown = json.loads(started.stdout)
    # The local deployment is synchronous: the start returns with v3 loaded at 0 % and the copies on.
    assert shown["shadow"]["planned"] is True and shown["phase"] == "shadowing", shown
    assert shown["weights"] == {champion: 100, "v3": 0}
    code, lines = stage.watch()
    final: dict[str, Any] = lines[-1]
    assert code == 1 and final["phase"] == "rolled_back", final
    assert final["shadow"]["result"] == "failed"
    assert final["alarm"] and "stopped in shadow" in final["alarm"]
    verdict = final["shadow"]["verdicts"][-1]["judgement"]
    assert verdict["outcome"] == "fail"
    assert {metric["name"] for metric in verdict["metrics"] if metric["failed"]} >= {"agreement"}
    # No client request was ever answered by v3: the gateway's counts and every client's answers agree.
    counts = client_requests(stage, time.monotonic() - began + 5)
    assert counts.get("v3", 0) == 0 and counts[champion] > 0, counts
    _after_status, after_versions = stage.traffic.snapshot()
    assert (after_versions - before_versions)["v3"] == 0
    assert stage.health()["weights"] == {champion: 100, "v3": 0}
    assert any(reason.startswith("shadow_fail: stopped in shadow") for reason in canary_events(stage))
    code, shadow = stage.json("canary", "shadow", "status")
    assert code == 1 and shadow["shadow"]["result"] == "failed"


def test_a_good_challenger_passes_shadow_and_is_promoted(stage: Stage) -> None:
    champion = stage.serve_champion_alone()
    challenger = "v2" if champion == "v1" else "v1"
    before_status, _ = stage.traffic.snapshot()
    started = stage.arsl("canary", "start", challenger, "--yes")
    assert started.returncode == 0, started.stderr
    code, lines = stage.watch(timeout=90)
    final = lines[-1]
    assert code == 0 and final["phase"] == "promoted", final
    assert final["shadow"]["result"] == "passed"
    events = [entry["event"] for entry in final["journal"] if entry["event"] != "hold"]
    assert events[:3] == ["start", "shadow", "shadow_pass"] and events[-1] == "promoted"
    after_status, _ = stage.traffic.snapshot()
    assert set(after_status - before_status) == {200}  # the shadow never failed a client's request
