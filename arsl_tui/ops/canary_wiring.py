"""Building the canary controller for the configured backend: its service name, its serving platform
(the local gateway, or ModelArts behind API Gateway), its store and its registry; and publishing the
ModelArts service through API Gateway (`arsl gateway setup`).

The adapters come from the composition root (`arsl_tui.backends`), which imports a provider only when its
backend is chosen: the console and the CLI load no Huawei SDK otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from arsl_tui.backends import ApiGatewayError, backend_for
from arsl_tui.domain.events import EventSink, ignore_events
from arsl_tui.domain.ports import ServingPlatform, ServingPlatformError
from arsl_tui.ops.canary import CanaryController
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

    store = CanaryStore.open(settings.home_dir)
    return CanaryController(
        settings,
        store=store,
        service=service_name(settings),
        user=user or current_user(),
        platform=platform,
        registry=registry,
        registry_factory=make_registry,
        platform_factory=lambda: open_serving_platform(settings, make_registry),
        clock=clock,
        events=events,
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


__all__ = ["GatewaySetupError", "gateway_setup", "open_controller", "open_serving_platform", "service_name"]
