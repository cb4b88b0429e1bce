"""Model packages with a reference profile, and the synthetic images they were profiled on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.ops.synth import encode_jpeg, render_image
from trainer.export import export_package
from trainer.model import build_model
from trainer.preprocess import decode_image


def jpegs(seed: int, count: int, start: int = 0) -> list[bytes]:
    return [encode_jpeg(render_image(seed, index % 32, index // 32)) for index in range(start, start + count)]


def export_profiled_package(output: Path, seed: int, images: list[bytes]) -> Path:
    """A real package with random weights whose reference profile comes from `images`."""
    torch.manual_seed(seed)
    pixels = torch.from_numpy(np.stack([decode_image(data) for data in images])).unsqueeze(1)
    return export_package(
        output,
        build_model("compact", len(ARSL_CLASSES)),
        architecture="compact",
        classes=ARSL_CLASSES,
        mean=0.4,
        std=0.25,
        manifest_id="m-drift",
        metrics={},
        reference_images=pixels,
    )
