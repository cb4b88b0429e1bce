"""Local canary end to end: the real gateway (a detached process started by `arsl deploy`), the real CLI.

Clients send a steady stream of predictions and feedback for the whole module. The true label of
each image is what the champion's own model answers (computed here with the trainer's predictor),
so the champion is right on all of them; a *good* challenger carries the same weights, a *bad* one
random weights (right about 1 time in 32). Windows are 2 s and need 15 canary requests; time moves
with the traffic and the controller's own window ends — the test waits only on conditions (a
process exiting, a state appearing), each with a bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("torch")

from arsl_tui.config import load_settings
from arsl_tui.ops import serving
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.serving.auth import HEADER
from arsl_tui.state.canary_store import CanaryStore
from tests.fixtures.model_packages import gate_json, metrics_json
from tests.serving.conftest import image_bytes
from tests.serving.packages import export_random_package
from trainer.predict import Predictor

pytestmark = pytest.mark.e2e

IMAGES = 48
CANARY_ENV = {
    "ARSL_CANARY_STEPS": "20,50,100",
    "ARSL_CANARY_WINDOW_S": "2",
    "ARSL_CANARY_MIN_SAMPLES": "15",
    "ARSL_CANARY_MIN_FEEDBACK": "10",
    "ARSL_CANARY_POLL_S": "0.2",
    "ARSL_CANARY_MAX_P95_LATENCY_MS": "5000",
    "ARSL_CANARY_SHADOW": "false",  # these tests are about the traffic steps; test_shadow_local covers shadow
    "ARSL_GATEWAY_PORT": "0",
    "ARSL_GATEWAY_API_CALL_LIMIT": "1000000",
    "ARSL_GATEWAY_APP_CALL_LIMIT": "1000000",
    "ARSL_GATEWAY_TIME_UNIT": "SECOND",
}


@dataclass
class Traffic:
    """Clients in threads: predict, then send the true label; every answer is counted."""

    endpoint: str
    key: str
    images: list[bytes]
    labels: list[str]
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, clients: int = 3) -> None:
        for number in range(clients):
            thread = threading.Thread(target=self._run, args=(number,), name=f"client-{number}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, number: int) -> None:
        with httpx.Client(base_url=self.endpoint, trust_env=False, timeout=30, headers={HEADER: self.key}) as client:
            index = number
            while not self.stop.is_set():
                image = index % len(self.images)
                index += 1
                response = client.post(
                    "/v1/predict", content=self.images[image], headers={"Content-Type": "image/jpeg"}
                )
                with self.lock:
                    self.statuses[response.status_code] += 1
                if response.status_code != 200:
                    continue
                body = response.json()
                with self.lock:
                    self.versions[body["model_version"]] += 1
                client.post("/v1/feedback", json={"request_id": body["request_id"], "label": self.labels[image]})

    def snapshot(self) -> tuple[Counter[int], Counter[str]]:
        with self.lock:
            return Counter(self.statuses), Counter(self.versions)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@dataclass
class Stage:
    home: Path
    cwd: Path
    env: dict[str, str]
    traffic: Traffic

    def arsl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "arsl_tui", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def json(self, *args: str) -> tuple[int, Any]:
        result = self.arsl(*args, "--json")
        assert result.stdout, result.stderr
        return result.returncode, json.loads(result.stdout.splitlines()[-1])

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(self.traffic.endpoint + "/v1/health", trust_env=False, timeout=10).json()
        return answer

    def serve_champion_alone(self) -> str:
        deployed = self.arsl("deploy", "champion", "--yes", "--json")
        assert deployed.returncode == 0, deployed.stderr
        return str(json.loads(deployed.stdout)["version"])

    def watch(self, timeout: float = 60) -> tuple[int, list[dict[str, Any]]]:
        """`arsl canary watch --json` until the canary ends; every status line it printed."""
        result = self.arsl("canary", "watch", "--json", timeout=timeout)
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        assert lines, result.stderr
        return result.returncode, lines


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    root = tmp_path_factory.mktemp("canary-e2e")
    home, packages = root / "home", root / "packages"
    champion = export_random_package(packages / "champion", seed=1)
    bad = export_random_package(packages / "random", seed=3)
    registry = ModelRegistry.from_settings(load_settings(None, environ={}, cwd=root, cli_overrides={"home": str(home)}))
    # v1 and v2 carry the same weights (a good challenger); v3 random ones (a bad challenger).
    for job, package in (("job-v1", champion), ("job-v2", champion), ("job-v3", bad)):
        registry.register(
            package,
            job_id=job,
            manifest_id="m-e2e",
            source=str(package),
            gate=gate_json(),
            metrics=metrics_json(),
            user="tests",
        )
    assert registry.aliases() == {"champion": "v1", "challenger": "v3"}
    images = [image_bytes(seed) for seed in range(IMAGES)]
    labels = [answer[0].label for answer in Predictor.load(champion).predict(images)]
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    env.update({"ARSL_HOME": str(home), **CANARY_ENV})
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
        serving.stop(settings)  # the gateway this module started, found by its recorded pid


def test_manual_rollback_restores_the_champion_at_once(stage: Stage) -> None:
    champion = stage.serve_champion_alone()
    started = stage.arsl("canary", "start", "v3", "--yes", "--json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["phase"] == "observing"
    assert stage.health()["weights"] == {champion: 80, "v3": 20}
    code, rolled = stage.json("canary", "rollback", "--yes", "--reason", "testing the big red button")
    assert code == 0 and rolled["phase"] == "rolled_back"
    assert stage.health()["weights"] == {champion: 100, "v3": 0}  # at once: no window, no judge
    assert rolled["alarm"] is None and "testing the big red button" in rolled["reason"]
    code, status = stage.json("canary", "status")
    assert code == 1 and status["phase"] == "rolled_back"  # the contract: rolled back → exit 1


def test_a_bad_challenger_is_rolled_back_automatically_within_two_windows(stage: Stage) -> None:
    champion = stage.serve_champion_alone()
    before_status, before_versions = stage.traffic.snapshot()
    started = stage.arsl("canary", "start", "v3", "--yes")
    assert started.returncode == 0, started.stderr
    code, lines = stage.watch()
    final = lines[-1]
    assert code == 1 and final["phase"] == "rolled_back", final
    assert len(final["judgements"]) <= 2
    assert final["judgements"][-1]["judgement"]["outcome"] == "fail"
    failed = {metric["name"] for metric in final["judgements"][-1]["judgement"]["metrics"] if metric["failed"]}
    assert "online_accuracy" in failed
    assert final["alarm"] and "automatic rollback at 20%" in final["alarm"]
    assert stage.health()["weights"] == {champion: 100, "v3": 0}
    after_status, after_versions = stage.traffic.snapshot()
    answered = after_status - before_status
    served = after_versions - before_versions
    assert set(answered) == {200}, answered  # no client saw a failed request
    assert served["v3"] <= 0.2 * sum(served.values()) + 1  # the canary never had more than its share
    store = CanaryStore.open(stage.home)
    try:
        assert store.alarms()[0]["reason"] == final["alarm"]
    finally:
        store.close()


def test_a_good_challenger_is_stepped_to_100_percent_and_promoted(stage: Stage) -> None:
    champion = stage.serve_champion_alone()
    challenger = "v2" if champion == "v1" else "v1"  # the one with the champion's weights
    before_status, _ = stage.traffic.snapshot()
    started = stage.arsl("canary", "start", challenger, "--yes")
    assert started.returncode == 0, started.stderr
    code, lines = stage.watch(timeout=75)
    final = lines[-1]
    assert code == 0 and final["phase"] == "promoted", final
    outcomes = [(record["weight"], record["judgement"]["outcome"]) for record in final["judgements"]]
    assert [weight for weight, outcome in outcomes if outcome == "pass"] == [20, 50, 100]
    assert [entry["event"] for entry in final["journal"] if entry["event"] != "hold"] == [
        "start",
        "deployed",
        "step",
        "step",
        "promote",
        "promoted",
    ]
    assert stage.health()["weights"] == {challenger: 100}
    after_status, _ = stage.traffic.snapshot()
    assert set(after_status - before_status) == {200}
    code, log = stage.json("models", "log")
    events = [entry["reason"].split(":", 1)[0] for entry in log["log"] if entry["action"] == "canary"]
    assert events[-5:] == ["deployed", "step", "step", "promote", "promoted"]
    moves = [(entry["action"], entry["alias"], entry["to"]) for entry in log["log"][-4:]]
    assert ("set_alias", "champion", challenger) in moves
