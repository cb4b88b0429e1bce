"""The reference profile the exporter writes into the package: features, deciles, the model's answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.domain.drift import ReferenceProfile
from arsl_tui.ops.synth import encode_jpeg, render_image
from trainer.export import export_package
from trainer.input_profile import FEATURES, PROFILE_NAME, image_features, read_profile
from trainer.model import build_model
from trainer.predict import Predictor
from trainer.preprocess import decode_image


def validation_images(count: int) -> torch.Tensor:
    """(N, 1, 64, 64) uint8, decoded exactly as the trainer and the gateway decode images."""
    pixels = [decode_image(encode_jpeg(render_image(5, index % 32, index // 32))) for index in range(count)]
    return torch.from_numpy(np.stack(pixels)).unsqueeze(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model("compact", len(ARSL_CLASSES)).eval()
    images = validation_images(160)
    package = export_package(
        tmp_path_factory.mktemp("profile"),
        model,
        architecture="compact",
        classes=ARSL_CLASSES,
        mean=0.4,
        std=0.25,
        manifest_id="m-profile",
        metrics={},
        reference_images=images,
    )
    return package, images, model


def test_the_package_holds_the_profile_and_names_it(exported: tuple[Path, torch.Tensor, torch.nn.Module]) -> None:
    package, images, _model = exported
    config = json.loads((package / "config.json").read_text())
    assert config["input_profile"] == PROFILE_NAME and (package / PROFILE_NAME).is_file()
    profile = read_profile(package)
    assert profile is not None and profile["samples"] == len(images) and profile["split"] == "val"
    reference = ReferenceProfile.from_json(profile)  # the console reads what the trainer wrote
    for name in FEATURES:
        histogram = reference.features[name]
        assert histogram.total == len(images)
        assert len(histogram.edges) <= 9 and list(histogram.edges) == sorted(histogram.edges)
    # Deciles: no bin holds more than about a tenth of the images (ties at an edge may add a few).
    assert max(reference.features["intensity_mean"].counts) <= len(images) // 10 + 4


def test_features_are_the_ones_the_gateway_computes_on_decoded_pixels(
    exported: tuple[Path, torch.Tensor, torch.nn.Module],
) -> None:
    _package, images, _model = exported
    features = image_features(images.numpy())
    one = image_features(images[0, 0].numpy()[None])
    assert {name: float(values[0]) for name, values in features.items()} == {
        name: float(values[0]) for name, values in one.items()
    }
    flat = np.full((1, 64, 64), 128, dtype=np.uint8)
    assert {name: float(values[0]) for name, values in image_features(flat).items()} == {
        "intensity_mean": pytest.approx(128 / 255),
        "contrast": 0.0,
        "edge_density": 0.0,
    }
    inverted = image_features(255 - images.numpy())
    assert np.allclose(inverted["intensity_mean"], 1 - features["intensity_mean"])


def test_predicted_classes_and_confidence_are_the_packaged_models(
    exported: tuple[Path, torch.Tensor, torch.nn.Module],
) -> None:
    package, images, _model = exported
    predictor = Predictor.load(package)
    probabilities = predictor.probabilities(
        (images.float() / 255 - predictor.mean) / predictor.std
    )  # the served model on the same pixels
    expected = np.bincount(probabilities.argmax(dim=1).numpy(), minlength=len(ARSL_CLASSES))
    profile = read_profile(package)
    assert profile is not None
    assert profile["predicted_class"]["counts"] == expected.tolist()
    assert profile["predicted_class"]["classes"] == list(ARSL_CLASSES)
    assert sum(profile["confidence"]["counts"]) == len(images)


def test_without_validation_images_the_package_is_as_before(tmp_path: Path) -> None:
    model = build_model("compact", len(ARSL_CLASSES))
    package = export_package(
        tmp_path, model, architecture="compact", classes=ARSL_CLASSES, mean=0.5, std=0.25, manifest_id="m", metrics={}
    )
    assert "input_profile" not in json.loads((package / "config.json").read_text())
    assert read_profile(package) is None
