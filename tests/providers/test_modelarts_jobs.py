"""ModelArts training jobs: the real SDK client against the contract server, code upload to moto.

The contract server checks every call's method, path, signature and body against the documented
shapes; a test fails if any call broke the contract (see `contract` below).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.cli import build_parser
from arsl_tui.cli.common import CommandContext, run_command
from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.jobs import JobNotFound, JobPhase, JobSpec, JobSpecError, TrainingError
from arsl_tui.providers.huawei.modelarts import ModelArtsTrainingPlatform, trainer_root
from arsl_tui.providers.huawei.obs import ObsObjectStore
from tests.fixtures.huawei_contract import (
    DOCUMENTED_ENGINES,
    UNKNOWN_ENGINE_OR_FLAVOR,
    ContractServer,
    ModelArtsTrainingFake,
    closed_port_endpoint,
    iter_phases,
)
from tests.providers.conftest import FAKE_CREDENTIALS

PROJECT = "p-contract-0001"
PRESET_ENGINE = "pytorch_2.1.0-cuda_12.1-py_3.10.6-ubuntu_22.04-x86_64"
"""A documented preset ("Preparing a Model Training Image", develop-modelarts-1417), the configured default."""
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)


@pytest.fixture
def contract() -> Iterator[ContractServer]:
    server = ContractServer(credentials={CREDENTIALS.access_key: CREDENTIALS.secret_key}, project_id=PROJECT)
    with server:
        yield server
    assert server.violations == [], "calls broke the documented contract"


@pytest.fixture
def fake(contract: ContractServer) -> ModelArtsTrainingFake:
    return ModelArtsTrainingFake(contract)


def make_settings(tmp_path: Path, bucket: str, modelarts: str, obs: str, timeout_s: float = 5.0) -> Settings:
    return load_settings(
        environ={},
        cwd=tmp_path,
        cli_overrides={
            "backend": "huawei",
            "home": str(tmp_path / "home"),
            "storage.bucket": bucket,
            "huawei.modelarts_endpoint": modelarts,
            "huawei.obs_endpoint": obs,
            "huawei.timeout_s": timeout_s,
            "train.flavor_id": "modelarts.p3.large.public",
            "train.engine_name": "PyTorch",
            "train.engine_version": PRESET_ENGINE,
            "train.nodes": 2,
        },
    )


@pytest.fixture
def store(moto_endpoint: str, moto_bucket: str, tmp_path: Path) -> ObsObjectStore:
    return ObsObjectStore(
        server=moto_endpoint,
        bucket=moto_bucket,
        credentials=FAKE_CREDENTIALS,
        checkpoint_dir=tmp_path / "cp",
        max_retry_count=0,
        timeout_s=10.0,
    )


@pytest.fixture
def settings(tmp_path: Path, moto_bucket: str, moto_endpoint: str, contract: ContractServer) -> Settings:
    return make_settings(tmp_path, moto_bucket, contract.endpoint, moto_endpoint)


@pytest.fixture
def code_root(tmp_path: Path) -> Path:
    """A copy of the real trainer package, so a test can change a file of it."""
    copy = tmp_path / "code" / "trainer"
    shutil.copytree(trainer_root(), copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


@pytest.fixture
def platform(settings: Settings, store: ObsObjectStore, code_root: Path) -> ModelArtsTrainingPlatform:
    built = ModelArtsTrainingPlatform.from_settings(settings, credentials=CREDENTIALS, store=store)
    built._code_root = code_root
    return built


def spec_for(bucket: str, **changes: Any) -> JobSpec:
    base = JobSpec(
        dataset=f"obs://{bucket}/datasets/m1/",
        epochs=3,
        batch_size=64,
        learning_rate=0.003,
        seed=5,
        model="compact",
        nodes=2,
    )
    return replace(base, **changes)


def run_cli(*arguments: str) -> tuple[int, str, str]:
    """The real parser and handler in this process (so they reach this test's servers); exit code, out, err."""
    namespace = build_parser().parse_args(list(arguments))
    out, err = io.StringIO(), io.StringIO()
    context = CommandContext(
        config_path=None,
        backend=getattr(namespace, "backend", None),
        json_output=bool(getattr(namespace, "json", False)),
        stdout=out,
        stderr=err,
    )
    return run_command(namespace.handler, context, namespace), out.getvalue(), err.getvalue()


def md5_hex(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_submit_uploads_the_trainer_and_creates_the_documented_job(
    platform: ModelArtsTrainingPlatform,
    contract: ContractServer,
    fake: ModelArtsTrainingFake,
    store: ObsObjectStore,
    moto_bucket: str,
    code_root: Path,
) -> None:
    job_id = platform.submit(spec_for(moto_bucket))

    local_files = {
        path.relative_to(code_root).as_posix(): md5_hex(path) for path in code_root.rglob("*") if path.is_file()
    }
    stored = {info.key: info.md5 for info in store.list("code/trainer/")}
    assert stored == {f"code/trainer/{name}": md5 for name, md5 in local_files.items()}

    [create] = contract.calls_to("create_training_job")
    body = create.body
    name = body["metadata"]["name"]
    assert fake.job(job_id).request["metadata"]["name"] == name and name.startswith("arsl-")
    algorithm = body["algorithm"]
    assert algorithm["code_dir"] == f"/{moto_bucket}/code/"
    assert algorithm["boot_file"] == f"/{moto_bucket}/code/trainer/train.py"
    assert algorithm["inputs"] == [{"name": "data", "remote": {"obs": {"obs_url": f"/{moto_bucket}/datasets/m1/"}}}]
    assert algorithm["outputs"] == [
        {"name": "output", "remote": {"obs": {"obs_url": f"/{moto_bucket}/output/{name}/"}}}
    ]
    assert algorithm["engine"] == {
        "engine_name": "PyTorch",
        "engine_version": PRESET_ENGINE,
    }
    assert {p["name"]: p["value"] for p in algorithm["parameters"]} == {
        "epochs": "3",
        "batch-size": "64",
        "lr": "0.003",
        "seed": "5",
        "model": "compact",
    }
    assert body["spec"] == {"resource": {"flavor_id": "modelarts.p3.large.public", "node_count": 2}}
    assert create.headers["x-project-id"] == PROJECT

    status = platform.status(job_id)
    assert (status.phase, status.dataset, status.output, status.epochs) == (
        JobPhase.CREATING,
        f"obs://{moto_bucket}/datasets/m1/",
        f"obs://{moto_bucket}/output/{name}/",
        3,
    )


def test_code_upload_skips_files_whose_md5_is_already_there(
    platform: ModelArtsTrainingPlatform, moto_bucket: str, code_root: Path
) -> None:
    first = platform.upload_code()
    assert first.skipped == 0 and len(first.uploaded) >= 1
    second = platform.upload_code()
    assert second.uploaded == () and second.skipped == len(first.uploaded)
    assert second.digest == first.digest

    changed = sorted(code_root.rglob("*.py"))[0]
    changed.write_text(changed.read_text() + "\n# changed\n")
    third = platform.upload_code()
    assert third.uploaded == (f"code/trainer/{changed.relative_to(code_root).as_posix()}",)
    assert third.digest != first.digest


def test_a_job_plays_through_its_phases_and_is_listed(
    platform: ModelArtsTrainingPlatform, fake: ModelArtsTrainingFake, contract: ContractServer, moto_bucket: str
) -> None:
    older = platform.submit(spec_for(moto_bucket, name="arsl-older"))
    job_id = platform.submit(spec_for(moto_bucket))
    seen = [platform.status(job_id).phase]
    for _phase in iter_phases(fake, job_id):
        seen.append(platform.status(job_id).phase)
    assert seen == [JobPhase.CREATING, JobPhase.PENDING, JobPhase.RUNNING, JobPhase.COMPLETED]
    final = platform.status(job_id)
    assert final.terminal and final.reason == ""
    assert final.started_at is not None and final.ended_at is not None and final.ended_at >= final.started_at

    listed = platform.list(limit=10)
    assert [status.job_id for status in listed] == [job_id, older]
    assert [status.phase for status in listed] == [JobPhase.COMPLETED, JobPhase.CREATING]
    [search] = contract.calls_to("list_training_jobs")
    assert search.body == {"offset": 0, "limit": 10, "sort_by": "create_time", "order": "desc"}


def test_metrics_are_read_incrementally_from_the_jobs_obs_output(
    platform: ModelArtsTrainingPlatform, fake: ModelArtsTrainingFake, store: ObsObjectStore, moto_bucket: str
) -> None:
    job_id = platform.submit(spec_for(moto_bucket))
    assert platform.metrics(job_id).records == ()  # nothing written yet: no error

    key = platform.status(job_id).output.removeprefix(f"obs://{moto_bucket}/") + "metrics.jsonl"
    lines = [
        json.dumps({"type": "step", "epoch": 1, "step": 10, "train_loss": 2.1, "images_per_s": 300.0}),
        json.dumps({"type": "epoch", "epoch": 1, "train_loss": 1.5, "val_loss": 1.2, "val_acc": 0.61}),
        json.dumps({"type": "epoch", "epoch": 2, "train_loss": 0.9, "val_loss": 0.7, "val_acc": 0.83}),
    ]
    partial = (lines[0] + "\n" + lines[1] + "\n" + lines[2][:20]).encode()
    store.put_bytes(key, partial, hashlib.md5(partial, usedforsecurity=False).hexdigest())
    first = platform.metrics(job_id, 0)
    assert [(r.type, r.epoch) for r in first.records] == [("step", 1), ("epoch", 1)]
    assert first.cursor == len(lines[0]) + len(lines[1]) + 2

    complete = ("\n".join(lines) + "\n").encode()
    store.put_bytes(key, complete, hashlib.md5(complete, usedforsecurity=False).hexdigest())
    second = platform.metrics(job_id, first.cursor)
    assert [(r.type, r.epoch, r.val_acc) for r in second.records] == [("epoch", 2, 0.83)]
    assert second.cursor == len(complete)
    assert platform.metrics(job_id, second.cursor).records == ()


def test_logs_are_read_from_a_cursor_and_a_capped_preview_says_so(
    platform: ModelArtsTrainingPlatform, fake: ModelArtsTrainingFake, moto_bucket: str
) -> None:
    job_id = platform.submit(spec_for(moto_bucket))
    fake.append_log(job_id, "epoch 1 started\n")
    first = platform.logs(job_id)
    assert (first.text, first.cursor, first.truncated) == ("epoch 1 started\n", 16, False)
    fake.append_log(job_id, "epoch 1 done\n")
    second = platform.logs(job_id, first.cursor)
    assert (second.text, second.start) == ("epoch 1 done\n", 16)

    fake.preview_limit = 8
    capped = platform.logs(job_id, 0)
    assert capped.truncated and capped.text == " 1 done\n" and capped.cursor == 29


def test_resources_come_from_the_training_job_metrics_api(
    platform: ModelArtsTrainingPlatform, fake: ModelArtsTrainingFake, moto_bucket: str
) -> None:
    job_id = platform.submit(spec_for(moto_bucket))
    fake.set_resource_metrics(
        job_id, {"cpuUsage": [10.0, 55.5], "memUsage": [20.0, 31.0], "gpuUtil": [-1.0, 88.0], "gpuMemUsage": []}
    )
    sample = platform.resources(job_id)
    assert (sample.cpu_percent, sample.memory_percent, sample.gpu_percent, sample.gpu_memory_percent) == (
        55.5,
        31.0,
        88.0,
        None,
    )


def test_stop_terminates_and_stopping_an_ended_job_calls_nothing(
    platform: ModelArtsTrainingPlatform, fake: ModelArtsTrainingFake, contract: ContractServer, moto_bucket: str
) -> None:
    job_id = platform.submit(spec_for(moto_bucket))
    fake.step(job_id)
    fake.step(job_id)
    assert platform.stop(job_id).phase is JobPhase.TERMINATING
    [stop_call] = contract.calls_to("stop_training_job")
    assert stop_call.body == {"action_type": "terminate"}
    fake.step(job_id)
    assert platform.status(job_id).phase is JobPhase.TERMINATED
    assert platform.stop(job_id).phase is JobPhase.TERMINATED
    assert len(contract.calls_to("stop_training_job")) == 1


def test_a_failed_job_says_why_from_its_log(
    platform: ModelArtsTrainingPlatform, fake: ModelArtsTrainingFake, moto_bucket: str
) -> None:
    job_id = platform.submit(spec_for(moto_bucket))
    fake.append_log(
        job_id,
        'loading data\nTraceback (most recent call last):\n  File "train.py", line 3\n'
        "trainer.data.DataError: /home/ma-user/data: no manifest.json\n",
    )
    fake.advance(job_id, "Failed", "ExecuteFailed")
    status = platform.status(job_id)
    assert status.phase is JobPhase.FAILED
    assert "ExecuteFailed" in status.reason and "no manifest.json" in status.reason


def test_a_local_data_set_is_refused_before_anything_is_uploaded(
    platform: ModelArtsTrainingPlatform, contract: ContractServer, store: ObsObjectStore, tmp_path: Path
) -> None:
    with pytest.raises(JobSpecError, match=r"obs://bucket/prefix/.*arsl upload"):
        platform.submit(spec_for("x", dataset=str(tmp_path)))
    assert contract.calls == [] and list(store.list("code/")) == []


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "APIGW.0301", r"HTTP 401, error code APIGW\.0301, request id req-\d+.*HUAWEICLOUD_SDK_AK"),
        (403, "ModelArts.0203", r"HTTP 403, error code ModelArts\.0203, request id req-\d+.*IAM permissions"),
        (404, "ModelArts.2762", r"HTTP 404, error code ModelArts\.2762, request id req-\d+"),
        (429, "ModelArts.0429", r"HTTP 429.*throttling"),
        (500, "ModelArts.0500", r"HTTP 500, error code ModelArts\.0500, request id req-\d+.*try again later"),
    ],
)
def test_http_errors_become_one_clear_message(
    platform: ModelArtsTrainingPlatform,
    contract: ContractServer,
    fake: ModelArtsTrainingFake,
    moto_bucket: str,
    status: int,
    code: str,
    expected: str,
) -> None:
    job_id = platform.submit(spec_for(moto_bucket))
    contract.inject("show_training_job_details", status=status, error_code=code, error_msg="injected failure")
    with pytest.raises(TrainingError, match=expected) as raised:
        platform.status(job_id)
    assert raised.value.status == status
    assert isinstance(raised.value, JobNotFound) == (status == 404)
    assert "\n" not in str(raised.value) and CREDENTIALS.secret_key not in str(raised.value)
    assert platform.status(job_id).phase is JobPhase.CREATING  # the next call works again


