"""Importing registered versions as ModelArts AI applications: the real SDK client against the contract server.

The server checks every call's route, signature and body against the API reference
(`tests/fixtures/modelarts_models_fake.py`; a test fails on any violation it did not provoke). Models are
moved publishing → published / failed by the test, from the wait's `sleep`, never by a timer. The layout
tests load the built `model/` folder the way ModelArts does and answer a real image through the real
predictor.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.util
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import huaweicloudsdkmodelarts.v1 as ma
import numpy as np
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from PIL import Image

from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.domain.ports import ModelImportError
from arsl_tui.domain.registry import ImportRecord, RegistryError
from arsl_tui.ops.model_import import NOTHING_TO_IMPORT, import_version, model_id_function, upload_layout
from arsl_tui.ops.registry import ModelRegistry, RegistryCorrupt, VersionNotFound
from arsl_tui.providers.huawei.models import ModelArtsModelImporter, obs_url, platform_version
from arsl_tui.providers.huawei.obs import ObsObjectStore
from arsl_tui.providers.huawei.rest import rest_json
from arsl_tui.providers.huawei.sdk_clients import basic_credentials, build_sdk_client
from arsl_tui.providers.local.store import LocalObjectStore
from tests.fixtures.cli import arsl
from tests.fixtures.huawei_contract import ContractServer
from tests.fixtures.huawei_serving_fakes import SERVICES
from tests.fixtures.model_packages import gate_json, metrics_json, write_package
from tests.fixtures.modelarts_models_fake import ENGINE_RUNTIMES, VERSION, ModelArtsModelsFake
from tests.providers.conftest import FAKE_CREDENTIALS
from trainer.modelarts import layout

PROJECT = "p-models-0001"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)
NAME = "arsl-sign-classifier"
BUCKET = "arsl-ml"
REGION = "af-north-1"


@pytest.fixture
def contract() -> Iterator[ContractServer]:
    server = ContractServer(
        services=SERVICES, credentials={CREDENTIALS.access_key: CREDENTIALS.secret_key}, project_id=PROJECT
    )
    with server:
        yield server
    assert server.violations == [], "calls broke the documented contract"


@pytest.fixture
def models(contract: ContractServer) -> ModelArtsModelsFake:
    return ModelArtsModelsFake(contract)


@pytest.fixture
def client(contract: ContractServer) -> Any:
    return build_sdk_client(
        ma.ModelArtsClient, contract.endpoint, basic_credentials(CREDENTIALS, "ModelArts"), timeout_s=5.0
    )


@pytest.fixture
def importer(client: Any, models: ModelArtsModelsFake) -> ModelArtsModelImporter:
    return ModelArtsModelImporter(
        client=client, name=NAME, bucket=BUCKET, region=REGION, timeout_s=5.0, secrets=CREDENTIALS.secrets()
    )


def registry_with(tmp_path: Path, packages: list[Path]) -> ModelRegistry:
    registry = ModelRegistry(LocalObjectStore(tmp_path / "store" / BUCKET), "models/")
    for index, package in enumerate(packages, start=1):
        registry.register(
            package,
            job_id=f"job-{index}",
            manifest_id="m-test",
            source=str(package),
            gate=gate_json(),
            metrics=metrics_json(),
            user="tests",
        )
    return registry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return registry_with(tmp_path, [write_package(tmp_path / "pkg1", seed=1), write_package(tmp_path / "pkg2", seed=2)])


def publishing_by(models: ModelArtsModelsFake, status: str = "published") -> Callable[[float], None]:
    """A `sleep` for the import's wait that moves the one AI application to `status` instead of waiting."""

    def sleep(_seconds: float) -> None:
        models.advance(models.only_model().id, status)

    return sleep


# --- import, idempotence, failure ------------------------------------------------------------------


