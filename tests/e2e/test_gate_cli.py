"""`arsl gate` and `arsl models` as a user runs them: a real process over jobs of the real local platform.

The crafted jobs run through the real platform (wrapper process, SQLite record, exit status): only
torchrun is replaced by a small launcher that writes a chosen metrics.jsonl and a model package
(safetensors) into the job's output, so each verdict is known in advance. One slow test gates a job
of the real trainer, to keep the gate and the trainer's records in step.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.domain.jobs import JobPhase, JobSpec
from arsl_tui.providers.local.jobs import LocalTrainingPlatform
from tests.fixtures.cli import arsl
from tests.fixtures.model_packages import metrics_records

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0

LAUNCHER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from tests.fixtures.model_packages import write_package

    scenario = json.loads(Path(sys.argv[1]).read_text())
    output = Path(sys.argv[sys.argv.index("--output") + 1])
    write_package(output / "model", scenario["seed"], job_id=os.environ.get("ARSL_JOB_ID", ""),
                  manifest_id=scenario["manifest_id"])
    with (output / "metrics.jsonl").open("w") as handle:
        for record in scenario["records"]:
            handle.write(json.dumps(record) + "\\n")
""")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    environment["ARSL_HOME"] = str(tmp_path / "home")
    return environment


def finished_job(tmp_path: Path, name: str, scenario_records: list[dict[str, Any]], seed: int) -> str:
    """Submit a crafted job to the real local platform and wait (polling, with a deadline) until it ends."""
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER, encoding="utf-8")
    scenario = tmp_path / f"{name}.json"
    scenario.write_text(json.dumps({"seed": seed, "manifest_id": "m-e2e", "records": scenario_records}))
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    platform = LocalTrainingPlatform(tmp_path / "home", launcher=[sys.executable, str(script), str(scenario)])
    try:
        job_id = platform.submit(JobSpec(dataset=str(data), epochs=4, batch_size=8, learning_rate=0.001))
        deadline = time.monotonic() + DEADLINE_S
        while not (status := platform.status(job_id)).terminal:
            assert time.monotonic() < deadline, f"job {job_id} did not end: {status}"
            time.sleep(0.05)
        assert status.phase is JobPhase.COMPLETED, status.reason
    finally:
        platform.close()
    return job_id


