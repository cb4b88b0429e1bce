"""Write the model package (trainer/README.md, "What it writes") that serves locally and on ModelArts.

    model/
      config.json           format, architecture, classes, input, normalisation, weights + sha256,
                            manifest id, training job id, metrics, serving command
      model.safetensors     the weights (no pickle)
      input_profile.json    the reference profile of the validation inputs and answers (trainer/input_profile.py),
                            when the exporter is given the validation images; named in config.json
      trainer/              the code the predictor and the serving entry need, copied from this package:
                            model.py preprocess.py weights.py predict.py modelarts/serve.py

The package is built in a temporary folder beside `model/` and swapped in, so a reader never sees a
half-written package.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer import __version__
from trainer.input_profile import PROFILE_NAME, build_profile, write_profile
from trainer.predict import CONFIG_NAME, PACKAGE_FORMAT
from trainer.preprocess import IMAGE_SIZE
from trainer.weights import save_weights

WEIGHTS_NAME = "model.safetensors"
PACKAGE_DIR = "model"
_CODE = ("model.py", "preprocess.py", "weights.py", "predict.py", "modelarts/__init__.py", "modelarts/serve.py")
SERVE_COMMAND = "python -m trainer.modelarts.serve --model-dir . --host 0.0.0.0 --port 8080"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def export_package(
    output: Path,
    model: nn.Module,
    *,
    architecture: str,
    classes: tuple[str, ...],
    mean: float,
    std: float,
    manifest_id: str,
    metrics: dict[str, Any],
    job_id: str = "",
    reference_images: torch.Tensor | None = None,
) -> Path:
    """Write `output/model/` and return its path; with `reference_images` (the validation split's (N, 1, 64, 64)
    uint8 tensor) also the reference profile the gateway measures input drift against."""
    target = output / PACKAGE_DIR
    staging = output / f".{PACKAGE_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "trainer" / "modelarts").mkdir(parents=True)
    state = {
        name: tensor.detach().to("cpu", dtype=torch.float32 if tensor.is_floating_point() else tensor.dtype)
        for name, tensor in model.state_dict().items()
    }
    save_weights(state, staging / WEIGHTS_NAME, metadata={"format": PACKAGE_FORMAT, "architecture": architecture})
    source = Path(__file__).resolve().parent
    (staging / "trainer" / "__init__.py").write_text(
        f'"""The code of an exported ArSL model package."""\n\n__version__ = "{__version__}"\n', encoding="utf-8"
    )
    for relative in _CODE:
        shutil.copyfile(source / relative, staging / "trainer" / relative)
    config = {
        "format": PACKAGE_FORMAT,
        "architecture": {"name": architecture, "num_classes": len(classes)},
        "classes": list(classes),
        "input": {"size": [IMAGE_SIZE, IMAGE_SIZE], "mode": "L", "channels": 1, "dtype": "uint8", "resize": "bilinear"},
        "normalisation": {"mean": mean, "std": std, "formula": "(pixel / 255 - mean) / std"},
        "weights": WEIGHTS_NAME,
        "weights_sha256": _sha256(staging / WEIGHTS_NAME),
        "manifest_id": manifest_id,
        "training_job_id": job_id,
        "metrics": metrics,
        "trainer_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "serving": {"command": SERVE_COMMAND, "port": 8080, "health": "/health", "predict": "/predict"},
    }
    if reference_images is not None:
        profile = build_profile(model, reference_images, classes, mean=mean, std=std)
        write_profile(staging, profile)
        config["input_profile"] = PROFILE_NAME
    (staging / CONFIG_NAME).write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    previous = output / f".{PACKAGE_DIR}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, previous)
    os.replace(staging, target)
    shutil.rmtree(previous, ignore_errors=True)
    return target
