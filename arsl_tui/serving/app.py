"""The gateway's ASGI app (Starlette): predict, batch, health, model info, feedback, metrics, admin.

Public API (the OpenAPI document is at `/openapi.json`):

    POST /v1/predict         one image: a raw body (image/*, application/octet-stream), multipart/form-data
                             (the first file part) or JSON {"image": "<base64>"}
    POST /v1/predict/batch   several images: multipart/form-data (every file part) or JSON {"images": [...]}
    POST /v1/feedback        {"request_id": "...", "label": "ain" | 0}: the true label of an answered image
    GET  /v1/model/info      the versions served, their weights, classes and provenance
    GET  /v1/health          liveness and what is loaded (no key needed)
    GET  /metrics            Prometheus text (no key needed; the gateway listens on loopback)

The /v1 calls other than health need `X-Apig-AppCode: <key>` (401 otherwise) and are throttled per
key, per client address and overall (429 with Retry-After). Every error is JSON
`{"error": "<what is wrong>", "code": "<reason>", "request_id": "..."}`: 408 a body that arrives too
slowly (see `BodyPace`), 413 body over the cap, 415 a content type that holds no image, 422 bytes that
are no readable image or a malformed body, 503 when too many images wait already. A failing request
never affects another: each image is decoded on its own, and a forward pass that fails fails only its
own batch.

Admin API (`Authorization: Bearer <token from <home>/serving/admin.token>`; used by `arsl deploy`,
`arsl service` and the canary controller):

    GET  /admin/deployment   stable, canary, weights, loaded versions
    PUT  /admin/deployment   {"stable", "canary", "weights", "reason"}: load new versions, then switch
    PUT  /admin/weights      {"weights": {"v1": 90, "v2": 10}, "reason"}: switch traffic atomically
    GET  /admin/stats        ?window_s=300&max_samples=5000: per-version requests, errors, latency
                             samples and feedback accuracy over the last window_s seconds
    GET  /admin/shadow       ?window_s=300&max_samples=5000: where copies go, and the shadow window
                             (copies sent/dropped, agreement, both latencies, feedback on copied requests)
    PUT  /admin/shadow       {"version": "v2", "share": 100, "reason"}: copy that share of answered
                             requests to a loaded version that answers no client (share 0 stops)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arsl_tui.domain.serving import Deployment, DeploymentError
from arsl_tui.serving.auth import HEADER, KeyVerifier
from arsl_tui.serving.batching import Decoder, InferenceWorker, InvalidImage, LoadedModel, Overloaded, Scores
from arsl_tui.serving.drift import MAX_WINDOW_S, parse_report_query
from arsl_tui.serving.feedback import FeedbackError, FeedbackLedger
from arsl_tui.serving.metrics import NO_VERSION, GatewayMetrics
from arsl_tui.serving.openapi import openapi_document
from arsl_tui.serving.ratelimit import RateLimiter
from arsl_tui.serving.routing import Loader, Persist, Router, RoutingController
from arsl_tui.serving.shadow import ShadowMirror

log = logging.getLogger("arsl.gateway")

MAX_BATCH_IMAGES = 64
"""Images in one batch request (APIG-style bodies stay small; send more requests for more)."""
RAW_TYPES = ("application/octet-stream",)
MAX_STATS_SAMPLES = 100_000


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class BodyPace:
    """How slowly a request body may arrive before it is answered 408 and its connection closed.

    A client that declares a large body and trickles it would otherwise hold a connection, and a
    request slot, for as long as it likes. The rule follows a minimum rate, not a fixed total, so a
    slow but steady upload passes whatever its size: `t` seconds after the body began, at least
    `(t - grace_s) * min_bytes_per_s` bytes must have arrived, and no body takes more than `max_s`.
    """

    min_bytes_per_s: float = 16 * 1024
    grace_s: float = 10.0
    max_s: float = 600.0

    def allowed_s(self, received: int) -> float:
        """How long after its start a body that has `received` bytes so far may wait for more."""
        return min(self.grace_s + received / self.min_bytes_per_s, self.max_s)

    def refusal(self, received: int, elapsed_s: float) -> str:
        """The 408's message: which rule the body broke, and the settings that set it."""
        if self.allowed_s(received) >= self.max_s:
            return (
                f"the body took longer than {self.max_s:g} s in all ({received} bytes arrived; "
                "[gateway] body_timeout_s)"
            )
        return (
            f"the body arrived too slowly ({received} bytes in {elapsed_s:.1f} s); the gateway needs at least "
            f"{self.min_bytes_per_s / 1024:g} KB/s after the first {self.grace_s:g} s ([gateway] "
            "body_min_kb_per_s, body_grace_s)"
        )


