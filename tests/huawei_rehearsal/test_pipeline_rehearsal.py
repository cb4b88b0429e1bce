"""The reduced Huawei rehearsal through the real CLI: `arsl pipeline run --demo --yes --backend huawei`.

The stand-ins run as their launcher's subprocess (`stack_process`); `arsl` runs as a child process with the
port file's environment (the fixed test credentials, the stand-ins' config, the loopback resolver, the app
code) in a fresh home. Nothing about the product is relaxed: the demo data and training, the real gate,
the canary judged on Cloud Eye's call counts and the labelled probes; only the canary windows are shorter
(`ARSL_CANARY_WINDOW_S`, as `scripts/rehearse_huawei.sh --tiny` sets them) and the stand-ins sync job
outputs every second.

One home, three runs: the first meets an injected fault (`job_fails`: the champion's training job fails as
it starts) and ends failed, naming the job; the same command again resumes and promotes a challenger over a
new champion; the third releases a challenger with random weights (`--broken-challenger`), which the canary
must roll back with the champion still serving. Waiting is the CLI's own; each call has a bound.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("huaweicloudsdkmodelarts")

from arsl_tui.ops.serving import KEY_ENV, synthetic_images
from arsl_tui.serving.auth import HEADER
from tests.fixtures.cli import arsl

TEST_TIMEOUT_S = 2400
"""Three trainings of the demo model (about two minutes each on two idle cores, several on a busy CI runner)."""
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 1200.0
"""A cap, not a wait: two trainings of the demo model on two busy cores, the imports and two canary windows."""
WINDOW_S = "10"


def _environment(stack: dict[str, Any], home: Path) -> dict[str, str]:
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    return {**inherited, **stack["env"], "ARSL_HOME": str(home), "ARSL_CANARY_WINDOW_S": WINDOW_S}


def _said(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def _json(env: dict[str, str], *args: str, exit_code: int = 0) -> dict[str, Any]:
    result = arsl(env, ROOT, *args, "--json")
    assert result.returncode == exit_code, _said(result)
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def _phases(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    view = _json(env, "pipeline", "status", "--backend", "huawei")
    return {item["name"]: item for item in view["phases"]}


def _served_by(endpoint: str, key: str) -> str:
    """The version that answers a client of the service now (its answer names it)."""
    image, _label = synthetic_images(1, seed=99)[0]
    response = httpx.post(
        endpoint, files={"images": ("check.jpg", image, "image/jpeg")}, headers={HEADER: key}, trust_env=False
    )
    assert response.status_code == 200, response.text
    return str(response.json()["model_version"])


def test_the_pipeline_on_huawei_resumes_after_a_failed_job_promotes_and_rolls_a_broken_challenger_back(
    stack_process: dict[str, Any], tmp_path: Path
) -> None:
    env = _environment(stack_process, tmp_path / "home")
    run = ("pipeline", "run", "--demo", "--yes", "--backend", "huawei")

    # A job that fails (its container is killed as it starts): the run ends failed, naming the job.
    armed = httpx.put(f"{stack_process['endpoints']['faults']}/job_fails", json={"times": 1}, trust_env=False)
    assert armed.status_code == 200, armed.text
    failed = arsl(env, ROOT, *run, timeout=RUN_TIMEOUT_S)
    assert failed.returncode == 1, _said(failed)
    view = _json(env, "pipeline", "status", "--backend", "huawei")
    assert view["outcome"] == "failed", view
    detail = str(view["outcome_detail"])
    assert detail.startswith("training job ") and " ended Failed" in detail, view
    assert detail.split()[2] in failed.stdout + failed.stderr, _said(failed)  # the job, named to the user
    assert _phases(env)["upload"]["state"] == "done"

    # The same command again resumes: the upload is not redone, the champion is trained, the challenger promoted.
    promoted = arsl(env, ROOT, *run, timeout=RUN_TIMEOUT_S)
    assert promoted.returncode == 0, _said(promoted)
    assert "PROMOTED v2" in promoted.stdout, _said(promoted)
    phases = _phases(env)
    assert phases["upload"]["state"] == "skipped"
    assert phases["deploy"]["state"] == "done"
    assert "v1 is ModelArts model" in phases["deploy"]["detail"]
    assert "v2 is ModelArts model" in phases["deploy"]["detail"]
    # The shadow step is part of the canary in the run's views; the run's own line says why there is none.
    assert "shadow    not needed: no shadow step (ModelArts real-time services have no traffic mirroring" in (
        promoted.stdout
    ), _said(promoted)
    # The demo clients called the service itself (its app-auth address), not a local gateway.
    assert "demo traffic:" in phases["canary"]["detail"]
    assert "0 answered" not in phases["canary"]["detail"]
    canary = _json(env, "canary", "status", "--backend", "huawei")
    assert (canary["phase"], canary["champion"], canary["challenger"]) == ("promoted", "v1", "v2")
    assert canary["weights"] == {"v2": 100}
    assert canary["platform"]["phase"] == "running"

    broken = arsl(env, ROOT, *run, "--broken-challenger", timeout=RUN_TIMEOUT_S)
    assert broken.returncode == 1, _said(broken)
    assert "ROLLED_BACK" in broken.stdout.upper(), _said(broken)
    # Caught at the first step: the probes' labels are enough evidence at 50 % (the Huawei demo's min_feedback).
    assert "canary.min_feedback = 10" in broken.stdout, _said(broken)
    canary = _json(env, "canary", "status", "--backend", "huawei", exit_code=1)  # its contract: 1 rolled back
    assert canary["phase"] == "rolled_back", canary
    assert "automatic rollback at 50%" in canary["reason"], canary
    assert (canary["champion"], canary["challenger"]) == ("v2", "v3")
    assert {version: weight for version, weight in canary["weights"].items() if weight} == {"v2": 100}
    assert canary["platform"]["phase"] == "running"
    assert _served_by(canary["platform"]["endpoint"], stack_process["env"][KEY_ENV]) == "v2"
