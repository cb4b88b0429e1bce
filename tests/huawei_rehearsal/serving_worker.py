"""One model instance of the real-time service stand-in: an imported package's `customize_service.py` behind HTTP.

Started by `serving_standin` as its own process per model version (the inference code imports torch), run
by path so that neither this repository nor its `trainer` package is on `sys.path`: the code that answers
is the package's own, as in ModelArts' container. What it does, after ModelArts' model-service framework
("Specifications for Writing Model Inference Code", inference-modelarts-0057,
https://support.huaweicloud.com/intl/en-us/inference-modelarts/inference-modelarts-0057.html):

- provides the base class the inference code imports (`model_service.pytorch_model_service.PTServingBaseService`);
- loads `<model dir>/customize_service.py`, finds the class derived from that base and builds it with
  `(model_name, model_path)`;
- answers `POST /` by calling the hooks in the documented order, `_preprocess` → `_inference` →
  `_postprocess`, with the request as that page describes it: multipart/form-data as
  `{field: {file name: file}}`, JSON as the decoded body;
- answers `GET /health` once the class is built, and only then prints `READY <port>` on stdout;
- ends when its stdin closes (the stand-in keeps the other end), so no instance outlives its stack.

A hook that raises answers the body "Error MR.0105 Occurred in Real-Time Service Prediction" shows
(modelarts_13_0192, https://support.huaweicloud.com/intl/en-us/trouble-modelarts/modelarts_13_0192.html);
the page gives no status code, so 400 is this stand-in's choice. The traceback goes to stderr (the log).

Standard library only besides what the inference code imports.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import json
import os
import sys
import threading
import traceback
import types
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

INFERENCE_CODE = "customize_service.py"
HOOK_FAILED = {"erno": "MR.0105", "msg": "Recognition failed", "words_result": {}}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".onnx")


class PTServingBaseService:
    """What the platform's base class gives the inference code: its constructor and the default hooks."""

    def __init__(self, model_name: str, model_path: str) -> None:
        self.model_name = model_name
        self.model_path = model_path

    def _preprocess(self, data: Any) -> Any:
        return data

    def _inference(self, data: Any) -> Any:
        return data

    def _postprocess(self, data: Any) -> Any:
        return data


def install_platform_module() -> None:
    """Make `from model_service.pytorch_model_service import PTServingBaseService` work as on the platform."""
    package = types.ModuleType("model_service")
    package.__path__ = []
    module = types.ModuleType("model_service.pytorch_model_service")
    module.PTServingBaseService = PTServingBaseService  # type: ignore[attr-defined]
    package.pytorch_model_service = module  # type: ignore[attr-defined]
    sys.modules["model_service"] = package
    sys.modules["model_service.pytorch_model_service"] = module


def model_file(model_dir: Path) -> Path:
    """The `model_path` handed to the class: the first weights file under the model folder, else the folder."""
    found = sorted(path for path in model_dir.rglob("*") if path.suffix in WEIGHT_SUFFIXES and path.is_file())
    return found[0] if found else model_dir


def load_service(model_dir: Path, model_name: str) -> Any:
    spec = importlib.util.spec_from_file_location("customize_service", model_dir / INFERENCE_CODE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {model_dir / INFERENCE_CODE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["customize_service"] = module
    spec.loader.exec_module(module)
    classes = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, PTServingBaseService)
        and value is not PTServingBaseService
        and value.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise RuntimeError(f"{INFERENCE_CODE} must define one class derived from PTServingBaseService, found {classes}")
    return classes[0](model_name, str(model_file(model_dir)))


def request_data(content_type: str, body: bytes) -> Any:
    """The request as the platform hands it to `_preprocess` (inference-modelarts-0057)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        data: dict[str, Any] = {}
        for part in message.iter_parts():
            field = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if not isinstance(field, str) or not isinstance(payload, bytes):
                continue
            filename = part.get_filename()
            if filename:
                data.setdefault(field, {})[filename] = io.BytesIO(payload)
            else:
                data[field] = payload.decode("utf-8", "replace")
        return data
    return json.loads(body or b"{}")


class WorkerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: Any) -> None:
        self.service = service
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), WorkerHandler)


class WorkerHandler(BaseHTTPRequestHandler):
    server: WorkerServer
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/health":
            # Which code answers: the test checks it is the package's own, not this repository's.
            predictor = sys.modules.get("trainer.predict")
            self._send(200, {"status": "OK", "code": getattr(predictor, "__file__", "")})
        else:
            self._send(404, {"error": "GET /health"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        service = self.server.service
        try:
            data = request_data(self.headers.get("Content-Type", ""), body)
            answer = service._postprocess(service._inference(service._preprocess(data)))
        except Exception:
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            self._send(400, HOOK_FAILED)
            return
        self._send(200, answer)

    def log_message(self, format: str, *args: Any) -> None:
        return


def _end_with_parent() -> None:
    """Exit when stdin reaches its end: the stand-in closed it, or died (no instance outlives its stack)."""
    sys.stdin.buffer.read()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model-dir", type=Path, required=True, help="the imported package's model/ folder")
    parser.add_argument("--model-name", required=True, help="the AI application's name")
    args = parser.parse_args(argv)
    install_platform_module()
    try:
        service = load_service(args.model_dir.resolve(), args.model_name)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return 3
    server = WorkerServer(service)
    threading.Thread(target=_end_with_parent, name="parent-watch", daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