def test_import_creates_the_ai_application_from_the_obs_layout_and_records_its_id(
    registry: ModelRegistry, importer: ModelArtsModelImporter, models: ModelArtsModelsFake, contract: ContractServer
) -> None:
    said: list[str] = []
    outcome = import_version(
        registry, importer, "v1", poll_s=0, sleep=publishing_by(models), progress=said.append, wall_clock=lambda: 0.0
    )

    created = models.only_model()
    assert outcome.created and outcome.model.ready and outcome.model.model_id == created.id
    record = registry.get("v1")
    folder = f"models/packages/{record.lineage.package_id}/modelarts/"
    assert created.request == {
        "model_name": NAME,
        "model_version": "1.0.1",
        "source_location": obs_url(BUCKET, REGION, folder),
        "model_type": "PyTorch",
        "runtime": layout.DEFAULT_RUNTIME,
        "model_algorithm": "image_classification",
        "description": "ArSL sign classifier v1",
        "install_type": ["real-time"],
    }
    store = registry.store
    for item in record.package:  # the package, unchanged, under model/arsl/
        assert store.get_bytes(folder + "model/arsl/" + item.path) == store.get_bytes(item.key)
    assert json.loads(store.get_bytes(folder + "model/arsl_version.json")) == {
        "version": "v1",
        "package_id": record.lineage.package_id,
    }
    assert json.loads(store.get_bytes(folder + "model/config.json"))["model_type"] == "PyTorch"
    assert store.get_bytes(folder + "model/customize_service.py") == layout.inference_code()
    imported = registry.imported("v1", "modelarts")
    assert imported is not None and imported.model_id == created.id and imported.platform_version == "1.0.1"
    assert imported.imported_at == "1970-01-01T00:00:00Z"
    assert contract.operations().count("ShowModelEngineAndRuntime") == 1  # the runtime was checked first
    assert any("publishing" in line for line in said)


def test_importing_again_finds_the_same_ai_application(
    registry: ModelRegistry, importer: ModelArtsModelImporter, models: ModelArtsModelsFake, contract: ContractServer
) -> None:
    first = import_version(registry, importer, "v1", poll_s=0, sleep=publishing_by(models))
    again = import_version(registry, importer, "champion", poll_s=0, sleep=publishing_by(models))

    assert not again.created and again.model.model_id == first.model.model_id
    assert len(contract.calls_to("CreateModel")) == 1
    assert registry.imported("v1", "modelarts") == first.record


def test_an_import_left_publishing_is_waited_for_not_created_again(
    registry: ModelRegistry, importer: ModelArtsModelImporter, models: ModelArtsModelsFake, contract: ContractServer
) -> None:
    with pytest.raises(ModelImportError, match="still publishing") as waited:
        import_version(registry, importer, "v1", wait_s=0, poll_s=0, sleep=publishing_by(models))
    assert waited.value.transient
    assert registry.imported("v1", "modelarts") is None

    outcome = import_version(registry, importer, "v1", poll_s=0, sleep=publishing_by(models))
    assert not outcome.created and outcome.model.ready
    assert len(contract.calls_to("CreateModel")) == 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [("failed", "publishing the AI application failed"), ("building_failed", "creating its image failed")],
)
def test_a_failed_import_names_the_reason_and_records_nothing(
    registry: ModelRegistry, importer: ModelArtsModelImporter, models: ModelArtsModelsFake, status: str, reason: str
) -> None:
    with pytest.raises(ModelImportError) as failed:
        import_version(registry, importer, "v1", poll_s=0, sleep=publishing_by(models, status))
    message = str(failed.value)
    assert f"model_status {status!r}: {reason}" in message
    assert models.only_model().id in message and "v1" in message and not failed.value.transient
    assert registry.imported("v1", "modelarts") is None


