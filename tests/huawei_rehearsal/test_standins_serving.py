"""The serving stand-ins: a real exported package imported through the ModelArts importer, served by a real-time
service whose instances run the package's own `customize_service.py`, called with a real image and an AppCode.

Every management call goes through the contract server (signature, route and body checked; a test fails on
a violation it did not provoke). Waiting is on the stand-in's state changes (a package checked, an instance
answering health), never on a fixed sleep.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import huaweicloudsdkmodelarts.v1 as ma
import numpy as np
import pytest
from PIL import Image

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.domain.ports import ModelImportError, ModelSlot, ServingPlatformError
from arsl_tui.ops.model_import import import_version, model_id_function
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.huawei.models import ModelArtsModelImporter
from arsl_tui.providers.huawei.obs import ObsObjectStore
from arsl_tui.providers.huawei.realtime_services import RealtimeServingPlatform
from arsl_tui.providers.huawei.rest import rest_json
from arsl_tui.providers.huawei.sdk_clients import basic_credentials, build_sdk_client
from arsl_tui.providers.local.store import LocalObjectStore
from tests.fixtures.ces_contract import CES_V1, CES_V2
from tests.fixtures.huawei_contract import ContractServer
from tests.fixtures.huawei_serving_fakes import MODELARTS
from tests.fixtures.model_packages import gate_json, metrics_json
from tests.huawei_rehearsal.conftest import StackFactory, rehearsal_credentials, rehearsal_settings
from tests.huawei_rehearsal.faults import Faults
from tests.huawei_rehearsal.obs_standin import ObsStandin
from tests.huawei_rehearsal.serving_standin import (
    REHEARSAL_APP_CODE,
    REHEARSAL_APP_ID,
    ServingStandin,
    evaluate_rules,
    register_serving,
)
from tests.providers.conftest import FAKE_CREDENTIALS
from trainer.modelarts import layout

PROJECT = "p-standin-0001"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)
BUCKET = "arsl-ml"
REGION = "af-north-1"
NAME = "arsl-sign-classifier"
SERVICE = "arsl-signs"
INFERENCE = "customize_service.py"
WAIT_S = 120.0
"""The longest a test waits for a state change (an instance loads torch and the package on a busy machine)."""


class LocalObjects:
    """The registry's objects, read as the serving stand-in reads the OBS stand-in's (`download_prefix`)."""

    def __init__(self, store: LocalObjectStore) -> None:
        self.store = store

    def download_prefix(self, bucket: str, prefix: str, destination: Path) -> list[Path]:
        assert bucket == BUCKET
        written = []
        for info in self.store.list(prefix):
            target = destination / info.key[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.store.get_bytes(info.key))
            written.append(target)
        return written


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real packages (trainer.export of a compact CNN), v1 and v2."""
    from tests.serving.packages import export_random_package

    root = tmp_path_factory.mktemp("packages")
    return {f"v{seed}": export_random_package(root / f"seed{seed}", seed=seed) for seed in (1, 2)}


@pytest.fixture
def registry(tmp_path: Path, packages: dict[str, Path]) -> ModelRegistry:
    registry = ModelRegistry(LocalObjectStore(tmp_path / "store" / BUCKET), "models/")
    for version, package in packages.items():
        record = registry.register(
            package,
            job_id=f"job-{version}",
            manifest_id="m-serving",
            source=str(package),
            gate=gate_json(),
            metrics=metrics_json(),
            user="tests",
        )
        assert record.version == version
    return registry


@pytest.fixture
def contract() -> Iterator[ContractServer]:
    server = ContractServer(
        services=(MODELARTS, CES_V1, CES_V2),
        credentials={CREDENTIALS.access_key: CREDENTIALS.secret_key},
        project_id=PROJECT,
    )
    with server:
        yield server
    assert server.violations == [], "calls broke the documented contract"


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def standin(
    contract: ContractServer, registry: ModelRegistry, tmp_path: Path, faults: Faults
) -> Iterator[ServingStandin]:
    assert isinstance(registry.store, LocalObjectStore)
    made = register_serving(contract, LocalObjects(registry.store), tmp_path / "serving", faults)
    yield made
    made.close()


