"""`arsl drift check FOLDER --backend huawei`: the champion's package comes from the registry in OBS, the score
goes to Cloud Eye, where the `arsl-input-drift` rule of `arsl alarms setup` judges it.

Real SDKs against loopback servers: OBS is the rehearsal's stand-in (`tests/huawei_rehearsal/obs_standin.py`,
which checks OBS's own signature and virtual-host addressing; conditional creates for the registry's version
claims) and Cloud Eye is the documented contract server (`tests/fixtures/ces_contract.py`), which checks each
request against Huawei's API reference: "Adding Monitoring Data" (POST /V1.0/{project_id}/metric-data,
en-us_topic_0032831274, the SDK's `CreateMetricData` / PutMetricData) for the push.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.cli import build_parser
from arsl_tui.cli.common import CommandContext, run_command
from arsl_tui.config import HuaweiSettings, Settings, StorageSettings
from arsl_tui.ops import drift
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.huawei.obs import ObsObjectStore
from tests.fixtures.ces_contract import CloudEyeFake, ces_server
from tests.fixtures.huawei_contract import ContractServer
from tests.fixtures.model_packages import gate_json, metrics_json
from tests.fixtures.obs_contract import loopback_dns
from tests.huawei_rehearsal.obs_standin import ObsStandin
from tests.providers.conftest import FAKE_CREDENTIALS
from tests.serving.drift_packages import export_profiled_package, jpegs

PROJECT = "p-drift-check-01"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)
BUCKET = "arsl-ml"
REGION = "cn-north-4"
SERVICE_ID = "svc-drift-1"
SAMPLE = 240


@dataclass
class Cloud:
    obs: ObsStandin
    ces: ContractServer
    config: Path


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_profiled_package(tmp_path_factory.mktemp("package"), 1, jpegs(9, 320))


@pytest.fixture
def cloud(tmp_path: Path, package: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """OBS with v1 registered (the champion) and Cloud Eye, reached as an operator's CLI reaches them."""
    keys = {CREDENTIALS.access_key: CREDENTIALS.secret_key}
    obs = ObsStandin(root=tmp_path / "obs", credentials=keys, buckets=(BUCKET,), region=REGION).start()
    ces = ces_server(keys, PROJECT)
    CloudEyeFake(ces)
    with ces, loopback_dns():
        try:
            settings = Settings(
                backend="huawei",
                home=str(tmp_path / "registering-home"),
                huawei=HuaweiSettings(region=REGION, obs_endpoint=obs.endpoint, timeout_s=5.0),
                storage=StorageSettings(bucket=BUCKET),
            )
            store = ObsObjectStore.from_settings(settings, credentials=CREDENTIALS, max_retry_count=0)
            try:
                record = ModelRegistry(store, "models/", backend="huawei").register(
                    package, job_id="job-v1", manifest_id="m-drift", source="tests", gate=gate_json(),
                    metrics=metrics_json(), user="tests",
                )  # fmt: skip
            finally:
                store.close()
            assert record.version == "v1"
            config = tmp_path / "config.toml"
            config.write_text(
                f'[huawei]\nregion = "{REGION}"\nobs_endpoint = "{obs.endpoint}"\n'
                f'ces_endpoint = "{ces.endpoint}"\ntimeout_s = 5.0\n'
                f'[storage]\nbucket = "{BUCKET}"\n[alarms]\nservice_id = "{SERVICE_ID}"\n',
                encoding="utf-8",
            )
            for name in [name for name in os.environ if name.startswith(("HUAWEICLOUD_", "OBS_", "ARSL_"))]:
                monkeypatch.delenv(name)
            monkeypatch.setenv("ARSL_HOME", str(tmp_path / "operator-home"))
            monkeypatch.setenv("HUAWEICLOUD_SDK_AK", CREDENTIALS.access_key)
            monkeypatch.setenv("HUAWEICLOUD_SDK_SK", CREDENTIALS.secret_key)
            monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
            monkeypatch.chdir(tmp_path)
            yield Cloud(obs, ces, config)
        finally:
            obs.stop()
    assert ces.violations == [], "calls broke the documented contract"


def run_cli(cloud: Cloud, *arguments: str) -> tuple[int, str, str]:
    """The real parser and handler in this process (so they reach this test's servers)."""
    namespace = build_parser().parse_args(["--config", str(cloud.config), "--backend", "huawei", *arguments])
    out, err = io.StringIO(), io.StringIO()
    context = CommandContext(
        config_path=str(cloud.config),
        backend="huawei",
        json_output=bool(getattr(namespace, "json", False)),
        stdout=out,
        stderr=err,
    )
    return run_command(namespace.handler, context, namespace), out.getvalue(), err.getvalue()