def test_a_failed_import_is_deleted_and_imported_again_by_the_next_call(
    registry: ModelRegistry, importer: ModelArtsModelImporter, models: ModelArtsModelsFake, contract: ContractServer
) -> None:
    with pytest.raises(ModelImportError, match="model_status 'failed'"):
        import_version(registry, importer, "v1", poll_s=0, sleep=publishing_by(models, "failed"))
    failed = models.only_model()
    before = len(contract.calls)

    said: list[str] = []
    outcome = import_version(registry, importer, "v1", poll_s=0, sleep=publishing_by(models), progress=said.append)

    sent = [(call.operation, call.method, call.path, call.query) for call in contract.calls[before:]]
    models_path = f"/v1/{PROJECT}/models"
    assert sent == [
        ("ListModels", "GET", models_path, [("model_name", NAME), ("model_version", "1.0.1")]),
        ("ShowModel", "GET", f"{models_path}/{failed.id}", []),
        ("DeleteModel", "DELETE", f"{models_path}/{failed.id}", []),  # no cascade: other versions stay
        ("ShowModelEngineAndRuntime", "GET", f"{models_path}/ai-engine-runtimes", []),
        ("CreateModel", "POST", models_path, []),
        ("ShowModel", "GET", f"{models_path}/{outcome.model.model_id}", []),
        ("ShowModel", "GET", f"{models_path}/{outcome.model.model_id}", []),
    ]
    assert outcome.created and outcome.model.ready and outcome.model.model_id != failed.id
    assert set(models.models) == {outcome.model.model_id}
    assert registry.imported("v1", "modelarts").model_id == outcome.model.model_id  # type: ignore[union-attr]
    assert any(
        f"model {failed.id}" in line and "failed earlier" in line and "deleting it and importing v1 again" in line
        for line in said
    ), said


def test_a_delete_model_answer_without_the_id_is_an_error_naming_why(importer: ModelArtsModelImporter) -> None:
    with pytest.raises(ModelImportError, match="did not delete it") as refused:
        importer.delete("v1", "no-such-model")
    assert "no-such-model" in str(refused.value) and "does not exist" in str(refused.value)


def test_delete_model_follows_the_documented_query_and_cascade(client: Any, models: ModelArtsModelsFake) -> None:
    ids = [
        rest_json(client, "POST", "/v1/{project_id}/models", body={**GOOD_BODY, "model_version": version})["model_id"]
        for version in ("1.0.1", "1.0.2", "1.0.3")
    ]
    one = rest_json(client, "DELETE", "/v1/{project_id}/models/{model_id}", path_params={"model_id": ids[0]})
    assert one == {"delete_success_list": [ids[0]], "delete_failed_list": []}
    rest = rest_json(
        client,
        "DELETE",
        "/v1/{project_id}/models/{model_id}",
        path_params={"model_id": ids[1]},
        query=[("cascade", "true")],
    )
    assert sorted(rest["delete_success_list"]) == sorted(ids[1:]) and models.models == {}


@pytest.mark.parametrize(
    ("query", "expected"),
    [([("cascade", "yes")], "not a Boolean"), ([("force", "true")], "undocumented query parameters")],
)
def test_delete_model_refuses_what_the_docs_do_not_allow(
    client: Any, contract: ContractServer, models: ModelArtsModelsFake, query: list[tuple[str, str]], expected: str
) -> None:
    with pytest.raises(ClientRequestException) as refused:
        rest_json(client, "DELETE", "/v1/{project_id}/models/{model_id}", path_params={"model_id": "m"}, query=query)
    assert refused.value.status_code == 400 and expected in refused.value.error_msg
    contract.violations.clear()  # provoked on purpose


def test_an_unknown_runtime_stops_before_anything_is_created_naming_the_offered_ones(
    registry: ModelRegistry, importer: ModelArtsModelImporter, contract: ContractServer
) -> None:
    importer.runtime = "pytorch_2.1.0-cuda_12.1-py_3.10-ubuntu_22.04-x86_64"
    with pytest.raises(ModelImportError) as refused:
        import_version(registry, importer, "v1", poll_s=0)
    assert "pytorch_2.1.0" in str(refused.value)
    for offered in ENGINE_RUNTIMES["PyTorch"]:
        assert offered in str(refused.value)
    assert contract.calls_to("CreateModel") == []


def test_a_server_error_is_transient_and_the_retry_imports_once(
    registry: ModelRegistry, importer: ModelArtsModelImporter, models: ModelArtsModelsFake, contract: ContractServer
) -> None:
    contract.inject("CreateModel", status=503, error_code="ModelArts.0503", error_msg="busy")
    with pytest.raises(ModelImportError, match="HTTP 503") as busy:
        import_version(registry, importer, "v1", poll_s=0, sleep=publishing_by(models))
    assert busy.value.transient
    outcome = import_version(registry, importer, "v1", poll_s=0, sleep=publishing_by(models))
    assert outcome.created and len(models.models) == 1


