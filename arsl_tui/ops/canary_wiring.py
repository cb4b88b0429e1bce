"""Building the canary controller for the configured backend: its service name, its serving platform
(the local gateway, or ModelArts behind API Gateway), its state store (the home's state file, or the object
store every operator's console shares: `Backend.canary_state`) and its registry; and publishing the
ModelArts service through API Gateway (`arsl gateway setup`).

The adapters come from the composition root (`arsl_tui.backends`), which imports a provider only when its
backend is chosen: the console and the CLI load no Huawei SDK otherwise.

What each backend can do for the shadow step and the probes (`shadow_capability`):

- local: the gateway mirrors copies itself (`PUT /admin/shadow`), judged per window; no probes needed
  (the gateway's stats have latency samples and feedback accuracy).
- huawei, serving "deployments": ModelArts documents traffic mirroring per deployment: "Enable traffic
  mirroring: the system replicates a fixed percentage (10%) of live traffic to the corresponding
  deployment for shadow verification, without affecting user requests" (Traffic Policies,
  https://support.huaweicloud.com/intl/id-id/inference-modelarts/inference2.0-modelarts-0089.html), set by a
  deployment's `mirror_traffic_enable` / `mirror_traffic_weight` (Updating Service Deployment
  Configurations, `PUT /v2/{project_id}/services/{service_id}/deployments/{deployment_id}`,
  https://support.huaweicloud.com/intl/ja-jp/api-modelarts/UpdateInferDeployment.html). The mirrored
  answers come back to no one, so the comparison with the champion needs the service's own logs or metrics;
  it is used when the serving adapter offers it (a platform with `set_shadow`/`shadow`/`shadow_stats`),
  otherwise the shadow step is left out, saying why.
- huawei, serving "realtime": a v1 real-time service's `config[]` is model_id, weight, specification and
  instance_count, nothing that mirrors (Updating Service Configurations, `PUT /v1/{project_id}/services/
  {service_id}`, https://support.huaweicloud.com/intl/en-us/api-modelarts/UpdateService.html), and a version
  with weight 0 cannot be addressed through the service's one URL, so no copy and no replayed probe can reach
  the challenger before it has traffic: the shadow step is left out, saying why.
  On both Huawei modes, labelled probes (`ops.probes`) give per-version latency and accuracy at each step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from arsl_tui.backends import ApiGatewayError, backend_for
from arsl_tui.domain.events import EventSink, ignore_events
from arsl_tui.domain.judge import ShadowStats
from arsl_tui.domain.ports import GatewayControl, ServingPlatform, ServingPlatformError, ServingStatus
from arsl_tui.domain.serving import ServingError, VersionStats
from arsl_tui.ops.canary import CanaryController, Probe, ShadowTap
from arsl_tui.state.canary_store import CanaryStore

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.ops.registry import ModelRegistry


class GatewaySetupError(Exception):
    """API Gateway could not be set up; the message names the call, the object and the service's answer."""


def service_name(settings: Settings) -> str:
    return backend_for(settings).service_name()


def open_serving_platform(settings: Settings, registry: ModelRegistry | Callable[[], ModelRegistry]) -> ServingPlatform:
    """The configured backend's serving platform (the Huawei SDKs are imported only when chosen).

    `registry` (or a function making it) is used only when a version's package is needed.
    """
    get_registry: Callable[[], ModelRegistry] = registry if callable(registry) else (lambda: registry)
    return backend_for(settings).serving_platform(get_registry)


def service_status(settings: Settings) -> ServingStatus:
    """The service the canary drives (`Backend.service_name()`), as its serving platform reports it now."""
    from arsl_tui.ops.registry import open_registry

    platform = open_serving_platform(settings, lambda: open_registry(settings))
    return platform.status(backend_for(settings).service_name())


PROBE_IMAGES = 32
"""Labelled probes sent before each judgement on Huawei (one per class, as `arsl api-test` sends them)."""
SHADOW_TIMEOUT_S = 5.0
REALTIME_NO_SHADOW = (
    "ModelArts real-time services have no traffic mirroring, and a version without traffic cannot be "
    "addressed: no copy can reach the challenger (labelled probes judge each step instead)"
)
DEPLOYMENTS_NO_SHADOW = (
    "ModelArts mirrors a fixed 10% to a deployment (mirror_traffic_enable), but this serving adapter does "
    "not set it: no shadow step"
)


