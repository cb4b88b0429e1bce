"""HTTP serving entry of a model package, for a ModelArts custom-image real-time service.

ModelArts sends requests to port 8080 of the container and checks `GET /health`. Run inside the
package folder (`model/`):

    python -m trainer.modelarts.serve --model-dir . --host 0.0.0.0 --port 8080

(in the container it must listen on all interfaces; the default host is 127.0.0.1 for local use).

Requests (`POST /` or `POST /predict`, optional `?top_k=N`, default 5):
- a raw image body (`Content-Type: image/jpeg`, `image/png` or `application/octet-stream`);
- `multipart/form-data` with one or more files (ModelArts' `curl -F 'images=@sign.jpg'` form);
- JSON `{"images": ["<base64>", ...]}` or `{"image": "<base64>"}`.
Answer: `{"results": [{"predicted_label": "ain", "scores": [["ain", 0.97], ...]}, ...]}`; for a single
image `predicted_label` and `scores` are also given at the top level (the ModelArts convention).
Errors are JSON `{"error": "..."}` with 400 (bad image or request), 404, 413 (body over the limit) or
415 (unsupported content type). Only the standard library and the package's predictor are used.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from trainer.predict import InvalidImage, PackageError, Predictor

DEFAULT_PORT = 8080
MAX_BODY_BYTES = 12 * 1024 * 1024  # ModelArts/APIG accept request bodies up to 12 MB
MAX_IMAGES = 256


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def images_from_request(content_type: str, body: bytes) -> list[bytes]:
    """The image payloads of a request body, by its content type."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            raise RequestError(HTTPStatus.BAD_REQUEST, "multipart body without parts (check the boundary)")
        images = []
        for part in message.iter_parts():
            payload = part.get_payload(decode=True)
            field = part.get_param("name", header="content-disposition")
            if isinstance(payload, bytes) and (part.get_filename() or field in ("images", "image", "file")):
                images.append(payload)
        return images
    if kind == "application/json":
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON ({error})") from None
        encoded = document.get("images") if isinstance(document, dict) else None
        if encoded is None and isinstance(document, dict) and "image" in document:
            encoded = [document["image"]]
        if not isinstance(encoded, list) or not all(isinstance(item, str) for item in encoded):
            raise RequestError(HTTPStatus.BAD_REQUEST, 'JSON must be {"images": ["<base64>", ...]}')
        try:
            return [base64.b64decode(item, validate=True) for item in encoded]
        except (binascii.Error, ValueError) as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"an image is not valid base64 ({error})") from None
    if kind.startswith("image/") or kind in ("application/octet-stream", ""):
        return [body]
    raise RequestError(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        f"content type {kind!r} is not an image, multipart/form-data or application/json",
    )


class _Handler(BaseHTTPRequestHandler):
    server: PredictorServer
    protocol_version = "HTTP/1.1"

    def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/health", "/healthz"):
            self._send(HTTPStatus.OK, {"status": "ok", "classes": len(self.server.predictor.classes)})
        elif path == "/":
            config = self.server.predictor.config
            self._send(
                HTTPStatus.OK,
                {
                    "architecture": config.get("architecture"),
                    "classes": list(self.server.predictor.classes),
                    "manifest_id": config.get("manifest_id"),
                    "metrics": config.get("metrics"),
                },
            )
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path {path!r}; use POST /predict"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        if parts.path not in ("/", "/predict"):
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path {parts.path!r}; use POST /predict"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "Content-Length is not a number"})
            return
        if length > self.server.max_body:
            self.close_connection = True
            self._send(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"body of {length} bytes exceeds the {self.server.max_body}-byte limit"},
            )
            return
        body = self.rfile.read(length)
        try:
            top_k = int(parse_qs(parts.query).get("top_k", ["5"])[0])
            images = images_from_request(self.headers.get("Content-Type", ""), body)
            if not images:
                raise RequestError(HTTPStatus.BAD_REQUEST, "the request holds no image")
            if len(images) > MAX_IMAGES:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{len(images)} images; at most {MAX_IMAGES} per request")
            with self.server.lock:
                predictions = self.server.predictor.predict(images, top_k=top_k)
        except RequestError as error:
            self._send(error.status, {"error": str(error)})
            return
        except InvalidImage as error:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(error), "index": error.index})
            return
        except ValueError:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "top_k must be an integer"})
            return
        results = [
            {"predicted_label": row[0].label, "scores": [[item.label, round(item.probability, 6)] for item in row]}
            for row in predictions
        ]
        payload: dict[str, Any] = {"results": results}
        if len(results) == 1:
            payload.update(results[0])
        self._send(HTTPStatus.OK, payload)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"serve: {self.address_string()} {format % args}\n")


class PredictorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, predictor: Predictor, host: str, port: int, max_body: int = MAX_BODY_BYTES) -> None:
        self.predictor = predictor
        self.max_body = max_body
        self.lock = threading.Lock()
        super().__init__((host, port), _Handler)


def default_model_dir() -> Path:
    """The package folder when this file runs from inside one (`model/trainer/modelarts/serve.py`)."""
    return Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.modelarts.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=default_model_dir(), help="the model package folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 inside the container)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (ModelArts expects 8080; 0 = any)")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor.load(args.model_dir)
    except PackageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        server = PredictorServer(predictor, args.host, args.port)
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port} ({error.strerror or error})", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"serving {args.model_dir} on http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
