"""The launcher, OBS and ModelArts training stand-ins, driven by the production adapters.

Every client here is the real one (`ObsObjectStore` over esdk-obs-python, `ModelArtsTrainingPlatform` over
huaweicloudsdkmodelarts, the `arsl` CLI in a subprocess), addressing the stand-ins the way it addresses
Huawei Cloud: OBS by `<bucket>.obs.<region>.myhuaweicloud.com` with OBS's own signature, ModelArts with
SDK-HMAC-SHA256. The `make_stack` fixture fails a test if any call broke the documented contract.

Waiting is on the stand-in's own progress (`wait_for`, `wait_for_log`: a condition the job's phases and log
lines notify) with a generous deadline, never on a fixed sleep.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.config import Settings
from arsl_tui.domain.jobs import JobPhase, JobSpec
from arsl_tui.domain.ports import PermanentStoreError, TransientStoreError
from arsl_tui.ops.synth import synthesize
from arsl_tui.providers.huawei.credentials import Credentials
from arsl_tui.providers.huawei.modelarts import ModelArtsTrainingPlatform, build_client
from arsl_tui.providers.huawei.obs import ObsObjectStore
from tests.huawei_rehearsal.conftest import StackFactory, rehearsal_credentials, rehearsal_settings
from tests.huawei_rehearsal.faults import Faults, UnknownFault
from tests.huawei_rehearsal.stack import TRAINING_ENGINE, TRAINING_FLAVOR, Stack

JOB_TIMEOUT_S = 600.0
"""A deadline, not a pace: jobs end when their processes end (seconds here; minutes on a loaded CI host)."""
REPO = Path(__file__).resolve().parents[2]

# A boot file standing in for the trainer where the test is about the platform, not the training: it
# records its environment and what the input held, then ends (or, with --wait=1, waits to be stopped).
PROBE = """\
import json, os, signal, sys
from pathlib import Path

arguments = dict(argument[2:].split("=", 1) for argument in sys.argv[1:])
output = Path(arguments["output"])
output.mkdir(parents=True, exist_ok=True)
index = os.environ["VC_TASK_INDEX"]
inputs = sorted(p.relative_to(arguments["data"]).as_posix() for p in Path(arguments["data"]).rglob("*") if p.is_file())
record = {"env": dict(os.environ), "pid": os.getpid(), "argv": sys.argv[1:], "inputs": inputs}
(output / f"probe-{index}.json").write_text(json.dumps(record))
print(f"probe {index} ready pid={os.getpid()}", flush=True)
if arguments.get("wait") == "1":
    signal.pause()
