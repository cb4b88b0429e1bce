"""Generated request bodies (hypothesis) and schema conformance (schemathesis), over real HTTP."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.serving.conftest import LiveGateway
from trainer.predict import Predictor

FUZZ_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CONTENT_TYPES = [
    "image/jpeg",
    "image/png",
    "application/octet-stream",
    "text/plain",
    "application/json",
    "multipart/form-data; boundary=b0undary",
    "multipart/form-data",
    "image/",
    "",
]


@pytest.fixture(scope="module")
def client(shared_gateway: LiveGateway) -> Iterator[httpx.Client]:
    with shared_gateway.client(headers=shared_gateway.headers) as session:
        yield session


@pytest.fixture(scope="module")
def predictors(packages: dict) -> dict[str, Predictor]:
    return {version: Predictor.load(path) for version, path in packages.items()}


def _post(client: httpx.Client, path: str, body: bytes, content_type: str) -> httpx.Response:
    request = client.build_request("POST", path, content=body)
    if content_type:
        request.headers["Content-Type"] = content_type
    else:
        request.headers.pop("Content-Type", None)
    return client.send(request)


@FUZZ_SETTINGS
@given(
    body=st.binary(max_size=3000)
    | st.binary(max_size=200).map(lambda tail: b"\xff\xd8\xff\xe0" + tail)
    | st.binary(max_size=200).map(lambda tail: b"\x89PNG\r\n\x1a\n" + tail),
    content_type=st.sampled_from(CONTENT_TYPES),
    path=st.sampled_from(["/v1/predict", "/v1/predict/batch"]),
)
def test_any_body_gets_an_answer_and_never_a_server_error(
    client: httpx.Client, body: bytes, content_type: str, path: str
) -> None:
    response = _post(client, path, body, content_type)
    assert response.status_code in (200, 413, 415, 422), response.text
    if response.status_code != 200:
        error = response.json()
        assert error["error"] and error["code"]


@st.composite
def images(draw: st.DrawFn) -> bytes:
    width, height = draw(st.integers(1, 120)), draw(st.integers(1, 120))  # noise: under the 64 KB body cap
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "LA", "I;16"]))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"]))
    if fmt == "JPEG" and mode not in ("L", "RGB"):
        mode = "RGB"
    seed = draw(st.integers(0, 2**16))
    image = Image.effect_noise((width, height), 20 + seed % 60).convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except OSError:  # this format cannot hold this mode (e.g. LA as BMP): PNG holds them all
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return buffer.getvalue()


@FUZZ_SETTINGS
@given(data=images())
def test_any_readable_image_is_classified_as_the_trainer_would(
    client: httpx.Client, predictors: dict[str, Predictor], data: bytes
) -> None:
    response = _post(client, "/v1/predict", data, "application/octet-stream")
    assert response.status_code == 200, response.text
    body = response.json()
    want = predictors[body["model_version"]].predict([data])[0][0]
    assert body["label"] == want.label
    assert body["confidence"] == pytest.approx(want.probability, abs=1e-5)


def test_the_gateway_is_healthy_after_the_fuzzing(client: httpx.Client) -> None:
    assert client.get("/v1/health").json()["status"] == "ok"
    metrics = client.get("/metrics").text
    assert 'reason="internal"' not in metrics and 'code="500"' not in metrics


@pytest.fixture(scope="module")
def api_schema(shared_gateway: LiveGateway) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(shared_gateway.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_conforms_to_its_openapi_document(case: schemathesis.Case, shared_gateway: LiveGateway) -> None:
    # A schema can say "bytes", not "a decodable image": schema-valid random bytes rightly get 422 from
    # the predict calls, so the check that schema-valid data is accepted does not apply to them.
    # Every other check runs: no 5xx, documented statuses, content types and bodies, auth enforced,
    # invalid data rejected, undeclared methods answered properly.
    excluded = [positive_data_acceptance] if case.path.startswith("/v1/predict") else []
    case.call_and_validate(headers=shared_gateway.headers, excluded_checks=excluded)