class LocalShadowTap:
    """The local gateway's mirror, through its admin API (`PUT/GET /admin/shadow`)."""

    how = "the local gateway copies answered requests to the challenger after answering (bounded queue)"

    def __init__(self, control: Callable[[], GatewayControl]) -> None:
        self._control = control

    def _admin(
        self, method: str, payload: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        control = self._control()
        try:
            return control.admin(method, "/admin/shadow", payload, params, timeout_s=SHADOW_TIMEOUT_S)
        except ServingError as error:
            text = str(error)
            # A refusal (4xx) is the request's fault and stays; no answer or a 5xx may pass.
            refused = any(f": {code}" in text for code in range(400, 500) if code != 429)
            raise ServingPlatformError(text, transient=not refused) from None
        finally:
            control.close()

    def set_shadow(self, service: str, version: str | None, share: int, reason: str = "") -> None:
        self._admin("PUT", {"version": version, "share": share if version else 0, "reason": reason})

    def shadow(self, service: str) -> tuple[str | None, int]:
        body = self._admin("GET", params={"window_s": 1, "max_samples": 0})
        version = body.get("version") if isinstance(body, dict) else None
        return (str(version) if version else None), int(body.get("share") or 0) if isinstance(body, dict) else 0

    def shadow_stats(self, service: str, window_s: float) -> ShadowStats:
        body = self._admin("GET", params={"window_s": max(window_s, 0.001), "max_samples": 5000})
        return ShadowStats.from_json(dict(body.get("window") or {}))


def shadow_capability(
    settings: Settings, platform: Callable[[], ServingPlatform]
) -> tuple[Callable[[], ShadowTap | None] | None, str]:
    """(a factory of the backend's shadow tap, or None; why there is none), without touching the network."""
    backend = backend_for(settings)
    if backend.runs_here:
        return (lambda: LocalShadowTap(backend.gateway_control)), ""
    if settings.huawei.serving == "deployments":

        def mirrored() -> ShadowTap | None:
            made = platform()
            return made if all(hasattr(made, name) for name in ("set_shadow", "shadow", "shadow_stats")) else None  # type: ignore[return-value]

        return mirrored, DEPLOYMENTS_NO_SHADOW
    return None, REALTIME_NO_SHADOW


def huawei_probe(settings: Settings, platform: Callable[[], ServingPlatform], service: str) -> Probe:
    """Send the labelled probe set through the service (its endpoint, with the app code clients use)."""

    def probe(versions: Sequence[str]) -> Mapping[str, VersionStats]:
        import os

        import httpx

        from arsl_tui.ops.probes import httpx_sender, run_probes
        from arsl_tui.ops.serving import KEY_ENV, synthetic_images
        from arsl_tui.serving.auth import HEADER

        endpoint = platform().endpoint(service)
        if not endpoint:
            raise ServingPlatformError(f"service {service!r} has no endpoint to probe yet", transient=True)
        key = os.environ.get(KEY_ENV, "")
        with httpx.Client(trust_env=False) as client:
            send = httpx_sender({HEADER: key} if key else {}, form_field="images", client=client)
            return run_probes(endpoint, synthetic_images(PROBE_IMAGES), send).version_stats(versions)

    return probe


def open_controller(
    settings: Settings,
    *,
    platform: ServingPlatform | None = None,
    registry: ModelRegistry | None = None,
    clock: Callable[[], float] = time.time,
    events: EventSink = ignore_events,
    user: str | None = None,
) -> CanaryController:
    from arsl_tui.ops.gating import current_user
    from arsl_tui.ops.registry import ModelRegistry

    made: dict[str, ModelRegistry] = {}

    def make_registry() -> ModelRegistry:
        if "registry" not in made:
            made["registry"] = registry or ModelRegistry.from_settings(settings)
        return made["registry"]

    backend = backend_for(settings)
    # The home's state file, or (where operators share a release from several hosts) the object store.
    store = backend.canary_state()
    made_platform: dict[str, ServingPlatform] = {}

    def make_platform() -> ServingPlatform:
        if "platform" not in made_platform:
            made_platform["platform"] = platform or open_serving_platform(settings, make_registry)
        return made_platform["platform"]

    tap, unavailable = shadow_capability(settings, make_platform)
    service = backend.service_name()
    runs_here = backend.runs_here
    return CanaryController(
        settings,
        store=store,
        service=service,
        user=user or current_user(),
        platform=platform,
        registry=registry,
        registry_factory=make_registry,
        platform_factory=make_platform,
        clock=clock,
        events=events,
        shadow_tap=tap,
        shadow_unavailable=unavailable,
        probe=None if runs_here else huawei_probe(settings, make_platform, service),
    )


def gateway_setup(settings: Settings, *, platform: ServingPlatform | None = None, gateway: Any = None) -> Any:
    """Publish the ModelArts service through API Gateway (huawei backend); returns the setup report.

    The published version is recorded in the state file (`gateway_publications`), so an earlier one
    can be switched back to (`ApigGateway.rollback_to`).
    """
    backend = backend_for(settings)
    if backend.runs_here:
        raise GatewaySetupError("API Gateway setup is for the huawei backend; the local gateway needs none")
    from arsl_tui.ops.registry import ModelRegistry

    service = service_name(settings)
    try:
        platform = platform or open_serving_platform(settings, ModelRegistry.from_settings(settings))
        url = platform.endpoint(service)
    except ServingPlatformError as error:
        raise GatewaySetupError(f"cannot read service {service!r}: {error}") from None
    if not url:
        raise GatewaySetupError(
            f"service {service!r} has no prediction URL yet: start a canary or deploy it first "
            "(`arsl canary start`), then run the setup again"
        )
    try:
        report = backend.publish_service(url, gateway)
    except ApiGatewayError as error:
        raise GatewaySetupError(str(error)) from None
    store = CanaryStore.open(settings.home_dir)
    try:
        store.record_publication(report.api_id, report.env_id, report.publish_id, report.version_id, report.url)
    finally:
        store.close()
    return report


__all__ = [
    "GatewaySetupError",
    "LocalShadowTap",
    "gateway_setup",
    "huawei_probe",
    "open_controller",
    "open_serving_platform",
    "service_name",
    "shadow_capability",
]
