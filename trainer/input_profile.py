"""The reference profile of a model's inputs and answers, written into the package as `input_profile.json`.

What the gateway compares live traffic with to notice that production images stop looking like the
training data (a new camera, other lighting, other signers). Per image, on the decoded 64×64 uint8
pixels (the model's input before normalisation):

    intensity_mean   mean pixel / 255                                     (brightness)
    contrast         pixel standard deviation / 127.5                     (0 flat … 1 half black, half white)
    edge_density     share of pixels whose |dx| + |dy| exceeds EDGE_STEP  (sharpness, blur lowers it)

and, from the model on the validation split, the top-1 confidence and the predicted class. Each
numeric feature is kept as a histogram over the validation split's deciles (inner edges; the first
and last bins are open), so the live histogram uses the same bins and every bin holds about a tenth
of the reference. The gateway computes the same features with `image_features` on the pixels it has
already decoded, so a served image is measured exactly as a validation image was.

    {"format": "arsl-input-profile/1", "split": "val", "samples": 1939,
     "features": {"intensity_mean": {"edges": [...9 floats], "counts": [...10 ints]}, ...},
     "confidence": {"edges": [...], "counts": [...]},
     "predicted_class": {"classes": [...32 names], "counts": [...32 ints]}}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.preprocess import normalise

PROFILE_NAME = "input_profile.json"
PROFILE_FORMAT = "arsl-input-profile/1"
FEATURES = ("intensity_mean", "contrast", "edge_density")
BINS = 10
EDGE_STEP = 48
"""A pixel is on an edge when its horizontal plus vertical step exceeds this (of 255): strokes of a hand
against the background count, JPEG noise and soft shading do not."""


def image_features(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 64, 64) or (N, 1, 64, 64) uint8 pixels → each feature's N values (float64), in O(pixels)."""
    images = np.asarray(pixels)
    images = images.reshape(images.shape[0], images.shape[-2], images.shape[-1]).astype(np.int16)
    flat = images.reshape(images.shape[0], -1)
    dx = np.abs(np.diff(images, axis=2))[:, :-1, :]
    dy = np.abs(np.diff(images, axis=1))[:, :, :-1]
    edges = (dx + dy) > EDGE_STEP
    return {
        "intensity_mean": flat.mean(axis=1) / 255.0,
        "contrast": flat.std(axis=1) / 127.5,
        "edge_density": edges.reshape(edges.shape[0], -1).mean(axis=1),
    }


def decile_edges(values: np.ndarray, bins: int = BINS) -> list[float]:
    """The inner bin edges that cut `values` into `bins` parts of about equal size (repeated edges merged)."""
    if values.size == 0:
        return []
    quantiles = np.quantile(values.astype(np.float64), np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return sorted({round(float(edge), 6) for edge in quantiles})


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> list[int]:
    """How many values fall in each of the len(edges) + 1 bins: bin i holds edges[i-1] <= v < edges[i]."""
    indices = np.searchsorted(np.asarray(edges, dtype=np.float64), values.astype(np.float64), side="right")
    return [int(count) for count in np.bincount(indices, minlength=len(edges) + 1)]


def _histogram(values: np.ndarray) -> dict[str, Any]:
    edges = decile_edges(values)
    return {"edges": edges, "counts": bin_counts(values, edges)}


@torch.no_grad()
def top1(
    model: nn.Module, images: torch.Tensor, *, mean: float, std: float, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 64, 64) uint8 images → the model's top-1 probability and class index per image."""
    model.eval()  # the served model: running BatchNorm statistics, no dropout
    device = next(model.parameters()).device
    confidences, classes = [], []
    for start in range(0, images.shape[0], batch_size):
        chunk = normalise(images[start : start + batch_size].to(device), mean, std)
        inputs = chunk.contiguous(memory_format=torch.channels_last)
        probabilities = torch.softmax(model(inputs).float(), dim=1)
        value, index = probabilities.max(dim=1)
        confidences.append(value.cpu().numpy())
        classes.append(index.cpu().numpy())
    if not confidences:
        return np.empty(0), np.empty(0, dtype=np.int64)
    return np.concatenate(confidences).astype(np.float64), np.concatenate(classes).astype(np.int64)


def build_profile(
    model: nn.Module, images: torch.Tensor, classes: Sequence[str], *, mean: float, std: float, split: str = "val"
) -> dict[str, Any]:
    """The reference profile (module docstring) of `images`, a split's (N, 1, 64, 64) uint8 tensor."""
    pixels = images.detach().to("cpu", dtype=torch.uint8).numpy()
    features = image_features(pixels) if pixels.shape[0] else {name: np.empty(0) for name in FEATURES}
    confidence, predicted = top1(model, images, mean=mean, std=std)
    return {
        "format": PROFILE_FORMAT,
        "split": split,
        "samples": int(pixels.shape[0]),
        "edge_step": EDGE_STEP,
        "features": {name: _histogram(features[name]) for name in FEATURES},
        "confidence": _histogram(confidence),
        "predicted_class": {
            "classes": list(classes),
            "counts": [int(count) for count in np.bincount(predicted, minlength=len(classes))[: len(classes)]],
        },
    }


def write_profile(folder: Path, profile: dict[str, Any]) -> Path:
    path = Path(folder) / PROFILE_NAME
    path.write_text(json.dumps(profile, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_profile(folder: Path) -> dict[str, Any] | None:
    """The package's profile, or None when it has none (a package exported before profiles existed)."""
    path = Path(folder) / PROFILE_NAME
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):  # missing, unreadable or not JSON: serve without a reference
        return None
    if not isinstance(document, dict) or document.get("format") != PROFILE_FORMAT:
        return None
    return document


__all__ = [
    "BINS",
    "EDGE_STEP",
    "FEATURES",
    "PROFILE_FORMAT",
    "PROFILE_NAME",
    "bin_counts",
    "build_profile",
    "decile_edges",
    "image_features",
    "read_profile",
    "top1",
]