def test_a_wrong_secret_key_is_refused_by_the_signature_check(
    settings: Settings, store: ObsObjectStore, contract: ContractServer, fake: ModelArtsTrainingFake
) -> None:
    wrong = replace(CREDENTIALS, secret_key="sk-wrong-0000")
    platform = ModelArtsTrainingPlatform.from_settings(settings, credentials=wrong, store=store)
    with pytest.raises(TrainingError, match=r"HTTP 401, error code APIGW\.0301.*HUAWEICLOUD_SDK_SK") as raised:
        platform.list()
    assert "sk-wrong" not in str(raised.value)


def test_a_missing_job_is_job_not_found(platform: ModelArtsTrainingPlatform, fake: ModelArtsTrainingFake) -> None:
    with pytest.raises(JobNotFound, match=r"HTTP 404, error code ModelArts\.2762.*does not exist"):
        platform.status("4b9c3d2e-0000-0000-0000-000000000000")


def test_connection_refused_is_a_clear_message(
    settings: Settings, store: ObsObjectStore, tmp_path: Path, moto_bucket: str, moto_endpoint: str
) -> None:
    endpoint = closed_port_endpoint()
    refused = make_settings(tmp_path, moto_bucket, endpoint, moto_endpoint)
    platform = ModelArtsTrainingPlatform.from_settings(refused, credentials=CREDENTIALS, store=store)
    with pytest.raises(TrainingError, match=rf"cannot connect to ModelArts at {endpoint} \(connection refused\)"):
        platform.status("any-job")
    with pytest.raises(TrainingError, match="connection refused"):
        platform.list()