def test_gate_registers_a_pass_refuses_a_fail_and_logs_an_override(tmp_path: Path, env: dict[str, str]) -> None:
    passing = finished_job(tmp_path, "pass", metrics_records(test_acc=0.975), seed=1)
    failing = finished_job(tmp_path, "fail", metrics_records(test_acc=0.90, worst_class=0.7), seed=2)

    text = arsl(env, tmp_path, "gate", passing)
    assert text.returncode == 0, text.stderr
    lines = {line.split()[1]: line for line in text.stdout.splitlines() if line.startswith(("✓", "✗"))}
    assert set(lines) == {
        "test_accuracy",
        "test_loss",
        "class_floor",
        "val_stability",
        "train_val_gap",
        "val_loss_trend",
    }
    assert all(line.startswith("✓") for line in lines.values())
    assert "0.9750" in lines["test_accuracy"] and "≥ 0.9500" in lines["test_accuracy"]
    assert "PASS ✓ all 6 rules passed; registered as v1 (champion and challenger)" in text.stdout

    failed = arsl(env, tmp_path, "gate", failing, "--json")
    assert failed.returncode == 1, failed.stderr
    result = json.loads(failed.stdout)
    assert (result["verdict"], result["registered"], result["version"]) == ("fail", False, None)
    assert result["champion_version"] == "v1"
    verdicts = {rule["rule"]: rule["verdict"] for rule in result["rules"]}
    assert verdicts["test_accuracy"] == verdicts["class_floor"] == verdicts["no_regression"] == "fail"
    assert verdicts["val_stability"] == "pass"
    assert result["gate_record_key"].startswith(f"models/gate-records/{failing}/")

    no_reason = arsl(env, tmp_path, "gate", failing, "--override")
    assert no_reason.returncode == 2 and "--override needs --reason" in no_reason.stderr

    overridden = arsl(
        env, tmp_path, "gate", failing, "--override", "--reason", "field test with the deaf club", "--json"
    )
    assert overridden.returncode == 0, overridden.stderr
    result = json.loads(overridden.stdout)
    assert (result["verdict"], result["version"], result["aliases"], result["override"]) == (
        "fail",
        "v2",
        ["challenger"],
        True,
    )

    again = arsl(env, tmp_path, "gate", passing, "--json")
    assert again.returncode == 0
    assert (json.loads(again.stdout)["version"], json.loads(again.stdout)["already_registered"]) == ("v1", True)

    listing = json.loads(arsl(env, tmp_path, "models", "list", "--json").stdout)
    assert [(item["version"], item["aliases"]) for item in listing["versions"]] == [
        ("v1", ["champion"]),
        ("v2", ["challenger"]),
    ]
    shown = arsl(env, tmp_path, "models", "show", "champion", "--json")
    assert shown.returncode == 0, shown.stderr
    version = json.loads(shown.stdout)
    assert {"version", "aliases", "metrics", "lineage", "gate"} <= set(version)
    assert version["version"] == "v1" and version["metrics"]["test_acc"] == 0.975
    assert version["metrics"]["confusion"][0] == [9, 1, 0] and len(version["metrics"]["epochs"]) == 4
    assert (version["lineage"]["job_id"], version["lineage"]["manifest_id"]) == (passing, "m-e2e")
    assert version["gate"]["verdict"] == "pass" and version["gate"]["job_id"] == passing

    log = json.loads(arsl(env, tmp_path, "models", "log", "--json").stdout)["log"]
    assert [(entry["action"], entry["alias"], entry["from"], entry["to"]) for entry in log] == [
        ("register", None, None, "v1"),
        ("set_alias", "challenger", None, "v1"),
        ("set_alias", "champion", None, "v1"),
        ("override", None, None, "v2"),
        ("set_alias", "challenger", "v1", "v2"),
    ]
    assert log[3]["reason"] == "field test with the deaf club"

    missing = arsl(env, tmp_path, "models", "show", "v9")
    assert missing.returncode == 2 and "no model version v9" in missing.stderr
    unknown = arsl(env, tmp_path, "gate", "job-00000000-000000-zzzz")
    assert unknown.returncode == 2 and "no local training job" in unknown.stderr