"""


# --- helpers ------------------------------------------------------------------------------------------


def _store(stack: Stack, settings: Settings, *, max_retry_count: int = 1) -> ObsObjectStore:
    return ObsObjectStore.from_settings(
        settings, credentials=rehearsal_credentials(stack), max_retry_count=max_retry_count
    )


def _platform(stack: Stack, settings: Settings, code_root: Path | None = None) -> ModelArtsTrainingPlatform:
    credentials = rehearsal_credentials(stack)
    endpoint = settings.huawei.endpoint("modelarts")
    return ModelArtsTrainingPlatform(
        client=build_client(endpoint, credentials, settings.huawei.timeout_s),
        store=_store(stack, settings),
        bucket=settings.storage.bucket,
        endpoint=endpoint,
        settings=settings,
        secrets=credentials.secrets(),
        code_root=code_root,
    )


def _probe_code(tmp_path: Path) -> Path:
    root = tmp_path / "probe-code"
    root.mkdir()
    (root / "train.py").write_text(PROBE, encoding="utf-8")
    return root


def _probe_spec(stack: Stack, nodes: int = 1, **parameters: str) -> JobSpec:
    stack_store = stack.obs
    assert stack_store is not None
    stack_store.store.write(stack.bucket, "datasets/probe/class-a/one.txt", b"one")
    stack_store.store.write(stack.bucket, "datasets/probe/class-b/two.txt", b"two")
    return JobSpec(
        dataset=f"obs://{stack.bucket}/datasets/probe/",
        epochs=1,
        batch_size=8,
        learning_rate=0.01,
        nodes=nodes,
        parameters=parameters,
    )


def _probe_record(stack: Stack, output_url: str, index: int) -> dict[str, Any]:
    assert stack.obs is not None
    prefix = output_url.removeprefix(f"obs://{stack.bucket}/")
    return json.loads(stack.obs.store.read(stack.bucket, f"{prefix}probe-{index}.json"))


def _training(stack: Stack) -> Any:
    assert stack.training is not None
    return stack.training


# --- OBS -----------------------------------------------------------------------------------------------


def test_obs_objects_live_on_disk_and_survive_a_restart(
    make_stack: StackFactory, tmp_path: Path, loopback: None
) -> None:
    stack = make_stack()
    settings = rehearsal_settings(stack, tmp_path / "home")
    assert settings.huawei.obs_endpoint == f"http://obs.{stack.region}.myhuaweicloud.com:{stack.obs.port}"  # type: ignore[union-attr]
    store = _store(stack, settings)
    body = b"a model card\n"
    store.put_bytes("models/v1/card.txt", body, hashlib.md5(body, usedforsecurity=False).hexdigest())
    assert (stack.workdir / "obs" / stack.bucket / "models" / "v1" / "card.txt").read_bytes() == body
    # Every request used production addressing and OBS's own signature (no path style, no AWS v4).
    seen = stack.obs.requests  # type: ignore[union-attr]
    assert seen and all(r.host.startswith(f"{stack.bucket}.obs.") and r.authorization_scheme == "OBS" for r in seen)
    workdir = stack.workdir
    stack.stop()

    again = Stack(workdir, serving=False).start()  # the same folder: the same objects
    try:
        settings = rehearsal_settings(again, tmp_path / "home")
        assert _store(again, settings).get_bytes("models/v1/card.txt") == body
        assert [info.key for info in _store(again, settings).list("models/")] == ["models/v1/card.txt"]
    finally:
        again.stop()


def test_obs_standin_keeps_the_contract_checks(make_stack: StackFactory, tmp_path: Path, loopback: None) -> None:
    stack = make_stack()
    settings = rehearsal_settings(stack, tmp_path / "home")
    wrong = Credentials(access_key=stack.credentials.access_key, secret_key="not-the-secret", source="test")
    store = ObsObjectStore.from_settings(settings, credentials=wrong, max_retry_count=0)
    with pytest.raises(PermanentStoreError) as refused:
        store.put_bytes("x.txt", b"x", hashlib.md5(b"x", usedforsecurity=False).hexdigest())
    assert refused.value.code == "SignatureDoesNotMatch"
    assert not stack.obs.store.exists(stack.bucket, "x.txt")  # type: ignore[union-attr]


def test_conditional_create_passes_the_adapters_probe_and_refuses_a_second_create(
    make_stack: StackFactory, tmp_path: Path, loopback: None
) -> None:
    stack = make_stack()
    store = _store(stack, rehearsal_settings(stack, tmp_path / "home"))
    first, second = b'{"version": 1}', b'{"version": 1, "other": true}'
    assert store.put_if_absent("registry/versions/1.json", first, hashlib.md5(first, usedforsecurity=False).hexdigest())
    assert not store.put_if_absent(
        "registry/versions/1.json", second, hashlib.md5(second, usedforsecurity=False).hexdigest()
    )
    assert store.get_bytes("registry/versions/1.json") == first
    refusals = [r.code for r in stack.obs.refusals()]  # type: ignore[union-attr]
    assert "ObjectAlreadyExists" in refusals  # the probe's second write and the second claim
    # The probe object was removed again; only the claimed version remains.
    assert stack.obs.store.list(stack.bucket, "registry/") == ["registry/versions/1.json"]  # type: ignore[union-attr]


def test_a_put_whose_answer_is_dropped_was_applied(make_stack: StackFactory, tmp_path: Path, loopback: None) -> None:
    stack = make_stack()
    store = _store(stack, rehearsal_settings(stack, tmp_path / "home"), max_retry_count=0)
    stack.faults.arm("drop_connection_after_put", times=1)
    body = b"applied, never acknowledged"
    with pytest.raises(TransientStoreError):
        store.put_bytes("state/lease.json", body, hashlib.md5(body, usedforsecurity=False).hexdigest())
    assert store.get_bytes("state/lease.json") == body
    assert stack.faults.fired == [("drop_connection_after_put", "/state/lease.json")]
    assert stack.faults.peek("drop_connection_after_put") is None  # used up: the retry is answered


# --- faults ----------------------------------------------------------------------------------------------


def test_faults_are_set_over_the_admin_route_and_kept_in_the_file(make_stack: StackFactory) -> None:
    stack = make_stack()
    url = stack.endpoints()["faults"]

    def send(method: str, path: str = "", body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, answer = send("PUT", "/job_fails", {"times": 2, "params": {"reason": "out of memory"}})
    assert status == 200 and answer["faults"]["job_fails"] == {"remaining": 2, "params": {"reason": "out of memory"}}
    assert json.loads(Path(stack.faults.path).read_text())["job_fails"]["remaining"] == 2  # type: ignore[arg-type]
    # Another process reading the same file sees the same switches and uses up the same firings.
    other = Faults(stack.faults.path)
    fault = other.take("job_fails", detail="job-a")
    assert fault is not None and fault.params == {"reason": "out of memory"}
    assert send("GET")[1]["faults"]["job_fails"]["remaining"] == 1
    assert send("PUT", "/no_such_fault", {})[0] == 400
    assert send("DELETE", "/job_fails")[1]["faults"] == {}
    with pytest.raises(UnknownFault):
        stack.faults.arm("disk_full")


def test_a_fault_can_be_limited_to_matching_requests() -> None:
    faults = Faults()
    faults.arm("throttle_429", times=1, match="UpdateService")
    assert faults.take("throttle_429", detail="CreateModel") is None
    assert faults.take("throttle_429", detail="UpdateService svc-1") is not None
    assert faults.take("throttle_429", detail="UpdateService svc-1") is None


# --- ModelArts training ----------------------------------------------------------------------------------


def test_engines_and_flavors_are_answered_as_documented(
    make_stack: StackFactory, tmp_path: Path, loopback: None
) -> None:
    stack = make_stack()
    platform = _platform(stack, rehearsal_settings(stack, tmp_path / "home"))
    choices = platform.training_choices()
    assert TRAINING_ENGINE in choices.engines
    assert TRAINING_FLAVOR in choices.flavors
    platform.check_engine_and_flavor()  # the stack's config names an engine and a flavor it offers


@pytest.mark.slow
def test_a_job_trains_the_bundled_trainer_and_its_outputs_land_in_obs(
    make_stack: StackFactory, tmp_path: Path, loopback: None
) -> None:
    stack = make_stack()
    settings = rehearsal_settings(stack, tmp_path / "home")
    data = synthesize(tmp_path / "data", per_class=6, seed=3).out
    stack.obs.store.upload_folder(data, stack.bucket, "datasets/synth/")  # type: ignore[union-attr]
    platform = _platform(stack, settings)
    spec = JobSpec(
        dataset=f"obs://{stack.bucket}/datasets/synth/",
        epochs=1,
        batch_size=32,
        learning_rate=0.003,
        parameters={"val-fraction": "0.2", "test-fraction": "0.2", "log-every": "1"},
    )
    job_id = platform.submit(spec)
    assert platform.status(job_id).phase in (JobPhase.CREATING, JobPhase.PENDING, JobPhase.RUNNING, JobPhase.COMPLETED)
    _training(stack).wait_for(job_id, {"Completed", "Failed"}, JOB_TIMEOUT_S)

    status = platform.status(job_id)
    log = platform.logs(job_id).text
    assert status.phase is JobPhase.COMPLETED, f"{status.reason}\n{log}"
    assert "[trainer] epoch 1/1" in log
    records = platform.metrics(job_id).records
    assert records and records[-1].type == "final" and records[-1].val_acc is not None
    prefix = status.output.removeprefix(f"obs://{stack.bucket}/")
    keys = set(stack.obs.store.list(stack.bucket, prefix))  # type: ignore[union-attr]
    assert {f"{prefix}metrics.jsonl", f"{prefix}model/config.json", f"{prefix}model/model.safetensors"} <= keys
    assert not any("/." in key for key in keys), "a file in flight was synced"
    # The boot file ran from the code directory downloaded from OBS, not from this checkout.
    assert f"worker-0: {stack.workdir}/jobs/{job_id}/user-job-dir/code/trainer/train.py --data=" in log


def test_a_two_node_job_runs_two_workers_with_the_documented_environment(
    make_stack: StackFactory, tmp_path: Path, loopback: None
) -> None:
    stack = make_stack()
    platform = _platform(stack, rehearsal_settings(stack, tmp_path / "home"), code_root=_probe_code(tmp_path))
    job_id = platform.submit(_probe_spec(stack, nodes=2))
    _training(stack).wait_for(job_id, {"Completed", "Failed"}, JOB_TIMEOUT_S)
    status = platform.status(job_id)
    assert status.phase is JobPhase.COMPLETED, status.reason

    workers = [_probe_record(stack, status.output, index) for index in (0, 1)]
    assert workers[0]["pid"] != workers[1]["pid"]
    for index, worker in enumerate(workers):
        env = worker["env"]
        assert env["VC_TASK_INDEX"] == str(index)
        assert env["MA_NUM_HOSTS"] == env["VC_WORKER_NUM"] == "2"
        assert env["VC_WORKER_HOSTS"].split(",") == ["127.0.0.1", "127.0.0.1"]  # master = the first host
        assert env["MA_NUM_GPUS"] == "0"  # a CPU flavor
        assert env["ARSL_JOB_ID"] == status.name  # the job's own `algorithm.environments`
        assert env["ARSL_MASTER_PORT"] == workers[0]["env"]["ARSL_MASTER_PORT"]
        assert not any(name.startswith(("HUAWEICLOUD_", "OBS_")) for name in env), "credentials reached the job"
        # Inputs were downloaded to each node before the start; parameters arrived as hyper-parameters.
        assert worker["inputs"] == ["class-a/one.txt", "class-b/two.txt"]
        assert "--epochs=1" in worker["argv"] and any(arg.startswith("--output=") for arg in worker["argv"])
    assert "probe 1 ready" in _training(stack).task_log(job_id, 1)
    assert "probe 0 ready" in platform.logs(job_id).text  # worker-0 through the log-preview API


def test_job_fails_fault_ends_the_job_failed_with_a_reason_and_a_rerun_completes(
    make_stack: StackFactory, tmp_path: Path, loopback: None
) -> None:
    stack = make_stack()
    platform = _platform(stack, rehearsal_settings(stack, tmp_path / "home"), code_root=_probe_code(tmp_path))
    stack.faults.arm("job_fails", times=1, reason="the node ran out of memory (exit code 137)")

    failed = platform.submit(_probe_spec(stack))
    _training(stack).wait_for(failed, {"Completed", "Failed"}, JOB_TIMEOUT_S)
    status = platform.status(failed)
    assert status.phase is JobPhase.FAILED
    assert "the node ran out of memory" in status.reason
    assert "ModelArts reports Failed" in status.reason

    rerun = platform.submit(_probe_spec(stack))
    _training(stack).wait_for(rerun, {"Completed", "Failed"}, JOB_TIMEOUT_S)
    assert platform.status(rerun).phase is JobPhase.COMPLETED


def test_stop_terminates_the_jobs_processes(make_stack: StackFactory, tmp_path: Path, loopback: None) -> None:
    stack = make_stack()
    platform = _platform(stack, rehearsal_settings(stack, tmp_path / "home"), code_root=_probe_code(tmp_path))
    job_id = platform.submit(_probe_spec(stack, wait="1"))
    log = _training(stack).wait_for_log(job_id, "probe 0 ready pid=", JOB_TIMEOUT_S)
    pid = int(log.split("probe 0 ready pid=", 1)[1].split()[0])
    assert platform.status(job_id).phase is JobPhase.RUNNING

    assert platform.stop(job_id).phase in (JobPhase.TERMINATING, JobPhase.TERMINATED)
    _training(stack).wait_for(job_id, {"Terminated"}, JOB_TIMEOUT_S)
    status = platform.status(job_id)
    assert status.phase is JobPhase.TERMINATED and status.reason == "terminated on request"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # What the job wrote before it was stopped still reached OBS.
    assert _probe_record(stack, status.output, 0)["pid"] == pid


# --- the launcher ----------------------------------------------------------------------------------------


def test_the_launcher_writes_the_port_file_serves_cli_processes_and_stops_on_sigterm(
    stack_process: dict[str, Any], tmp_path: Path
) -> None:
    endpoints = stack_process["endpoints"]
    assert {"obs", "modelarts", "ces", "apig", "faults"} <= set(endpoints)
    assert all(url.startswith("http://127.0.0.1:") for name, url in endpoints.items() if name != "obs")
    assert endpoints["obs"].startswith(f"http://obs.{stack_process['region']}.myhuaweicloud.com:")
    config = Path(stack_process["config"]).read_text(encoding="utf-8")
    assert "secret" not in config.lower() and stack_process["credentials"]["secret_key"] not in config

    # A separate `arsl` process, configured only by the port file's environment, uploads a data set: the
    # real OBS adapter, virtual-host addressing and OBS signatures, resolved by the test-only site hook.
    data = synthesize(tmp_path / "data", per_class=2, seed=5).out
    environment = dict(os.environ) | stack_process["env"] | {"ARSL_HOME": str(tmp_path / "home")}
    upload = subprocess.run(
        [sys.executable, "-m", "arsl_tui", "--json", "upload", str(data), "--yes", "--mode", "files"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert upload.returncode == 0, upload.stderr
    stored = Path(stack_process["workdir"]) / "obs" / stack_process["bucket"] / "datasets"
    assert any(stored.rglob("*.jpg"))
    listing = subprocess.run(
        [sys.executable, "-m", "arsl_tui", "--json", "train", "status"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr

    process: subprocess.Popen[str] = stack_process["_process"]
    process.terminate()
    assert process.wait(timeout=60) == 0
    assert not Path(stack_process["_port_file"]).exists()