@dataclass(frozen=True)
class GatewayLimits:
    max_body_bytes: int
    api_call_limit: int
    app_call_limit: int
    ip_call_limit: int
    time_unit: str
    max_batch: int
    max_wait_s: float
    max_queue: int
    body_pace: BodyPace = BodyPace()


class Gateway:
    """Everything a request touches, wired together; `create_app` exposes it over HTTP."""

    def __init__(
        self,
        *,
        router: Router,
        loader: Loader,
        persist: Persist,
        verifier: KeyVerifier,
        limits: GatewayLimits,
        admin_token: str,
        on_ready: Callable[[], None] | None = None,
        shadow_capacity: int = 256,
    ) -> None:
        self.router = router
        self.metrics = GatewayMetrics()
        self.controller = RoutingController(
            router, loader, persist, on_change=lambda deployment: self.metrics.set_weights(dict(deployment.weights))
        )
        self.verifier = verifier
        self.limits = limits
        self.limiter = RateLimiter(
            api_limit=limits.api_call_limit,
            app_limit=limits.app_call_limit,
            ip_limit=limits.ip_call_limit,
            time_unit=limits.time_unit,
        )
        self.worker = InferenceWorker(
            max_batch=limits.max_batch,
            max_wait_s=limits.max_wait_s,
            max_queue=limits.max_queue,
            on_batch=self.metrics.record_batch,
        )
        self.decoder = Decoder()
        self.feedback = FeedbackLedger()
        self.shadow = ShadowMirror(capacity=shadow_capacity)
        self.admin_token = admin_token.encode()
        self.on_ready = on_ready
        self.started = time.time()
        self.metrics.set_weights(dict(router.deployment.weights))

    # --- checks shared by the /v1 calls -----------------------------------------------------------

    def authenticate(self, request: Request) -> str:
        presented = request.headers.get(HEADER)
        name = self.verifier.verify(presented)
        if name is None:
            why = "missing" if not presented else "not a valid key"
            raise ApiError(
                401,
                "unauthorized",
                f"{HEADER} header {why}: send a key made with `arsl gateway keys create NAME`",
                {"WWW-Authenticate": HEADER},
            )
        return name

    def throttle(self, key_name: str, request: Request) -> None:
        address = request.client.host if request.client else None
        refusal = self.limiter.acquire(key_name, address)
        if refusal is not None:
            raise ApiError(
                429, f"rate_limited_{refusal.limit}", refusal.message, {"Retry-After": str(refusal.retry_after_s)}
            )

    def check_admin(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.admin_token):
            raise ApiError(
                401,
                "unauthorized",
                "admin calls need 'Authorization: Bearer <admin token>'",
                {"WWW-Authenticate": "Bearer"},
            )

    async def read_body(self, request: Request) -> bytes:
        cap = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise ApiError(422, "invalid_body", f"Content-Length {declared!r} is not a number") from None
            if length > cap:
                raise ApiError(
                    413,
                    "body_too_large",
                    f"the body is {length} bytes; at most {cap} bytes are accepted ([gateway] max_body_kb)",
                    {"Connection": "close"},
                )
        pace = self.limits.body_pace
        loop = asyncio.get_running_loop()
        started = loop.time()
        chunks: list[bytes] = []
        total = 0
        try:
            # One timer for the whole body, moved on by every chunk: a read that waits past it is cancelled.
            async with asyncio.timeout_at(started + pace.allowed_s(0)) as timer:
                async for chunk in request.stream():
                    total += len(chunk)
                    if total > cap:
                        raise ApiError(
                            413,
                            "body_too_large",
                            f"the body exceeds {cap} bytes ([gateway] max_body_kb)",
                            {"Connection": "close"},
                        )
                    chunks.append(chunk)
                    timer.reschedule(started + pace.allowed_s(total))
        except TimeoutError:
            raise ApiError(
                408, "body_too_slow", pace.refusal(total, loop.time() - started), {"Connection": "close"}
            ) from None
        request.state.body_read = True
        return b"".join(chunks)

    async def images(self, request: Request, body: bytes, *, several: bool) -> list[bytes]:
        """The image payloads of a predict body, by its content type."""
        content_type = request.headers.get("content-type", "")
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind.startswith("image/") or kind in RAW_TYPES:
            return [body]
        if kind == "multipart/form-data":
            return await self._multipart(request, body, several)
        if kind == "application/json":
            return self._json_images(body, several)
        shown = repr(kind) if kind else "missing"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {shown} holds no image: send the image bytes as image/jpeg, image/png or "
            "application/octet-stream, a multipart/form-data file, or JSON with base64 "
            '("image" / "images")',
        )

    async def _multipart(self, request: Request, body: bytes, several: bool) -> list[bytes]:
        async def stream() -> AsyncGenerator[bytes, None]:
            yield body

        parser = MultiPartParser(
            request.headers,
            stream(),
            max_files=MAX_BATCH_IMAGES,
            max_fields=MAX_BATCH_IMAGES,
            max_part_size=self.limits.max_body_bytes,
        )
        try:
            form = await parser.parse()
        except MultiPartException as error:
            raise ApiError(422, "invalid_multipart", f"malformed multipart/form-data body: {error}") from None
        except Exception as error:  # the parser raises assorted errors on garbage
            raise ApiError(
                422, "invalid_multipart", f"malformed multipart/form-data body ({type(error).__name__})"
            ) from None
        images = []
        try:
            for _field, value in form.multi_items():
                if isinstance(value, UploadFile):
                    images.append(await value.read())
        finally:
            await form.close()
        if not images:
            raise ApiError(
                422,
                "no_image",
                "the multipart body holds no file part (send the image as a file, e.g. curl -F image=@sign.jpg)",
            )
        return images if several else images[:1]

    @staticmethod
    def _json_images(body: bytes, several: bool) -> list[bytes]:
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ApiError(422, "invalid_json", f"the body is not valid JSON ({error})") from None
        field = "images" if several else "image"
        encoded = document.get(field) if isinstance(document, dict) else None
        if several and encoded is None and isinstance(document, dict) and isinstance(document.get("image"), str):
            encoded = [document["image"]]
        if not several:
            encoded = [encoded] if isinstance(encoded, str) else None
        if not isinstance(encoded, list) or not encoded or not all(isinstance(item, str) for item in encoded):
            example = '{"images": ["<base64>", ...]}' if several else '{"image": "<base64>"}'
            raise ApiError(422, "invalid_json", f"expected JSON {example}")
        images = []
        for index, item in enumerate(encoded):
            try:
                images.append(base64.b64decode(item, validate=True))
            except (binascii.Error, ValueError):
                raise ApiError(422, "invalid_base64", f"image {index}: not valid base64") from None
        return images

    async def decode_all(self, images: list[bytes]) -> list[np.ndarray]:
        pixels = []
        for index, data in enumerate(images):
            try:
                pixels.append(await self.decoder.decode(data))
            except InvalidImage as error:
                where = f"image {index}: " if len(images) > 1 else ""
                raise ApiError(422, "invalid_image", f"{where}{error}") from None
        return pixels

    async def classify(self, model: LoadedModel, pixels: list[np.ndarray]) -> list[Scores]:
        try:
            futures = self.worker.submit_many(model, pixels)
        except Overloaded as error:
            raise ApiError(
                503, "overloaded", f"the gateway is busy: {error}; retry shortly", {"Retry-After": "1"}
            ) from None
        self.metrics.queue_depth.set((), self.worker.depth)
        try:
            if len(futures) == 1:  # the common case: no gathering future and its callbacks per request
                return [await futures[0]]
            return list(await asyncio.gather(*futures))
        except Exception as error:
            log.exception("inference failed for %s", model.version)
            raise ApiError(
                500, "inference_failed", f"inference failed on {model.version} ({type(error).__name__})"
            ) from None

    def answer(self, model: LoadedModel, scores: Scores, request_id: str) -> dict[str, Any]:
        classes = model.classes
        top = [
            {"label": classes[index], "class_index": index, "confidence": probability} for index, probability in scores
        ]
        self.feedback.remember(request_id, model.version, scores[0][0], classes)
        return {
            "request_id": request_id,
            "model_version": model.version,
            "label": top[0]["label"],
            "class_index": top[0]["class_index"],
            "confidence": top[0]["confidence"],
            "top5": top,
        }


