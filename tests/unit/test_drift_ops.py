"""Drift use cases without a gateway: the demo's shifted images, the status with nothing to read, the Huawei push."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arsl_tui.cli import build_parser
from arsl_tui.cli.common import CommandContext, run_command
from arsl_tui.config import load_settings
from arsl_tui.domain.alarms import MonitorUnavailable
from arsl_tui.ops import drift, monitoring
from arsl_tui.ops.synth import encode_jpeg, render_image
from trainer.input_profile import image_features
from trainer.preprocess import decode_image


def test_shifted_images_move_the_features_the_drift_score_watches() -> None:
    images = [encode_jpeg(render_image(3, index, 0)) for index in range(8)]
    before = image_features(np.stack([decode_image(data) for data in images]))
    inverted = image_features(np.stack([decode_image(drift.shift_image(data, "invert")) for data in images]))
    blurred = image_features(np.stack([decode_image(drift.shift_image(data, "blur")) for data in images]))
    assert np.allclose(inverted["intensity_mean"], 1 - before["intensity_mean"], atol=0.02)
    assert float(blurred["edge_density"].max()) == 0.0 < float(before["edge_density"].mean())
    assert float(blurred["contrast"].mean()) < float(before["contrast"].mean())
    labelled = drift.shifted_samples([(images[0], "alef")], "blur")
    assert labelled[0][1] == "alef" and labelled[0][0] != images[0]
    with pytest.raises(ValueError, match="invert, blur"):
        drift.shift_image(images[0], "rotate")


def run_cli(home: Path, monkeypatch: pytest.MonkeyPatch, *arguments: str) -> tuple[int, Any]:
    monkeypatch.setenv("ARSL_HOME", str(home))
    monkeypatch.delenv("ARSL_CONFIG", raising=False)
    monkeypatch.chdir(home)
    namespace = build_parser().parse_args(list(arguments))
    out, err = io.StringIO(), io.StringIO()
    context = CommandContext(config_path=None, backend=None, json_output=True, stdout=out, stderr=err)
    code = run_command(namespace.handler, context, namespace)
    return code, json.loads(out.getvalue().splitlines()[-1])


def test_status_without_a_gateway_or_rules_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, status = run_cli(tmp_path, monkeypatch, "--json", "drift", "status")
    assert code == 0 and status["drifting"] is False and status["versions"] == {} and status["rule"] is None
    drift_settings = load_settings(None, environ={}).drift
    assert status["threshold"] == drift_settings.threshold and status["min_images"] == drift_settings.min_images
    assert status["backend"] == "local"
    assert any("no live profile" in note for note in status["notes"])
    assert any("arsl alarms setup" in note for note in status["notes"])


def test_the_score_is_pushed_only_to_a_cloud_monitor(tmp_path: Path) -> None:
    local = load_settings(None, environ={}, cwd=tmp_path, cli_overrides={"home": str(tmp_path)})
    with pytest.raises(MonitorUnavailable, match="by itself"):
        monitoring.publish_input_drift(local, 0.3)
    huawei = load_settings(None, environ={}, cwd=tmp_path, cli_overrides={"home": str(tmp_path), "backend": "huawei"})
    with pytest.raises(MonitorUnavailable, match="service_id is empty"):
        monitoring.publish_input_drift(huawei, 0.3)