def test_a_throttled_read_while_waiting_is_asked_again_not_a_failed_import(
    registry: ModelRegistry, importer: ModelArtsModelImporter, models: ModelArtsModelsFake, contract: ContractServer
) -> None:
    said: list[str] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:  # the first poll is throttled; the model publishes meanwhile
            contract.inject("ShowModel", status=429, error_code="APIGW.0308", error_msg="throttled")
        models.publish(models.only_model().id)

    outcome = import_version(registry, importer, "v1", poll_s=0, sleep=sleep, progress=said.append)
    assert outcome.created and outcome.model.ready and len(sleeps) == 2
    assert any("HTTP 429" in line and "(asking again)" in line for line in said), said
    assert len(contract.calls_to("CreateModel")) == 1


def test_model_id_function_imports_each_version_once(
    registry: ModelRegistry, importer: ModelArtsModelImporter, models: ModelArtsModelsFake, contract: ContractServer
) -> None:
    def publish_newest(_seconds: float) -> None:
        for model in models.models.values():
            models.publish(model.id)

    model_id = model_id_function(lambda: registry, lambda: importer, poll_s=0, sleep=publish_newest)
    first, second = model_id("v1"), model_id("v2")
    assert first != second and {first, second} == set(models.models)
    assert model_id("v1") == first
    assert len(contract.calls_to("CreateModel")) == 2
    assert len(contract.calls_to("ListModels")) == 2  # remembered: the third call asked nothing


def test_platform_versions_fit_the_documented_format() -> None:
    cases = {"v1": "1.0.1", "v99": "1.0.99", "v100": "1.1.0", "v203": "1.2.3", "v10000": "2.0.0"}
    for version, expected in cases.items():
        assert platform_version(version) == expected and VERSION.match(expected)
    assert VERSION.match(platform_version("v989999"))
    with pytest.raises(ModelImportError, match="past the last version"):
        platform_version("v990000")


def test_a_name_modelarts_refuses_is_refused_before_any_call(client: Any) -> None:
    with pytest.raises(ModelImportError, match="service_name"):
        ModelArtsModelImporter(client=client, name="9-lives", bucket=BUCKET, region=REGION, timeout_s=5.0)


# --- the contract: a body the real service would refuse is refused --------------------------------

GOOD_BODY: dict[str, Any] = {
    "model_name": NAME,
    "model_version": "1.0.1",
    "source_location": obs_url(BUCKET, REGION, "models/packages/abc/modelarts/"),
    "model_type": "PyTorch",
    "runtime": layout.DEFAULT_RUNTIME,
    "install_type": ["real-time"],
}

REFUSED_BODIES = {
    "model_name missing": ({"model_name": None}, "model_name"),
    "model_name starting with a digit": ({"model_name": "1arsl"}, "model_name"),
    "model_name over 64 characters": ({"model_name": "a" * 65}, "model_name"),
    "model_version as our version id": ({"model_version": "v1"}, "model_version"),
    "model_version with a leading zero": ({"model_version": "01.01.01"}, "model_version"),
    "model_version with three digits": ({"model_version": "1.0.100"}, "model_version"),
    "model_type missing": ({"model_type": None}, "model_type"),
    "model_type not an engine": ({"model_type": "Torch"}, "model_type"),
    "source_location missing": ({"source_location": None}, "source_location is mandatory"),
    "source_location as obs://": ({"source_location": "obs://arsl-ml/models/"}, "not an OBS location"),
    "template import without template": ({"model_type": "Template", "source_location": None}, "template"),
    "runtime not offered for the engine": ({"runtime": "tf1.13-python3.6-cpu"}, "runtime"),
    "description with a forbidden character": ({"description": "v1 <best>"}, "description"),
    "description over 100 characters": ({"description": "d" * 101}, "description"),
    "install_type in capitals": ({"install_type": ["REAL-TIME"]}, "install_type"),
    "dependency installer not pip": (
        {"dependencies": [{"installer": "conda", "packages": [{"package_name": "numpy"}]}]},
        "installer",
    ),
    "dependency version without restraint": (
        {"dependencies": [{"installer": "pip", "packages": [{"package_name": "numpy", "package_version": "1.0"}]}]},
        "restraint",
    ),
    "execution_code outside the model directory": (
        {"execution_code": "https://arsl-ml.obs.af-north-1.myhuaweicloud.com/x/service.py"},
        "execution_code",
    ),
    "two apis for an engine model": ({"apis": [{"url": "/"}, {"url": "/predict"}]}, "apis"),
    "an undocumented field": ({"group_configs": []}, "undocumented"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_BODIES))