@pytest.fixture
def importer(contract: ContractServer, standin: ServingStandin) -> ModelArtsModelImporter:
    client = build_sdk_client(
        ma.ModelArtsClient, contract.endpoint, basic_credentials(CREDENTIALS, "ModelArts"), timeout_s=10.0
    )
    return ModelArtsModelImporter(
        client=client, name=NAME, bucket=BUCKET, region=REGION, timeout_s=10.0, secrets=CREDENTIALS.secrets()
    )


@pytest.fixture
def settings(tmp_path: Path, contract: ContractServer) -> Settings:
    return load_settings(
        None,
        environ={},
        cwd=tmp_path,
        cli_overrides={
            "backend": "huawei",
            "home": str(tmp_path / "home"),
            "huawei.modelarts_endpoint": contract.endpoint,
            "huawei.ces_endpoint": contract.endpoint,
            "huawei.timeout_s": 10.0,
            "huawei.service_name": SERVICE,
            "huawei.service_app_id": REHEARSAL_APP_ID,
        },
    )


@pytest.fixture
def model_ids(registry: ModelRegistry, importer: ModelArtsModelImporter, standin: ServingStandin) -> dict[str, str]:
    """version → AI application id, imported through the importer (and published by the stand-in)."""

    def until_checked(_seconds: float) -> None:
        assert standin.wait_for(lambda: not standin.publishing(), WAIT_S)

    return {
        version: import_version(registry, importer, version, poll_s=0, sleep=until_checked).model.model_id
        for version in ("v1", "v2")
    }


@pytest.fixture
def platform(settings: Settings, model_ids: dict[str, str]) -> RealtimeServingPlatform:
    return RealtimeServingPlatform.from_settings(settings, model_id=model_ids.__getitem__, credentials=CREDENTIALS)