Handler = Callable[[Gateway, Request, "Context"], Awaitable[tuple[int, Any]]]


@dataclass
class Context:
    request_id: str
    version: str = NO_VERSION


def _error_response(error: ApiError, request_id: str) -> JSONResponse:
    headers = {"X-Request-Id": request_id, **error.headers}
    return JSONResponse(
        {"error": str(error), "code": error.reason, "request_id": request_id}, status_code=error.status, headers=headers
    )


def _body_done(request: Request) -> bool:
    """The request had no body, or the handler read all of it."""
    if getattr(request.state, "body_read", False):
        return True
    declared = request.headers.get("content-length")
    return "transfer-encoding" not in request.headers and (declared is None or declared.strip() == "0")


def _endpoint(gateway: Gateway, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint: runs `handler`, turns every failure into a JSON error, records metrics."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        context = Context(request_id=uuid.uuid4().hex)
        reason: str | None = None
        try:
            status, payload = await handler(gateway, request, context)
            response: Response = JSONResponse(payload, status_code=status, headers={"X-Request-Id": context.request_id})
        except ApiError as error:
            status, reason = error.status, error.reason
            if not _body_done(request):
                # The rest of the body would be read and dropped at the client's pace, holding the connection.
                error.headers.setdefault("Connection", "close")
            response = _error_response(error, context.request_id)
        except Exception:
            log.exception("unexpected error in %s", name)
            status, reason = 500, "internal"
            response = _error_response(
                ApiError(500, "internal", "internal error; the gateway log has details"), context.request_id
            )
        gateway.metrics.record_request(name, context.version, status, time.perf_counter() - started, reason)
        return response

    return endpoint


# --- handlers -------------------------------------------------------------------------------------


async def predict(gateway: Gateway, request: Request, context: Context) -> tuple[int, Any]:
    gateway.throttle(gateway.authenticate(request), request)
    body = await gateway.read_body(request)
    (pixels,) = await gateway.decode_all(await gateway.images(request, body, several=False))
    model = gateway.router.choose()
    context.version = model.version
    began = time.perf_counter()
    (scores,) = await gateway.classify(model, [pixels])
    champion_ms = (time.perf_counter() - began) * 1000.0
    gateway.metrics.record_inputs(model, [pixels], [scores])
    answer = gateway.answer(model, scores, context.request_id)
    gateway.shadow.offer(context.request_id, model.version, pixels, answer["label"], champion_ms)
    return 200, answer


async def predict_batch(gateway: Gateway, request: Request, context: Context) -> tuple[int, Any]:
    gateway.throttle(gateway.authenticate(request), request)
    body = await gateway.read_body(request)
    images = await gateway.images(request, body, several=True)
    if len(images) > MAX_BATCH_IMAGES:
        raise ApiError(422, "too_many_images", f"{len(images)} images; at most {MAX_BATCH_IMAGES} per request")
    pixels = await gateway.decode_all(images)
    model = gateway.router.choose()
    context.version = model.version
    began = time.perf_counter()
    results = await gateway.classify(model, pixels)
    champion_ms = (time.perf_counter() - began) * 1000.0
    gateway.metrics.record_inputs(model, pixels, results)
    answers = [gateway.answer(model, scores, f"{context.request_id}-{index}") for index, scores in enumerate(results)]
    for image, answer in zip(pixels, answers, strict=True):
        gateway.shadow.offer(answer["request_id"], model.version, image, answer["label"], champion_ms)
    return 200, {"request_id": context.request_id, "model_version": model.version, "results": answers}


async def feedback(gateway: Gateway, request: Request, context: Context) -> tuple[int, Any]:
    gateway.throttle(gateway.authenticate(request), request)
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "unsupported_media_type", 'feedback is JSON: {"request_id": "...", "label": "ain"}')
    body = await gateway.read_body(request)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("request_id"), str) or "label" not in document:
        raise ApiError(
            422,
            "invalid_feedback",
            'expected {"request_id": "<id from a prediction>", "label": "<class name>" or <class index>}',
        )
    try:
        scored = gateway.feedback.score(document["request_id"], document["label"])
    except FeedbackError as error:
        raise ApiError(error.status, error.reason, str(error)) from None
    context.version = scored.version
    gateway.metrics.record_feedback(scored.version, scored.correct)
    gateway.shadow.feedback(document["request_id"], scored.label)
    return 200, {
        "request_id": document["request_id"],
        "model_version": scored.version,
        "predicted": scored.predicted,
        "label": scored.label,
        "correct": scored.correct,
    }


