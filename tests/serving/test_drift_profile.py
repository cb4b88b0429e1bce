"""The gateway's live input profile: what it records per version and window, and `GET /admin/drift`."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.domain.drift import LiveProfile, ReferenceProfile
from arsl_tui.domain.serving import Deployment
from arsl_tui.providers.local.serving_control import models_dir
from arsl_tui.serving.drift import DEFAULT_EDGES, LiveInputs
from tests.serving.conftest import LiveGateway, start_gateway
from tests.serving.drift_packages import export_profiled_package, jpegs
from tests.serving.packages import export_random_package
from trainer.input_profile import FEATURES, bin_counts, image_features, read_profile
from trainer.preprocess import decode_image


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway(tmp_path: Path, clock: Clock) -> Iterator[LiveGateway]:
    packages = {
        "v1": export_profiled_package(tmp_path / "p1", 1, jpegs(9, 320)),
        "v2": export_random_package(tmp_path / "p2", seed=2),  # exported without validation images: no profile
    }
    live = start_gateway(
        tmp_path / "home", packages, Deployment(stable="v1", canary="v2", weights={"v1": 100, "v2": 0})
    )
    live.gateway.metrics.drift = LiveInputs(clock=clock)  # the same recorder, on a clock the test moves
    yield live
    live.close()


def test_answered_images_are_profiled_per_version_with_the_reference_bins(gateway: LiveGateway, clock: Clock) -> None:
    images = jpegs(9, 40, start=320)
    with gateway.client(headers=gateway.headers) as client:
        for data in images[:8]:
            assert client.post("/v1/predict", content=data, headers={"Content-Type": "image/jpeg"}).status_code == 200
        batch = {"images": [base64.b64encode(data).decode() for data in images[8:]]}
        answered = client.post("/v1/predict/batch", json=batch)
        assert answered.status_code == 200
        confidences = [item["confidence"] for item in answered.json()["results"]]
        clock.now += 100
        body = client.get(
            "/admin/drift", params={"window_s": 300, "low_confidence": 0.5}, headers=gateway.admin_headers
        )
        assert body.status_code == 200, body.text
        report = body.json()
        later = client.get("/admin/drift", params={"window_s": 50}, headers=gateway.admin_headers).json()
        metrics = client.get("/metrics").text

    assert report["window_s"] == 300 and set(report["versions"]) == {"v1"}  # v2 answered nobody
    reference_doc = read_profile(models_dir(gateway.home) / "v1")
    assert report["versions"]["v1"]["reference"] == reference_doc
    reference = ReferenceProfile.from_json(reference_doc)
    live = LiveProfile.from_json(report["versions"]["v1"]["live"], "live")
    assert live.images == 40 and sum(live.class_counts) == 40 and len(live.class_counts) == len(ARSL_CLASSES)
    expected = image_features(np.stack([decode_image(data) for data in images]))
    for name in FEATURES:
        assert live.features[name].edges == reference.features[name].edges
        assert list(live.features[name].counts) == bin_counts(
            expected[name].astype(np.float32), reference.features[name].edges
        )
    # The low-confidence count covers both endpoints; the batch's own answers bound it from below.
    assert live.low_confidence >= sum(1 for value in confidences if value < 0.5)
    assert later["versions"]["v1"]["live"]["images"] == 0, "events older than the window are left out"
    assert 'arsl_gateway_answer_confidence_count{version="v1"} 40' in metrics


def test_a_version_without_a_profile_is_binned_on_default_edges(gateway: LiveGateway) -> None:
    with gateway.client(headers=gateway.headers) as client:
        moved = client.put(
            "/admin/weights", json={"weights": {"v1": 0, "v2": 100}, "reason": "test"}, headers=gateway.admin_headers
        )
        assert moved.status_code == 200, moved.text
        for data in jpegs(9, 3):
            assert client.post("/v1/predict", content=data, headers={"Content-Type": "image/jpeg"}).status_code == 200
        report = client.get("/admin/drift", headers=gateway.admin_headers).json()
    entry = report["versions"]["v2"]
    assert entry["reference"] is None and entry["live"]["images"] == 3
    assert entry["live"]["features"]["contrast"]["edges"] == list(DEFAULT_EDGES)


def test_the_drift_report_is_an_admin_call_with_checked_parameters(gateway: LiveGateway) -> None:
    with gateway.client() as client:
        assert client.get("/admin/drift").status_code == 401
        for params in ({"window_s": "soon"}, {"window_s": 0}, {"low_confidence": 2}):
            refused = client.get("/admin/drift", params=params, headers=gateway.admin_headers)
            assert refused.status_code == 422 and refused.json()["code"] == "invalid_query"


def test_a_refused_image_is_not_profiled(gateway: LiveGateway) -> None:
    with gateway.client(headers=gateway.headers) as client:
        assert client.post("/v1/predict", content=b"not an image", headers={"Content-Type": "image/jpeg"}).status_code
        report = client.get("/admin/drift", headers=gateway.admin_headers).json()
    assert report["versions"] == {}