def sign_image(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(80, 80), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG")
    return buffer.getvalue()


def call(
    endpoint: str, image: bytes, app_code: str = REHEARSAL_APP_CODE, client: httpx.Client | None = None
) -> httpx.Response:
    """What a client of the service sends: a multipart `images` file with the AppCode header."""
    if client is None:
        with httpx.Client(trust_env=False) as once:
            return call(endpoint, image, app_code, once)
    return client.post(
        endpoint,
        files={"images": ("sign.jpg", image, "image/jpeg")},
        headers={"X-Apig-AppCode": app_code},
        timeout=60.0,
    )


def service_id(standin: ServingStandin) -> str:
    return standin.services.only_service().id


def running(standin: ServingStandin, platform: RealtimeServingPlatform) -> str:
    """Wait until the service's instances all answer; its endpoint."""
    sid = service_id(standin)
    assert standin.wait_for(lambda: standin.service_status(sid) != "deploying", WAIT_S)
    status = platform.status(SERVICE)
    assert status.running, status
    assert status.endpoint
    return status.endpoint


# --- import, serve, count -------------------------------------------------------------------------


def test_an_exported_package_is_imported_served_at_100_and_answers_with_its_version(
    platform: RealtimeServingPlatform, standin: ServingStandin, model_ids: dict[str, str], registry: ModelRegistry
) -> None:
    assert standin.model_status(model_ids["v1"]) == "published"
    assert standin.import_problems[model_ids["v1"]] == []

    deploying = platform.deploy(SERVICE, [ModelSlot("v1", 100)], "first release")
    assert deploying.phase == "deploying" and deploying.ready == {"v1": False}
    endpoint = running(standin, platform)
    sid = service_id(standin)
    assert endpoint == f"{standin.app_door.url}/v1/infers/{sid}"

    from trainer.predict import Predictor

    image = sign_image(3)
    expected = Predictor.load(registry_package(registry, "v1")).predict([image], top_k=5)[0]
    answer = call(endpoint, image)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == "v1"
    assert body["predicted_label"] == expected[0].label and body["predicted_label"] in ARSL_CLASSES
    assert [label for label, _ in body["scores"]] == [item.label for item in expected]

    # The instance runs the package's own code (model/arsl/trainer/), not this repository's trainer.
    instance = standin.instances[(sid, model_ids["v1"])]
    assert instance.port is not None
    health = httpx.get(f"http://127.0.0.1:{instance.port}/health", trust_env=False).json()
    assert health["code"].startswith(str(standin.model_dir(model_ids["v1"]) / "model" / "arsl" / "trainer"))

    # App authentication: a wrong AppCode, or the code of an app the service never authorised, is refused
    # by the gateway before any model runs (and counted nowhere).
    wrong = call(endpoint, image, app_code="not-a-code")
    assert (wrong.status_code, wrong.json()["error_code"]) == (401, "APIGW.0303")
    standin.add_app("code-of-another-app")
    other = call(endpoint, image, app_code="code-of-another-app")
    assert (other.status_code, other.json()["error_code"]) == (403, "APIGW.0304")
    bad = call(endpoint, b"not an image")
    assert bad.status_code == 400 and bad.json()["erno"] == "MR.0105"

    calls = standin.calls_of(sid)[model_ids["v1"]]
    assert (calls.total, calls.failed) == (2, 1)
    stats = platform.stats(SERVICE, ["v1"], window_s=600)
    assert (stats["v1"].requests, stats["v1"].errors) == (2, 1)


def registry_package(registry: ModelRegistry, version: str) -> Path:
    """The package as it was registered (the exporter's folder)."""
    return Path(registry.get(version).lineage.source)


def test_a_90_10_split_routes_about_a_tenth_to_the_challenger_and_cloud_eye_counts_what_was_served(
    platform: RealtimeServingPlatform, standin: ServingStandin, model_ids: dict[str, str]
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    running(standin, platform)
    platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)], "canary v2")
    endpoint = running(standin, platform)

    sent = 200
    with httpx.Client(trust_env=False) as client:
        answered = Counter(
            call(endpoint, sign_image(number), client=client).json()["model_version"] for number in range(sent)
        )
    # Binomial(200, 0.1): mean 20, standard deviation 4.2; the generator is seeded, the bound is ±3.5 sd.
    assert sum(answered.values()) == sent and set(answered) == {"v1", "v2"}
    assert 5 <= answered["v2"] <= 35

    sid = service_id(standin)
    served = standin.calls_of(sid)
    assert {model: calls.total for model, calls in served.items()} == {
        model_ids["v1"]: answered["v1"],
        model_ids["v2"]: answered["v2"],
    }
    stats = platform.stats(SERVICE, ["v1", "v2"], window_s=600)
    assert {version: (item.requests, item.errors) for version, item in stats.items()} == {
        "v1": (answered["v1"], 0),
        "v2": (answered["v2"], 0),
    }


# --- faults ---------------------------------------------------------------------------------------


def test_import_fails_ends_the_import_in_the_documented_failed_state(
    registry: ModelRegistry, importer: ModelArtsModelImporter, standin: ServingStandin, faults: Faults
) -> None:
    faults.arm("import_fails", times=1)

    def until_checked(_seconds: float) -> None:
        assert standin.wait_for(lambda: not standin.publishing(), WAIT_S)

    with pytest.raises(ModelImportError, match="model_status 'failed'") as failed:
        import_version(registry, importer, "v1", poll_s=0, sleep=until_checked)
    assert not failed.value.transient
    assert registry.imported("v1", "modelarts") is None
    [model] = standin.models.models.values()
    assert standin.import_problems[model.id] == ["injected fault import_fails"]