def test_create_model_refuses_what_the_docs_forbid(
    case: str, client: Any, models: ModelArtsModelsFake, contract: ContractServer
) -> None:
    change, expected = REFUSED_BODIES[case]
    body = {key: value for key, value in {**GOOD_BODY, **change}.items() if value is not None}
    with pytest.raises(ClientRequestException) as refused:
        rest_json(client, "POST", "/v1/{project_id}/models", body=body)
    assert refused.value.status_code == 400 and expected in refused.value.error_msg
    assert models.models == {}
    assert contract.violations and all("CreateModel" in text for text in contract.violations)
    contract.violations.clear()  # provoked on purpose


def test_create_model_accepts_the_documented_body(client: Any, models: ModelArtsModelsFake) -> None:
    answer = rest_json(client, "POST", "/v1/{project_id}/models", body=GOOD_BODY)
    assert set(models.models) == {answer["model_id"]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ((("model_version", "v1"),), "model_version"),
        ((("model_status", "normal"),), "model_status"),
        ((("sort_by", "name"),), "sort_by"),
        ((("model_type", "PyTorch"), ("not_model_type", "Image")), "mutually exclusive"),
        ((("name", NAME),), "undocumented query"),
    ],
)
def test_list_models_refuses_undocumented_queries(
    query: tuple[tuple[str, str], ...],
    expected: str,
    client: Any,
    models: ModelArtsModelsFake,
    contract: ContractServer,
) -> None:
    with pytest.raises(ClientRequestException) as refused:
        rest_json(client, "GET", "/v1/{project_id}/models", query=query)
    assert refused.value.status_code == 400 and expected in refused.value.error_msg
    contract.violations.clear()  # provoked on purpose


def test_an_unknown_model_id_is_an_error_that_names_it(importer: ModelArtsModelImporter) -> None:
    with pytest.raises(ModelImportError, match="HTTP 404") as missing:
        importer.show("v1", "no-such-model")
    assert "no-such-model" in str(missing.value) and not missing.value.transient


def test_a_name_with_an_underscore_is_matched_exactly(client: Any, models: ModelArtsModelsFake) -> None:
    rest_json(client, "POST", "/v1/{project_id}/models", body={**GOOD_BODY, "model_name": "arslXsigns"})
    importer = ModelArtsModelImporter(client=client, name="arsl_signs", bucket=BUCKET, region=REGION, timeout_s=5.0)
    assert importer.find("v1") is None  # without exact_match, '_' would have matched the 'X'


# --- the layout ModelArts imports ------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.serving.packages import export_random_package

    return export_random_package(tmp_path_factory.mktemp("real"), seed=7)


