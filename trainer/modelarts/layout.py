"""The folder ModelArts imports a registered ArSL package from, as a PyTorch AI application.

    <folder>/model/config.json           ModelArts' model configuration (`model_configuration`)
    <folder>/model/customize_service.py  the inference code (this package's `customize_service.py`)
    <folder>/model/arsl_version.json     the registry version and package id the answers name
    <folder>/model/arsl/<path>           every file of the registered package, unchanged

Rules from "Model Package Specifications" (inference-modelarts-0055): the folder holds `model/`, with exactly
one `config.json` and one `customize_service.py` directly in it; other files the code needs may sit in `model/`
and are read by absolute path. The package's own `config.json` (format `arsl-model/1`) sits one folder down,
in the package folder the predictor loads.

Standard library only: the console builds this layout without torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MODEL_FOLDER = "model"
PACKAGE_FOLDER = "arsl"
VERSION_FILE = "arsl_version.json"
INFERENCE_CODE = "customize_service.py"
MODEL_TYPE = "PyTorch"
DEFAULT_RUNTIME = "pytorch_1.8.0-cuda_10.2-py_3.7-ubuntu_18.04-x86_64"
"""The x86 PyTorch runtime ModelArts documents ("Obtaining the Model Runtime", ShowModelEngineAndRuntime,
the example answer of GET /v1/{project_id}/models/ai-engine-runtimes)."""

_NUMBER = {"type": "number"}

# "Specifications for Editing a Model Configuration File" (inference-modelarts-0056), Table 3-5: a model
# that is not a custom image declares exactly one API, on "/"; request and response bodies are JSON schemas.
IMAGE_IN_LABEL_OUT_API: dict[str, Any] = {
    "url": "/",
    "method": "post",
    "request": {
        "Content-type": "multipart/form-data",
        "data": {"type": "object", "properties": {"images": {"type": "file"}}},
    },
    "response": {
        "Content-type": "application/json",
        "data": {
            "type": "object",
            "required": ["predicted_label", "scores", "model_version"],
            "properties": {
                "predicted_label": {"type": "string"},
                "scores": {
                    "type": "array",
                    "items": [{"type": "array", "minItems": 2, "maxItems": 2, "items": [{"type": "string"}, _NUMBER]}],
                },
                "model_version": {"type": "string"},
            },
        },
    },
}

# Same page, Table 6-7: pip only; the runtime image brings torch. Names without versions take what pip finds.
DEPENDENCIES: list[dict[str, Any]] = [
    {"installer": "pip", "packages": [{"package_name": "numpy"}, {"package_name": "Pillow"}]}
]


def model_configuration(package_config: Mapping[str, Any], runtime: str = DEFAULT_RUNTIME) -> dict[str, Any]:
    """`model/config.json` for a package whose own configuration is `package_config`."""
    config: dict[str, Any] = {
        # Table 1: model_algorithm and model_type are mandatory; runtime picks the engine's image.
        "model_algorithm": "image_classification",
        "model_type": MODEL_TYPE,
        "runtime": runtime,
        "apis": [IMAGE_IN_LABEL_OUT_API],
        "dependencies": DEPENDENCIES,
    }
    metrics = package_config.get("metrics")
    accuracy = metrics.get("test_acc") if isinstance(metrics, Mapping) else None
    if isinstance(accuracy, int | float) and not isinstance(accuracy, bool) and 0.0 <= accuracy <= 1.0:
        # Table 2: f1, recall, precision, accuracy, each optional; the package measured accuracy.
        config["metrics"] = {"accuracy": float(accuracy)}
    return config


def inference_code() -> bytes:
    """The bytes of `customize_service.py`, read as a file (importing it would need torch)."""
    return Path(__file__).with_name(INFERENCE_CODE).read_bytes()


def _json(payload: Mapping[str, Any]) -> bytes:
    return (json.dumps(payload, indent=1, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def layout_files(
    version: str, package_id: str, package_config: Mapping[str, Any], runtime: str = DEFAULT_RUNTIME
) -> dict[str, bytes]:
    """The files of the layout besides the package's own, by path under the import folder."""
    return {
        f"{MODEL_FOLDER}/config.json": _json(model_configuration(package_config, runtime)),
        f"{MODEL_FOLDER}/{INFERENCE_CODE}": inference_code(),
        f"{MODEL_FOLDER}/{VERSION_FILE}": _json({"version": version, "package_id": package_id}),
    }


def package_path(path: str) -> str:
    """Where a package file (`config.json`, `trainer/predict.py`) goes under the import folder."""
    return f"{MODEL_FOLDER}/{PACKAGE_FOLDER}/{path}"


__all__ = [
    "DEFAULT_RUNTIME",
    "MODEL_TYPE",
    "inference_code",
    "layout_files",
    "model_configuration",
    "package_path",
]