def _deployment_json(gateway: Gateway) -> dict[str, Any]:
    table = gateway.router.table
    return {**table.deployment.to_json(), "versions": [model.describe() for model in table.models.values()]}


async def model_info(gateway: Gateway, request: Request, context: Context) -> tuple[int, Any]:
    gateway.throttle(gateway.authenticate(request), request)
    return 200, _deployment_json(gateway)


async def health(gateway: Gateway, request: Request, context: Context) -> tuple[int, Any]:
    deployment = gateway.router.deployment
    return 200, {
        "status": "ok",
        "weights": dict(deployment.weights),
        "stable": deployment.stable,
        "canary": deployment.canary,
        "uptime_s": round(time.time() - gateway.started, 3),
        "queue_depth": gateway.worker.depth,
    }


async def _admin_json(gateway: Gateway, request: Request) -> dict[str, Any]:
    gateway.check_admin(request)
    body = await gateway.read_body(request)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise ApiError(422, "invalid_json", "expected a JSON object")
    return document


async def admin_deployment(gateway: Gateway, request: Request, context: Context) -> tuple[int, Any]:
    if request.method == "GET":
        gateway.check_admin(request)
        return 200, _deployment_json(gateway)
    document = await _admin_json(gateway, request)
    try:
        deployment = Deployment.from_json(document, "deployment")
        await gateway.controller.deploy(deployment, str(document.get("reason") or "admin API"))
    except DeploymentError as error:
        raise ApiError(422, "invalid_deployment", str(error)) from None
    except FileNotFoundError as error:
        raise ApiError(409, "package_missing", str(error)) from None
    return 200, _deployment_json(gateway)


