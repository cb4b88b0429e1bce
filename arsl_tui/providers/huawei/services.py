"""The `ServingPlatform` port on ModelArts real-time inference services, through `huaweicloudsdkmodelarts`.

One service (`[huawei] service_name`) holds one *group* (deployment) per model version, named
`arsl-<version>`, each with its share of traffic as `group_configs[].weight` (integers 0–100 that sum
to 100): the SDK's inference-service API, `create_infer_service` (`POST /v2/{project}/services`),
`update_infer_service` (`PUT /v2/{project}/services/{id}`) and `show_infer_service`. A group
serves the version's model package straight from the registry's OBS prefix (mounted into the serving
image, `[huawei] service_image`). Deployment is asynchronous: the service reports DEPLOYING, then
RUNNING (or FAILED); `status` maps that to the port's phases.

Per-version call and failure counts come from Cloud Eye (`SYS.ModelArts`, `total_called_times` and
`failed_called_times`, dimensions `service_id` + `model_id`) via `batch_list_metric_data`, summed
over the window. ModelArts publishes no per-request latency or online accuracy per version, so
those metrics are NoData to the judge on this backend (error rate and its thresholds still judge).
Which id Cloud Eye files an inference-2.0 group under as `model_id` is not documented; the group id
is used — unverified against the real service.

Credentials are always passed explicitly. Every SDK error (and the raw `requests` exceptions that
POST/PUT read timeouts leak) becomes a `ServingPlatformError` whose `transient` says whether the
controller should retry: throttling (429), 5xx, timeouts and refused connections are; 4xx are not.
A PUT that timed out may still have been applied: the controller checks the weights before trying
again, so it is never applied twice.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import huaweicloudsdkces.v1 as ces
import huaweicloudsdkmodelarts.v1 as ma
import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from arsl_tui.domain.ports import ModelSlot, ServingPlatformError, ServingStatus
from arsl_tui.domain.serving import DeploymentError, VersionStats, normalise_weights
from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing, load_credentials
from arsl_tui.providers.huawei.errors import failure_from_exception
from arsl_tui.providers.huawei.sdk_clients import (
    CallStalled,
    basic_credentials,
    build_sdk_client,
    call_deadline_s,
    call_with_deadline,
)

if TYPE_CHECKING:
    from arsl_tui.config import Settings

SERVICE = "ModelArts"
CES_SERVICE = "Cloud Eye"
GROUP_PREFIX = "arsl-"
MOUNT_PATH = "/home/mind/model"
CES_NAMESPACE = "SYS.ModelArts"
CALLS_METRIC = "total_called_times"
FAILURES_METRIC = "failed_called_times"
_GROUP = re.compile(r"^arsl-(v[1-9][0-9]*)$")
_PHASES = {
    "running": "running",
    "concerning": "running",
    "deploying": "deploying",
    "upgrading": "deploying",
    "init": "deploying",
    "failed": "failed",
    "error": "failed",
    "stopped": "stopped",
    "stopping": "stopped",
    "deleting": "stopped",
}

T = TypeVar("T")


def build_clients(
    modelarts_endpoint: str, ces_endpoint: str, credentials: Credentials, timeout_s: float
) -> tuple[Any, Any]:
    """A ModelArts and a Cloud Eye client signing with `credentials` (never the SDK's credential chain)."""
    basic = basic_credentials(credentials, "ModelArts and Cloud Eye")
    return (
        build_sdk_client(ma.ModelArtsClient, modelarts_endpoint, basic, timeout_s),
        build_sdk_client(ces.CesClient, ces_endpoint, basic, timeout_s),
    )


def group_name(version: str) -> str:
    return GROUP_PREFIX + version


def version_of(group: Any) -> str | None:
    found = _GROUP.match(str(getattr(group, "name", "") or ""))
    return found.group(1) if found else None


class ModelArtsServingPlatform:
    """Real-time services on ModelArts; thread-safe (the SDK clients are, the id cache is locked)."""

    backend = "huawei"

    def __init__(
        self,
        *,
        client: Any,
        ces_client: Any,
        settings: Settings,
        package_address: Callable[[str], str],
        secrets: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._ces = ces_client
        self._huawei = settings.huawei
        self._package_address = package_address
        self._secrets = secrets
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, *, package_address: Callable[[str], str], credentials: Credentials | None = None
    ) -> ModelArtsServingPlatform:
        try:
            credentials = credentials or load_credentials()
            client, ces_client = build_clients(
                settings.huawei.endpoint("modelarts"),
                settings.huawei.endpoint("ces"),
                credentials,
                settings.huawei.timeout_s,
            )
        except CredentialsMissing as missing:
            raise ServingPlatformError(f"cannot use ModelArts services: {missing}") from None
        return cls(
            client=client,
            ces_client=ces_client,
            settings=settings,
            package_address=package_address,
            secrets=credentials.secrets(),
        )

    # --- errors ---------------------------------------------------------------------------------

    def _call(self, service: str, operation: str, target: str, method: Callable[[Any], T], request: Any) -> T:
        # A total deadline besides the SDK's per-read timeout: a canary tick holds the canary lock while it waits.
        deadline = call_deadline_s(self._huawei.timeout_s)
        try:
            return call_with_deadline(method, request, deadline, operation)
        except CallStalled:
            raise ServingPlatformError(
                f"{service} {operation} for {target}: had not finished answering after "
                f"{deadline:g} s (it stalls or trickles its answer); the change may still "
                "have been applied (it is checked before any retry)",
                transient=True,
            ) from None
        except (SdkException, requests.exceptions.RequestException, OSError) as error:
            failure = failure_from_exception(
                error, service=service, operation=operation, target=target, secrets=self._secrets
            )
            text = f"{failure.detail} {type(error).__name__}".lower()
            message = failure.message
            if failure.status is None and ("timed out" in text or "timeout" in text):
                message = (
                    f"{service} {operation} for {target}: no answer within {self._huawei.timeout_s:g} s; "
                    "the change may still have been applied (it is checked before any retry)"
                )
            elif failure.status == 429:
                message += " — throttled: retrying later"
            raise ServingPlatformError(
                message,
                transient=failure.transient,
                status=failure.status,
                code=failure.code,
                request_id=failure.request_id,
            ) from None

    # --- finding the service --------------------------------------------------------------------

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
            if error.status == 404:
                with self._lock:
                    self._ids.pop(service, None)  # deleted behind our back: look it up again next time
            raise

    @staticmethod
    def _groups(detail: Any) -> list[Any]:
        version = getattr(detail, "version", None)
        return list(getattr(version, "instance_groups", None) or [])

    # --- the port -------------------------------------------------------------------------------

    def status(self, service: str) -> ServingStatus:
        service_id = self._service_id(service)
        if service_id is None:
            return ServingStatus(service=service, phase="absent", detail=f"no ModelArts service named {service!r}")
        detail = self._show(service, service_id)
        raw = str(getattr(detail, "status", "") or "").lower()
        weights: dict[str, int] = {}
        ready: dict[str, bool] = {}
        for group in self._groups(detail):
            version = version_of(group)
            if version is None:
                continue
            weights[version] = int(getattr(group, "weight", 0) or 0)
            ready[version] = str(getattr(group, "status", "") or "").upper() in ("RUNNING", "CONCERNING")
        why = str(getattr(detail, "failure_reason", "") or "")
        if raw == "concerning":
            why = why or "some instances are unhealthy (CONCERNING)"
        return ServingStatus(
            service=service,
            phase=_PHASES.get(raw, raw or "unknown"),
            weights=weights,
            ready=ready,
            endpoint=self._endpoint_of(detail),
            detail=why,
        )

    @staticmethod
    def _endpoint_of(detail: Any) -> str | None:
        urls = list(getattr(detail, "predict_url", None) or [])
        preferred = sorted(urls, key=lambda item: {"PUBLIC": 0, "INTERNAL": 1}.get(str(item.type or ""), 2))
        for item in preferred:
            for url in item.urls or []:
                return str(url)
        version = getattr(detail, "version", None)
        url = getattr(version, "predict_url", None)
        return str(url) if url else None

    def endpoint(self, service: str) -> str | None:
        return self.status(service).endpoint

    def _new_group(self, slot: ModelSlot) -> Any:
        if not self._huawei.service_image:
            raise ServingPlatformError(
                "[huawei] service_image is empty: set the SWR path of the serving image the model packages run in"
            )
        try:
            address = self._package_address(slot.version)
        except Exception as error:  # the registry's errors: name the version
            raise ServingPlatformError(
                f"cannot locate the package of {slot.version}: {error}",
                transient=bool(getattr(error, "transient", False)),
            ) from None
        unit = ma.UnitConfig(
            role="COMMON",
            flavor=self._huawei.service_flavor,
            image=ma.ImageInfo(source="SWR", swr_path=self._huawei.service_image),
            models=[ma.ModelResource(source="OBS", address=address, mount_path=MOUNT_PATH)],
            count=self._huawei.service_instances,
            port=self._huawei.service_port,
            envs={"ARSL_MODEL_VERSION": slot.version, "ARSL_MODEL_DIR": MOUNT_PATH},
        )
        return ma.GroupConfig(
            name=group_name(slot.version),
            weight=slot.weight,
            count=self._huawei.service_instances,
            description=f"arsl model {slot.version}",
            unit_configs=[unit],
        )

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
            body = ma.ServiceCreateRequest(
                name=service,
                description=(reason or "arsl canary")[:256],
                type="REAL_TIME",
                group_configs=[self._new_group(ModelSlot(version, weight)) for version, weight in wanted.items()],
            )
            created = self._call(
                SERVICE,
                "create_infer_service",
                f"service {service!r}",
                self._client.create_infer_service,
                ma.CreateInferServiceRequest(body=body),
            )
            if getattr(created, "id", None):
                with self._lock:
                    self._ids[service] = str(created.id)
            return self.status(service)
        existing = {version_of(group): group for group in self._groups(self._show(service, service_id))}
        configs = []
        for version, weight in wanted.items():
            group = existing.get(version)
            if group is not None:
                configs.append(ma.GroupConfig(id=group.id, name=group.name, weight=weight))
            else:
                configs.append(self._new_group(ModelSlot(version, weight)))
        # Groups left out are removed by the update: promotion serves the new champion alone.
        self._update(service, service_id, configs, reason)
        return self.status(service)

    def set_weights(self, service: str, weights: Mapping[str, int], reason: str = "") -> ServingStatus:
        wanted = self._checked(weights)
        service_id = self._service_id(service)
        if service_id is None:
            raise ServingPlatformError(f"no ModelArts service named {service!r} to change weights on")
        groups = {version_of(group): group for group in self._groups(self._show(service, service_id))}
        missing = [version for version in wanted if version not in groups]
        unnamed = [version for version in groups if version is not None and version not in wanted]
        if missing or unnamed:
            raise ServingPlatformError(
                f"weights {wanted} must name exactly the service's versions "
                f"{sorted(v for v in groups if v)} (deploy a version to add it)"
            )
        configs = [
            ma.GroupConfig(id=groups[version].id, name=groups[version].name, weight=weight)
            for version, weight in wanted.items()
        ]
        self._update(service, service_id, configs, reason)
        return self.status(service)

    def _update(self, service: str, service_id: str, configs: list[Any], reason: str) -> None:
        body = ma.ServiceUpdateRequest(group_configs=configs)
        self._call(
            SERVICE,
            "update_infer_service",
            f"service {service!r}",
            self._client.update_infer_service,
            ma.UpdateInferServiceRequest(service_id=service_id, body=body),
        )

    def stats(self, service: str, versions: Sequence[str], window_s: float) -> dict[str, VersionStats]:
        service_id = self._service_id(service)
        empty = {
            version: VersionStats(version=version, window_s=window_s, requests=0, errors=0) for version in versions
        }
        if service_id is None:
            return empty
        groups = {version_of(group): group for group in self._groups(self._show(service, service_id))}
        present = [version for version in versions if version in groups]
        if not present:
            return empty
        metrics = []
        for version in present:
            dimensions = [
                ces.MetricsDimension(name="service_id", value=service_id),
                ces.MetricsDimension(name="model_id", value=str(groups[version].id)),
            ]
            for name in (CALLS_METRIC, FAILURES_METRIC):
                metrics.append(ces.MetricInfo(namespace=CES_NAMESPACE, metric_name=name, dimensions=dimensions))
        now_ms = int(self._clock() * 1000)
        body = ces.BatchListMetricDataRequestBody(
            metrics=metrics, period="1", filter="sum", _from=now_ms - int(window_s * 1000), to=now_ms
        )
        response = self._call(
            CES_SERVICE,
            "batch_list_metric_data",
            f"{CES_NAMESPACE} of service {service!r}",
            self._ces.batch_list_metric_data,
            ces.BatchListMetricDataRequest(body=body),
        )
        by_group = {str(groups[version].id): version for version in present}
        totals: dict[tuple[str, str], float] = {}
        for series in response.metrics or []:
            dims = {str(item.name): str(item.value) for item in (series.dimensions or [])}
            found = by_group.get(dims.get("model_id", ""))
            if found is None or dims.get("service_id") != service_id:
                continue
            value = 0.0
            for point in series.datapoints or []:
                number = point.sum if point.sum is not None else point.average
                value += float(number or 0.0)
            totals[(found, str(series.metric_name))] = value
        result = dict(empty)
        for version in present:
            requests_made = round(totals.get((version, CALLS_METRIC), 0.0))
            failures = min(round(totals.get((version, FAILURES_METRIC), 0.0)), requests_made)
            result[version] = VersionStats(version=version, window_s=window_s, requests=requests_made, errors=failures)
        return result


__all__ = ["GROUP_PREFIX", "ModelArtsServingPlatform", "build_clients", "group_name", "version_of"]