@pytest.mark.parametrize("operation", ["show_training_job_details", "stop_training_job"])
def test_read_timeouts_on_get_and_post_are_clear_messages(
    tmp_path: Path,
    moto_bucket: str,
    moto_endpoint: str,
    contract: ContractServer,
    fake: ModelArtsTrainingFake,
    store: ObsObjectStore,
    code_root: Path,
    operation: str,
) -> None:
    quick = make_settings(tmp_path, moto_bucket, contract.endpoint, moto_endpoint, timeout_s=0.4)
    platform = ModelArtsTrainingPlatform.from_settings(quick, credentials=CREDENTIALS, store=store)
    platform._code_root = code_root
    job_id = platform.submit(spec_for(moto_bucket))
    contract.inject(operation, delay_s=5.0)
    with pytest.raises(TrainingError, match=r"no answer from ModelArts at .* within 0\.4 s \(read timeout\)") as raised:
        platform.stop(job_id) if operation == "stop_training_job" else platform.status(job_id)
    assert raised.value.transient
    # Neither is retried behind the caller's back (a POST never is): the server saw the call once.
    assert len(contract.calls_to(operation)) == 1


def test_cli_status_json_and_a_backend_error_exit_code(
    platform: ModelArtsTrainingPlatform,
    fake: ModelArtsTrainingFake,
    contract: ContractServer,
    moto_bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = platform.submit(spec_for(moto_bucket))
    fake.step(job_id)
    for name in ("HUAWEICLOUD_SDK_SECURITY_TOKEN", "OBS_ACCESS_KEY_ID", "OBS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", CREDENTIALS.access_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", CREDENTIALS.secret_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
    monkeypatch.setenv("ARSL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ARSL_HUAWEI_MODELARTS_ENDPOINT", contract.endpoint)
    monkeypatch.setenv("ARSL_HUAWEI_OBS_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("ARSL_STORAGE_BUCKET", moto_bucket)
    monkeypatch.chdir(tmp_path)

    code, out, _err = run_cli("--backend", "huawei", "--json", "train", "status", job_id)
    payload = json.loads(out)
    assert code == 0
    assert (payload["job_id"], payload["phase"], payload["backend"]) == (job_id, "Pending", "huawei")
    assert payload["progress"]["epochs_done"] == 0 and payload["progress"]["epochs_total"] == 3

    contract.inject("show_training_job_details", status=500, error_code="ModelArts.0500")
    code, out, err = run_cli("--backend", "huawei", "--json", "train", "status", job_id)
    error = json.loads(out)
    assert code == error["exit_code"] == 3
    assert "HTTP 500" in error["error"] and "ModelArts.0500" in error["error"] and "Traceback" not in err

    monkeypatch.delenv("HUAWEICLOUD_SDK_PROJECT_ID")
    monkeypatch.setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", str(tmp_path / "no-such-file"))
    code, out, err = run_cli("--backend", "huawei", "train", "status", job_id)
    assert code == 2 and "HUAWEICLOUD_SDK_PROJECT_ID" in err and CREDENTIALS.secret_key not in err


def test_recorded_calls_are_signed_with_the_explicit_credentials(
    platform: ModelArtsTrainingPlatform, contract: ContractServer, fake: ModelArtsTrainingFake, moto_bucket: str
) -> None:
    platform.submit(spec_for(moto_bucket))
    assert contract.calls and all(
        call.headers["authorization"].startswith(f"SDK-HMAC-SHA256 Access={CREDENTIALS.access_key}, ")
        for call in contract.calls
    )


def test_the_contract_server_flags_calls_that_break_the_contract(
    platform: ModelArtsTrainingPlatform, contract: ContractServer, fake: ModelArtsTrainingFake, moto_bucket: str
) -> None:
    import huaweicloudsdkmodelarts.v1 as ma
    import requests
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

    assert requests.get(f"{contract.endpoint}/v2/{PROJECT}/training-jobz", timeout=5).status_code == 404
    assert requests.delete(f"{contract.endpoint}/v2/{PROJECT}/training-job-searches", timeout=5).status_code == 405
    unsigned = requests.get(f"{contract.endpoint}/v2/{PROJECT}/training-jobs/x", timeout=5)
    assert unsigned.status_code == 401 and unsigned.json()["error_code"] == "APIGW.0301"

    good = platform.build_job(spec_for(moto_bucket), "arsl-bad-body", platform.upload_code())
    good.spec.resource.node_count = 0
    good.algorithm.boot_file = "/elsewhere/train.py"
    with pytest.raises(ClientRequestException) as refused:
        platform._client.create_training_job(ma.CreateTrainingJobRequest(body=good))
    assert refused.value.status_code == 400
    assert fake.jobs == {}
    assert contract.violations == [
        f"GET /v2/{PROJECT}/training-jobz: no documented route",
        f"DELETE /v2/{PROJECT}/training-job-searches: method not documented (documented: ['POST'])",
        f"create_training_job: algorithm.boot_file '/elsewhere/train.py' is not inside code_dir '/{moto_bucket}/code/'",
        "create_training_job: spec.resource.node_count must be an integer >= 1, got 0",
    ]
    contract.violations.clear()  # seen and checked: the fixture's own check would fail on them


def test_watch_follows_a_job_to_the_end_and_rides_out_a_transient_error(
    platform: ModelArtsTrainingPlatform,
    fake: ModelArtsTrainingFake,
    contract: ContractServer,
    store: ObsObjectStore,
    moto_bucket: str,
) -> None:
    from arsl_tui.domain.events import Event
    from arsl_tui.domain.jobs import JobEnded, JobEpochReported, JobPhaseChanged
    from arsl_tui.ops.training import watch_job

    job_id = platform.submit(spec_for(moto_bucket, epochs=2))
    key = platform.status(job_id).output.removeprefix(f"obs://{moto_bucket}/") + "metrics.jsonl"
    records = [
        {"type": "epoch", "epoch": 1, "time": 100.0, "val_acc": 0.5},
        {"type": "epoch", "epoch": 2, "time": 130.0, "val_acc": 0.9},
        {"type": "final", "test_acc": 0.88},
    ]

    def next_poll(_seconds: float) -> None:
        """The watch's pause between polls: the job moves on one phase, writing a record while it runs."""
        job = fake.job(job_id)
        if job.phase == "Running" and records:
            written = store.get_bytes(key) if store.head(key) else b""
            data = written + (json.dumps(records.pop(0)) + "\n").encode()
            store.put_bytes(key, data, hashlib.md5(data, usedforsecurity=False).hexdigest())
            if records:
                return
        fake.step(job_id)

    contract.inject("show_training_job_details", status=503, error_code="ModelArts.0503")
    events: list[Event] = []
    final = watch_job(platform, job_id, events.append, sleep=next_poll)
    assert final.phase is JobPhase.COMPLETED
    # The first poll met the 503; the job moved on to Pending during the pause before the retry.
    assert [e.phase for e in events if isinstance(e, JobPhaseChanged)] == ["Pending", "Running", "Completed"]
    assert [call.status for call in contract.calls_to("show_training_job_details")][1:3] == [503, 200]
    epochs = [e for e in events if isinstance(e, JobEpochReported)]
    assert [(e.record.epoch, e.progress.best_val_acc) for e in epochs] == [(1, 0.5), (2, 0.9)]
    [ended] = [e for e in events if isinstance(e, JobEnded)]
    assert ended.final is not None and ended.final.data["test_acc"] == 0.88


# --- engine and flavor, checked before anything is submitted ------------------------------------------


def test_the_default_engine_is_a_documented_preset() -> None:
    assert ("PyTorch", Settings().train.engine_version) in DOCUMENTED_ENGINES
    assert Settings().train.engine_version == PRESET_ENGINE


def test_an_unknown_engine_version_stops_the_submit_naming_the_valid_ones(
    settings: Settings, store: ObsObjectStore, contract: ContractServer, fake: ModelArtsTrainingFake, moto_bucket: str
) -> None:
    wrong = replace(settings, train=replace(settings.train, engine_version="pytorch_2.1.0-cuda_12.1-py_3.10-ubuntu"))
    platform = ModelArtsTrainingPlatform.from_settings(wrong, credentials=CREDENTIALS, store=store)
    with pytest.raises(JobSpecError) as stopped:
        platform.submit(spec_for(moto_bucket))
    message = str(stopped.value)
    assert "train.engine_version 'pytorch_2.1.0-cuda_12.1-py_3.10-ubuntu' is not a PyTorch preset" in message
    assert PRESET_ENGINE in message and "pytorch_1.8.0-cuda_10.2-py_3.7-ubuntu_18.04-x86_64" in message
    assert "nothing was submitted" in message
    assert contract.calls_to("create_training_job") == [] and fake.jobs == {}
    assert list(store.list("code/")) == [], "nothing is uploaded before the check"


def test_an_unknown_engine_name_and_flavor_are_both_named(
    settings: Settings, store: ObsObjectStore, contract: ContractServer, fake: ModelArtsTrainingFake, moto_bucket: str
) -> None:
    train = replace(settings.train, engine_name="Caffe", flavor_id="modelarts.p9.huge")
    platform = ModelArtsTrainingPlatform.from_settings(
        replace(settings, train=train), credentials=CREDENTIALS, store=store
    )
    with pytest.raises(JobSpecError) as stopped:
        platform.submit(spec_for(moto_bucket))
    message = str(stopped.value)
    assert "train.engine_name 'Caffe' is not a preset engine" in message and "valid: PyTorch, TensorFlow" in message
    assert "train.flavor_id 'modelarts.p9.huge'" in message and "modelarts.p3.large.public" in message
    assert fake.jobs == {}


def test_train_submit_exits_2_with_the_valid_engines(
    tmp_path: Path,
    contract: ContractServer,
    fake: ModelArtsTrainingFake,
    moto_bucket: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HUAWEICLOUD_SDK_SECURITY_TOKEN", "OBS_ACCESS_KEY_ID", "OBS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", CREDENTIALS.access_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", CREDENTIALS.secret_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
    monkeypatch.setenv("ARSL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ARSL_HUAWEI_MODELARTS_ENDPOINT", contract.endpoint)
    monkeypatch.setenv("ARSL_HUAWEI_OBS_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("ARSL_STORAGE_BUCKET", moto_bucket)
    monkeypatch.setenv("ARSL_TRAIN_ENGINE_VERSION", "pytorch_9")
    monkeypatch.chdir(tmp_path)

    code, _out, err = run_cli("--backend", "huawei", "train", "submit", f"obs://{moto_bucket}/datasets/m1/", "--yes")
    assert code == 2, err
    assert "pytorch_9" in err and PRESET_ENGINE in err
    assert fake.jobs == {}


def test_contract_engines_and_flavors_routes_answer_the_documented_lists(
    platform: ModelArtsTrainingPlatform, fake: ModelArtsTrainingFake
) -> None:
    choices = platform.training_choices()
    assert choices.engines == DOCUMENTED_ENGINES
    assert "modelarts.p3.large.public.free" in choices.flavors


def test_contract_flavors_route_refuses_an_undocumented_flavor_type(
    platform: ModelArtsTrainingPlatform, contract: ContractServer, fake: ModelArtsTrainingFake
) -> None:
    import huaweicloudsdkmodelarts.v1 as ma
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

    # ShowTrainingJobFlavors: flavor_type is one of CPU, GPU, Ascend (api-modelarts/ShowTrainingJobFlavors.html).
    gpu = platform._client.show_training_job_flavors(ma.ShowTrainingJobFlavorsRequest(flavor_type="GPU"))
    assert {flavor.flavor_type for flavor in gpu.flavors} == {"GPU"}
    with pytest.raises(ClientRequestException) as refused:
        platform._client.show_training_job_flavors(ma.ShowTrainingJobFlavorsRequest(flavor_type="TPU"))
    assert refused.value.status_code == 400
    assert contract.violations == [
        "show_training_job_flavors: flavor_type must be one of ('CPU', 'GPU', 'Ascend'), got 'TPU'"
    ]
    contract.violations.clear()  # seen and checked


@pytest.mark.parametrize(
    ("field", "value", "refusal"),
    [
        ("engine_version", "pytorch_2.1.0-cuda_12.1-py_3.10-ubuntu_22.04-x86_64", "is not a preset"),
        ("flavor_id", "modelarts.p9.huge", "is not a training flavor of this project"),
    ],
)
def test_contract_create_job_refuses_an_unknown_engine_or_flavor(
    platform: ModelArtsTrainingPlatform,
    contract: ContractServer,
    fake: ModelArtsTrainingFake,
    moto_bucket: str,
    field: str,
    value: str,
    refusal: str,
) -> None:
    """The body the old default produced (an undocumented engine version) is refused, as ModelArts would."""
    import huaweicloudsdkmodelarts.v1 as ma
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

    body = platform.build_job(spec_for(moto_bucket), "arsl-unknown", platform.upload_code())
    if field == "engine_version":
        body.algorithm.engine.engine_version = value
    else:
        body.spec.resource.flavor_id = value
    with pytest.raises(ClientRequestException) as refused:
        platform._client.create_training_job(ma.CreateTrainingJobRequest(body=body))
    assert (refused.value.status_code, refused.value.error_code) == (400, UNKNOWN_ENGINE_OR_FLAVOR)
    assert fake.jobs == {}
    assert len(contract.violations) == 1 and refusal in contract.violations[0]
    contract.violations.clear()  # seen and checked