async def admin_weights(gateway: Gateway, request: Request, context: Context) -> tuple[int, Any]:
    document = await _admin_json(gateway, request)
    try:
        await gateway.controller.set_weights(document.get("weights") or {}, str(document.get("reason") or "admin API"))
    except DeploymentError as error:
        raise ApiError(422, "invalid_weights", str(error)) from None
    return 200, _deployment_json(gateway)


def _window_query(request: Request) -> tuple[float, int]:
    """`?window_s=300&max_samples=5000` of the stats and shadow reads, checked."""
    try:
        window_s = float(request.query_params.get("window_s", "300"))
        max_samples = int(request.query_params.get("max_samples", "5000"))
    except ValueError:
        raise ApiError(422, "invalid_query", "window_s must be a number and max_samples an integer") from None
    if not 0 < window_s <= MAX_WINDOW_S or not 0 <= max_samples <= MAX_STATS_SAMPLES:
        raise ApiError(
            422, "invalid_query", f"window_s must be in (0, {MAX_WINDOW_S}] and max_samples in [0, {MAX_STATS_SAMPLES}]"
        )
    return window_s, max_samples


async def admin_stats(gateway: Gateway, request: Request, context: Context) -> tuple[int, Any]:
    gateway.check_admin(request)
    window_s, max_samples = _window_query(request)
    deployment = gateway.router.deployment
    versions = list(dict.fromkeys([*deployment.versions, *gateway.metrics.windows]))
    stats = gateway.metrics.stats(versions, window_s, max_samples)
    return 200, {
        "window_s": window_s,
        "weights": dict(deployment.weights),
        "versions": {version: item.to_json() for version, item in stats.items()},
    }