def folder_of(path: Path, images: list[bytes]) -> Path:
    path.mkdir()
    for index, data in enumerate(images):
        (path / f"{index:04d}.jpg").write_bytes(data)
    return path


def json_of(out: str) -> Any:
    return json.loads(out.splitlines()[-1])


def test_the_score_of_a_captured_folder_is_pushed_to_cloud_eye_as_the_sdk_sends_it(
    cloud: Cloud, tmp_path: Path
) -> None:
    inverted = folder_of(tmp_path / "last-5-min", [drift.shift_image(data, "invert") for data in jpegs(9, SAMPLE, 320)])
    before = int(time.time() * 1000)
    code, out, err = run_cli(cloud, "--json", "drift", "check", str(inverted))
    after = int(time.time() * 1000)
    report = json_of(out)
    assert code == 1, (report, err)
    assert (report["version"], report["verdict"], report["images"]) == ("v1", "drifting", SAMPLE)
    [push] = cloud.ces.calls_to("create_metric_data")
    assert (push.method, push.path) == ("POST", f"/V1.0/{PROJECT}/metric-data")
    [point] = push.body
    assert point == {
        "metric": {
            "namespace": "ARSL.Serving",
            "metric_name": "input_drift",
            "dimensions": [{"name": "service_id", "value": SERVICE_ID}],
        },
        "ttl": 604800,
        "collect_time": point["collect_time"],
        "value": report["pushed"]["value"],
        "unit": "",
        "type": "float",
    }
    assert before <= point["collect_time"] <= after
    assert point["value"] == pytest.approx(report["score"], abs=1e-6) and point["value"] > 0.25
    assert report["pushed"] == {
        "monitor": "Cloud Eye",
        "namespace": "ARSL.Serving",
        "metric": "input_drift",
        "dimensions": {"service_id": SERVICE_ID},
        "value": point["value"],
    }

    normal = folder_of(tmp_path / "normal", jpegs(9, SAMPLE, 320))
    code, out, _ = run_cli(cloud, "drift", "check", str(normal))
    assert code == 0, out
    assert out.splitlines()[0].startswith("v1 stable · score ")
    second = cloud.ces.calls_to("create_metric_data")[1].body[0]["value"]
    assert f"pushed input_drift={second:.3f} to Cloud Eye ARSL.Serving, service_id={SERVICE_ID}" in out
    assert second < 0.125


def test_no_push_pushes_nothing_and_a_cloud_eye_refusal_is_exit_3_naming_it(cloud: Cloud, tmp_path: Path) -> None:
    folder = folder_of(tmp_path / "captured", jpegs(9, SAMPLE, 320))
    code, out, _ = run_cli(cloud, "--json", "drift", "check", str(folder), "--no-push")
    assert code == 0 and json_of(out)["pushed"] is None and json_of(out)["note"] == "not pushed (--no-push)"
    assert cloud.ces.calls_to("create_metric_data") == []
    cloud.ces.inject("create_metric_data", status=403, error_code="ces.0015", error_msg="no permission for CES")
    code, _, err = run_cli(cloud, "drift", "check", str(folder))
    assert code == 3, err
    assert "create_metric_data failed for metric ARSL.Serving/input_drift (HTTP 403, error code ces.0015" in err
    assert "no permission for CES" in err and CREDENTIALS.secret_key not in err


def test_without_a_service_id_there_is_nowhere_to_push(cloud: Cloud, tmp_path: Path) -> None:
    cloud.config.write_text(cloud.config.read_text(encoding="utf-8").replace(SERVICE_ID, ""), encoding="utf-8")
    folder = folder_of(tmp_path / "captured", jpegs(9, SAMPLE, 320))
    code, _, err = run_cli(cloud, "drift", "check", str(folder))
    assert code == 2 and "alarms.service_id is empty" in err
    assert cloud.ces.calls_to("create_metric_data") == []


def test_read_only_mode_refuses_the_push_but_scores_with_no_push(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_of(tmp_path / "captured", jpegs(9, SAMPLE, 320))
    monkeypatch.setenv("ARSL_READ_ONLY", "true")
    code, _, err = run_cli(cloud, "drift", "check", str(folder))
    assert code == 2 and "read-only mode is on" in err and "refusing to push the input_drift score" in err
    code, out, _ = run_cli(cloud, "--json", "drift", "check", str(folder), "--no-push")
    assert code == 0 and json_of(out)["version"] == "v1" and json_of(out)["pushed"] is None
    assert cloud.ces.calls_to("create_metric_data") == []
