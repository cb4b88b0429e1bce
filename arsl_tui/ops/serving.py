"""Serving use cases: deploy, start, stop, status, weights, per-version stats, keys, predict, API test.

The local backend's gateway is a separate process (`arsl_tui.serving`); this module drives it through
the control the backend gives (`Backend.gateway_control`: process, state, admin API) and the model
registry (packages). The
canary controller uses `set_weights` and `version_stats`; `deploy` loads a challenger beside the
running champion without a restart. Nothing here prints; errors are `ServingError` with a message fit
to show.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arsl_tui.backends import backend_for
from arsl_tui.domain.registry import ALIASES, format_version, parse_version
from arsl_tui.domain.serving import AlreadyRunning, Deployment, ServingError, VersionStats, WrongBackend, plan_deploy
from arsl_tui.state.gateway_files import log_path, models_dir

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.domain.ports import GatewayControl, GatewayProcess
    from arsl_tui.ops.registry import ModelRegistry

KEY_ENV = "ARSL_APP_CODE"
"""Environment variable holding the key `arsl predict` / `arsl api-test` send (never a config value)."""
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


def open_control(settings: Settings) -> GatewayControl:
    """The local gateway's control; `WrongBackend` on a backend that serves elsewhere."""
    return backend_for(settings).gateway_control()


def gateway_presence(settings: Settings) -> tuple[bool, bool]:
    """(something is deployed, the gateway runs), as stored and as its process says."""
    control = open_control(settings)
    try:
        return control.state.deployment() is not None, control.running() is not None
    finally:
        control.close()


# --- deploy / start / stop / status ---------------------------------------------------------------


@dataclass(frozen=True)
class DeployOutcome:
    version: str
    deployment: Deployment
    process: GatewayProcess
    started: bool
    """True when this call started the gateway; False when it changed a running one."""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "endpoint": self.process.endpoint,
            "weights": dict(self.deployment.weights),
            "stable": self.deployment.stable,
            "canary": self.deployment.canary,
            "started": self.started,
            "pid": self.process.pid,
        }


def resolve_version(registry: ModelRegistry, name: str) -> str:
    """A version name from `v3`, `champion` or `challenger`, checked against the registry."""
    if name in ALIASES:
        version = registry.state().aliases.get(name)
        if version is None:
            raise ServingError(f"no version is {name} yet (`arsl models list` shows the versions)")
        name = version
    version = format_version(parse_version(name))
    registry.get(version)
    return version


