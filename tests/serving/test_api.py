"""Every public endpoint over real HTTP: answers, errors, auth, feedback accounting and metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections import Counter

import pytest

from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.serving.auth import HEADER
from arsl_tui.serving.openapi import openapi_document
from arsl_tui.serving.runtime import onnxruntime_installed
from tests.serving.conftest import GatewayFactory, LiveGateway, gateway_settings, image_bytes
from trainer.predict import Predictor


@pytest.fixture(scope="module")
def predictors(packages: dict) -> dict[str, Predictor]:
    return {version: Predictor.load(path) for version, path in packages.items()}


def test_predict_answers_like_the_trainers_predictor(
    make_gateway: GatewayFactory, predictors: dict[str, Predictor]
) -> None:
    live = make_gateway()
    images = [image_bytes(seed) for seed in range(6)]
    expected = predictors["v1"].predict(images, top_k=5)
    with live.client(headers=live.headers) as client:
        for data, want in zip(images, expected, strict=True):
            response = client.post("/v1/predict", content=data, headers={"Content-Type": "image/jpeg"})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model_version"] == "v1"
            assert body["label"] == want[0].label and body["class_index"] == want[0].index
            assert body["confidence"] == pytest.approx(want[0].probability, abs=1e-5)
            assert [item["label"] for item in body["top5"]] == [item.label for item in want]
            assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
            assert response.headers["X-Request-Id"] == body["request_id"]


def test_answers_are_unchanged_once_every_model_serves_on_its_chosen_runtime(
    canary_gateway: LiveGateway, predictors: dict[str, Predictor]
) -> None:
    models = canary_gateway.gateway.router.table.models
    for model in models.values():
        assert model.switch is not None and model.switch.settled.wait(120)
        assert model.runtime == ("onnxruntime" if onnxruntime_installed() else "torch"), model.switch.note
    images = [image_bytes(seed) for seed in range(40, 56)]
    with canary_gateway.client(headers=canary_gateway.headers) as client:
        for data in images:
            response = client.post("/v1/predict", content=data, headers={"Content-Type": "image/jpeg"})
            assert response.status_code == 200, response.text
            body = response.json()
            want = predictors[body["model_version"]].predict([data], top_k=5)[0]
            assert body["class_index"] == want[0].index
            assert [item["label"] for item in body["top5"]] == [item.label for item in want]
            for item, expected in zip(body["top5"], want, strict=True):
                assert item["confidence"] == pytest.approx(expected.probability, abs=1e-5)
        info = client.get("/v1/model/info").json()
    assert {item["version"]: (item["runtime"], item["runtime_settled"]) for item in info["versions"]} == {
        version: (model.runtime, True) for version, model in models.items()
    }


def test_any_size_and_colour_mode_is_converted_as_in_training(
    make_gateway: GatewayFactory, predictors: dict[str, Predictor]
) -> None:
    live = make_gateway()
    variants = [
        image_bytes(7, (200, 150), "RGB", "PNG"),
        image_bytes(8, (31, 97), "RGBA", "PNG"),
        image_bytes(9, (64, 64), "P", "GIF"),
        image_bytes(10, (640, 480), "RGB", "JPEG"),
    ]
    with live.client(headers=live.headers) as client:
        for data in variants:
            response = client.post("/v1/predict", content=data, headers={"Content-Type": "application/octet-stream"})
            assert response.status_code == 200, response.text
            want = predictors["v1"].predict([data])[0][0]
            assert response.json()["label"] == want.label
            assert response.json()["confidence"] == pytest.approx(want.probability, abs=1e-5)


def test_multipart_and_json_bodies(make_gateway: GatewayFactory, predictors: dict[str, Predictor]) -> None:
    live = make_gateway()
    data = image_bytes(3)
    want = predictors["v1"].predict([data])[0][0].label
    with live.client(headers=live.headers) as client:
        multipart = client.post("/v1/predict", files={"image": ("sign.jpg", data, "image/jpeg")})
        as_json = client.post("/v1/predict", json={"image": base64.b64encode(data).decode()})
    assert multipart.status_code == 200 and multipart.json()["label"] == want
    assert as_json.status_code == 200 and as_json.json()["label"] == want


def test_batch_keeps_order_and_gives_each_image_a_request_id(
    make_gateway: GatewayFactory, predictors: dict[str, Predictor]
) -> None:
    live = make_gateway()
    images = [image_bytes(seed) for seed in range(20, 25)]
    expected = [row[0].label for row in predictors["v1"].predict(images)]
    with live.client(headers=live.headers) as client:
        response = client.post(
            "/v1/predict/batch",
            files=[("images", (f"{index}.jpg", data, "image/jpeg")) for index, data in enumerate(images)],
        )
        as_json = client.post(
            "/v1/predict/batch", json={"images": [base64.b64encode(data).decode() for data in images]}
        )
    for answer in (response, as_json):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [item["label"] for item in body["results"]] == expected
        assert [item["request_id"] for item in body["results"]] == [
            f"{body['request_id']}-{index}" for index in range(5)
        ]
        assert {item["model_version"] for item in body["results"]} == {body["model_version"]}


def test_batch_with_one_bad_image_names_it(make_gateway: GatewayFactory) -> None:
    live = make_gateway()
    with live.client(headers=live.headers) as client:
        response = client.post(
            "/v1/predict/batch",
            json={"images": [base64.b64encode(image_bytes(1)).decode(), base64.b64encode(b"not an image").decode()]},
        )
    assert response.status_code == 422
    assert response.json()["error"].startswith("image 1: not a readable image")


def test_health_model_info_and_openapi(canary_gateway: LiveGateway, packages: dict) -> None:
    with canary_gateway.client() as client:
        health = client.get("/v1/health")
        unauthorised_info = client.get("/v1/model/info")
        info = client.get("/v1/model/info", headers=canary_gateway.headers)
        document = client.get("/openapi.json")
    assert health.status_code == 200
    assert health.json()["weights"] == {"v1": 90, "v2": 10} and health.json()["status"] == "ok"
    assert unauthorised_info.status_code == 401
    body = info.json()
    assert (body["stable"], body["canary"], body["weights"]) == ("v1", "v2", {"v1": 90, "v2": 10})
    config = json.loads((packages["v2"] / "config.json").read_text())
    v2 = next(item for item in body["versions"] if item["version"] == "v2")
    assert v2["classes"] == list(ARSL_CLASSES) and v2["weights_sha256"] == config["weights_sha256"]
    assert document.json() == openapi_document()


def test_auth_failures_and_key_changes_take_effect_on_the_next_request(make_gateway: GatewayFactory) -> None:
    live = make_gateway()
    data = image_bytes(1)
    with live.client() as client:

        def post(key: str | None) -> int:
            headers = {"Content-Type": "image/jpeg", **({HEADER: key} if key is not None else {})}
            return client.post("/v1/predict", content=data, headers=headers).status_code

        missing = client.post("/v1/predict", content=data, headers={"Content-Type": "image/jpeg"})
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == HEADER
        assert "missing" in missing.json()["error"]
        assert post(live.key[:-1] + ("A" if live.key[-1] != "A" else "B")) == 401
        assert post("") == 401
        assert post(live.key) == 200
        other = live.keys().create("second")  # made by "another process": its own connection to the state file
        assert post(other) == 200
        live.keys().revoke("tests")
        assert post(live.key) == 401
        assert post(other) == 200


def test_body_over_the_cap_is_413_even_without_a_length(make_gateway: GatewayFactory) -> None:
    live = make_gateway(overrides={"gateway.max_body_kb": 8})
    big = b"\xff\xd8" + b"\0" * (9 * 1024)
    with live.client(headers=live.headers) as client:
        declared = client.post("/v1/predict", content=big, headers={"Content-Type": "image/jpeg"})

        def chunks():  # no Content-Length: chunked transfer encoding
            for start in range(0, len(big), 1024):
                yield big[start : start + 1024]

        chunked = client.post("/v1/predict", content=chunks(), headers={"Content-Type": "image/jpeg"})
        after = client.post("/v1/predict", content=image_bytes(1), headers={"Content-Type": "image/jpeg"})
    for response in (declared, chunked):
        assert response.status_code == 413
        assert "8192 bytes" in response.json()["error"]
    assert after.status_code == 200


@pytest.mark.parametrize(
    ("content_type", "body", "status", "says"),
    [
        ("text/plain", b"hello", 415, "holds no image"),
        ("application/x-www-form-urlencoded", b"a=b", 415, "holds no image"),
        ("", b"\xff\xd8\xff", 415, "missing"),
        ("image/jpeg", b"", 422, "empty"),
        ("image/jpeg", b"GIF87a not really", 422, "not a readable image"),
        ("image/png", image_bytes(5, fmt="PNG")[:60], 422, "image"),
        ("application/json", b"{not json", 422, "not valid JSON"),
        ("application/json", b'{"image": "***"}', 422, "base64"),
        ("multipart/form-data; boundary=xyz", b"--xyz--\r\n", 422, "no file part"),
    ],
)
def test_bad_bodies_get_a_json_error_saying_why(
    make_gateway: GatewayFactory, content_type: str, body: bytes, status: int, says: str
) -> None:
    live = make_gateway()
    headers = {HEADER: live.key}
    if content_type:
        headers["Content-Type"] = content_type
    with live.client() as client:
        request = client.build_request("POST", "/v1/predict", content=body, headers=headers)
        if not content_type:
            request.headers.pop("Content-Type", None)
        response = client.send(request)
        assert response.status_code == status, response.text
        assert says in response.json()["error"]
        assert response.json()["code"]
        assert (
            client.post(
                "/v1/predict", content=image_bytes(2), headers={**headers, "Content-Type": "image/jpeg"}
            ).status_code
            == 200
        )


def test_an_image_too_large_to_decode_is_refused_before_decoding(make_gateway: GatewayFactory) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (5000, 4000)).save(buffer, format="PNG")  # 20 megapixels in a few kilobytes
    live = make_gateway()
    with live.client(headers=live.headers) as client:
        response = client.post("/v1/predict", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
    assert response.status_code == 422
    assert "5000×4000" in response.json()["error"]


async def test_bad_requests_do_not_disturb_good_ones_sent_together(
    make_gateway: GatewayFactory, predictors: dict[str, Predictor]
) -> None:
    live = make_gateway()
    good = [image_bytes(seed) for seed in range(40, 64)]
    expected = [row[0].label for row in predictors["v1"].predict(good)]
    bad = [b"", b"garbage", image_bytes(3)[:50], b"\x89PNG\r\n\x1a\n" + b"\0" * 40]
    async with live.async_client(headers=live.headers) as client:

        async def post(data: bytes) -> tuple[int, dict]:
            response = await client.post("/v1/predict", content=data, headers={"Content-Type": "image/jpeg"})
            return response.status_code, response.json()

        mixed = [post(data) for data in good] + [post(data) for data in bad * 3]
        results = await asyncio.gather(*mixed)
    good_results, bad_results = results[: len(good)], results[len(good) :]
    assert [status for status, _ in good_results] == [200] * len(good)
    assert [body["label"] for _, body in good_results] == expected
    assert {status for status, _ in bad_results} == {422}


def test_feedback_accounting_per_version(canary_gateway: LiveGateway) -> None:
    with canary_gateway.client(headers=canary_gateway.headers) as client:
        answers = [
            client.post("/v1/predict", content=image_bytes(seed), headers={"Content-Type": "image/jpeg"}).json()
            for seed in range(20)
        ]
        by_version: dict[str, list[dict]] = {}
        for answer in answers:
            by_version.setdefault(answer["model_version"], []).append(answer)
        assert {version: len(items) for version, items in by_version.items()} == {"v1": 18, "v2": 2}
        # v1: 10 right (the predicted label), 8 wrong; v2: 1 right by class index, 1 wrong.
        for index, answer in enumerate(by_version["v1"]):
            label = answer["label"] if index < 10 else next(name for name in ARSL_CLASSES if name != answer["label"])
            result = client.post("/v1/feedback", json={"request_id": answer["request_id"], "label": label})
            assert result.status_code == 200 and result.json()["correct"] is (index < 10)
        first, second = by_version["v2"]
        assert (
            client.post("/v1/feedback", json={"request_id": first["request_id"], "label": first["class_index"]}).json()[
                "correct"
            ]
            is True
        )
        wrong_index = (second["class_index"] + 1) % len(ARSL_CLASSES)
        assert (
            client.post("/v1/feedback", json={"request_id": second["request_id"], "label": wrong_index}).json()[
                "correct"
            ]
            is False
        )
        again = client.post("/v1/feedback", json={"request_id": first["request_id"], "label": first["label"]})
        unknown = client.post("/v1/feedback", json={"request_id": "0" * 32, "label": "ain"})
        fresh = client.post("/v1/predict", content=image_bytes(99), headers={"Content-Type": "image/jpeg"}).json()
        bad_label = client.post("/v1/feedback", json={"request_id": fresh["request_id"], "label": "nope"})
        bad_index = client.post("/v1/feedback", json={"request_id": fresh["request_id"], "label": 32})
        wrong_type = client.post("/v1/feedback", content=b"request_id=1", headers={"Content-Type": "text/plain"})
        metrics = client.get("/metrics").text
        stats = client.get("/admin/stats", params={"window_s": 60}, headers=canary_gateway.admin_headers).json()
    assert (again.status_code, unknown.status_code, wrong_type.status_code) == (409, 404, 415)
    assert (bad_label.status_code, bad_index.status_code) == (422, 422)
    assert "not one of the 32 classes" in bad_label.json()["error"]
    assert 'arsl_gateway_feedback_total{version="v1"} 18' in metrics
    assert 'arsl_gateway_feedback_correct_total{version="v1"} 10' in metrics
    assert 'arsl_gateway_online_accuracy{version="v1"} 0.5555555555555556' in metrics
    assert 'arsl_gateway_online_accuracy{version="v2"} 0.5' in metrics
    assert (stats["versions"]["v1"]["feedback"], stats["versions"]["v1"]["correct"]) == (18, 10)
    assert stats["versions"]["v2"]["online_accuracy"] == 0.5
    assert stats["versions"]["v1"]["requests"] + stats["versions"]["v2"]["requests"] == 21
    assert len(stats["versions"]["v2"]["latency_ms"]) == stats["versions"]["v2"]["requests"]


def test_metrics_are_labelled_by_version(canary_gateway: LiveGateway) -> None:
    with canary_gateway.client() as client:
        for seed in range(10):
            client.post(
                "/v1/predict",
                content=image_bytes(seed),
                headers={**canary_gateway.headers, "Content-Type": "image/jpeg"},
            )
        client.post("/v1/predict", content=b"x", headers={**canary_gateway.headers, "Content-Type": "image/jpeg"})
        client.post("/v1/predict", content=image_bytes(1), headers={"Content-Type": "image/jpeg"})
        response = client.get("/metrics")
    text = response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert 'arsl_gateway_requests_total{endpoint="predict",version="v1",code="200"} 9' in text
    assert 'arsl_gateway_requests_total{endpoint="predict",version="v2",code="200"} 1' in text
    assert 'arsl_gateway_errors_total{endpoint="predict",version="none",reason="invalid_image"} 1' in text
    assert 'arsl_gateway_errors_total{endpoint="predict",version="none",reason="unauthorized"} 1' in text
    assert 'arsl_gateway_request_duration_seconds_count{endpoint="predict",version="v1"} 9' in text
    assert 'arsl_gateway_request_duration_seconds_bucket{endpoint="predict",version="v1",le="+Inf"} 9' in text
    assert 'arsl_gateway_images_total{version="v1"} 9' in text
    assert re.search(r'arsl_gateway_batch_size_count\{version="v1"\} [1-9]', text)
    assert 'arsl_gateway_route_weight{version="v2"} 10' in text
    for line in text.splitlines():  # every sample line parses as Prometheus text: name{labels} value
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? [0-9.e+\-Inf]+", line), line


def test_unknown_paths_and_methods_get_json_errors(make_gateway: GatewayFactory) -> None:
    live = make_gateway()
    with live.client() as client:
        missing = client.get("/v2/predict")
        wrong_method = client.get("/v1/predict")
    assert missing.status_code == 404 and "openapi" in missing.json()["error"]
    assert wrong_method.status_code == 405


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) with a listening socket on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


def test_the_server_listens_on_loopback_only(make_gateway: GatewayFactory) -> None:
    live = make_gateway()
    port = int(live.url.rsplit(":", 1)[1])
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and no wildcard socket
    assert gateway_settings(live.home).gateway.host == "127.0.0.1"


def test_a_failing_forward_pass_fails_only_its_own_requests(canary_gateway: LiveGateway) -> None:
    broken = canary_gateway.gateway.router.table.models["v2"]

    def fail(_batch: object) -> object:
        raise RuntimeError("simulated fault in the v2 forward pass")

    broken.probabilities = fail  # where the worker calls, whichever runtime serves the model
    with canary_gateway.client(headers=canary_gateway.headers) as client:
        statuses = Counter()
        for seed in range(20):
            response = client.post("/v1/predict", content=image_bytes(seed), headers={"Content-Type": "image/jpeg"})
            statuses[response.status_code] += 1
            if response.status_code == 500:
                assert "inference failed on v2" in response.json()["error"]
        stats = client.get("/admin/stats", headers=canary_gateway.admin_headers).json()["versions"]
        health = client.get("/v1/health")
    assert statuses == {200: 18, 500: 2}
    assert (stats["v2"]["errors"], stats["v1"]["errors"], stats["v1"]["requests"]) == (2, 0, 18)
    assert health.status_code == 200
