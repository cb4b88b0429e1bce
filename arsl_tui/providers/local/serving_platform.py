"""The `ServingPlatform` port on the local inference gateway (one service: the gateway of this home).

It drives the gateway through its control module (`serving_control`: the process record, the stored
deployment and the admin API): a deployment is loaded beside what runs and switched atomically, a
weight change is one admin call, stats come from the gateway's per-version windows. When no gateway
runs, `deploy` starts one and `set_weights` changes the stored deployment it will start with.

Errors become `ServingPlatformError`: a gateway that cannot be reached (stopped, restarting) is
transient — the canary controller retries — and a refused deployment or weight change is not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from arsl_tui.domain.ports import ModelSlot, ServingPlatformError, ServingStatus
from arsl_tui.domain.serving import Deployment, DeploymentError, VersionStats
from arsl_tui.providers.local.serving_control import LocalServingControl, ServingError

SERVICE = "gateway"
STATS_MAX_SAMPLES = 5000
ADMIN_TIMEOUT_S = 5.0
DEPLOY_TIMEOUT_S = 120.0
_REFUSAL = re.compile(r"refused \S+ \S+: (\d{3})")


class LocalServingPlatform:
    """The local gateway as a serving platform; `fetch(version)` puts a version's package where it loads it."""

    backend = "local"

    def __init__(self, control_factory: Callable[[], LocalServingControl], fetch: Callable[[str], Path]) -> None:
        self._control_factory = control_factory
        self._fetch = fetch

    def _control(self) -> LocalServingControl:
        try:
            return self._control_factory()
        except ServingError as error:
            raise ServingPlatformError(str(error), transient=True) from None

    @staticmethod
    def _check_service(service: str) -> None:
        if service != SERVICE:
            raise ServingPlatformError(f"the local backend has one service, {SERVICE!r}, not {service!r}")

    @staticmethod
    def _admin(
        control: LocalServingControl,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        # Only a deployment loads models and may take long; the rest answer at once from a live gateway, and a
        # hung one must not hold a canary tick (and the canary lock) for minutes.
        timeout_s = DEPLOY_TIMEOUT_S if (method, path) == ("PUT", "/admin/deployment") else ADMIN_TIMEOUT_S
        try:
            return control.admin(method, path, payload, params, timeout_s=timeout_s)
        except ServingError as error:
            text = str(error)
            answered = _REFUSAL.search(text)
            status = int(answered.group(1)) if answered else None
            # A 4xx means the request itself is wrong; no answer or a 5xx may pass.
            transient = status is None or status >= 500 or status == 429
            raise ServingPlatformError(text, transient=transient, status=status) from None

    def status(self, service: str = SERVICE) -> ServingStatus:
        self._check_service(service)
        control = self._control()
        try:
            record = control.running()
            if record is None:
                stored = control.state.deployment()
                if stored is None:
                    return ServingStatus(service=service, phase="absent", detail="nothing deployed")
                return ServingStatus(
                    service=service,
                    phase="stopped",
                    weights=dict(stored.weights),
                    detail="the gateway is not running (it starts with these weights)",
                )
            body = self._admin(control, "GET", "/admin/deployment")
            weights = {str(version): int(weight) for version, weight in dict(body.get("weights") or {}).items()}
            loaded = {str(item.get("version")) for item in body.get("versions") or [] if isinstance(item, dict)}
            return ServingStatus(
                service=service,
                phase="running",
                weights=weights,
                ready={version: version in loaded for version in weights},
                endpoint=record.endpoint,
            )
        finally:
            control.close()

    def endpoint(self, service: str = SERVICE) -> str | None:
        return self.status(service).endpoint

    def deploy(self, service: str, slots: Sequence[ModelSlot], reason: str = "") -> ServingStatus:
        self._check_service(service)
        try:
            stable = slots[0].version
            canary = slots[1].version if len(slots) > 1 else None
            deployment = Deployment(stable=stable, canary=canary, weights={slot.version: slot.weight for slot in slots})
        except (IndexError, DeploymentError) as error:
            raise ServingPlatformError(f"cannot deploy {list(slots)}: {error}") from None
        for version in deployment.versions:
            try:
                self._fetch(version)
            except Exception as error:  # the registry's and the store's errors: say which version
                transient = bool(getattr(error, "transient", False))
                raise ServingPlatformError(
                    f"cannot fetch the package of {version}: {error}", transient=transient
                ) from None
        control = self._control()
        try:
            why = reason or "canary controller"
            if control.running() is not None:
                self._admin(control, "PUT", "/admin/deployment", {**deployment.to_json(), "reason": why})
            else:
                control.state.save_deployment(deployment, why)
                try:
                    control.start()
                except ServingError as error:
                    raise ServingPlatformError(str(error), transient=False) from None
        finally:
            control.close()
        return self.status(service)

    def set_weights(self, service: str, weights: Mapping[str, int], reason: str = "") -> ServingStatus:
        self._check_service(service)
        control = self._control()
        try:
            why = reason or "canary controller"
            if control.running() is not None:
                self._admin(control, "PUT", "/admin/weights", {"weights": dict(weights), "reason": why})
            else:
                current = control.state.deployment()
                if current is None:
                    raise ServingPlatformError("nothing is deployed on the local gateway")
                try:
                    control.state.save_deployment(current.with_weights(weights), why)
                except DeploymentError as error:
                    raise ServingPlatformError(str(error)) from None
        finally:
            control.close()
        return self.status(service)

    def stats(self, service: str, versions: Sequence[str], window_s: float) -> dict[str, VersionStats]:
        self._check_service(service)
        control = self._control()
        try:
            body = self._admin(
                control,
                "GET",
                "/admin/stats",
                params={"window_s": max(window_s, 0.001), "max_samples": STATS_MAX_SAMPLES},
            )
        finally:
            control.close()
        found = {str(version): VersionStats.from_json(item) for version, item in dict(body["versions"]).items()}
        return {
            version: found.get(version) or VersionStats(version=version, window_s=window_s, requests=0, errors=0)
            for version in versions
        }


__all__ = ["SERVICE", "LocalServingPlatform"]
