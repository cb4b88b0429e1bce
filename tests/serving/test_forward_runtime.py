"""The gateway's forward runtime: ONNX Runtime only where it reproduces torch, torch in every other case."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from arsl_tui.serving.batching import load_model
from arsl_tui.serving.runtime import (
    TOLERANCE,
    ForwardSwitch,
    disagreement,
    onnx_forward,
    onnxruntime_installed,
    probe_batch,
    torch_forward,
)
from tests.serving.conftest import image_bytes
from trainer.predict import Predictor

needs_onnxruntime = pytest.mark.skipif(not onnxruntime_installed(), reason="onnxruntime and onnx are not installed")
SETTLE_S = 120
"""Bound on a conversion (about a second on an idle machine); the wait ends as soon as it is done."""


@pytest.fixture(scope="module")
def predictor(packages: dict[str, Path]) -> Predictor:
    return Predictor.load(packages["v1"])


def real_images() -> list[bytes]:
    """Encoded images of several sizes, modes and formats, decoded exactly as the gateway decodes them."""
    images = [image_bytes(seed) for seed in range(24)]
    images += [
        image_bytes(100, (200, 150), "RGB", "PNG"),
        image_bytes(101, (31, 97), "RGBA", "PNG"),
        image_bytes(102, (64, 64), "P", "GIF"),
        image_bytes(103, (640, 480), "RGB", "JPEG"),
    ]
    return images


@needs_onnxruntime
@pytest.mark.parametrize("batch", [1, 7, 28])
def test_onnxruntime_gives_torchs_top1_and_probabilities_on_real_images(predictor: Predictor, batch: int) -> None:
    inputs = predictor.preprocess_batch(real_images()[:batch])
    want = predictor.probabilities(inputs)
    got = onnx_forward(predictor, threads=1)(inputs)
    assert got.shape == want.shape == (batch, len(predictor.classes))
    assert float((got - want).abs().max()) <= TOLERANCE
    assert torch.equal(got.argmax(dim=1), want.argmax(dim=1))


@needs_onnxruntime
def test_a_loaded_model_switches_to_onnxruntime_once_it_agrees(packages: dict[str, Path]) -> None:
    model = load_model("v1", packages["v1"])
    assert model.switch is not None and model.switch.settled.wait(SETTLE_S)
    assert (model.runtime, model.switch.note) == ("onnxruntime", "")
    inputs = model.predictor.preprocess_batch(real_images())
    assert disagreement(model.probabilities, model.predictor.probabilities, inputs) is None


def test_asking_for_torch_keeps_torch_without_converting(packages: dict[str, Path]) -> None:
    model = load_model("v1", packages["v1"], runtime="torch")
    assert model.switch is not None and model.switch.settled.is_set()
    assert model.runtime == "torch"
    inputs = model.predictor.preprocess_batch(real_images()[:4])
    assert torch.equal(model.probabilities(inputs), model.predictor.probabilities(inputs))


def test_without_onnxruntime_auto_serves_with_torch(packages: dict[str, Path]) -> None:
    if onnxruntime_installed():
        pytest.skip("onnxruntime is installed: auto converts (the test above)")
    model = load_model("v1", packages["v1"])
    assert model.switch is not None and model.switch.settled.is_set()
    assert (model.runtime, model.switch.note) == ("torch", "")


def test_a_forward_that_gives_other_answers_is_refused(packages: dict[str, Path], predictor: Predictor) -> None:
    other = Predictor.load(packages["v2"])  # a real model with other weights: its probabilities differ
    reason = disagreement(torch_forward(other), torch_forward(predictor), probe_batch(predictor))
    assert reason is not None and "probabilities differ" in reason
    assert disagreement(torch_forward(predictor), torch_forward(predictor), probe_batch(predictor)) is None


class ExportRefusing(nn.Module):
    """Serves in torch; raises when the ONNX exporter runs it."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(64 * 64, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            raise ValueError("this model cannot be exported")
        return self.head(images.flatten(1))


def test_a_failed_conversion_leaves_torch_serving(predictor: Predictor) -> None:
    refusing = Predictor(ExportRefusing(len(predictor.classes)), predictor.classes, predictor.mean, predictor.std)
    switch = ForwardSwitch(refusing)
    switch.convert(refusing, "onnxruntime", threads=1, version="v-refusing")
    assert switch.settled.is_set()
    assert switch.runtime == "torch" and switch.note
    expected = "ValueError" if onnxruntime_installed() else "not installed"
    assert expected in switch.note
    inputs = probe_batch(refusing, images=3)
    assert torch.equal(switch.forward(inputs), refusing.probabilities(inputs))
