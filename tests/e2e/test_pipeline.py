"""`arsl pipeline run --demo` end to end through the real CLI, reduced to fit CI.

Tiny synthetic data (4 images a class), one epoch, 2 s canary windows and gate thresholds a one-epoch
model can meet come from a test config; everything else is the real thing: the upload to the local
store, two real torchrun trainings (champion, then challenger), the gate, the gateway process, the
canary controller judging the demo traffic, the alarm rules. Waiting is the CLI's own (it returns
when the canary ends); each call has a bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from arsl_tui.config import load_settings
from arsl_tui.ops import serving

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = """
[train]
epochs = 1
local_processes = 1

[gate]
min_accuracy = 0.0
max_loss = 100.0
stability_epochs = 1
max_val_acc_spread = 1.0
max_train_val_gap = 1.0
max_val_loss_rise = 100.0
min_class_accuracy = 0.0
max_regression = 1.0
max_class_regression = 1.0

[canary]
steps = [50, 100]
window_s = 2
min_samples = 6
min_feedback = 4
min_online_accuracy = 0.0
max_accuracy_drop = 1.0
max_latency_increase = 100.0
min_latency_increase_ms = 5000.0
max_p95_latency_ms = 10000.0
shadow_window_s = 2
shadow_min_samples = 6
min_agreement = 0.0

[gateway]
port = 0
api_call_limit = 1000000
app_call_limit = 1000000
time_unit = "SECOND"
"""


@dataclass
class Stage:
    root: Path
    home: Path
    env: dict[str, str]

    def arsl(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "arsl_tui", "--config", str(self.root / "config.toml"), *args],
            env=env or self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    root = tmp_path_factory.mktemp("pipeline-e2e")
    (root / "config.toml").write_text(CONFIG, encoding="utf-8")
    home = root / "home"
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    env["ARSL_HOME"] = str(home)
    try:
        yield Stage(root=root, home=home, env=env)
    finally:
        settings = load_settings(str(root / "config.toml"), environ=env, cwd=root, cli_overrides={"home": str(home)})
        serving.stop(settings)  # the gateway the pipeline started, found by its recorded pid


def events(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def phase_states(lines: list[dict[str, Any]]) -> dict[str, str]:
    return {line["phase"]: line["state"] for line in lines if line.get("event") == "PipelinePhase" and line["state"]}


def test_a_demo_run_promotes_and_a_second_run_skips_what_is_done(stage: Stage) -> None:
    first = stage.arsl("pipeline", "run", "--demo", "--per-class", "4", "--yes", "--json")
    assert first.returncode == 0, first.stderr + first.stdout
    lines = events(first)
    assert phase_states(lines) == {
        "data": "done",
        "upload": "done",
        "champion": "done",
        "train": "done",
        "gate": "done",
        "deploy": "done",
        "shadow": "done",
        "canary": "done",
        "alarms": "done",
    }
    started = next(line for line in lines if line.get("event") == "PipelineStarted")
    assert started["resumed_from"] == ""
    # The demo's value for what the config does not set; the config's values win over the others.
    assert started["settings"] == {"canary.poll_s": 0.5}
    result = lines[-1]
    assert (result["outcome"], result["version"]) == ("promoted", "v2")
    # The run's event file (what the console follows) holds the same events, each with its time.
    recorded = [
        json.loads(line)
        for line in (stage.home / "pipeline" / f"{started['run_id']}.events.jsonl").read_text().splitlines()
    ]
    assert all(isinstance(line.pop("at"), float) for line in recorded)
    assert recorded == lines[:-1]
    assert not (stage.home / "pipeline" / "lock").read_text()  # released: no holder written

    models = json.loads(stage.arsl("models", "list", "--json").stdout)
    aliases = [(item["version"], item["aliases"]) for item in models["versions"]]
    assert aliases == [("v1", []), ("v2", ["champion"])]  # a promoted challenger is no longer one
    log = json.loads(stage.arsl("models", "log", "--json").stdout)["log"]
    assert ("set_alias", "champion", "v2") in [(entry["action"], entry["alias"], entry["to"]) for entry in log]
    canary = stage.arsl("canary", "status", "--json")
    assert canary.returncode == 0 and json.loads(canary.stdout)["phase"] == "promoted"

    second = stage.arsl("pipeline", "run", "--demo", "--per-class", "4", "--yes")
    assert second.returncode == 0, second.stderr + second.stdout
    text = second.stdout
    for phase in ("upload", "champion", "train", "gate", "deploy", "canary", "alarms"):
        assert f"{phase:<9} skipped: done in run {started['run_id']}" in text, text
    assert "resuming phases done in " + started["run_id"] in text
    assert "PROMOTED v2" in text


def test_a_broken_challenger_is_rolled_back_and_the_champion_keeps_serving(stage: Stage) -> None:
    # Random weights are right 1 time in 32, and agree with the champion about as rarely: stopped in shadow.
    env = {**stage.env, "ARSL_CANARY_MIN_ONLINE_ACCURACY": "0.5", "ARSL_CANARY_MIN_AGREEMENT": "0.5"}
    broken = stage.arsl(
        "pipeline", "run", "--demo", "--per-class", "4", "--broken-challenger", "--yes", "--json", env=env
    )
    lines = events(broken)
    assert broken.returncode == 1, broken.stderr + broken.stdout
    states = phase_states(lines)
    assert "canary" in states, broken.stdout + broken.stderr
    assert (states["champion"], states["shadow"], states["canary"], states["alarms"]) == (
        "not needed",
        "failed",
        "failed",
        "done",
    ), states
    result = lines[-1]
    assert result["outcome"] == "rolled_back"
    challenger = result["version"]
    champion = json.loads(stage.arsl("models", "show", "champion", "--json").stdout)["version"]
    assert champion != challenger

    status = stage.arsl("canary", "status", "--json", env=env)
    shown = json.loads(status.stdout)
    assert status.returncode == 1 and shown["phase"] == "rolled_back"
    assert shown["weights"] == {champion: 100, challenger: 0}
    log = json.loads(stage.arsl("models", "log", "--json").stdout)["log"]
    assert any(
        entry["action"] == "override" and entry["to"] == challenger and "--broken-challenger" in entry["reason"]
        for entry in log
    )
    assert any(entry["action"] == "canary" and entry["reason"].startswith("rolled") for entry in log), log[-4:]
    # Stopped in shadow, before any client saw it (the shadow step's own log entry).
    assert any(
        entry["action"] == "canary" and entry["reason"].startswith("shadow_fail: stopped in shadow") for entry in log
    ), log[-4:]