async def admin_drift(gateway: Gateway, request: Request, context: Context) -> tuple[int, Any]:
    gateway.check_admin(request)  # ?window_s=300&low_confidence=0.5: serving/drift.py
    try:
        window_s, cutoff = parse_report_query(
            request.query_params.get("window_s"), request.query_params.get("low_confidence")
        )
    except ValueError as error:
        raise ApiError(422, "invalid_query", str(error)) from None
    return 200, gateway.metrics.drift.report(window_s, cutoff)


async def admin_shadow(gateway: Gateway, request: Request, context: Context) -> tuple[int, Any]:
    if request.method == "GET":
        gateway.check_admin(request)
        window_s, max_samples = _window_query(request)
        return 200, {**gateway.shadow.to_json(), "window": gateway.shadow.stats(window_s, max_samples).to_json()}
    document = await _admin_json(gateway, request)
    version, share = document.get("version"), document.get("share", 0)
    if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= 100:
        raise ApiError(422, "invalid_shadow", f"share {share!r}: expected a whole percentage from 0 to 100")
    if share and (not isinstance(version, str) or version not in gateway.router.table.models):
        loaded = ", ".join(gateway.router.table.models)
        raise ApiError(409, "version_not_loaded", f"copies need a loaded version: {version!r} is not one of {loaded}")
    if share and version == gateway.router.deployment.stable:
        raise ApiError(422, "invalid_shadow", f"{version} is the stable version: it answers clients already")
    serving = gateway.router.deployment.weights.get(str(version), 0)
    if share and serving:
        raise ApiError(422, "invalid_shadow", f"{version} answers clients already ({serving}%)")
    gateway.shadow.configure(version if share else None, share)
    log.info("shadow: %s (%s)", gateway.shadow.to_json(), str(document.get("reason") or "admin API"))
    return 200, gateway.shadow.to_json()


# --- the app --------------------------------------------------------------------------------------


def create_app(gateway: Gateway) -> Starlette:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        gateway.worker.start(asyncio.get_running_loop())
        # The table is swapped on every deployment change: look the version up in the current one each time.
        copies = asyncio.create_task(
            gateway.shadow.run(gateway.worker, lambda version: gateway.router.table.models.get(version))
        )
        if gateway.on_ready is not None:
            gateway.on_ready()
        try:
            yield
        finally:
            copies.cancel()
            await asyncio.gather(copies, return_exceptions=True)
            await asyncio.to_thread(gateway.worker.stop)
            gateway.decoder.close()

    def route(path: str, name: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, _endpoint(gateway, name, handler), methods=methods)

    document = json.dumps(openapi_document()).encode()

    async def openapi(_request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def metrics(_request: Request) -> Response:
        gateway.metrics.queue_depth.set((), gateway.worker.depth)
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        route("/v1/predict", "predict", predict, ["POST"]),
        route("/v1/predict/batch", "predict_batch", predict_batch, ["POST"]),
        route("/v1/feedback", "feedback", feedback, ["POST"]),
        route("/v1/model/info", "model_info", model_info, ["GET"]),
        route("/v1/health", "health", health, ["GET"]),
        route("/admin/deployment", "admin", admin_deployment, ["GET", "PUT"]),
        route("/admin/weights", "admin", admin_weights, ["PUT"]),
        route("/admin/stats", "admin", admin_stats, ["GET"]),
        route("/admin/drift", "admin", admin_drift, ["GET"]),
        route("/admin/shadow", "admin", admin_shadow, ["GET", "PUT"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "no such path; see /openapi.json" if status == 404 else f"method {request.method} not allowed here"
        return JSONResponse(
            {
                "error": f"{request.method} {request.url.path}: {message}",
                "code": "not_found" if status == 404 else "method_not_allowed",
            },
            status_code=status,
            headers=getattr(exc, "headers", None),
        )  # 405 keeps its Allow header

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_found)
    app.state.gateway = gateway
    return app


__all__ = ["ApiError", "BodyPace", "Gateway", "GatewayLimits", "create_app"]