def built_layout(tmp_path: Path, package: Path, importer: ModelArtsModelImporter) -> Path:
    """The import folder of v1 as uploaded, downloaded back into `tmp_path/import/`."""
    registry = registry_with(tmp_path, [package])
    folder = upload_layout(registry, importer, "v1")
    target = tmp_path / "import"
    for info in registry.store.list(folder):
        path = target / info.key[len(folder) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(registry.store.get_bytes(info.key))
    return target


def test_the_layout_follows_the_model_package_specifications(
    tmp_path: Path, real_package: Path, importer: ModelArtsModelImporter
) -> None:
    root = built_layout(tmp_path, real_package, importer)
    model = root / "model"
    # inference-modelarts-0055: one config.json and one customize_service.py directly in model/.
    assert sorted(path.name for path in model.iterdir() if path.is_file()) == [
        "arsl_version.json",
        "config.json",
        "customize_service.py",
    ]
    assert not [path for path in root.rglob("*") if path.suffix in (".pt", ".pth", ".pkl", ".ckpt")]
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    # inference-modelarts-0056, Table 1: mandatory fields; runtime one ModelArts offers for the engine.
    assert config["model_type"] == "PyTorch" and config["model_algorithm"] == "image_classification"
    assert config["runtime"] in ENGINE_RUNTIMES["PyTorch"]
    assert config["metrics"] == {"accuracy": 0.97}
    # Tables 3-5: one API on "/", multipart image in, JSON label (and version) out.
    [api] = config["apis"]
    assert api["url"] == "/" and api["method"] == "post"
    assert api["request"] == {
        "Content-type": "multipart/form-data",
        "data": {"type": "object", "properties": {"images": {"type": "file"}}},
    }
    response = api["response"]
    assert response["Content-type"] == "application/json"
    assert set(response["data"]["required"]) == {"predicted_label", "scores", "model_version"}
    assert set(response["data"]["properties"]) == {"predicted_label", "scores", "model_version"}
    # Tables 6-7: pip only, each package named.
    for dependency in config["dependencies"]:
        assert dependency["installer"] == "pip"
        assert all(package["package_name"] for package in dependency["packages"])
    assert (model / "arsl" / "model.safetensors").read_bytes() == (real_package / "model.safetensors").read_bytes()


def load_service(model: Path) -> Any:
    spec = importlib.util.spec_from_file_location("customize_service_under_test", model / "customize_service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ArslSignService("arsl", str(model / "arsl" / "model.safetensors"))


def sign_image(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(80, 80), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG")
    return buffer.getvalue()


def test_customize_service_answers_a_real_image_with_the_version(
    tmp_path: Path, real_package: Path, importer: ModelArtsModelImporter
) -> None:
    from trainer.predict import Predictor

    service = load_service(built_layout(tmp_path, real_package, importer) / "model")
    image = sign_image(3)
    expected = Predictor.load(real_package).predict([image], top_k=5)[0]

    # multipart/form-data, as the platform hands it over: {field: {file name: file}}
    answer = service.inference({"images": {"sign.jpg": io.BytesIO(image)}})
    assert answer["model_version"] == "v1"
    assert answer["predicted_label"] == expected[0].label and answer["predicted_label"] in ARSL_CLASSES
    assert [label for label, _p in answer["scores"]] == [item.label for item in expected]
    assert answer["scores"][0][1] == pytest.approx(expected[0].probability, abs=1e-6)

    # JSON with base64, two images
    both = service.inference({"images": [base64.b64encode(image).decode(), base64.b64encode(sign_image(4)).decode()]})
    assert both["model_version"] == "v1" and len(both["results"]) == 2
    assert both["results"][0]["predicted_label"] == expected[0].label


def test_customize_service_names_the_version_when_it_cannot_answer(
    tmp_path: Path, real_package: Path, importer: ModelArtsModelImporter
) -> None:
    service = load_service(built_layout(tmp_path, real_package, importer) / "model")
    with pytest.raises(ValueError, match=r"^v1: image 0: "):
        service.inference({"images": {"sign.jpg": io.BytesIO(b"not an image")}})
    with pytest.raises(ValueError, match=r"^v1: the request holds no image"):
        service.inference({"other": "field"})
    with pytest.raises(ValueError, match=r"^v1: 'images'\[0\] is not valid base64"):
        service.inference({"images": "%%%"})


# --- the command ---------------------------------------------------------------------------------


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "ARSL_HOME": str(tmp_path / "home"),
        "HUAWEICLOUD_SDK_AK": CREDENTIALS.access_key,
        "HUAWEICLOUD_SDK_SK": CREDENTIALS.secret_key,
        "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
    }


def test_models_import_on_the_local_backend_has_nothing_to_import(tmp_path: Path) -> None:
    result = arsl(cli_env(tmp_path), tmp_path, "--backend", "local", "models", "import", "v1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"version": "v1", "imported": False, "reason": NOTHING_TO_IMPORT}


def test_models_import_on_huawei_imports_once_and_reports_the_model(
    tmp_path: Path, moto_endpoint: str, moto_bucket: str, models: ModelArtsModelsFake, contract: ContractServer
) -> None:
    store = ObsObjectStore(
        server=moto_endpoint,
        bucket=moto_bucket,
        credentials=CREDENTIALS,
        checkpoint_dir=tmp_path / "cp",
        timeout_s=10.0,
        max_retry_count=0,
    )
    registry = ModelRegistry(store, "models/", backend="huawei")
    registry.register(
        write_package(tmp_path / "pkg", seed=5),
        job_id="job-1",
        manifest_id="m-test",
        source="tests",
        gate=gate_json(),
        metrics=metrics_json(),
        user="tests",
    )
    (tmp_path / "config.toml").write_text(
        f'backend = "huawei"\n[huawei]\nregion = "{REGION}"\nobs_endpoint = "{moto_endpoint}"\n'
        f'modelarts_endpoint = "{contract.endpoint}"\nservice_name = "{NAME}"\ntimeout_s = 10\n'
        f'[storage]\nbucket = "{moto_bucket}"\n',
        encoding="utf-8",
    )
    models.initial_status = "published"  # nothing to wait for: the command runs to its end on its own

    first = arsl(cli_env(tmp_path), tmp_path, "models", "import", "v1", "--json")
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    model = models.only_model()
    assert answer["imported"] and answer["created"] and answer["model_id"] == model.id
    assert (answer["version"], answer["platform_version"], answer["status"]) == ("v1", "1.0.1", "published")
    record = registry.get("v1")
    assert model.request["source_location"] == obs_url(
        moto_bucket, REGION, f"models/packages/{record.lineage.package_id}/modelarts/"
    )
    imported = registry.imported("v1", "modelarts")
    assert imported is not None and imported.model_id == model.id

    again = arsl(cli_env(tmp_path), tmp_path, "models", "import", "champion")
    assert again.returncode == 0, again.stderr
    assert f"v1 already imported: {NAME} 1.0.1, model {model.id} (published)" in again.stdout
    assert len(contract.calls_to("CreateModel")) == 1

    unknown = arsl(cli_env(tmp_path), tmp_path, "models", "import", "v9")
    assert unknown.returncode == 2 and "v9" in unknown.stderr


def test_the_inference_code_is_python_the_modelarts_runtimes_run() -> None:
    # The documented x86 PyTorch runtimes run Python 3.7 (ShowModelEngineAndRuntime): newer syntax fails there.
    ast.parse(layout.inference_code().decode("utf-8"), feature_version=(3, 7))


# --- the registry's record of an import ----------------------------------------------------------


def test_an_import_record_is_replaced_and_a_damaged_one_names_its_key(registry: ModelRegistry) -> None:
    first = ImportRecord("v1", "modelarts", "m-1", NAME, "1.0.1", "https://x", "2026-12-05T00:00:00Z")
    registry.record_import(first)
    assert registry.imported("v1", "modelarts") == first
    assert registry.imported("v2", "modelarts") is None
    second = replace(first, model_id="m-2")  # the AI application was deleted and imported again
    registry.record_import(second)
    assert registry.imported("v1", "modelarts") == second

    key = registry.import_key("v1", "modelarts")
    assert key == "models/imports/modelarts/v1.json"
    damaged = b'{"format": "arsl-model-import/1"}'
    registry.store.put_bytes(key, damaged, hashlib.md5(damaged, usedforsecurity=False).hexdigest())
    with pytest.raises(RegistryCorrupt, match=re.escape(key)):
        registry.imported("v1", "modelarts")


def test_only_registered_versions_and_plain_platform_names_are_recorded(registry: ModelRegistry) -> None:
    record = ImportRecord("v9", "modelarts", "m-9", NAME, "1.0.9", "https://x", "2026-12-05T00:00:00Z")
    with pytest.raises(VersionNotFound):
        registry.record_import(record)
    with pytest.raises(RegistryError, match="platform name"):
        registry.import_key("v1", "../modelarts")
