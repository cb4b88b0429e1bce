"""ModelArts inference code of an imported ArSL model (`model/customize_service.py` of the import layout).

ModelArts imports a PyTorch model from an OBS folder holding `model/config.json` (its model configuration)
and `model/customize_service.py` (this file), whose service class derives from `PTServingBaseService` and
overrides `__init__(model_name, model_path)`, `_preprocess`, `_inference` and `_postprocess`
("Specifications for Writing Model Inference Code", inference-modelarts-0057). The layout beside this file:

    model/config.json           ModelArts' model configuration (model_type, runtime, apis, dependencies)
    model/customize_service.py  this file
    model/arsl_version.json     {"version": "v17", "package_id": "…"}: the registry version served here
    model/arsl/                 the registered package as it is: config.json, model.safetensors, trainer/

The predictor is the package's own (`arsl/trainer/predict.py`): weights load from safetensors, nothing is
unpickled. Every answer names the version (`model_version`), so per-version figures can be told apart
behind a traffic split; a request the model cannot answer raises an error whose text names it too.

Requests, as the platform hands them over (same page): multipart/form-data as `{field: {file name: file}}`
(`curl -F images=@sign.jpg`), JSON as the decoded body (`{"images": "<base64>"}` or a list of them).

Written for the Python of ModelArts' runtimes (3.7 and later): no syntax newer than that runs here.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
import threading

try:  # ModelArts' base class; absent outside the platform, where the stand-in below runs the same hooks
    from model_service.pytorch_model_service import PTServingBaseService
except ImportError:

    class PTServingBaseService:  # type: ignore[no-redef]
        """The three hooks in the order the platform calls them, for running this file anywhere."""

        def __init__(self, model_name: str, model_path: str) -> None:
            self.model_name = model_name
            self.model_path = model_path

        def inference(self, data: object) -> object:
            return self._postprocess(self._inference(self._preprocess(data)))

        def _preprocess(self, data: object) -> object:
            return data

        def _inference(self, data: object) -> object:
            return data

        def _postprocess(self, data: object) -> object:
            return data


HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_FOLDER = "arsl"
VERSION_FILE = "arsl_version.json"
TOP_K = 5
MAX_IMAGES = 64
_IMAGE_FIELDS = ("images", "image", "file")


def read_served_version(folder: str) -> dict:
    """`arsl_version.json` beside this file: the registry version and package id of the weights."""
    with open(os.path.join(folder, VERSION_FILE), encoding="utf-8") as handle:
        found = json.load(handle)
    if not isinstance(found, dict) or not isinstance(found.get("version"), str):
        raise ValueError(f'{VERSION_FILE}: expected {{"version": "v<N>", ...}}')
    return found


def load_predictor(package_dir: str) -> object:
    """The package's own predictor (its code is imported from the package, never from elsewhere)."""
    if package_dir not in sys.path:
        sys.path.insert(0, package_dir)
    from trainer.predict import Predictor

    return Predictor.load(package_dir)


def _file_bytes(value: object) -> bytes:
    """A multipart file as the platform hands it (a file object) or already read (bytes)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    read = getattr(value, "read", None)
    if read is None:
        raise ValueError("a multipart part is neither a file nor bytes")
    data = read()
    return data if isinstance(data, bytes) else bytes(data)


def images_from(data: object) -> list:
    """The image bytes of one request, multipart (`{field: {name: file}}`) or JSON (base64 strings)."""
    if not isinstance(data, dict):
        raise ValueError("the request body must be multipart/form-data with an 'images' file or JSON")
    images = []
    for field, value in data.items():
        if isinstance(value, dict):  # multipart: every uploaded file counts, whatever its field name
            for _name, content in sorted(value.items()):
                images.append(_file_bytes(content))
        elif field in _IMAGE_FIELDS:  # JSON: one base64 string or a list of them
            encoded = value if isinstance(value, list) else [value]
            for index, item in enumerate(encoded):
                if not isinstance(item, str):
                    raise ValueError(f"'{field}'[{index}] must be a base64 string")
                try:
                    images.append(base64.b64decode(item, validate=True))
                except (binascii.Error, ValueError):
                    raise ValueError(f"'{field}'[{index}] is not valid base64") from None
    if not images:
        raise ValueError("the request holds no image (send multipart 'images=@file' or JSON {\"images\": base64})")
    if len(images) > MAX_IMAGES:
        raise ValueError(f"{len(images)} images; at most {MAX_IMAGES} per request")
    return images


class ArslSignService(PTServingBaseService):
    """Top-k ArSL labels for each image, answered with the model version."""

    def __init__(self, model_name: str, model_path: str) -> None:
        # The base class would load `model_path` as a pickled PyTorch model: this one loads safetensors itself.
        self.model_name = model_name
        self.model_path = model_path
        served = read_served_version(HERE)
        self.version = str(served["version"])
        self.package_id = str(served.get("package_id") or "")
        self.predictor = load_predictor(os.path.join(HERE, PACKAGE_FOLDER))
        # The platform may call the hooks from several threads; the predictor is one model on one device.
        self._lock = threading.Lock()

    def _fail(self, reason: str) -> ValueError:
        return ValueError(f"{self.version}: {reason}")

    def _preprocess(self, data: object) -> object:
        try:
            return images_from(data)
        except ValueError as error:
            raise self._fail(str(error)) from None

    def _inference(self, data: object) -> object:
        from trainer.predict import InvalidImage

        try:
            with self._lock:
                return self.predictor.predict(data, top_k=TOP_K)  # type: ignore[attr-defined]
        except InvalidImage as error:
            raise self._fail(str(error)) from None

    def _postprocess(self, data: object) -> object:
        results = [
            {"predicted_label": row[0].label, "scores": [[item.label, round(item.probability, 6)] for item in row]}
            for row in data  # type: ignore[attr-defined]
        ]
        answer = {"model_version": self.version, "results": results}
        if len(results) == 1:
            answer.update(results[0])
        return answer