def test_read_only_mode_allows_only_a_dry_run(tmp_path: Path, env: dict[str, str]) -> None:
    job = finished_job(tmp_path, "pass", metrics_records(test_acc=0.975), seed=5)
    config = tmp_path / "config.toml"
    config.write_text("read_only = true\n", encoding="utf-8")
    refused = arsl(env, tmp_path, "--config", str(config), "gate", job)
    assert refused.returncode == 2 and "read-only mode is on" in refused.stderr
    dry = arsl(env, tmp_path, "--config", str(config), "gate", job, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert (json.loads(dry.stdout)["registered"], json.loads(dry.stdout)["gate_record_key"]) == (False, None)
    assert json.loads(arsl(env, tmp_path, "models", "list", "--json").stdout)["versions"] == []


@pytest.mark.slow
def test_a_real_training_job_is_judged_on_the_trainers_own_records(tmp_path: Path, env: dict[str, str]) -> None:
    from arsl_tui.ops.synth import synthesize

    data = tmp_path / "data"
    synthesize(data, per_class=4, seed=3)
    platform = LocalTrainingPlatform(tmp_path / "home")
    try:
        job_id = platform.submit(JobSpec(dataset=str(data), epochs=1, batch_size=32, learning_rate=0.003, seed=1))
        deadline = time.monotonic() + 120
        while not (status := platform.status(job_id)).terminal:
            assert time.monotonic() < deadline, f"job {job_id} did not end"
            time.sleep(0.1)
        assert status.phase is JobPhase.COMPLETED, status.reason
    finally:
        platform.close()
    judged = arsl(env, tmp_path, "gate", job_id, "--json")
    assert judged.returncode == 1, judged.stderr  # one epoch of a tiny set cannot pass
    result = json.loads(judged.stdout)
    rules = {rule["rule"]: rule for rule in result["rules"]}
    assert isinstance(rules["test_accuracy"]["measured"], float)  # read from the trainer's final record
    assert rules["val_stability"]["detail"] == "needs 3 epoch record(s), the job wrote 1"
    registered = arsl(env, tmp_path, "gate", job_id, "--override", "--reason", "smoke test of the pipeline", "--json")
    assert registered.returncode == 0, registered.stderr
    shown = json.loads(arsl(env, tmp_path, "models", "show", "v1", "--json").stdout)
    assert shown["lineage"]["job_id"] == job_id and len(shown["lineage"]["manifest_id"]) > 0
    assert "model.safetensors" in {item["path"] for item in shown["package"]}
    assert shown["metrics"]["test_acc"] == rules["test_accuracy"]["measured"]


def test_after_a_promotion_every_view_shows_one_champion_and_a_registered_job_needs_no_gate(
    tmp_path: Path, env: dict[str, str]
) -> None:
    from arsl_tui.config import Settings
    from arsl_tui.ops.registry import ModelRegistry

    first = finished_job(tmp_path, "first", metrics_records(test_acc=0.975), seed=1)
    second = finished_job(tmp_path, "second", metrics_records(test_acc=0.98), seed=2)
    assert arsl(env, tmp_path, "gate", first).returncode == 0

    def rows() -> dict[str, dict[str, Any]]:
        status = arsl(env, tmp_path, "status", "--json")
        assert status.returncode == 0, status.stderr
        return {row["phase"]: row for row in json.loads(status.stdout)["phases"]}

    assert rows()["training"]["next"] == f"arsl gate {second}"  # the newest job is not registered yet
    gated = arsl(env, tmp_path, "gate", second)
    assert "registered as v2 (challenger)" in gated.stdout, gated.stdout + gated.stderr
    training, models = rows()["training"], rows()["models"]
    assert training["summary"] == f"job {second} Completed, registered as v2" and training["next"] is None
    assert models["details"]["challenger"] == "v2" and models["next"] == "arsl deploy v2 --canary 10"

    registry = ModelRegistry.from_settings(Settings(home=env["ARSL_HOME"]))
    registry.set_alias("champion", "v2", "canary c1: promoted after 4 steps", "ann")  # what a promotion writes

    listing = arsl({**env, "COLUMNS": "80"}, tmp_path, "models", "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    v1 = next(line for line in lines if line.startswith("v1 "))
    v2 = next(line for line in lines if line.startswith("v2 "))
    assert first in v1 and second in v2  # whole job ids, each on its version's line
    assert [cell.strip() for cell in v2.split("│")][:4] == ["v2", "champion", "✓", "0.9800"]
    assert [cell.strip() for cell in v1.split("│")][:2] == ["v1", "—"]
    assert "challenger" not in listing.stdout
    assert [cell.strip() for cell in lines[1].split("┃")][:5] == ["version", "aliases", "gate", "test acc", "job"]
    versions = json.loads(arsl(env, tmp_path, "models", "list", "--json").stdout)
    assert [(item["version"], item["aliases"]) for item in versions["versions"]] == [("v1", []), ("v2", ["champion"])]
    assert versions["aliases"] == {"champion": "v2"}
    shown = json.loads(arsl(env, tmp_path, "models", "show", "v2", "--json").stdout)
    assert shown["aliases"] == ["champion"] and shown["created_by"]  # who registered it stays in `models show`
    models = rows()["models"]
    assert (models["summary"], models["details"]["challenger"], models["next"]) == (
        "champion v2, challenger —",
        None,
        None,
    )
    no_challenger = arsl(env, tmp_path, "models", "show", "challenger")
    assert no_challenger.returncode == 2 and "no version is challenger yet" in no_challenger.stderr
