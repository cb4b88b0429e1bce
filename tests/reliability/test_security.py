"""Security across the product: planted secrets never leak, model files are never unpickled, servers
listen on loopback, and read-only mode cannot be bypassed.

1. Canary credentials (tests/reliability/security_support.py: `Canaries`) are planted in every place
   the product reads them; real `arsl` processes run on the local backend (the whole path: data,
   upload, a fabricated job through the gate, the gateway, its keys, predict) and on the huawei
   backend against a hostile server that repeats each request's headers in its error text; the
   console runs headless on that backend; the SDK adapters' exceptions are caught in-process. Every
   stdout, stderr, `--json` line, screen, log line, exception text and file under `$ARSL_HOME` is
   searched (binary-safe) for each canary, in plain, base64, hex, URL-quoted and UTF-16 form, and for
   the signatures of the requests actually sent.
2. An AST walk over arsl_tui/ and trainer/ finds no unpickling call; a pickle that makes a marker
   folder when loaded, planted as package weights and as a checkpoint, is refused by every loader.
3. The gateway's real listening socket (read from /proc) is 127.0.0.1 by default, the configured
   host otherwise; the model package's own HTTP server listens on 127.0.0.1 by default.
4. Read-only mode (`ARSL_READ_ONLY`/`read_only = true` for the CLI, `--read-only` for the console):
   every leaf of the argparse tree and every state-changing action of the keymap registry (by key on
   every tab, and through the command palette) leaves `$ARSL_HOME` unchanged, row for row.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import select
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.ops.synth import synthesize
from tests.fixtures.model_packages import metrics_records
from tests.reliability.security_support import (
    ROOT,
    Canaries,
    CliRun,
    EchoServer,
    LeakFinder,
    base_environment,
    closed_port,
    home_snapshot,
    huawei_endpoints,
    listening_sockets,
    pickle_trap,
    run_cli,
    run_in_process,
    run_many,
    snapshot_changes,
    sqlite_rows,
    torch_trap,
    unsafe_loads,
    walk_files,
)

pytestmark = pytest.mark.e2e
JOB_DEADLINE_S = 60.0
LAUNCHER = textwrap.dedent("""
    import json, shutil, sys
    from pathlib import Path

    scenario = json.loads(Path(sys.argv[1]).read_text())
    output = Path(sys.argv[sys.argv.index("--output") + 1])
    shutil.copytree(scenario["package"], output / "model")
    (output / "metrics.jsonl").write_text("".join(json.dumps(record) + "\\n" for record in scenario["records"]))