def test_a_package_without_its_inference_code_fails_to_import(
    contract: ContractServer, tmp_path: Path, faults: Faults
) -> None:
    """The OBS stand-in's own store holds the folder; ModelArts' documented layout is checked on it."""
    obs = ObsStandin(
        root=tmp_path / "obs", credentials={CREDENTIALS.access_key: CREDENTIALS.secret_key}, buckets=(BUCKET,)
    )
    config = layout.model_configuration({"metrics": {"test_acc": 0.9}})
    obs.store.write(BUCKET, "bad/model/config.json", json.dumps(config).encode())
    obs.store.write(BUCKET, "bad/model/model.safetensors", b"weights")
    standin = register_serving(contract, obs.store, tmp_path / "serving", faults)
    try:
        client = build_sdk_client(
            ma.ModelArtsClient, contract.endpoint, basic_credentials(CREDENTIALS, "ModelArts"), timeout_s=10.0
        )
        created = rest_json(
            client,
            "POST",
            "/v1/{project_id}/models",
            body={
                "model_name": NAME,
                "model_version": "1.0.1",
                "source_location": f"https://{BUCKET}.obs.{REGION}.myhuaweicloud.com/bad/",
                "model_type": "PyTorch",
                "runtime": layout.DEFAULT_RUNTIME,
            },
        )
        model_id = created["model_id"]
        assert standin.wait_for(lambda: not standin.publishing(), WAIT_S)
        shown = rest_json(client, "GET", "/v1/{project_id}/models/{model_id}", path_params={"model_id": model_id})
        assert shown["model_status"] == "failed"
        assert standin.import_problems[model_id] == ["model/customize_service.py is missing"]
    finally:
        standin.close()


BROKEN_SERVICE = b"""
from model_service.pytorch_model_service import PTServingBaseService


class BrokenService(PTServingBaseService):
    def __init__(self, model_name, model_path):
        raise RuntimeError("weights of " + model_name + " do not load")
"""


def test_a_service_whose_inference_code_cannot_start_fails_and_says_why(
    contract: ContractServer, settings: Settings, tmp_path: Path, faults: Faults
) -> None:
    obs = ObsStandin(
        root=tmp_path / "obs", credentials={CREDENTIALS.access_key: CREDENTIALS.secret_key}, buckets=(BUCKET,)
    )
    config = layout.model_configuration({})
    obs.store.write(BUCKET, "broken/model/config.json", json.dumps(config).encode())
    obs.store.write(BUCKET, "broken/model/customize_service.py", BROKEN_SERVICE)
    obs.store.write(BUCKET, "broken/model/model.pth", b"weights")
    standin = register_serving(contract, obs.store, tmp_path / "serving", faults)
    try:
        client = build_sdk_client(
            ma.ModelArtsClient, contract.endpoint, basic_credentials(CREDENTIALS, "ModelArts"), timeout_s=10.0
        )
        model_id = rest_json(
            client,
            "POST",
            "/v1/{project_id}/models",
            body={
                "model_name": NAME,
                "model_version": "1.0.1",
                "source_location": f"/{BUCKET}/broken/",
                "model_type": "PyTorch",
                "runtime": layout.DEFAULT_RUNTIME,
            },
        )["model_id"]
        assert standin.wait_for(lambda: not standin.publishing(), WAIT_S)
        assert standin.model_status(model_id) == "published"  # the code runs when a service deploys it
        platform = RealtimeServingPlatform.from_settings(
            settings, model_id=lambda _version: model_id, credentials=CREDENTIALS
        )
        platform.deploy(SERVICE, [ModelSlot("v1", 100)])
        sid = service_id(standin)
        assert standin.wait_for(lambda: standin.service_status(sid) != "deploying", WAIT_S)
        status = platform.status(SERVICE)
        assert status.phase == "failed" and status.ready == {"v1": False}
        assert "weights of arsl-sign-classifier do not load" in status.detail
        refused = call(str(status.endpoint), sign_image(1))
        assert (refused.status_code, refused.json()["error_code"]) == (503, "ModelArts.4503")
    finally:
        standin.close()


