"""The reduced Huawei rehearsal through the real CLI: `arsl pipeline run --demo --yes --backend huawei`.

The stand-ins run as their launcher's subprocess (`stack_process`); `arsl` runs as a child process with the
port file's environment (the fixed test credentials, the stand-ins' config, the loopback resolver, the app
code) in a fresh home. Nothing about the product is relaxed: the demo data and training, the real gate,
the canary judged on Cloud Eye's call counts and the labelled probes; only the canary windows are shorter
(`ARSL_CANARY_WINDOW_S`, as `scripts/rehearse_huawei.sh --tiny` sets them) and the stand-ins sync job
outputs every second.

One home, one run per injected fault, each ending in an explicit state that the same command resumes from:

1. `job_fails` (the champion's training job fails as it starts): the run ends failed, naming the job.
2. The re-run trains both versions; `import_fails` (v2's AI application ends `failed`): the run ends failed at
   the deploy phase, naming the model and its status.
3. The re-run deletes the failed AI application and imports v2 again (saying so); `service_stuck_deploying`
   (the service's creation never starts an instance) with a short `canary.deploy_timeout_s`: the canary fails,
   "not serving v2 after 15 s", the champion's traffic restored.
4. The re-run releases again; `error_500_mid_canary` (every call routed to v2 answers 500) and
   `drop_connection_after_put` on the release's first OBS record (stored, the answer lost: the adapter's
   own retry meets the object it wrote): the judge rolls v2 back on its error rate.
5. The re-run releases again; `throttle_429` and `drop_connection_after_put` on the canary's UpdateService
   (the first is refused, the second applied with its answer lost): retried, applied once, promoted, and the
   release lists both in `retried`.
6. A challenger with random weights (`--broken-challenger`) is rolled back with the champion still serving.

Trainings are the expensive part: the faults after the first come after both trainings, so steps 2-5 cost
imports and canary windows only. Waiting is the CLI's own; each call has a bound.
"""

from __future__ import annotations

import json
import os
import re
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


def _faults(stack: dict[str, Any]) -> str:
    return str(stack["endpoints"]["faults"])


def _arm(stack: dict[str, Any], name: str, *, times: int | None = 1, **params: str) -> None:
    armed = httpx.put(f"{_faults(stack)}/{name}", json={"times": times, "params": params}, trust_env=False)
    assert armed.status_code == 200, armed.text


def _armed(stack: dict[str, Any]) -> dict[str, Any]:
    """The faults still armed (one that fired its last time is gone)."""
    listed = httpx.get(_faults(stack), trust_env=False)
    assert listed.status_code == 200, listed.text
    faults: dict[str, Any] = listed.json()["faults"]
    return faults


def _disarm(stack: dict[str, Any], name: str) -> None:
    assert httpx.delete(f"{_faults(stack)}/{name}", trust_env=False).status_code == 200