def fetch_package(registry: ModelRegistry, home: Path, version: str) -> Path:
    """The version's package under `<home>/serving/models/<version>/`, fetched once (versions never change)."""
    target = models_dir(home) / version
    if (target / "config.json").is_file():
        return target
    staging = target.with_name(f".{version}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)  # a folder without config.json is no package: replace it
    try:
        registry.fetch_package(version, staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def deploy(
    settings: Settings, version: str, canary_percent: int | None = None, *, registry: ModelRegistry | None = None
) -> DeployOutcome:
    """Serve `version` alone, or as the canary at `canary_percent` beside the stable version.

    Starts the gateway when none runs; otherwise loads what is new beside what it serves and switches
    the weights atomically (no request is dropped).
    """
    from arsl_tui.ops.registry import ModelRegistry

    control = open_control(settings)
    try:
        registry = registry or ModelRegistry.from_settings(settings)
        version = resolve_version(registry, version)
        champion = registry.state().aliases.get("champion")
        plan = plan_deploy(control.state.deployment(), version, canary_percent, champion)
        for name in plan.versions:
            fetch_package(registry, settings.home_dir, name)
        reason = f"deploy {version}" + (f" as canary at {canary_percent}%" if canary_percent is not None else "")
        if control.running() is not None:
            control.admin("PUT", "/admin/deployment", {**plan.to_json(), "reason": reason})
            record = control.running()
            if record is not None:
                return DeployOutcome(version=version, deployment=plan, process=record, started=False)
        previous = control.state.deployment()
        control.state.save_deployment(plan, reason)
        try:
            record = control.start()
        except AlreadyRunning:
            raise  # another deploy started it meanwhile: what is stored is its business
        except ServingError:
            if previous is not None:  # what did not start must not be what the next start tries
                control.state.save_deployment(previous, f"restored: {reason} did not start")
            raise
        return DeployOutcome(version=version, deployment=plan, process=record, started=True)
    finally:
        control.close()


def start(settings: Settings) -> DeployOutcome:
    """Start the gateway on the stored deployment (the weights it last had); AlreadyRunning if it runs."""
    control = open_control(settings)
    try:
        record = control.start()
        deployment = control.state.deployment()
        assert deployment is not None
        return DeployOutcome(version=deployment.stable, deployment=deployment, process=record, started=True)
    finally:
        control.close()


def stop(settings: Settings) -> GatewayProcess | None:
    """Stop the gateway (answering the requests it holds first); None if none ran."""
    control = open_control(settings)
    try:
        return control.stop()
    finally:
        control.close()


@dataclass(frozen=True)
class ServiceStatus:
    running: bool
    process: GatewayProcess | None
    deployment: Deployment | None
    health: Mapping[str, Any] | None
    log: Path
    changes: Sequence[Mapping[str, Any]] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        deployment = self.deployment.to_json() if self.deployment else {"stable": None, "canary": None, "weights": {}}
        process = (
            self.process.to_json()
            if self.process
            else {"pid": None, "host": None, "port": None, "endpoint": None, "started_at": None}
        )
        return {
            "running": self.running,
            **process,
            **deployment,
            "health": dict(self.health) if self.health else None,
            "log": str(self.log),
            "changes": list(self.changes),
        }


def status(settings: Settings) -> ServiceStatus:
    import httpx

    control = open_control(settings)
    try:
        record = control.running()
        health: dict[str, Any] | None = None
        if record is not None:
            try:
                response = httpx.get(record.endpoint + "/v1/health", timeout=5.0, trust_env=False)
                health = response.json() if response.status_code == 200 else {"status": f"HTTP {response.status_code}"}
            except (httpx.HTTPError, ValueError) as error:
                health = {"status": f"unreachable ({type(error).__name__})"}
        return ServiceStatus(
            running=record is not None,
            process=record,
            deployment=control.state.deployment(),
            health=health,
            log=log_path(settings.home_dir),
            changes=control.state.changes(10),
        )
    finally:
        control.close()


# --- the canary controller's levers ---------------------------------------------------------------


def set_weights(settings: Settings, weights: Mapping[str, int], reason: str) -> Deployment:
    """Change the traffic split: atomically in the running gateway, else in the stored deployment."""
    control = open_control(settings)
    try:
        if control.running() is not None:
            body = control.admin("PUT", "/admin/weights", {"weights": dict(weights), "reason": reason})
            return Deployment.from_json(body, "the gateway's answer")
        current = control.state.deployment()
        if current is None:
            raise ServingError("nothing is deployed: `arsl deploy VERSION` first")
        changed = current.with_weights(weights)
        control.state.save_deployment(changed, reason)
        return changed
    finally:
        control.close()


STATS_TIMEOUT_S = 5.0
"""How long a stats read waits for the gateway: the gateway computes them in milliseconds, so one that
takes longer is hung (stopped, swapping), and a monitor round must not wait on it for minutes."""


def version_stats(
    settings: Settings, window_s: float = 300.0, max_samples: int = 5000, timeout_s: float = STATS_TIMEOUT_S
) -> dict[str, VersionStats]:
    """Per-version requests, errors, latency samples and feedback accuracy over the last `window_s` seconds.

    ServingError when the gateway is not running or does not answer within `timeout_s`.
    """
    control = open_control(settings)
    try:
        body = control.admin(
            "GET", "/admin/stats", params={"window_s": window_s, "max_samples": max_samples}, timeout_s=timeout_s
        )
    finally:
        control.close()
    return {version: VersionStats.from_json(item) for version, item in body["versions"].items()}


# --- keys -----------------------------------------------------------------------------------------


def _keys(settings: Settings) -> Any:
    from arsl_tui.serving.auth import KeyStore
    from arsl_tui.state.db import open_state

    backend_for(settings).check_gateway_here()
    return KeyStore(open_state(settings.home_dir))


def create_key(settings: Settings, name: str) -> str:
    store = _keys(settings)
    try:
        return str(store.create(name))
    finally:
        store.db.close()


def revoke_key(settings: Settings, name: str) -> dict[str, Any]:
    store = _keys(settings)
    try:
        return dict(store.revoke(name).to_json())
    finally:
        store.db.close()


def list_keys(settings: Settings) -> list[dict[str, Any]]:
    store = _keys(settings)
    try:
        return [info.to_json() for info in store.list()]
    finally:
        store.db.close()


@dataclass
class Caller:
    """Where and with which key to call a gateway; `close` deletes a throw-away key made for the call."""

    endpoint: str
    key: str
    _temporary: tuple[Settings, str] | None = None

    def close(self) -> None:
        if self._temporary is not None:
            settings, name = self._temporary
            store = _keys(settings)
            try:
                store.delete(name)
            finally:
                store.db.close()
            self._temporary = None


def caller(settings: Settings, endpoint: str | None, key: str | None, purpose: str) -> Caller:
    """The endpoint (given, or the local gateway's) and key (given, $ARSL_APP_CODE, or a throw-away one)."""
    import secrets

    key = key or os.environ.get(KEY_ENV) or None
    if endpoint is None:
        control = open_control(settings)
        try:
            record = control.running()
        finally:
            control.close()
        if record is None:
            raise ServingError("no local gateway is running: `arsl deploy VERSION` starts one, or pass --endpoint URL")
        endpoint = record.endpoint
        if key is None and settings.read_only:
            raise ServingError(f"read-only: no throw-away key can be made; pass --key KEY or set {KEY_ENV}")
        if key is None:
            name = f"{purpose}-{secrets.token_hex(4)}"
            return Caller(endpoint=endpoint, key=create_key(settings, name), _temporary=(settings, name))
    if key is None:
        raise ServingError(f"no key: pass --key KEY or set {KEY_ENV} (`arsl gateway keys create NAME` makes one)")
    return Caller(endpoint=endpoint.rstrip("/"), key=key)


# --- predict --------------------------------------------------------------------------------------


def predict_files(endpoint: str, key: str, paths: Sequence[Path], timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """POST each image to /v1/predict; one result per file: the answer, or `error` with the status."""
    import httpx

    from arsl_tui.serving.auth import HEADER

    results: list[dict[str, Any]] = []
    with httpx.Client(base_url=endpoint, timeout=timeout_s, trust_env=False) as client:
        for path in paths:
            try:
                data = Path(path).read_bytes()
            except OSError as error:
                results.append(
                    {"file": str(path), "error": f"cannot read it ({error.strerror or error})", "status": None}
                )
                continue
            content_type = CONTENT_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")
            try:
                response = client.post("/v1/predict", content=data, headers={HEADER: key, "Content-Type": content_type})
            except httpx.HTTPError as error:
                raise ServingError(f"cannot reach {endpoint} ({type(error).__name__}: {error})") from None
            try:
                body = response.json()
            except ValueError:
                body = {"error": response.text[:200]}
            if response.status_code == 200:
                results.append({"file": str(path), "status": 200, **body})
            else:
                results.append(
                    {
                        "file": str(path),
                        "status": response.status_code,
                        "error": body.get("error", str(body)) if isinstance(body, dict) else str(body),
                    }
                )
    return results


# --- api-test -------------------------------------------------------------------------------------


Sample = tuple[bytes, str | None]
"""Image bytes and the true class name (None if unknown)."""


def dataset_test_split(folder: Path, limit: int | None = None) -> list[Sample]:
    """The test split of a validated data set folder (its manifest.json), with labels."""
    from arsl_tui.domain.manifest import ManifestError, parse_manifest
    from arsl_tui.ops.dataset import MANIFEST_NAME, find_dataset_root

    root = find_dataset_root(Path(folder))
    manifest_path = root / MANIFEST_NAME
    try:
        manifest = parse_manifest(manifest_path.read_bytes(), str(manifest_path))
    except FileNotFoundError:
        raise ServingError(f"{manifest_path}: no manifest; `arsl data validate {folder}` writes it") from None
    except ManifestError as error:
        raise ServingError(str(error)) from None
    images = [image for image in manifest.images if image.split == "test"]
    if not images:
        raise ServingError(f"{manifest_path}: the manifest has no test split images")
    samples: list[Sample] = []
    for image in images[:limit]:
        try:
            samples.append(((root / image.path).read_bytes(), image.cls))
        except OSError as error:
            raise ServingError(f"{root / image.path}: cannot read it ({error.strerror or error})") from None
    return samples


def synthetic_images(count: int, seed: int = 4242) -> list[Sample]:
    """`count` labelled images from the synthetic generator, cycling through the classes."""
    from arsl_tui.domain.classes import ARSL_CLASSES
    from arsl_tui.ops.synth import encode_jpeg, render_image

    return [
        (
            encode_jpeg(render_image(seed, index % len(ARSL_CLASSES), index // len(ARSL_CLASSES))),
            ARSL_CLASSES[index % len(ARSL_CLASSES)],
        )
        for index in range(count)
    ]


def _percentile(ordered: Sequence[float], q: float) -> float | None:
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class ApiTestReport:
    endpoint: str
    requests: int
    ok: int
    statuses: Mapping[str, int]
    latency_ms: Sequence[float]
    duration_s: float
    labelled: int
    correct: int
    versions: Mapping[str, int]
    feedback_sent: int
    transport_errors: int

    @property
    def errors(self) -> int:
        return self.requests - self.ok

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def availability(self) -> float:
        return self.ok / self.requests if self.requests else 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    def percentile(self, q: float) -> float | None:
        return _percentile(sorted(self.latency_ms), q)

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.latency_ms)
        return {
            "endpoint": self.endpoint,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "availability": self.availability,
            "statuses": dict(self.statuses),
            "transport_errors": self.transport_errors,
            "latency_ms": {
                "p50": _percentile(ordered, 50),
                "p95": _percentile(ordered, 95),
                "p99": _percentile(ordered, 99),
                "max": ordered[-1] if ordered else None,
                "mean": statistics.fmean(ordered) if ordered else None,
            },
            "throughput_rps": self.requests / self.duration_s if self.duration_s > 0 else None,
            "duration_s": self.duration_s,
            "labelled": self.labelled,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "versions": dict(self.versions),
            "feedback_sent": self.feedback_sent,
        }


async def _api_test(
    endpoint: str,
    key: str,
    samples: Sequence[Sample],
    requests: int,
    concurrency: int,
    send_feedback: bool,
    timeout_s: float,
) -> ApiTestReport:
    import httpx

    from arsl_tui.serving.auth import HEADER

    statuses: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    latencies: list[float] = []
    counts = {"ok": 0, "labelled": 0, "correct": 0, "feedback": 0, "transport": 0}
    next_index = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(
        base_url=endpoint, timeout=timeout_s, limits=limits, trust_env=False, headers={HEADER: key}
    ) as client:

        async def one(index: int) -> None:
            data, label = samples[index % len(samples)]
            started = time.perf_counter()
            try:
                response = await client.post("/v1/predict", content=data, headers={"Content-Type": "image/jpeg"})
            except httpx.HTTPError as error:
                counts["transport"] += 1
                statuses[type(error).__name__] += 1
                return
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[str(response.status_code)] += 1
            if response.status_code != 200:
                return
            counts["ok"] += 1
            body = response.json()
            versions[str(body.get("model_version"))] += 1
            if label is not None:
                counts["labelled"] += 1
                counts["correct"] += int(body.get("label") == label)
                if send_feedback:
                    answer = await client.post("/v1/feedback", json={"request_id": body["request_id"], "label": label})
                    counts["feedback"] += int(answer.status_code == 200)

        async def worker() -> None:
            for index in next_index:
                await one(index)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, requests)))))
        duration = time.perf_counter() - started
    return ApiTestReport(
        endpoint=endpoint,
        requests=requests,
        ok=counts["ok"],
        statuses=dict(statuses),
        latency_ms=latencies,
        duration_s=duration,
        labelled=counts["labelled"],
        correct=counts["correct"],
        versions=dict(versions),
        feedback_sent=counts["feedback"],
        transport_errors=counts["transport"],
    )


def api_test(
    endpoint: str,
    key: str,
    samples: Sequence[Sample],
    *,
    requests: int = 200,
    concurrency: int = 8,
    send_feedback: bool = False,
    timeout_s: float = 30.0,
) -> ApiTestReport:
    """Send `requests` single-image predictions (`concurrency` at a time) and measure what came back."""
    if requests < 1 or concurrency < 1:
        raise ServingError("--requests and --concurrency must be at least 1")
    if not samples:
        raise ServingError("no test images")
    return asyncio.run(_api_test(endpoint, key, samples, requests, concurrency, send_feedback, timeout_s))


__all__ = [
    "KEY_ENV",
    "AlreadyRunning",
    "ApiTestReport",
    "Caller",
    "DeployOutcome",
    "ServiceStatus",
    "ServingError",
    "WrongBackend",
    "api_test",
    "caller",
    "create_key",
    "dataset_test_split",
    "deploy",
    "fetch_package",
    "gateway_presence",
    "list_keys",
    "predict_files",
    "resolve_version",
    "revoke_key",
    "set_weights",
    "start",
    "status",
    "stop",
    "synthetic_images",
    "version_stats",
]
