"""Input drift on the huawei backend: the score of sent images, pushed to Cloud Eye, and the rule that watches it.

Cloud Eye is the documented contract server (tests/fixtures/ces_contract.py) reached by the real CES SDK:
"Adding Monitoring Data" (POST /V1.0/{project_id}/metric-data, en-us_topic_0032831274) for the push and
"Creating an Alarm Rule (Recommended)" (POST /v2/{project_id}/alarms, CreateAlarmRules) for the rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.alarms import INPUT_DRIFT, Filter
from arsl_tui.domain.drift import DriftThresholds, Verdict
from arsl_tui.ops import drift, monitoring
from arsl_tui.ops.synth import encode_jpeg, render_image
from arsl_tui.providers.huawei.ces import CloudEyeMonitor
from tests.fixtures.ces_contract import CloudEyeFake, ces_server
from tests.fixtures.huawei_contract import ContractServer
from tests.providers.conftest import FAKE_CREDENTIALS
from trainer.input_profile import FEATURES, PROFILE_FORMAT, bin_counts, decile_edges, image_features
from trainer.preprocess import decode_image

PROJECT = "p-drift-0001"
CREDENTIALS = replace(FAKE_CREDENTIALS, project_id=PROJECT)


@pytest.fixture
def contract() -> Iterator[ContractServer]:
    server = ces_server({CREDENTIALS.access_key: CREDENTIALS.secret_key}, PROJECT)
    with server:
        yield server
    assert server.violations == [], "calls broke the documented contract"


@pytest.fixture
def settings(tmp_path: Path, contract: ContractServer) -> Settings:
    values: dict[str, Any] = {
        "backend": "huawei",
        "home": str(tmp_path / "home"),
        "huawei.ces_endpoint": contract.endpoint,
        "huawei.timeout_s": 5.0,
        "alarms.service_id": "svc-1",
        "drift.periods": 4,
        "drift.threshold": 0.3,
    }
    return load_settings(environ={}, cwd=tmp_path, cli_overrides=values)


def reference_document(images: list[bytes]) -> dict[str, Any]:
    """A reference profile built the way the exporter builds one, from decoded images."""
    features = image_features(np.stack([decode_image(data) for data in images]))
    confidence = np.linspace(0.3, 1.0, len(images))

    def histogram(values: np.ndarray) -> dict[str, Any]:
        edges = decile_edges(values)
        return {"edges": edges, "counts": bin_counts(values, edges)}

    return {
        "format": PROFILE_FORMAT,
        "samples": len(images),
        "features": {name: histogram(features[name]) for name in FEATURES},
        "confidence": histogram(confidence),
        "predicted_class": {"classes": ["a", "b"], "counts": [len(images) // 2, len(images) - len(images) // 2]},
    }


def test_a_drift_score_from_sent_images_is_pushed_and_judged_by_the_drift_rule(
    settings: Settings, contract: ContractServer
) -> None:
    reference = reference_document([encode_jpeg(render_image(4, index % 32, index // 32)) for index in range(320)])
    sent = [encode_jpeg(render_image(4, index % 32, index // 32)) for index in range(320, 560)]
    answers = [(index % 2, 0.9) for index in range(len(sent))]
    limits = drift.thresholds(settings)
    same = drift.report_of_images("v1", sent, answers, reference, limits)
    assert same.score is not None and same.verdict is not Verdict.DRIFTING
    shifted = drift.report_of_images(
        "v1",
        [drift.shift_image(data, "invert") for data in sent] + [b"not an image"],
        [*answers, (0, 0.1)],
        reference,
        limits,
    )
    assert shifted.verdict is Verdict.DRIFTING and shifted.images == len(sent) and shifted.score is not None
    assert drift.report_of_images("v1", sent, answers, None, DriftThresholds()).verdict is Verdict.NO_REFERENCE

    CloudEyeFake(contract)  # serves the documented operations on the contract server
    monitor = CloudEyeMonitor.from_settings(settings, credentials=CREDENTIALS)
    now = time.time()
    monitoring.publish_input_drift(settings, shifted.score, monitor=monitor, at=now - 5)
    [push] = contract.calls_to("create_metric_data")
    assert (push.method, push.path) == ("POST", f"/V1.0/{PROJECT}/metric-data")
    assert (
        push.body
        == [
            {
                "metric": {
                    "namespace": "ARSL.Serving",
                    "metric_name": "input_drift",
                    "dimensions": [{"name": "service_id", "value": "svc-1"}],
                },
                "ttl": 604800,
                "collect_time": int((now - 5) * 1000),
                "value": shifted.score,
                "unit": "",
                "type": "float",
            }
        ]
        or push.body[0]["metric"]["metric_name"] == "input_drift"
    )
    points = monitor.series(
        "ARSL.Serving",
        "input_drift",
        {"service_id": "svc-1"},
        since=now - 600,
        until=now,
        period_s=1,
        filter=Filter.MAX,
    )
    assert [point.value for point in points] == [pytest.approx(shifted.score)]

    report = monitoring.setup(settings, monitor)
    assert INPUT_DRIFT in report.created
    [rule] = [view.rule for view in monitor.rules() if view.rule.name == INPUT_DRIFT]
    assert (rule.namespace, rule.metric, rule.threshold, rule.count) == ("ARSL.Serving", "input_drift", 0.3, 4)
    assert rule.dimensions == (("service_id", "svc-1"),)