def test_the_pipeline_on_huawei_ends_explicitly_at_each_fault_resumes_promotes_and_rolls_a_broken_challenger_back(
    stack_process: dict[str, Any], tmp_path: Path
) -> None:
    env = _environment(stack_process, tmp_path / "home")
    run = ("pipeline", "run", "--demo", "--yes", "--backend", "huawei")

    # 1. A job that fails (its container is killed as it starts): the run ends failed, naming the job.
    _arm(stack_process, "job_fails")
    failed = arsl(env, ROOT, *run, timeout=RUN_TIMEOUT_S)
    assert failed.returncode == 1, _said(failed)
    view = _json(env, "pipeline", "status", "--backend", "huawei")
    assert view["outcome"] == "failed", view
    detail = str(view["outcome_detail"])
    assert detail.startswith("training job ") and " ended Failed" in detail, view
    assert detail.split()[2] in failed.stdout + failed.stderr, _said(failed)  # the job, named to the user
    assert _phases(env)["upload"]["state"] == "done"

    # 2. The same command resumes (the upload is not redone) and trains both; v2's import fails.
    _arm(stack_process, "import_fails", match=" 1.0.2")
    not_imported = arsl(env, ROOT, *run, timeout=RUN_TIMEOUT_S)
    assert not_imported.returncode == 1, _said(not_imported)
    view = _json(env, "pipeline", "status", "--backend", "huawei")
    detail = str(view["outcome_detail"])
    assert view["outcome"] == "failed" and detail.startswith("importing v2 into ModelArts failed"), view
    assert "model_status 'failed'" in detail and "run the pipeline again to resume" in detail, view
    named = re.search(r", model ([0-9a-f-]+)\)", detail)  # "(<name> 1.0.2, model <id>)"
    assert named is not None, detail
    failed_model = named.group(1)
    assert "import_fails" not in _armed(stack_process)
    phases = _phases(env)
    assert phases["upload"]["state"] == "skipped"
    assert phases["deploy"]["state"] not in ("done", "skipped"), phases["deploy"]

    # 3. Again: the failed AI application is deleted and v2 imported anew; the service's creation is stuck
    # deploying, so after the (shortened) deploy timeout the canary fails with the champion's traffic restored.
    _arm(stack_process, "service_stuck_deploying")
    stuck = arsl({**env, "ARSL_CANARY_DEPLOY_TIMEOUT_S": "15"}, ROOT, *run, timeout=RUN_TIMEOUT_S)
    assert stuck.returncode == 1, _said(stuck)
    assert f"model {failed_model}" in stuck.stdout and "deleting it and importing v2 again" in stuck.stdout, _said(
        stuck
    )
    phases = _phases(env)
    assert phases["train"]["state"] == "skipped" and phases["deploy"]["state"] == "done", phases
    assert failed_model not in phases["deploy"]["detail"], phases["deploy"]
    assert phases["canary"]["state"] == "failed", phases["canary"]
    canary = _json(env, "canary", "status", "--backend", "huawei", exit_code=1)
    assert canary["phase"] == "failed", canary
    assert "not serving v2 after 15 s (service deploying)" in canary["reason"], canary
    assert canary["target_weights"] == {"v1": 100, "v2": 0} and canary["pending"] == [], canary

    # 4. Again: the release starts over; every call v2 answers is a 500, so the judge rolls it back. The first
    # record of the release is stored but its answer lost: the run goes on as if it had been answered.
    _arm(stack_process, "error_500_mid_canary", times=None)
    _arm(stack_process, "drop_connection_after_put", match="/events/0")  # a record, not the adapter's probe
    erring = arsl(env, ROOT, *run, timeout=RUN_TIMEOUT_S)
    _disarm(stack_process, "error_500_mid_canary")
    assert erring.returncode == 1, _said(erring)
    assert "drop_connection_after_put" not in _armed(stack_process)  # it fired
    canary = _json(env, "canary", "status", "--backend", "huawei", exit_code=1)
    assert canary["phase"] == "rolled_back" and "automatic rollback at 50%" in canary["reason"], canary
    assert "error rate" in canary["reason"], canary
    assert {version: weight for version, weight in canary["weights"].items() if weight} == {"v1": 100}, canary

    # 5. Again: the canary's first UpdateService is throttled, the second applied with its answer dropped;
    # both are retried past (the change is found applied, not sent again) and the challenger is promoted.
    _arm(stack_process, "throttle_429", match="update_service")
    _arm(stack_process, "drop_connection_after_put", match="UpdateService")
    promoted = arsl(env, ROOT, *run, timeout=RUN_TIMEOUT_S)
    assert promoted.returncode == 0, _said(promoted)
    assert "PROMOTED v2" in promoted.stdout, _said(promoted)
    assert _armed(stack_process) == {}
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
    updates = [problem for problem in canary["retried"] if problem.startswith("deploy: ModelArts UpdateService")]
    # "HTTP 429", not "429": the dropped answer's problem names the stand-in's address, and its port may hold 429.
    assert [("HTTP 429" in problem) for problem in updates] == [True, False], canary["retried"]  # throttled, dropped
    assert canary["error"] is None, canary
    assert f"retried past {len(canary['retried'])} problem(s)" in phases["canary"]["detail"], phases["canary"]
    # The alarm rules watch the service the canary created: its id came from ModelArts, none was configured
    # (set up by the first run that got past the canary, the rolled-back one; skipped since).
    assert phases["alarms"]["state"] in ("done", "skipped"), phases["alarms"]
    assert "alarms.service_id = " in phases["alarms"]["detail"], phases["alarms"]
    rules = _json(env, "alarms", "list", "--backend", "huawei")
    assert {"arsl-error-rate", "arsl-service-down", "arsl-canary-rollback"} <= {
        item["name"] for item in rules["alarms"]
    }, rules

    # 6. A broken challenger is caught at the first step: the probes' labels are enough evidence at 50 % (the
    # Huawei demo's min_feedback).
    broken = arsl(env, ROOT, *run, "--broken-challenger", timeout=RUN_TIMEOUT_S)
    assert broken.returncode == 1, _said(broken)
    assert "ROLLED_BACK" in broken.stdout.upper(), _said(broken)
    assert "canary.min_feedback = 10" in broken.stdout, _said(broken)
    canary = _json(env, "canary", "status", "--backend", "huawei", exit_code=1)  # its contract: 1 rolled back
    assert canary["phase"] == "rolled_back", canary
    assert "automatic rollback at 50%" in canary["reason"], canary
    assert (canary["champion"], canary["challenger"]) == ("v2", "v3")
    assert {version: weight for version, weight in canary["weights"].items() if weight} == {"v2": 100}
    assert canary["platform"]["phase"] == "running"
    assert _served_by(canary["platform"]["endpoint"], stack_process["env"][KEY_ENV]) == "v2"