def test_a_service_stuck_deploying_starts_no_instance_until_it_is_deployed_again(
    platform: RealtimeServingPlatform, standin: ServingStandin, faults: Faults
) -> None:
    faults.arm("service_stuck_deploying", times=1)
    assert platform.deploy(SERVICE, [ModelSlot("v1", 100)]).phase == "deploying"
    sid = service_id(standin)
    assert standin.instances == {} and standin.service_status(sid) == "deploying"
    assert platform.status(SERVICE).phase == "deploying"

    # The re-run deploys again (one PUT of the same config): the instances start and the service runs.
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    assert call(running(standin, platform), sign_image(1)).json()["model_version"] == "v1"


def test_throttle_429_answers_a_management_call_with_the_gateways_throttling_body(
    platform: RealtimeServingPlatform, standin: ServingStandin, contract: ContractServer, faults: Faults
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    faults.arm("throttle_429", times=1, match="update_service")
    with pytest.raises(ServingPlatformError) as throttled:
        platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)])
    assert throttled.value.status == 429 and throttled.value.transient
    # The stand-in answers the gateway's body (APIGW.0308), but on an idempotent PUT the SDK's urllib3 retry
    # turns a 429 into a bare `ClientRequestException(429)` without it: the refused call is checked instead.
    [refused] = [made for made in contract.calls_to("update_service") if made.status == 429]
    assert faults.fired == [("throttle_429", f"update_service PUT {refused.path}")]
    assert standin.services.weights(service_id(standin)) == {platform_model(platform, "v1"): 100}
    status = platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)])
    assert status.weights == {"v1": 90, "v2": 10}


def platform_model(platform: RealtimeServingPlatform, version: str) -> str:
    return platform._model_of(version)