""")


# --- shared pieces ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def canaries() -> Canaries:
    return Canaries.fresh()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 synthetic images per class (96)."""
    return synthesize(tmp_path_factory.mktemp("dataset") / "data", per_class=3, seed=5).out


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real exported package (the compact CNN, random weights): the gate registers it, the gateway serves it."""
    import torch

    from arsl_tui.domain.classes import ARSL_CLASSES
    from trainer.export import export_package
    from trainer.model import build_model

    torch.manual_seed(11)
    model = build_model("compact", len(ARSL_CLASSES))
    return export_package(
        tmp_path_factory.mktemp("package"),
        model,
        architecture="compact",
        classes=ARSL_CLASSES,
        mean=0.5,
        std=0.25,
        manifest_id="m-e2e",
        metrics={"test_acc": 0.97},
    )


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


def finished_job(root: Path, home: Path, package: Path, name: str) -> str:
    """A job of the real local platform whose "training" copies `package` to its output and writes
    passing metrics; waits (polling, with a deadline) until it has ended."""
    from arsl_tui.domain.jobs import JobPhase, JobSpec
    from arsl_tui.providers.local.jobs import LocalTrainingPlatform

    script = root / "launcher.py"
    script.write_text(LAUNCHER, encoding="utf-8")
    scenario = root / f"{name}.json"
    scenario.write_text(json.dumps({"package": str(package), "records": metrics_records(test_acc=0.975)}))
    data = root / "job-data"
    data.mkdir(exist_ok=True)
    platform = LocalTrainingPlatform(home, launcher=[sys.executable, str(script), str(scenario)])
    try:
        job_id = platform.submit(JobSpec(dataset=str(data), epochs=4, batch_size=8, learning_rate=0.001))
        deadline = time.monotonic() + JOB_DEADLINE_S
        while not (status := platform.status(job_id)).terminal:
            assert time.monotonic() < deadline, f"job {job_id} did not end: {status}"
            time.sleep(0.05)
        assert status.phase is JobPhase.COMPLETED, status.reason
    finally:
        platform.close()
    return job_id


def quiet_settings(home: Path, **overrides: Any) -> Settings:
    """Defaults on `home`, never the repository's config.toml or the caller's ARSL_* variables."""
    return load_settings(None, cli_overrides={"home": str(home), **overrides}, environ={}, cwd=home)


def stop_gateway(home: Path) -> None:
    from arsl_tui.ops import serving

    serving.stop(quiet_settings(home))


def json_of(run: CliRun) -> Any:
    assert run.stdout.strip(), f"{run.label}: no JSON on stdout; stderr: {run.stderr}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def scan_runs(finder: LeakFinder, runs: list[CliRun], found: list[str]) -> None:
    for run in runs:
        finder.scan(f"`{run.label}` stdout", run.stdout, found)
        finder.scan(f"`{run.label}` stderr", run.stderr, found)


def signed_material(server: EchoServer) -> dict[str, str]:
    """The signature and token of every request the server received, as secrets to look for."""
    material: dict[str, str] = {}
    for number, headers in enumerate(server.requests):
        signature = re.search(r"Signature=([0-9a-fA-F]{32,})", headers.get("Authorization", ""))
        if signature:
            material[f"signature of request {number}"] = signature.group(1)
    return material


# --- 1. the local backend, end to end ----------------------------------------------------------------


@dataclass
class LocalWorld:
    root: Path
    home: Path
    data: Path
    image: Path
    canaries: Canaries
    runs: list[CliRun]
    keys: dict[str, str]
    """Gateway key name → the key its `create` printed."""
    key_runs: dict[str, CliRun]
    job_id: str
    default_endpoint: str
    default_listen: list[tuple[str, int]]
    configured_listen: list[tuple[str, int]]
    configured_port: int
    wildcard_port: int
    wildcard_run: CliRun
    unkeyed_predict: CliRun


def build_local_world(root: Path, canaries: Canaries, data: Path, package: Path) -> LocalWorld:
    """The whole local path with canaries planted: nine real `arsl` processes (and the three gateways
    they start), the other commands in-process through the same parser, handlers and error reporting."""
    home = root / "home"
    home.mkdir()
    image = sorted(data.glob("ain/*.jpg"))[0]
    credentials_file = canaries.write_credentials_file(root / "user-home" / ".huaweicloud" / "credentials")
    env = base_environment(home, {**canaries.environment(credentials_file), "ARSL_GATEWAY_PORT": "0"})
    refused = f"http://127.0.0.1:{closed_port()}"
    runs: list[CliRun] = []

    def arsl(*args: str, extra: dict[str, str] | None = None) -> CliRun:
        run = run_cli(args, {**env, **(extra or {})}, root)
        runs.append(run)
        return run

    def inline(*args: str) -> CliRun:
        run = run_in_process(args, env, root)
        runs.append(run)
        return run

    keys: dict[str, str] = {}
    key_runs: dict[str, CliRun] = {}
    batch = run_many(
        [
            ["status"],
            ["data", "validate", str(data), "--json"],
            ["upload", str(data), "--yes"],
            ["gateway", "keys", "create", "leak-one", "--json"],
        ],
        env,
        root,
    )
    runs.extend(batch)
    assert all(run.returncode == 0 for run in batch), [run.stderr for run in batch]
    keys["leak-one"], key_runs["leak-one"] = json_of(batch[3])["key"], batch[3]
    for args in (
        ["status", "--json"],
        ["data", "validate", str(data)],
        ["alarms", "list", "--json"],
        ["canary", "status"],
        ["models", "list", "--json"],
        ["train", "status"],
        ["service", "status", "--json"],
        ["train", "logs", "no-such-job"],
        ["gate", "no-such-job", "--json"],
        ["predict", str(image), "--endpoint", refused, "--json"],
        ["predict", str(image), "--endpoint", refused, "--key", canaries.app_code],
        ["upload", str(data), "--yes", "--json"],
        ["upload", "status", "--json"],
    ):
        inline(*args)
    created = inline("gateway", "keys", "create", "leak-two")
    assert created.returncode == 0, created.stderr
    keys["leak-two"], key_runs["leak-two"] = created.stdout.strip().splitlines()[-1], created
    inline("gateway", "keys", "list")
    inline("gateway", "keys", "list", "--json")
    assert inline("gateway", "keys", "revoke", "leak-two", "--yes", "--json").returncode == 0

    job_id = finished_job(root, home, package, "pass")
    gated = arsl("gate", job_id, "--json")
    assert gated.returncode == 0, gated.stderr
    inline("models", "list")
    deployed = arsl("deploy", "v1", "--yes", "--json")
    assert deployed.returncode == 0, deployed.stderr
    outcome = json_of(deployed)
    default_endpoint = outcome["endpoint"]
    default_listen = listening_sockets(outcome["pid"])
    unkeyed = arsl("predict", str(image), "--json")  # the key comes from $ARSL_APP_CODE: a canary
    assert inline("predict", str(image), "--key", keys["leak-one"], "--json").returncode == 0
    inline("api-test", "--requests", "4", "--concurrency", "2", "--key", keys["leak-one"], "--json")
    inline("service", "status")
    assert json_of(inline("service", "stop", "--yes", "--json"))["stopped"] is True

    configured = arsl("service", "start", "--json", extra={"ARSL_GATEWAY_HOST": "127.0.0.2"})
    assert configured.returncode == 0, configured.stderr
    started = json_of(configured)
    configured_listen = listening_sockets(started["pid"])
    inline("service", "stop", "--yes")

    # A wildcard host is never bound here: the port is held on 127.0.0.1 first, so the gateway's
    # bind fails (EADDRINUSE) and nothing listens beyond this machine, while its answer still shows
    # which host it tried.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        wildcard = arsl(
            "service", "start", "--json", extra={"ARSL_GATEWAY_HOST": "0.0.0.0", "ARSL_GATEWAY_PORT": str(port)}
        )
    if wildcard.returncode == 0:  # it must not have started; if it did, end it before failing
        stop_gateway(home)
    return LocalWorld(
        root=root,
        home=home,
        data=data,
        image=image,
        canaries=canaries,
        runs=runs,
        keys=keys,
        key_runs=key_runs,
        job_id=job_id,
        default_endpoint=default_endpoint,
        default_listen=default_listen,
        configured_listen=configured_listen,
        configured_port=int(started["endpoint"].rsplit(":", 1)[1]),
        wildcard_port=port,
        wildcard_run=wildcard,
        unkeyed_predict=unkeyed,
    )


@pytest.fixture(scope="module")
def local_world(
    tmp_path_factory: pytest.TempPathFactory, canaries: Canaries, dataset: Path, package: Path
) -> Iterator[LocalWorld]:
    root = tmp_path_factory.mktemp("local-world")
    try:
        yield build_local_world(root, canaries, dataset, package)
    finally:
        stop_gateway(root / "home")


def test_local_cli_output_state_and_logs_hold_no_planted_secret(local_world: LocalWorld) -> None:
    finder = LeakFinder(local_world.canaries.secret_values())
    found: list[str] = []
    scan_runs(finder, local_world.runs, found)
    files = finder.scan_tree(local_world.home, found)
    assert not found, "\n".join(found)
    # What was searched is what the product wrote: the store, the state file, a job, the gateway's log.
    for name in ("arsl.db", "serving/gateway.log", f"jobs/{local_world.job_id}"):
        assert (local_world.home / name).exists(), name
    assert files >= 20
    # The planted app code was read and sent (the gateway refused it), yet is printed nowhere.
    assert json_of(local_world.unkeyed_predict)["results"][0]["status"] == 401
    failed = [run for run in local_world.runs if run.returncode != 0]
    assert len(failed) >= 4 and all("Traceback" not in run.stderr for run in local_world.runs)


def test_gateway_keys_are_stored_hashed_and_shown_once(local_world: LocalWorld) -> None:
    rows = {row[0]: row for row in sqlite_rows(local_world.home / "arsl.db")["gateway_keys"]}
    for name, key in local_world.keys.items():
        assert key.startswith("arsl_") and len(key) >= 40
        assert rows[name][1] == hashlib.sha256(key.encode()).hexdigest(), name
    assert rows["leak-two"][3] is not None  # revoked, still hashed
    finder = LeakFinder({f"gateway key {name}": key for name, key in local_world.keys.items()})
    found: list[str] = []
    finder.scan_tree(local_world.home, found)
    assert not found, "\n".join(found)
    for run in local_world.runs:
        creator = next((name for name, created in local_world.key_runs.items() if created is run), None)
        printed = finder.find(run.stdout)
        if creator is not None:
            assert run.stdout.count(local_world.keys[creator]) == 1 and printed == [f"gateway key {creator} (plain)"]
        else:  # also the commands that were given a key with --key: none repeats it
            assert printed == [], run.label
        assert finder.find(run.stderr) == [], run.label


# --- 1. the huawei backend against a hostile server ---------------------------------------------------


def test_huawei_cli_errors_carry_no_credentials_or_signed_headers(
    tmp_path: Path, canaries: Canaries, echo: EchoServer, dataset: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    credentials_file = canaries.write_credentials_file(tmp_path / "user-home" / ".huaweicloud" / "credentials")
    every_source = canaries.environment(credentials_file)
    huawei = {
        "ARSL_BACKEND": "huawei",
        "ARSL_HUAWEI_APIG_INSTANCE_ID": "instance-1",
        "ARSL_HUAWEI_TIMEOUT_S": "5",
        "ARSL_UPLOAD_MAX_ATTEMPTS": "1",
    }
    env = base_environment(home, {**every_source, **huawei, **huawei_endpoints(echo.endpoint)})
    obs_only = {name: value for name, value in env.items() if not name.startswith("HUAWEICLOUD_SDK_")}
    file_only = {name: value for name, value in obs_only.items() if not name.startswith("OBS_")}
    file_only["HUAWEICLOUD_SDK_CREDENTIALS_FILE"] = str(credentials_file)
    refused = base_environment(
        home, {**every_source, **huawei, **huawei_endpoints(f"http://127.0.0.1:{closed_port()}")}
    )
    seen_before = len(echo.requests)

    runs = run_many(
        [["status"], ["upload", str(dataset), "--yes", "--json"], ["alarms", "setup", "--yes"]], env, tmp_path
    )
    for args in (
        ["status", "--json"],
        ["models", "list"],
        ["train", "status", "--json"],
        ["train", "submit", "obs://arsl-ml/datasets/x/", "--yes", "--epochs", "1"],
        ["alarms", "list", "--json"],
        ["canary", "start", "v1", "--yes"],
        ["gateway", "setup", "--yes"],
    ):
        runs.append(run_in_process(args, env, tmp_path))
    runs += [
        run_in_process(["status", "--json"], obs_only, tmp_path),
        run_in_process(["status", "--json"], file_only, tmp_path),
        run_in_process(["upload", str(dataset), "--yes"], refused, tmp_path),
    ]

    finder = LeakFinder({**canaries.secret_values(), **signed_material(echo)})
    found: list[str] = []
    scan_runs(finder, runs, found)
    finder.scan_tree(home, found)
    assert not found, "\n".join(found)
    # The planted credentials of each source were the ones that signed (so each was really read) ...
    sent = " ".join(headers.get("Authorization", "") for headers in echo.requests[seen_before:])
    for access_key in (canaries.ak, canaries.obs_ak, canaries.file_ak):
        assert access_key in sent
    # ... and the hostile answers reached the output, redacted, as a message a user can act on.
    shown = "\n".join(run.stdout + run.stderr for run in runs)
    assert "Authorization: <redacted>" in shown and "HTTP 401" in shown and "HTTP 403" in shown
    assert "Connection refused" in runs[-1].stdout + runs[-1].stderr, runs[-1]
    assert all("Traceback" not in run.stderr for run in runs), [run.label for run in runs if "Traceback" in run.stderr]


def test_sdk_failures_raise_errors_without_credentials_or_signatures(
    tmp_path: Path, canaries: Canaries, echo: EchoServer
) -> None:
    from rich.console import Console
    from rich.traceback import Traceback

    from arsl_tui.providers.huawei.apig import ApigGateway, spec_from_settings
    from arsl_tui.providers.huawei.ces import CloudEyeMonitor
    from arsl_tui.providers.huawei.credentials import Credentials
    from arsl_tui.providers.huawei.deployment_services import ModelArtsDeploymentServing
    from arsl_tui.providers.huawei.modelarts import ModelArtsTrainingPlatform
    from arsl_tui.providers.huawei.models import ModelArtsModelImporter
    from arsl_tui.providers.huawei.obs import ObsObjectStore
    from arsl_tui.providers.huawei.realtime_services import RealtimeServingPlatform
    from tests.fixtures.ces_contract import CES_V1, CES_V2
    from tests.fixtures.huawei_contract import MODELARTS, ContractServer
    from tests.fixtures.s3sink import Faults, S3Sink

    credentials = Credentials(
        access_key=canaries.ak,
        secret_key=canaries.sk,
        project_id=canaries.project_id,
        security_token=canaries.token,
        source="test",
    )
    contract = ContractServer(
        services=(MODELARTS, CES_V1, CES_V2, "huaweicloudsdkapig/v2"),
        credentials={canaries.ak: canaries.sk},
        project_id=canaries.project_id,
    )
    messages: list[str] = []
    with contract, S3Sink(buckets=["arsl-ml"], faults=Faults(deny=True)) as sink:
        refused = f"http://127.0.0.1:{closed_port()}"
        for label, sdk_endpoint, obs_endpoint in (
            ("hostile", echo.endpoint, echo.endpoint),
            ("contract", contract.endpoint, sink.endpoint),
            ("refused", refused, refused),
        ):
            endpoints = {f"huawei.{service}_endpoint": sdk_endpoint for service in ("modelarts", "ces", "apig", "aom")}
            settings = quiet_settings(
                tmp_path / label,
                backend="huawei",
                **endpoints,
                **{"huawei.obs_endpoint": obs_endpoint, "huawei.timeout_s": 5, "huawei.apig_instance_id": "instance-1"},
            )
            calls: dict[str, Callable[[], Any]] = {
                "OBS list": lambda settings=settings: list(
                    ObsObjectStore.from_settings(settings, credentials=credentials, max_retry_count=0).list("models/")
                ),
                "ModelArts jobs": lambda settings=settings: ModelArtsTrainingPlatform.from_settings(
                    settings, credentials=credentials
                ).list(),
                "Cloud Eye rules": lambda settings=settings: CloudEyeMonitor.from_settings(
                    settings, credentials=credentials
                ).rules(),
                "API Gateway setup": lambda settings=settings: ApigGateway.from_settings(
                    settings, credentials=credentials
                ).setup(spec_from_settings(settings, "https://infer/v1/infers/s")),
                "ModelArts service": lambda settings=settings: ModelArtsDeploymentServing.from_settings(
                    settings,
                    package_address=lambda version: f"obs://arsl-ml/models/{version}/",
                    credentials=credentials,
                ).status("arsl-sign-classifier"),
                "ModelArts real-time service": lambda settings=settings: RealtimeServingPlatform.from_settings(
                    settings, model_id=lambda version: f"model-{version}", credentials=credentials
                ).status("arsl-sign-classifier"),
                "ModelArts models": lambda settings=settings: ModelArtsModelImporter.from_settings(
                    settings, credentials=credentials
                ).find("v1"),
            }
            for name, call in calls.items():
                with pytest.raises(Exception) as caught:
                    call()
                error = caught.value
                # Also as a crashed console would print it: Textual's traceback shows each frame's
                # locals (the product's frames: the first two are this test's and its lambda's).
                crash = Console(record=True, width=200, file=io.StringIO())
                crash.print(Traceback.from_exception(type(error), error, caught.tb.tb_next.tb_next, show_locals=True))
                text = "\n".join(
                    [
                        str(error),
                        repr(error),
                        repr(error.args),
                        "".join(traceback.format_exception(error)),
                        crash.export_text(),
                    ]
                )
                messages.append(f"[{label} {name}] {text}")
    finder = LeakFinder({**canaries.secret_values(), **signed_material(echo)})
    found: list[str] = []
    for message in messages:
        finder.scan(message.split("]")[0] + "]", message, found)
    assert not found, "\n".join(found)
    everything = "\n".join(messages)
    # The signed requests reached the servers (the contract server checked each signature with the
    # planted secret key) and the errors say what failed.
    assert contract.calls and all(call.status != 401 for call in contract.calls)
    assert everything.count("<redacted>") >= 5 and "HTTP 501" in everything and "HTTP 403" in everything
    assert "providers/huawei" in everything  # the crash form did render the product's frames


def test_redaction_holds_for_any_echo_of_a_signed_request() -> None:
    """Seeded random credentials (letters, digits, `+`, `/`, `=`) echoed in every form a server or
    proxy may use (each signing scheme's Authorization value, S3's XML elements, presigned query
    strings, URL-quoted and JSON-escaped values), through each SDK error shape the adapters convert."""
    import random
    import string
    from types import SimpleNamespace
    from urllib.parse import quote

    import requests
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, ConnectionException, SdkError

    from arsl_tui.providers.huawei.credentials import Credentials
    from arsl_tui.providers.huawei.errors import failure_from_exception, failure_from_obs_result
    from tests.reliability.conftest import reliability_runs

    count = reliability_runs(300)
    rng = random.Random(20261126)
    key_alphabet, secret_alphabet = string.ascii_uppercase + string.digits, string.ascii_letters + string.digits + "+/"
    templates = (
        "Authorization: SDK-HMAC-SHA256 Access={ak}, SignedHeaders=content-type;host;x-sdk-date, Signature={hex}",
        "Authorization: AWS4-HMAC-SHA256 Credential={ak}/20261126/af-north-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature={hex}",
        "Authorization: OBS {ak}:{b64}",
        "authorization=AWS {ak}:{b64}",
        "<AWSAccessKeyId>{ak}</AWSAccessKeyId><StringToSign>PUT\n\n{token}</StringToSign>"
        "<SignatureProvided>{b64}</SignatureProvided>",
        "https://arsl-ml.obs.example/k?AccessKeyId={ak}&Expires=1&Signature={b64q}&x-obs-security-token={tokenq}",
        "X-Security-Token: {token}",
        '{{"sk": "{skj}", "token": "{tokenj}"}}',
        "the secret key {sk} was refused",
    )
    leaks: list[str] = []
    for run in range(count):
        ak = "".join(rng.choice(key_alphabet) for _ in range(20))
        sk = "".join(rng.choice(secret_alphabet) for _ in range(40))
        token = "".join(rng.choice(secret_alphabet) for _ in range(rng.randint(40, 120))) + "=" * rng.randint(0, 2)
        hex_signature = f"{rng.getrandbits(256):064x}"
        b64 = "".join(rng.choice(secret_alphabet) for _ in range(27)) + "="
        values = {
            "ak": ak,
            "sk": sk,
            "token": token,
            "hex": hex_signature,
            "b64": b64,
            "b64q": quote(b64, safe=""),
            "tokenq": quote(token, safe=""),
            "skj": sk.replace("/", "\\/"),
            "tokenj": token.replace("/", "\\/"),
        }
        chosen = rng.sample(templates, rng.randint(1, len(templates)))
        message = rng.choice(("", "denied: ", "Incorrect IAM authentication information: ")) + "; ".join(
            template.format(**values) for template in chosen
        )
        secrets = Credentials(access_key=ak, secret_key=sk, security_token=token).secrets()
        failures = [
            failure_from_exception(error, service="S", operation="op", target="t", secrets=secrets)
            for error in (
                ClientRequestException(401, SdkError("r-1", "APIGW.0301", message)),
                ConnectionException(message),
                requests.exceptions.ConnectionError(message),
                Exception(message),
            )
        ]
        failures.append(
            failure_from_obs_result(
                SimpleNamespace(status=403, errorCode="SignatureDoesNotMatch", errorMessage=message, requestId="r-2"),
                operation="op",
                target="t",
                secrets=secrets,
            )
        )
        finder = LeakFinder(
            {"ak": ak, "sk": sk, "token": token, "hex signature": hex_signature, "base64 signature": b64.rstrip("=")}
        )
        for failure in failures:
            finder.scan(f"run {run}: {message[:60]!r}", failure.message, leaks)
    assert not leaks, "\n".join(leaks[:20])


async def test_the_console_on_a_failing_cloud_shows_no_planted_secret(
    tmp_path: Path, canaries: Canaries, echo: EchoServer, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.command import CommandPalette

    from arsl_tui.ui.app import ArslApp
    from arsl_tui.ui.screens.confirm import ConfirmScreen
    from arsl_tui.ui.screens.form import FormScreen
    from arsl_tui.ui.screens.help import HelpScreen
    from arsl_tui.ui.widgets.log_panel import LogPanel
    from tests.ui.conftest import screen_text, settle, validate_folder

    credentials_file = canaries.write_credentials_file(tmp_path / "user-home" / ".huaweicloud" / "credentials")
    for name, value in canaries.environment(credentials_file).items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    settings = quiet_settings(
        home,
        backend="huawei",
        **{f"huawei.{service}_endpoint": echo.endpoint for service in ("obs", "modelarts", "ces", "apig")},
        **{"huawei.timeout_s": 5, "upload.max_attempts": 1},
    )
    seen_before = len(echo.requests)
    screens: list[tuple[str, str]] = []
    app = ArslApp(settings, theme="arsl-dark", progress_interval_s=0.0)

    def capture(where: str) -> None:
        screens.append((where, screen_text(app)))
        screens.append((f"{where} (screenshot)", app.export_screenshot()))

    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        for number in "123456":
            await pilot.press("escape", number)
            await settle(app, pilot)
            capture(f"tab {number}")
        await validate_folder(app, pilot, dataset)  # then an upload that the server refuses
        await pilot.press("escape", "S")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(app, pilot)
        capture("upload refused")
        await pilot.press("escape", "3", "S")  # outside read-only mode the keys ask (the read-only tests' control)
        assert isinstance(app.screen, FormScreen)
        capture("training form")
        await pilot.press("escape")
        await pilot.press("escape", "l")
        capture("log panel")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        capture("help")
        await pilot.press("escape", "ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        capture("palette")
        await pilot.press("escape")
        log = "\n".join(app.query_one("#log", LogPanel).recent)
    finder = LeakFinder({**canaries.secret_values(), **signed_material(echo)})
    found: list[str] = []
    for where, text in screens:
        finder.scan(where, text, found)
    finder.scan("log panel lines", log, found)
    finder.scan_tree(home, found)
    assert not found, "\n".join(found)
    assert any(canaries.ak in headers.get("Authorization", "") for headers in echo.requests[seen_before:])
    assert "<redacted>" in log and "HTTP 403" in log  # the refused upload's error, as the user reads it


# --- 2. model files are never unpickled ---------------------------------------------------------------


def test_no_code_path_can_unpickle_a_model_file() -> None:
    problems: list[str] = []
    files = list(walk_files([ROOT / "arsl_tui", ROOT / "trainer"]))
    for path in files:
        problems += unsafe_loads(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert len(files) > 100 and not problems, "\n".join(problems)
    # The walk sees through aliases and catches each unsafe form.
    sample = textwrap.dedent("""\
        import numpy as np, torch as T, yaml
        from torch import load
        T.load(path)
        load(path, weights_only=False)
        T.load(path, **options)
        np.load(path, allow_pickle=True)
        yaml.load(text)
        from joblib import load as jl
        T.load(path, weights_only=True); np.load(path); yaml.load(text, Loader=yaml.SafeLoader)
    """)
    lines = sorted(int(problem.split(":")[1]) for problem in unsafe_loads(sample, "sample.py"))
    assert lines == [3, 4, 5, 6, 7, 8]


@dataclass
class Traps:
    marker: Path
    packages: dict[str, Path]
    checkpoint_output: Path


def _trapped_package(package: Path, target: Path, weights_name: str, payload: bytes) -> Path:
    shutil.copytree(package, target)
    (target / "model.safetensors").unlink()
    (target / weights_name).write_bytes(payload)
    config = json.loads((target / "config.json").read_text())
    config.update(weights=weights_name, weights_sha256=hashlib.sha256(payload).hexdigest())
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def traps(tmp_path_factory: pytest.TempPathFactory, package: Path) -> Traps:
    """Malicious pickles where model files go; each is shown to be armed (it makes the marker when
    loaded the unsafe way), then the marker is removed before any product code sees them."""
    import io
    import pickle

    import torch

    root = tmp_path_factory.mktemp("traps")
    marker = root / "UNPICKLED"
    saved, plain = torch_trap(marker), pickle_trap(marker)
    torch.load(io.BytesIO(saved), weights_only=False)
    assert marker.is_dir(), "the torch.save trap is not armed"
    marker.rmdir()
    pickle.loads(plain)  # noqa: S301 - proving the trap works, on bytes made just above
    assert marker.is_dir(), "the pickle trap is not armed"
    marker.rmdir()
    packages = {
        "pickle as model.safetensors": _trapped_package(package, root / "p1", "model.safetensors", saved),
        "pickle as model.pt": _trapped_package(package, root / "p2", "model.pt", saved),
        "raw pickle as model.safetensors": _trapped_package(package, root / "p3", "model.safetensors", plain),
    }
    output = root / "trainer-output"
    (output / "checkpoints").mkdir(parents=True)
    (output / "checkpoints" / "last.pt").write_bytes(saved)
    return Traps(marker=marker, packages=packages, checkpoint_output=output)


def test_every_in_process_loader_refuses_a_pickled_model_file(
    traps: Traps, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from arsl_tui.ops.registry import PackageError as RegistryPackageError
    from arsl_tui.ops.registry import inspect_package
    from arsl_tui.serving.batching import load_model
    from trainer.checkpoint import CheckpointError, load_checkpoint
    from trainer.modelarts import serve
    from trainer.predict import PackageError, Predictor

    for name, folder in traps.packages.items():
        weights = json.loads((folder / "config.json").read_text())["weights"]
        for loader, refusal in (
            (Predictor.load, PackageError),
            (lambda path: load_model("v1", path), PackageError),
            (inspect_package, RegistryPackageError),
        ):
            with pytest.raises(refusal) as caught:
                loader(folder)
            assert weights in str(caught.value), (name, str(caught.value))
            assert not traps.marker.exists(), name
        assert serve.main(["--model-dir", str(folder), "--port", "0"]) == 2
        assert f"error: {folder / weights}" in capsys.readouterr().err
        assert not traps.marker.exists(), name
    last = traps.checkpoint_output / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointError, match=re.escape(str(last))):
        load_checkpoint(last)
    assert not traps.marker.exists()


def test_trainer_resume_refuses_a_pickled_checkpoint(traps: Traps, tmp_path: Path) -> None:
    import torch

    from trainer.distributed import DistContext
    from trainer.train import TrainConfig, TrainerError, run

    data = synthesize(tmp_path / "data", per_class=10, seed=3).out
    context = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)
    config = TrainConfig(
        data=data,
        output=traps.checkpoint_output,
        epochs=1,
        batch_size=64,
        resume=True,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    with pytest.raises(TrainerError, match=re.escape("last.pt: cannot be loaded")):
        run(config, context)
    assert not traps.marker.exists()


def test_the_gateway_and_the_gate_refuse_a_pickled_package(traps: Traps, tmp_path: Path) -> None:
    from arsl_tui.domain.serving import Deployment
    from arsl_tui.providers.local.serving_control import ServingState, models_dir

    home = tmp_path / "home"
    # The gateway serves what sits in its models folder (put there by `arsl deploy`): plant it there.
    shutil.copytree(traps.packages["pickle as model.safetensors"], models_dir(home) / "v1")
    state = ServingState.open(home)
    try:
        state.save_deployment(Deployment(stable="v1", weights={"v1": 100}), "planted by the security test")
    finally:
        state.close()
    job_id = finished_job(tmp_path, home, traps.packages["pickle as model.pt"], "trapped")
    env = base_environment(home, {"ARSL_GATEWAY_PORT": "0"})
    try:
        started, gated = run_many([["service", "start", "--json"], ["gate", job_id, "--json"]], env, tmp_path)
        status = run_cli(["service", "status", "--json"], env, tmp_path)
    finally:
        stop_gateway(home)
    assert started.returncode == 3 and "cannot load a model" in json_of(started)["error"], started.stderr
    assert "model.safetensors" in json_of(started)["error"] and json_of(status)["running"] is False
    assert gated.returncode == 3 and "model.pt" in json_of(gated)["error"] and "pickle" in json_of(gated)["error"]
    assert "Traceback" not in started.stderr + gated.stderr
    assert not traps.marker.exists()
    assert not (home / "store" / "arsl-ml" / "models" / "versions").exists()  # nothing was registered


# --- 3. servers listen on loopback --------------------------------------------------------------------


def test_the_gateway_listens_on_loopback_by_default(local_world: LocalWorld) -> None:
    port = int(local_world.default_endpoint.rsplit(":", 1)[1])
    assert local_world.default_endpoint == f"http://127.0.0.1:{port}"
    assert local_world.default_listen == [("127.0.0.1", port)]


def test_a_configured_gateway_host_is_honoured(local_world: LocalWorld) -> None:
    assert local_world.configured_listen == [("127.0.0.2", local_world.configured_port)]


def test_a_wildcard_host_is_taken_only_from_the_configuration(local_world: LocalWorld) -> None:
    run = local_world.wildcard_run
    assert run.returncode != 0, "the gateway started on 0.0.0.0"
    assert f"cannot listen on 0.0.0.0:{local_world.wildcard_port}" in json_of(run)["error"]


def test_a_wildcard_host_is_warned_about(local_world: LocalWorld) -> None:
    log = (local_world.home / "serving" / "gateway.log").read_text(encoding="utf-8", errors="replace")
    said = local_world.wildcard_run.stderr + local_world.wildcard_run.stdout + log
    assert re.search(r"(?i)warn\w*\W.*0\.0\.0\.0.*(other machines|every interface|all interfaces|network)", said)


def test_the_package_server_listens_on_loopback_by_default(package: Path) -> None:
    command = [sys.executable, "-m", "trainer.modelarts.serve", "--model-dir", str(package), "--port", "0"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=base_environment(package.parent),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 120)  # bounded: the line comes once it listens
        line = process.stdout.readline() if ready else ""  # EOF ("") if it exited first
        found = re.search(r"on http://([0-9.]+):(\d+)", line)
        assert found, f"{line!r} {process.stderr.read() if process.poll() is not None and process.stderr else ''}"
        assert found.group(1) == "127.0.0.1"
        assert listening_sockets(process.pid) == [("127.0.0.1", int(found.group(2)))]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --- 4. read-only mode --------------------------------------------------------------------------------

REFUSES, READS = "refuses", "reads"


@dataclass(frozen=True)
class ReadOnlyCase:
    path: tuple[str, ...]
    args: tuple[str, ...]
    expect: str
    why: str = ""


def _case(expect: str, *args: str, path: int | None = None, why: str = "") -> ReadOnlyCase:
    words = tuple(arg for arg in args if not arg.startswith("-") and "{" not in arg)
    return ReadOnlyCase(path=words[:path] if path else words, args=args, expect=expect, why=why)


# Every leaf of the argparse tree, with arguments that reach its handler on the populated home of the
# local world. `test_the_read_only_table_covers_every_cli_command` fails when a command is added.
READ_ONLY_CASES = (
    _case(
        READS,
        "data",
        "synth",
        "{root}/synth-out",
        "--per-class",
        "1",
        path=2,
        why="writes only the folder it is given, outside $ARSL_HOME",
    ),
    _case(READS, "data", "validate", "{data}", path=2),
    _case(REFUSES, "upload", "{data}", "--yes"),
    _case(READS, "upload", "status", path=1),
    _case(REFUSES, "train", "submit", "{data}", "--yes", "--epochs", "1", path=2),
    _case(READS, "train", "status"),
    _case(READS, "train", "watch", "{job}"),
    _case(READS, "train", "logs", "{job}"),
    _case(REFUSES, "train", "stop", "{job}", "--yes"),
    _case(REFUSES, "train", "resume", "{job}", "--yes"),
    _case(REFUSES, "gate", "{job}"),
    _case(REFUSES, "gate", "{job}", "--override", "--reason", "security test", "--yes", path=1),
    _case(READS, "gate", "{job}", "--dry-run"),
    _case(READS, "models", "list"),
    _case(READS, "models", "show", "v1", path=2),
    _case(READS, "models", "log"),
    _case(REFUSES, "models", "import", "v1", path=2),
    _case(REFUSES, "deploy", "v1", "--yes", path=1),
    _case(READS, "service", "status"),
    _case(REFUSES, "service", "start"),
    _case(REFUSES, "service", "stop", "--yes"),
    _case(REFUSES, "gateway", "keys", "create", "read-only-key", path=3),
    _case(REFUSES, "gateway", "keys", "revoke", "leak-one", "--yes", path=3),
    _case(READS, "gateway", "keys", "list"),
    _case(REFUSES, "gateway", "setup", "--yes"),
    _case(READS, "gateway", "versions", why="the local backend keeps no published API versions: it says so"),
    _case(REFUSES, "gateway", "rollback", "ver-1", "--yes", path=2),
    _case(READS, "predict", "{image}", "--endpoint", "{refused}", "--key", "key", path=1),
    _case(READS, "api-test", "--requests", "1", path=1, why="no gateway runs: it stops before making a throw-away key"),
    _case(READS, "canary", "status"),
    _case(READS, "canary", "watch"),
    _case(REFUSES, "canary", "start", "--yes"),
    _case(REFUSES, "canary", "promote", "--yes"),
    _case(REFUSES, "canary", "pause", "--yes"),
    _case(REFUSES, "canary", "resume", "--yes"),
    _case(REFUSES, "canary", "rollback", "--yes"),
    _case(READS, "canary", "shadow", "status"),
    _case(REFUSES, "canary", "shadow", "start", "--yes"),
    _case(REFUSES, "canary", "shadow", "skip", "--yes"),
    _case(REFUSES, "alarms", "setup", "--yes"),
    _case(READS, "alarms", "list"),
    _case(READS, "alarms", "history"),
    _case(REFUSES, "alarms", "ack", "gateway_error_rate", "--yes", path=2),
    _case(REFUSES, "alarms", "silence", "gateway_error_rate", "--for", "1h", "--yes", path=2),
    _case(REFUSES, "alarms", "watch", "--once"),
    _case(READS, "drift", "status"),
    _case(READS, "drift", "check", "{data}", path=2, why="scores the folder; nothing is pushed on local"),
    _case(READS, "status"),
    _case(READS, "doctor"),
    _case(REFUSES, "pipeline", "run", "--demo", "--yes"),
    _case(READS, "pipeline", "status"),
    _case(READS, "pipeline", "watch", why="no run here: it says so and ends"),
    _case(REFUSES, "pipeline", "cancel", "--yes"),
)
NOT_RUN_HERE = {("console",): "the console: see the Textual tests below"}
# Bypasses found by this suite; the fix is the lead's (strict: the mark must go once it is fixed).
KNOWN_BYPASSES: dict[tuple[str, ...], str] = {}


def leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subcommands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subcommands:
        yield prefix
        return
    for action in subcommands:
        seen: set[int] = set()
        for name, child in action.choices.items():
            if id(child) not in seen:
                seen.add(id(child))
                yield from leaf_commands(child, (*prefix, name))


def test_the_read_only_table_covers_every_cli_command() -> None:
    from arsl_tui.cli import build_parser

    leaves = set(leaf_commands(build_parser()))
    covered = {case.path for case in READ_ONLY_CASES} | set(NOT_RUN_HERE)
    assert leaves - covered == set(), "add these commands to READ_ONLY_CASES"
    assert covered - leaves == set(), "these commands are gone: remove them from READ_ONLY_CASES"


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BYPASSES[case.path]))
        if case.path in KNOWN_BYPASSES
        else case
        for case in READ_ONLY_CASES
    ],
    ids=lambda case: " ".join(case.args).replace("{", "").replace("}", ""),
)
def test_a_read_only_cli_command_changes_nothing(case: ReadOnlyCase, local_world: LocalWorld) -> None:
    values = {
        "root": str(local_world.root),
        "data": str(local_world.data),
        "image": str(local_world.image),
        "job": local_world.job_id,
        "refused": f"http://127.0.0.1:{closed_port()}",
    }
    arguments = [argument.format(**values) for argument in case.args]
    shutil.rmtree(local_world.root / "synth-out", ignore_errors=True)
    env = base_environment(local_world.home, {"ARSL_READ_ONLY": "true", "ARSL_GATEWAY_PORT": "0"})
    before = home_snapshot(local_world.home)
    run = run_in_process(arguments, env, local_world.root)
    assert snapshot_changes(before, home_snapshot(local_world.home)) == [], run
    assert "Traceback" not in run.stderr, run.stderr
    if case.expect == REFUSES:
        assert run.returncode == 2 and "read-only mode is on" in run.stderr and "refusing to" in run.stderr, run


def test_the_config_file_switch_refuses_in_a_real_process(local_world: LocalWorld) -> None:
    config = local_world.root / "read-only.toml"
    config.write_text("read_only = true\n", encoding="utf-8")
    before = home_snapshot(local_world.home)
    runs = run_many(
        [
            ["--config", str(config), "upload", str(local_world.data), "--yes", "--json"],
            ["--config", str(config), "gateway", "keys", "create", "from-config"],
        ],
        base_environment(local_world.home),
        local_world.root,
    )
    assert snapshot_changes(before, home_snapshot(local_world.home)) == []
    for run in runs:
        assert run.returncode == 2 and f"read_only = true in {config}" in run.stderr, run.stderr
    assert "read-only mode is on" in json_of(runs[0])["error"]


def _mutating_specs() -> list[Any]:
    from arsl_tui.ui.keymap import app_actions

    return [spec for spec in app_actions() if spec.mutates]


async def test_the_read_only_console_changes_nothing_by_key_or_palette(local_world: LocalWorld) -> None:
    """Every state-changing action of the registry (so also those added later): its keys pressed on
    every tab, and each run through the palette's own command provider (the callback Enter runs),
    two of them through the palette on screen. The home stays the same, row for row."""
    from textual.command import CommandInput, CommandList, CommandPalette
    from textual.screen import ModalScreen

    from arsl_tui.ui.app import ArslApp
    from arsl_tui.ui.commands import ArslCommands
    from arsl_tui.ui.keymap import TAB_IDS
    from arsl_tui.ui.widgets.header import ArslHeader
    from arsl_tui.ui.widgets.log_panel import LogPanel
    from tests.ui.conftest import screen_text, settle, validate_folder

    specs = _mutating_specs()
    assert len(specs) >= 15
    before = home_snapshot(local_world.home)
    opened: list[str] = []
    app = ArslApp(quiet_settings(local_world.home), read_only=True, theme="arsl-dark", progress_interval_s=0.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await validate_folder(app, pilot, local_world.data)  # so that only read-only mode stands in the way
        assert "read-only" in screen_text(app).lower() and app.query_one("#header", ArslHeader).read_only
        keys = sorted({key for spec in specs for key in [*app.keys_for(spec), *spec.keys.split(",")]})
        for number, tab in enumerate(TAB_IDS, start=1):
            await pilot.press("escape", str(number), "escape")
            await settle(app, pilot)
            for spec in specs:
                assert app.check_action(spec.action_name, spec.action_params) is not True, (tab, spec.id)
            for key in keys:
                await pilot.press(key)
                if isinstance(app.screen, ModalScreen):
                    opened.append(f"{key} on {tab}: {type(app.screen).__name__}")
                    await pilot.press("escape")
        log = app.query_one("#log", LogPanel)
        provider = ArslCommands(app.screen)
        listed = {hit.text: hit async for hit in provider.discover()}
        for spec in specs:
            hits = [hit async for hit in provider.search(spec.title) if hit.text == spec.title]
            assert len(hits) == 1 and "off: read-only mode" in (hits[0].help or ""), spec.id
            assert "off: read-only mode" in (listed[spec.title].help or ""), spec.id
            await hits[0].command()
            await pilot.pause()
            if isinstance(app.screen, ModalScreen):
                opened.append(f"palette {spec.id}: {type(app.screen).__name__}")
                await pilot.press("escape")
            assert log.recent[-1].endswith(f"{spec.title}: read-only mode is on"), spec.id
        for spec in (specs[0], specs[-1]):  # and the palette as typed into
            await pilot.press("escape", "ctrl+p")
            assert isinstance(app.screen, CommandPalette)
            app.screen.query_one(CommandInput).value = spec.title
            for _ in range(400):  # bounded: the palette searches asynchronously
                if app.screen.query_one(CommandList).option_count:
                    break
                await pilot.pause()
            await pilot.press("enter")
            await settle(app, pilot)
            assert not isinstance(app.screen, ModalScreen), spec.id
            assert log.recent[-1].endswith(f"{spec.title}: read-only mode is on"), spec.id
    assert opened == []
    assert snapshot_changes(before, home_snapshot(local_world.home)) == []
