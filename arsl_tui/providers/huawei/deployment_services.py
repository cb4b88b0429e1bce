"""The `ServingPlatform` port on ModelArts new-version real-time services (`[huawei] serving = "deployments"`).

New-version services run only on a dedicated resource pool ("当前新版在线服务仅支持部署在专属资源池",
migration guide inference2.0-modelarts-0080), so `[huawei] pool_id` is required. One service
(`[huawei] service_name`) holds one *deployment* per model version, named `arsl-<version>`, each with
its traffic weight (Traffic Policies, inference2.0-modelarts-0089: relative integer weights ≤ 100,
all zero = an even split over the running deployments). The calls, all generated SDK methods of
`huaweicloudsdkmodelarts` 3.1.219:

- `create_infer_service` (`POST /v2/{project}/services`, CreateInferService): the first version as the
  one element `group_configs` may hold ("group_configs的最大元素数量为1", `ServiceCreateRequest`);
- `create_infer_deployment` / `update_infer_deployment` / `delete_infer_deployment`
  (`POST|PUT|DELETE /v2/{project}/services/{service_id}/deployments[/{deployment_id}]`,
  CreateInferDeployment, UpdateInferDeployment, DeleteInferDeployment): add a version, change its
  weight (with the `priority` the deployment holds: required, and unchanged, while the service runs —
  `GroupConfigUpdateRequest.priority`), remove a version;
- `list_infer_deployments`, `show_infer_deployment`, `show_infer_service`, `list_infer_services` to read;
- `list_infer_cluster_flavors` (`GET /v2/{project}/services/flavors`, ListV2ClusterFlavors) to check
  `[huawei] service_flavor` before anything is created.

A weight change touches one deployment per call, so it is not atomic: raises are sent before cuts, so
that between two calls no version ever has a larger share than it had before or will have after.
A set of weights is compared with what each deployment holds before any call, so a change that
half-applied (or timed out after applying) is finished, never sent twice.

Per-version call and failure counts come from AOM, where new-version services publish their metrics
(inference2.0-modelarts-0026), through its Prometheus query API (`list_instant_query_aom_prom_get`,
`GET /v1/{project}/aom/api/v1/query`, ListInstantQueryAomPromGet of `huaweicloudsdkaom` v2). The
metric and label names of those series could not be read from that page: the metric names are settings
(`[huawei] aom_requests_metric`, `aom_failures_metric`), the labels `service_id` / `deployment_id`
are unverified against the real service. Latency and online accuracy are not published per version
there: they are NoData to the judge on this backend (error rate and its thresholds still judge).

Credentials are always passed explicitly. Every SDK error becomes a `ServingPlatformError` whose
`transient` says whether the controller should retry (429, 5xx, timeouts, refused connections).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import huaweicloudsdkaom.v2 as aom
import huaweicloudsdkmodelarts.v1 as ma

from arsl_tui.domain.ports import ModelSlot, ServingPlatformError, ServingStatus
from arsl_tui.domain.serving import DeploymentError, VersionStats, normalise_weights
from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing, load_credentials
from arsl_tui.providers.huawei.sdk_clients import (
    basic_credentials,
    build_sdk_client,
)
from arsl_tui.providers.huawei.serving_calls import serving_call

if TYPE_CHECKING:
    from arsl_tui.config import Settings

SERVICE = "ModelArts"
AOM_SERVICE = "AOM"
DEPLOYMENT_PREFIX = "arsl-"
MOUNT_PATH = "/home/mind/model"
SERVICE_LABEL = "service_id"
DEPLOYMENT_LABEL = "deployment_id"
PAGE_LIMIT = 500
"""The largest page ListInferDeployments and ListV2ClusterFlavors give ([1, 500])."""
_DEPLOYMENT = re.compile(r"^arsl-(v[1-9][0-9]*)$")
_PHASES = {
    "running": "running",
    "concerning": "running",
    "deploying": "deploying",
    "upgrading": "deploying",
    "restarting": "deploying",
    "init": "deploying",
    "failed": "failed",
    "error": "failed",
    "stopped": "stopped",
    "stopping": "stopped",
    "deleting": "stopped",
    "interrupting": "stopped",
}
_READY = frozenset({"RUNNING", "CONCERNING"})
_STARTING = frozenset({"DEPLOYING", "UPGRADING", "RESTARTING", "INIT"})
_BROKEN = frozenset({"FAILED", "ERROR"})

T = TypeVar("T")


def build_clients(
    modelarts_endpoint: str, aom_endpoint: str, credentials: Credentials, timeout_s: float
) -> tuple[Any, Any]:
    """A ModelArts and an AOM client signing with `credentials` (never the SDK's credential chain)."""
    basic = basic_credentials(credentials, "ModelArts and AOM")
    return (
        build_sdk_client(ma.ModelArtsClient, modelarts_endpoint, basic, timeout_s),
        build_sdk_client(aom.AomClient, aom_endpoint, basic, timeout_s),
    )


def deployment_name(version: str) -> str:
    return DEPLOYMENT_PREFIX + version


def version_of(deployment: Any) -> str | None:
    found = _DEPLOYMENT.match(str(getattr(deployment, "name", "") or ""))
    return found.group(1) if found else None


def shares(raw: Mapping[str, int], running: Sequence[str]) -> dict[str, int]:
    """Relative weights as whole percentages summing to 100 (largest remainders get the rounding).

    All zero means an even split over the running deployments (Traffic Policies, inference2.0-modelarts-0089).
    """
    total = sum(raw.values())
    if total == 0:
        basis = {version: (1 if version in running else 0) for version in raw}
        total = sum(basis.values())
        if total == 0:
            return dict.fromkeys(raw, 0)
    else:
        basis = dict(raw)
    exact = {version: 100 * weight / total for version, weight in basis.items()}
    result = {version: int(value) for version, value in exact.items()}
    left = 100 - sum(result.values())
    for version in sorted(exact, key=lambda name: result[name] - exact[name])[:left]:
        result[version] += 1
    return result


class ModelArtsDeploymentServing:
    """New-version services on a dedicated pool; thread-safe (the SDK clients are, the caches are locked)."""

    backend = "huawei"

    def __init__(
        self,
        *,
        client: Any,
        aom_client: Any,
        settings: Settings,
        package_address: Callable[[str], str],
        secrets: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._aom = aom_client
        self._huawei = settings.huawei
        self._package_address = package_address
        self._secrets = secrets
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: dict[str, str] = {}
        self._flavor_checked = False

    @classmethod
    def from_settings(
        cls, settings: Settings, *, package_address: Callable[[str], str], credentials: Credentials | None = None
    ) -> ModelArtsDeploymentServing:
        try:
            credentials = credentials or load_credentials()
            client, aom_client = build_clients(
                settings.huawei.endpoint("modelarts"),
                settings.huawei.endpoint("aom"),
                credentials,
                settings.huawei.timeout_s,
            )
        except CredentialsMissing as missing:
            raise ServingPlatformError(f"cannot use ModelArts services: {missing}") from None
        return cls(
            client=client,
            aom_client=aom_client,
            settings=settings,
            package_address=package_address,
            secrets=credentials.secrets(),
        )

    # --- errors ---------------------------------------------------------------------------------

    def _call(self, service: str, operation: str, target: str, method: Callable[[Any], T], request: Any) -> T:
        return serving_call(
            lambda: method(request),
            service=service,
            operation=operation,
            target=target,
            timeout_s=self._huawei.timeout_s,
            secrets=lambda: self._secrets,
        )

    # --- reading the service --------------------------------------------------------------------

    def _service_id(self, service: str) -> str | None:
        with self._lock:
            known = self._ids.get(service)
        if known is not None:
            return known
        response = self._call(
            SERVICE,
            "list_infer_services",
            f"services named {service!r}",
            self._client.list_infer_services,
            ma.ListInferServicesRequest(name=service),
        )
        for item in response.data or []:
            if getattr(item, "name", None) == service and getattr(item, "id", None):
                with self._lock:
                    self._ids[service] = str(item.id)
                return str(item.id)
        return None

    def _forget_on_404(self, service: str, error: ServingPlatformError) -> None:
        if error.status == 404:
            with self._lock:
                self._ids.pop(service, None)  # deleted behind our back: look it up again next time

    def _show(self, service: str, service_id: str) -> Any:
        try:
            return self._call(
                SERVICE,
                "show_infer_service",
                f"service {service!r}",
                self._client.show_infer_service,
                ma.ShowInferServiceRequest(service_id=service_id),
            )
        except ServingPlatformError as error:
            self._forget_on_404(service, error)
            raise

    def _deployments(self, service: str, service_id: str) -> dict[str, Any]:
        """{version: deployment list item} of the service's `arsl-<version>` deployments."""
        found: dict[str, Any] = {}
        offset = 0
        while True:
            try:
                page = self._call(
                    SERVICE,
                    "list_infer_deployments",
                    f"deployments of service {service!r}",
                    self._client.list_infer_deployments,
                    ma.ListInferDeploymentsRequest(service_id=service_id, limit=PAGE_LIMIT, offset=offset),
                )
            except ServingPlatformError as error:
                self._forget_on_404(service, error)
                raise
            items = list(page.data or [])
            for item in items:
                version = version_of(item)
                if version is not None:
                    found[version] = item
            offset += len(items)
            if not items or offset >= int(page.total or 0):
                return found

    # --- the port -------------------------------------------------------------------------------

    def status(self, service: str) -> ServingStatus:
        service_id = self._service_id(service)
        if service_id is None:
            return ServingStatus(service=service, phase="absent", detail=f"no ModelArts service named {service!r}")
        detail = self._show(service, service_id)
        deployments = self._deployments(service, service_id)
        raw = {version: int(getattr(item, "weight", 0) or 0) for version, item in deployments.items()}
        states = {version: _state(item) for version, item in deployments.items()}
        ready = {version: state in _READY for version, state in states.items()}
        service_state = str(getattr(detail, "status", "") or "").lower()
        phase = _PHASES.get(service_state, service_state or "unknown")
        why = str(getattr(detail, "failure_reason", "") or "")
        # A failed deployment fails the service only while it is meant to take traffic: one rolled back to 0
        # (a failed canary) leaves the champion serving, and is named in the detail.
        broken = sorted(version for version, state in states.items() if state in _BROKEN)
        starting = sorted(version for version, state in states.items() if state in _STARTING)
        if phase == "running" and any(raw[version] for version in broken):
            phase = "failed"
            why = why or "deployment " + ", ".join(deployment_name(v) for v in broken) + " failed"
        elif phase == "running" and broken and not starting:
            why = why or "deployment " + ", ".join(deployment_name(v) for v in broken) + " failed (it has no traffic)"
        elif phase == "running" and starting:
            phase = "deploying"
            why = why or "deployment " + ", ".join(deployment_name(v) for v in starting) + " is starting"
        elif service_state == "concerning":
            why = why or "some instances are unhealthy (CONCERNING)"
        return ServingStatus(
            service=service,
            phase=phase,
            weights=shares(raw, [version for version, up in ready.items() if up]),
            ready=ready,
            endpoint=self._endpoint_of(detail),
            detail=why,
            platform_id=service_id,
        )

    @staticmethod
    def _endpoint_of(detail: Any) -> str | None:
        urls = list(getattr(detail, "predict_url", None) or [])
        preferred = sorted(urls, key=lambda item: {"PUBLIC": 0, "INTERNAL": 1}.get(str(item.type or ""), 2))
        for item in preferred:
            for url in item.urls or []:
                return str(url)
        return None

    def endpoint(self, service: str) -> str | None:
        # The service's own record holds the address; its deployments (a second call) do not matter here.
        service_id = self._service_id(service)
        return None if service_id is None else self._endpoint_of(self._show(service, service_id))

    @staticmethod
    def _checked(weights: Mapping[str, int]) -> dict[str, int]:
        try:
            return normalise_weights(weights)
        except DeploymentError as error:
            raise ServingPlatformError(str(error)) from None

    def deploy(self, service: str, slots: Sequence[ModelSlot], reason: str = "") -> ServingStatus:
        wanted = self._checked({slot.version: slot.weight for slot in slots})
        service_id = self._service_id(service)
        if service_id is None:
            first, *others = wanted.items()
            body = ma.ServiceCreateRequest(
                name=service,
                # At most 512 characters and no '<' or '>' (ServiceCreateRequest.description).
                description=(reason or "arsl canary").replace("<", "(").replace(">", ")")[:512],
                type="REAL_TIME",
                group_configs=[self._new_deployment(*first)],
            )
            created = self._call(
                SERVICE,
                "create_infer_service",
                f"service {service!r}",
                self._client.create_infer_service,
                ma.CreateInferServiceRequest(body=body),
            )
            service_id = str(getattr(created, "id", "") or "") or self._service_id(service)
            if not service_id:
                raise ServingPlatformError(f"ModelArts created service {service!r} but reported no id", transient=True)
            with self._lock:
                self._ids[service] = service_id
            for version, weight in others:
                self._add(service, service_id, version, weight)
            return self.status(service)
        existing = self._deployments(service, service_id)
        # A version whose deployment failed (an earlier canary of it) is deployed afresh, not re-weighted:
        # a failed deployment never starts again by itself.
        for version in [v for v in wanted if v in existing and _state(existing[v]) in _BROKEN]:
            self._delete(service, service_id, version, existing.pop(version))
        for version, weight in wanted.items():
            if version not in existing:
                self._add(service, service_id, version, weight)
        self._reweigh(service, service_id, existing, {v: w for v, w in wanted.items() if v in existing})
        # Versions left out lose their deployment: promotion serves the new champion alone.
        for version, item in existing.items():
            if version not in wanted:
                self._delete(service, service_id, version, item)
        return self.status(service)

    def set_weights(self, service: str, weights: Mapping[str, int], reason: str = "") -> ServingStatus:
        wanted = self._checked(weights)
        service_id = self._service_id(service)
        if service_id is None:
            raise ServingPlatformError(f"no ModelArts service named {service!r} to change weights on")
        existing = self._deployments(service, service_id)
        if set(wanted) != set(existing):
            raise ServingPlatformError(
                f"weights {wanted} must name exactly the service's versions {sorted(existing)} "
                "(deploy a version to add it)"
            )
        self._reweigh(service, service_id, existing, wanted)
        return self.status(service)

    # --- changes --------------------------------------------------------------------------------

    def _reweigh(self, service: str, service_id: str, existing: Mapping[str, Any], wanted: Mapping[str, int]) -> None:
        """PUT each deployment whose weight differs: raises first, then cuts (see the module's docstring)."""
        changes = [
            (version, weight)
            for version, weight in wanted.items()
            if int(getattr(existing[version], "weight", 0) or 0) != weight
        ]
        changes.sort(key=lambda change: change[1] < int(getattr(existing[change[0]], "weight", 0) or 0))
        for version, weight in changes:
            deployment_id = str(existing[version].id)
            target = f"deployment {deployment_name(version)!r} of service {service!r}"
            # `priority` is required while the service runs and must stay what the deployment holds
            # (GroupConfigUpdateRequest.priority, UpdateInferDeployment): read it rather than assume it.
            held = self._call(
                SERVICE,
                "show_infer_deployment",
                target,
                self._client.show_infer_deployment,
                ma.ShowInferDeploymentRequest(service_id=service_id, deployment_id=deployment_id),
            )
            priority = getattr(held, "priority", None) or self._huawei.service_priority
            self._call(
                SERVICE,
                "update_infer_deployment",
                target,
                self._client.update_infer_deployment,
                ma.UpdateInferDeploymentRequest(
                    service_id=service_id,
                    deployment_id=deployment_id,
                    body=ma.GroupConfigUpdateRequest(weight=weight, priority=int(priority)),
                ),
            )

    def _add(self, service: str, service_id: str, version: str, weight: int) -> None:
        self._call(
            SERVICE,
            "create_infer_deployment",
            f"deployment {deployment_name(version)!r} of service {service!r}",
            self._client.create_infer_deployment,
            ma.CreateInferDeploymentRequest(service_id=service_id, body=self._new_deployment(version, weight)),
        )

    def _delete(self, service: str, service_id: str, version: str, deployment: Any) -> None:
        self._call(
            SERVICE,
            "delete_infer_deployment",
            f"deployment {deployment_name(version)!r} of service {service!r}",
            self._client.delete_infer_deployment,
            ma.DeleteInferDeploymentRequest(service_id=service_id, deployment_id=str(deployment.id)),
        )

    def _new_deployment(self, version: str, weight: int) -> Any:
        if not self._huawei.pool_id:
            raise ServingPlatformError(
                '[huawei] pool_id is empty: new-version services (serving = "deployments") run only on a '
                "dedicated resource pool; set the id of a pool whose job types include model deployment"
            )
        if not self._huawei.service_image:
            raise ServingPlatformError(
                "[huawei] service_image is empty: set the SWR path of the serving image the model packages run in"
            )
        self._check_flavor()
        try:
            address = self._package_address(version)
        except Exception as error:  # the registry's errors: name the version
            raise ServingPlatformError(
                f"cannot locate the package of {version}: {error}",
                transient=bool(getattr(error, "transient", False)),
            ) from None
        # `models` is marked deprecated in favour of `files` in UnitConfig, but still documented and accepted.
        unit = ma.UnitConfig(
            role="COMMON",
            flavor=self._huawei.service_flavor,
            image=ma.ImageInfo(source="SWR", swr_path=self._huawei.service_image),
            models=[ma.ModelResource(source="OBS", address=address, mount_path=MOUNT_PATH)],
            count=self._huawei.service_instances,
            port=self._huawei.service_port,
            envs={"ARSL_MODEL_VERSION": version, "ARSL_MODEL_DIR": MOUNT_PATH},
        )
        return ma.GroupConfig(
            name=deployment_name(version),
            pool_id=self._huawei.pool_id,
            weight=weight,
            priority=self._huawei.service_priority,
            count=self._huawei.service_instances,
            description=f"arsl model {version}",
            unit_configs=[unit],
        )

    def _check_flavor(self) -> None:
        """Refuse a flavor ModelArts does not list, naming the ones it does (checked once per platform)."""
        with self._lock:
            if self._flavor_checked:
                return
        names: list[str] = []
        offset = 0
        while True:
            page = self._call(
                SERVICE,
                "list_infer_cluster_flavors",
                "inference flavors",
                self._client.list_infer_cluster_flavors,
                ma.ListInferClusterFlavorsRequest(limit=PAGE_LIMIT, offset=offset),
            )
            items = list(page.data or [])
            names += [str(item.name) for item in items if getattr(item, "name", None)]
            offset += len(items)
            if not items or offset >= int(page.total or 0):
                break
        if self._huawei.service_flavor not in names:
            raise ServingPlatformError(
                f"[huawei] service_flavor {self._huawei.service_flavor!r} is not an inference flavor ModelArts "
                f"lists; valid: {', '.join(sorted(names)) or 'none listed'}"
            )
        with self._lock:
            self._flavor_checked = True

    # --- evidence -------------------------------------------------------------------------------

    def stats(self, service: str, versions: Sequence[str], window_s: float) -> dict[str, VersionStats]:
        empty = {
            version: VersionStats(version=version, window_s=window_s, requests=0, errors=0) for version in versions
        }
        service_id = self._service_id(service)
        if service_id is None:
            return empty
        deployments = self._deployments(service, service_id)
        by_id = {str(item.id): version for version, item in deployments.items() if version in versions}
        if not by_id:
            return empty
        now_s = int(self._clock())
        calls = self._increase(self._huawei.aom_requests_metric, service_id, window_s, now_s)
        failures = self._increase(self._huawei.aom_failures_metric, service_id, window_s, now_s)
        result = dict(empty)
        for deployment_id, version in by_id.items():
            made = round(calls.get(deployment_id, 0.0))
            failed = min(round(failures.get(deployment_id, 0.0)), made)
            result[version] = VersionStats(version=version, window_s=window_s, requests=made, errors=failed)
        return result

    def _increase(self, metric: str, service_id: str, window_s: float, at_s: int) -> dict[str, float]:
        """{deployment id: increase of counter `metric` over the window ending at `at_s`} from AOM."""
        seconds = max(1, round(window_s))
        query = (
            f'sum by ({DEPLOYMENT_LABEL}) (increase({metric}{{{SERVICE_LABEL}="{_quoted(service_id)}"}}[{seconds}s]))'
        )
        response = self._call(
            AOM_SERVICE,
            "list_instant_query_aom_prom_get",
            f"{metric} of service {service_id}",
            self._aom.list_instant_query_aom_prom_get,
            aom.ListInstantQueryAomPromGetRequest(query=query, time=str(at_s)),
        )
        data = getattr(response, "data", None)
        results = data.get("result") if isinstance(data, dict) else None
        found: dict[str, float] = {}
        for series in results if isinstance(results, list) else []:
            labels = series.get("metric") or {}
            value = series.get("value") or []
            deployment_id = labels.get(DEPLOYMENT_LABEL)
            if deployment_id is None or len(value) != 2:
                continue
            try:
                number = float(value[1])
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):  # Prometheus writes "NaN" for a series with too few samples
                found[str(deployment_id)] = number
        return found


def _state(deployment: Any) -> str:
    return str(getattr(deployment, "status", "") or "").upper()


def _quoted(text: str) -> str:
    """`text` safe inside a PromQL double-quoted label value."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


__all__ = [
    "DEPLOYMENT_PREFIX",
    "ModelArtsDeploymentServing",
    "build_clients",
    "deployment_name",
    "shares",
    "version_of",
]