def test_a_dropped_answer_to_a_put_that_was_applied_is_transient_and_the_change_is_there(
    platform: RealtimeServingPlatform, standin: ServingStandin, faults: Faults, model_ids: dict[str, str]
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    running(standin, platform)
    faults.arm("drop_connection_after_put", times=1, match="UpdateService")
    with pytest.raises(ServingPlatformError) as dropped:
        platform.deploy(SERVICE, [ModelSlot("v1", 90), ModelSlot("v2", 10)])
    assert dropped.value.transient
    assert standin.services.weights(service_id(standin)) == {model_ids["v1"]: 90, model_ids["v2"]: 10}
    assert platform.status(SERVICE).weights == {"v1": 90, "v2": 10}


def test_error_500_mid_canary_fails_the_challengers_calls_for_a_while_and_cloud_eye_sees_it(
    platform: RealtimeServingPlatform, standin: ServingStandin, faults: Faults
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    running(standin, platform)
    platform.deploy(SERVICE, [ModelSlot("v1", 50), ModelSlot("v2", 50)], "canary v2")
    endpoint = running(standin, platform)
    faults.arm("error_500_mid_canary", times=3)

    with httpx.Client(trust_env=False) as client:
        statuses = Counter(call(endpoint, sign_image(number), client=client).status_code for number in range(40))
    assert statuses == {200: 37, 500: 3}
    stats = platform.stats(SERVICE, ["v1", "v2"], window_s=600)
    assert stats["v1"].errors == 0 and stats["v2"].errors == 3
    assert stats["v1"].requests + stats["v2"].requests == 40


def test_calls_above_the_services_traffic_limit_are_throttled(
    platform: RealtimeServingPlatform, standin: ServingStandin
) -> None:
    platform.deploy(SERVICE, [ModelSlot("v1", 100)])
    endpoint = running(standin, platform)
    standin.clock = lambda: 1000.0  # one second that does not pass
    standin.requests_per_second = 2
    assert [call(endpoint, sign_image(1)).status_code for _ in range(2)] == [200, 200]
    third = call(endpoint, sign_image(1))
    assert (third.status_code, third.json()["error_code"]) == (429, "ModelArts.4206")
    standin.clock = lambda: 1001.0
    assert call(endpoint, sign_image(1)).status_code == 200
    assert standin.calls_of(service_id(standin))[platform_model(platform, "v1")].total == 3


# --- alarm states from the served data ------------------------------------------------------------


def test_an_alarm_rule_on_failed_calls_fires_and_recovers_from_what_was_served(
    contract: ContractServer, registry: ModelRegistry, tmp_path: Path
) -> None:
    standin = register_serving(contract, LocalObjects(registry.store), tmp_path / "serving", Faults())  # type: ignore[arg-type]
    try:
        cloud_eye = standin.metrics.cloud_eye
        assert cloud_eye is not None
        rule: dict[str, Any] = {
            "name": "arsl-failures",
            "namespace": "SYS.ModelArts",
            "type": "MULTI_INSTANCE",
            "resources": [[{"name": "service_id", "value": "svc-1"}]],
            "policies": [
                {
                    "metric_name": "failed_called_times",
                    "period": 1,
                    "filter": "sum",
                    "comparison_operator": ">",
                    "value": 0,
                    "count": 2,
                    "level": 2,
                }
            ],
        }
        cloud_eye.add_rule(rule)
        for failed in (0, 1):
            standin._count("svc-1", "model-1", 500 if failed else 200)
        evaluate_rules(cloud_eye, 1_900_000_000.0)
        assert cloud_eye.records == []  # one failing point: count 2 is not met
        standin._count("svc-1", "model-1", 500)
        evaluate_rules(cloud_eye, 1_900_000_001.0)
        [record] = cloud_eye.records
        assert record.status == "alarm"
        standin._count("svc-1", "model-1", 200)
        evaluate_rules(cloud_eye, 1_900_000_002.0)
        assert record.status == "ok"
    finally:
        standin.close()


# --- through the whole stack ----------------------------------------------------------------------


def test_through_the_stack_the_registry_uploads_to_obs_and_the_service_serves_that_upload(
    make_stack: StackFactory, tmp_path: Path, loopback: None, packages: dict[str, Path]
) -> None:
    """The hand-offs: the registry writes the layout to OBS (OBS's own signature, virtual-host addressing), the
    importer names that folder as `source_location`, the stand-in fetches it from the same bucket, the service
    runs it and its endpoint answers the AppCode the stack's environment gives."""
    stack = make_stack(serving=True)
    serving = stack.serving
    assert isinstance(serving, ServingStandin), stack.serving_problem
    settings = rehearsal_settings(stack, tmp_path / "home")
    credentials = rehearsal_credentials(stack)
    registry = ModelRegistry(
        ObsObjectStore.from_settings(settings, credentials=credentials),
        settings.storage.models_prefix,
        backend="huawei",
    )
    registry.register(
        packages["v1"],
        job_id="job-v1",
        manifest_id="m-serving",
        source=str(packages["v1"]),
        gate=gate_json(),
        metrics=metrics_json(),
        user="tests",
    )
    importer = ModelArtsModelImporter.from_settings(settings, credentials=credentials)

    def until_checked(_seconds: float) -> None:
        assert serving.wait_for(lambda: not serving.publishing(), WAIT_S)

    model_id = model_id_function(lambda: registry, lambda: importer, poll_s=0, sleep=until_checked)
    platform = RealtimeServingPlatform.from_settings(settings, model_id=model_id, credentials=credentials)
    platform.deploy(settings.huawei.service_name, [ModelSlot("v1", 100)])
    sid = serving.services.only_service().id
    assert serving.wait_for(lambda: serving.service_status(sid) != "deploying", WAIT_S)
    status = platform.status(settings.huawei.service_name)
    assert status.running and status.endpoint

    answer = call(status.endpoint, sign_image(5), app_code=stack.client_environment()["ARSL_APP_CODE"])
    assert answer.status_code == 200 and answer.json()["model_version"] == "v1"
    folder = registry.import_folder(registry.get("v1").lineage.package_id, "modelarts")
    served = serving.model_dir(model_id("v1")) / "model" / "customize_service.py"
    assert served.read_bytes() == (stack.workdir / "obs" / stack.bucket / folder / "model" / INFERENCE).read_bytes()
