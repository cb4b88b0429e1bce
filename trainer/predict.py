"""The predictor of an exported model package: image bytes → preprocessed tensor → top-k labels.

    predictor = Predictor.load("out/model")
    predictor.predict([jpeg_bytes, png_bytes], top_k=3)
    # [[Prediction(label='ain', index=0, probability=0.97), ...], ...]

The package is `model/` with `config.json` (architecture, classes, input size, normalisation, …),
`model.safetensors` and a copy of the code this module needs (`trainer/`), so it runs with only
torch, pillow and numpy, here (the local gateway) and on ModelArts (`trainer.modelarts.serve`).
Weights load from safetensors: nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.model import build_model
from trainer.preprocess import IMAGE_SIZE, ImageDecodeError, decode_image, normalise
from trainer.weights import WeightsError, load_weights

PACKAGE_FORMAT = "arsl-model/1"
CONFIG_NAME = "config.json"


class PackageError(Exception):
    """A model package that cannot be loaded; the message names the file and field."""


class InvalidImage(ValueError):
    """One of the images in a request cannot be decoded; `index` says which."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"image {index}: {reason}")
        self.index = index
        self.reason = reason


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "probability": self.probability}


def read_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / CONFIG_NAME
    try:
        config = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise PackageError(f"{path}: not found; is {model_dir} a model package?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PackageError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(config, dict) or config.get("format") != PACKAGE_FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise PackageError(f"{path}: format is {found!r}, expected {PACKAGE_FORMAT!r}")
    return config


class Predictor:
    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[str],
        mean: float,
        std: float,
        *,
        device: str | torch.device = "cpu",
        max_batch: int = 64,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.classes = tuple(classes)
        self.mean, self.std = mean, std
        self.max_batch = max_batch
        self.config = config or {}

    @classmethod
    def load(cls, model_dir: str | Path, *, device: str | torch.device = "cpu", max_batch: int = 64) -> Predictor:
        model_dir = Path(model_dir)
        config = read_config(model_dir)
        try:
            architecture = config["architecture"]
            classes = [str(name) for name in config["classes"]]
            mean = float(config["normalisation"]["mean"])
            std = float(config["normalisation"]["std"])
            weights_name = str(config.get("weights", "model.safetensors"))
            size = [int(value) for value in config["input"]["size"]]
        except (KeyError, TypeError, ValueError) as error:
            raise PackageError(f"{model_dir / CONFIG_NAME}: missing or malformed field ({error})") from None
        if size != [IMAGE_SIZE, IMAGE_SIZE]:
            raise PackageError(f"{model_dir / CONFIG_NAME}: input size {size} is not {IMAGE_SIZE}×{IMAGE_SIZE}")
        try:
            model = build_model(str(architecture["name"]), len(classes))
        except (KeyError, TypeError, ValueError) as error:
            raise PackageError(f"{model_dir / CONFIG_NAME}: architecture: {error}") from None
        try:
            state = load_weights(model_dir / weights_name)
        except WeightsError as error:
            raise PackageError(str(error)) from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise PackageError(
                f"{model_dir / weights_name}: weights do not fit the architecture "
                f"{architecture.get('name')!r} ({error})"
            ) from None
        return cls(
            model.to(memory_format=torch.channels_last),
            classes,
            mean,
            std,
            device=device,
            max_batch=max_batch,
            config=config,
        )

    def preprocess(self, data: bytes) -> torch.Tensor:
        """One image's bytes → a (1, 64, 64) normalised float tensor."""
        return normalise(torch.from_numpy(decode_image(data)), self.mean, self.std).unsqueeze(0)

    def preprocess_batch(self, items: Sequence[bytes]) -> torch.Tensor:
        tensors = []
        for index, data in enumerate(items):
            try:
                tensors.append(self.preprocess(data))
            except ImageDecodeError as error:
                raise InvalidImage(index, str(error)) from None
        return torch.stack(tensors)

    @torch.no_grad()  # not inference_mode: ModelArts' PyTorch runtimes carry torch 1.8
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 1, 64, 64) normalised inputs → (B, classes) softmax probabilities, in chunks of max_batch."""
        outputs = []
        for start in range(0, batch.shape[0], self.max_batch):
            chunk = batch[start : start + self.max_batch].to(self.device).contiguous(memory_format=torch.channels_last)
            outputs.append(torch.softmax(self.model(chunk).float(), dim=1).cpu())
        return torch.cat(outputs) if outputs else torch.empty((0, len(self.classes)))

    def predict(self, items: Sequence[bytes], top_k: int = 5) -> list[list[Prediction]]:
        if not items:
            return []
        probabilities = self.probabilities(self.preprocess_batch(items))
        k = max(1, min(top_k, len(self.classes)))
        values, indices = probabilities.topk(k, dim=1)
        return [
            [
                Prediction(self.classes[int(index)], int(index), float(value))
                # zip without strict: ModelArts' PyTorch runtimes run Python 3.7 (topk rows have equal lengths)
                for value, index in zip(row_values, row_indices)  # noqa: B905
            ]
            for row_values, row_indices in zip(values.tolist(), indices.tolist())  # noqa: B905
        ]
