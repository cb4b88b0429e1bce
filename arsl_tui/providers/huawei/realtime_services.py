"""The `ServingPlatform` port on ModelArts real-time services (the v1 service API): `[huawei] serving = "realtime"`.

This is the serving ModelArts documents for public resource pools (and old or elastic dedicated pools): one
real-time service (`[huawei] service_name`) whose `config[]` holds one entry per model version, each an
imported AI application (`model_id`) with its share of traffic as `weight`, the weights summing to 100 —
what the console calls a gated launch. Versions and weights change with one `PUT` of the whole `config[]`.
Every entry carries the version in its `envs` (`ARSL_MODEL_VERSION`), so the service's own answer says
which entry is which version.

Operations, from ModelArts' API reference (the SDK 3.1.219 has no route for them, so `rest.rest_json` sends
them through an SDK client's signing and transport):
- `POST /v1/{project_id}/services` (CreateService, "Deploying Services", modelarts_03_0082),
- `PUT /v1/{project_id}/services/{service_id}` (UpdateService, modelarts_03_0086): config only, never with
  `status` ("Either status or config can be modified. If both of them are used, modify status only."),
- `GET /v1/{project_id}/services/{service_id}` (ShowService), `GET /v1/{project_id}/services?service_name=`
  (ListServices; the name filter is not documented as exact, so the answer is filtered again here),
- `GET /v1/{project_id}/services/specifications` (ShowServiceSpecifications): the configured specification is
  checked before its first use; an unknown or unopened one stops with the list of those that can be used,
- app authentication ("Accessing a Real-Time Service Through App Authentication", inference-modelarts-0025;
  "App Authentication Management" APIs): with `[huawei] service_auth = "app"` the service gets an
  app-auth API authorised to the app `[huawei] service_app_id` (CreateAndAuthAppAuthApi
  `POST …/services/{service_id}/app-auth-api`, or AuthorizeApiToApigApps for an existing API, found with
  GetAppAuthApisInfo and GetServiceAppAuthApiAuthInfo), and the endpoint reported is that API's address
  (clients send `X-Apig-AppCode`). With `"token"` it is the service's `access_address` (IAM token / AK-SK).

Per-version calls and failures come from Cloud Eye (`SYS.ModelArts` `total_called_times` and
`failed_called_times`, dimensions `service_id` + `model_id`: "ModelArts Metrics", modelarts_23_0187), which
are documented for real-time services with the real model ids that `config[]` holds. ModelArts publishes no
per-request latency or online accuracy per version, so those are NoData to the judge here.

Errors become `ServingPlatformError`s exactly as in the new-version adapter: throttling, 5xx, timeouts and
refused connections are transient; other 4xx are not. A PUT that timed out may still have been applied: the
controller checks the weights before trying again, so it is never applied twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import huaweicloudsdkces.v1 as ces
import huaweicloudsdkmodelarts.v1 as ma

from arsl_tui.domain.ports import ModelSlot, ServingPlatformError, ServingStatus
from arsl_tui.domain.serving import DeploymentError, VersionStats, normalise_weights
from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing, load_credentials
from arsl_tui.providers.huawei.rest import rest_json
from arsl_tui.providers.huawei.sdk_clients import (
    basic_credentials,
    build_sdk_client,
)
from arsl_tui.providers.huawei.serving_calls import serving_call

if TYPE_CHECKING:
    from arsl_tui.config import Settings

SERVICE = "ModelArts"
CES_SERVICE = "Cloud Eye"
VERSION_ENV = "ARSL_MODEL_VERSION"
"""Set in each `config[]` entry's `envs`: which model version the entry serves."""
CES_NAMESPACE = "SYS.ModelArts"
CALLS_METRIC = "total_called_times"
FAILURES_METRIC = "failed_called_times"
SERVICES_PATH = "/v1/{project_id}/services"
SERVICE_PATH = "/v1/{project_id}/services/{service_id}"
SPECIFICATIONS_PATH = "/v1/{project_id}/services/specifications"
APP_AUTH_APIS_PATH = "/v1/{project_id}/services/{service_id}/app-auth-apis"
CREATE_APP_AUTH_API_PATH = "/v1/{project_id}/services/{service_id}/app-auth-api"
API_AUTHS_PATH = "/v1/{project_id}/services/{service_id}/api-auths"
AUTHORIZE_API_PATH = "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}/app-auth-api"
MAX_DESCRIPTION = 100
# CreateService forbids !<>+&"' in a description and UpdateService <>=&"': a reason is stripped of all of them.
_DESCRIPTION_FORBIDDEN = str.maketrans({character: " " for character in "!<>+&=\"'"})
# ShowService.status → the port's phases.
_PHASES = {
    "running": "running",
    "concerning": "running",
    "deploying": "deploying",
    "pending": "deploying",
    "waiting": "deploying",
    "failed": "failed",
    "stopped": "stopped",
    "stopping": "stopped",
    "deleting": "stopped",
    "finished": "stopped",
}
_READY = frozenset({"running", "concerning", "ready"})

T = TypeVar("T")


def build_clients(
    modelarts_endpoint: str, ces_endpoint: str, credentials: Credentials, timeout_s: float
) -> tuple[Any, Any]:
    """A ModelArts client (its signing and transport carry the v1 calls) and a Cloud Eye client."""
    basic = basic_credentials(credentials, "ModelArts and Cloud Eye")
    return (
        build_sdk_client(ma.ModelArtsClient, modelarts_endpoint, basic, timeout_s),
        build_sdk_client(ces.CesClient, ces_endpoint, basic, timeout_s),
    )


def description_from(reason: str) -> str:
    """A reason as a service description the documented rules accept (≤ 100 characters, no forbidden ones)."""
    return " ".join((reason or "arsl canary").translate(_DESCRIPTION_FORBIDDEN).split())[:MAX_DESCRIPTION]


class RealtimeServingPlatform:
    """Real-time services on ModelArts (v1 API); thread-safe (the SDK clients are, the caches are locked)."""

    backend = "huawei"

    def __init__(
        self,
        *,
        client: Any,
        ces_client: Any,
        settings: Settings,
        model_id: Callable[[str], str],
        secrets: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._ces = ces_client
        self._huawei = settings.huawei
        self._model_id = model_id
        self._secrets = secrets
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: dict[str, str] = {}
        self._versions_by_model: dict[str, str] = {}
        self._app_urls: dict[str, str] = {}
        self._specification_checked = False

    @classmethod
    def from_settings(
        cls, settings: Settings, *, model_id: Callable[[str], str], credentials: Credentials | None = None
    ) -> RealtimeServingPlatform:
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
            model_id=model_id,
            secrets=credentials.secrets(),
        )

    # --- calls and their errors -----------------------------------------------------------------

    def _call(self, service: str, operation: str, target: str, send: Callable[[], T]) -> T:
        return serving_call(
            send,
            service=service,
            operation=operation,
            target=target,
            timeout_s=self._huawei.timeout_s,
            secrets=lambda: self._secrets,
        )

    def _rest(
        self,
        operation: str,
        target: str,
        method: str,
        path: str,
        *,
        path_params: Mapping[str, str] | None = None,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
    ) -> dict[str, Any]:
        answer = self._call(
            SERVICE,
            operation,
            target,
            lambda: rest_json(self._client, method, path, path_params=path_params, query=query, body=body),
        )
        return answer if isinstance(answer, dict) else {}

    # --- finding the service --------------------------------------------------------------------

    def _service_id(self, service: str) -> str | None:
        with self._lock:
            known = self._ids.get(service)
        if known is not None:
            return known
        answer = self._rest(
            "ListServices", f"services named {service!r}", "GET", SERVICES_PATH, query=[("service_name", service)]
        )
        for item in answer.get("services") or []:
            if isinstance(item, dict) and item.get("service_name") == service and item.get("service_id"):
                with self._lock:
                    self._ids[service] = str(item["service_id"])
                return str(item["service_id"])
        return None

    def _show(self, service: str, service_id: str) -> dict[str, Any]:
        try:
            return self._rest(
                "ShowService", f"service {service!r}", "GET", SERVICE_PATH, path_params={"service_id": service_id}
            )
        except ServingPlatformError as error:
            if error.status == 404:
                with self._lock:  # deleted behind our back: look it up again next time
                    self._ids.pop(service, None)
                    self._app_urls.pop(service_id, None)
            raise

    def _entries(self, detail: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """{version: config entry} of the versions the service holds (entries of unknown versions left out)."""
        found: dict[str, dict[str, Any]] = {}
        for entry in detail.get("config") or []:
            if not isinstance(entry, dict):
                continue
            envs = entry.get("envs") if isinstance(entry.get("envs"), dict) else {}
            version = envs.get(VERSION_ENV) if envs else None
            if not version:
                with self._lock:
                    version = self._versions_by_model.get(str(entry.get("model_id", "")))
            if version:
                found[str(version)] = entry
        return found

    # --- the port -------------------------------------------------------------------------------

    def status(self, service: str) -> ServingStatus:
        service_id = self._service_id(service)
        if service_id is None:
            return ServingStatus(service=service, phase="absent", detail=f"no ModelArts service named {service!r}")
        detail = self._show(service, service_id)
        raw = str(detail.get("status") or "").lower()
        phase = _PHASES.get(raw, raw or "unknown")
        weights: dict[str, int] = {}
        ready: dict[str, bool] = {}
        for version, entry in self._entries(detail).items():
            weights[version] = _weight(entry.get("weight"))
            state = str(entry.get("status") or "").lower()
            ready[version] = state in _READY if state else phase == "running"
        why = str(detail.get("error_msg") or "")
        if raw == "concerning":
            why = why or "some instances are unhealthy (concerning)"
        return ServingStatus(
            service=service,
            phase=phase,
            weights=weights,
            ready=ready,
            endpoint=self._endpoint_of(service_id, detail),
            detail=why,
            platform_id=service_id,
        )

    def _endpoint_of(self, service_id: str, detail: Mapping[str, Any]) -> str | None:
        if self._huawei.service_auth == "app":
            with self._lock:
                known = self._app_urls.get(service_id)
            if known is not None:
                return known
            api = self._app_auth_api(service_id)
            return str(api["predict_url"]) if api and api.get("predict_url") else None
        address = detail.get("access_address")
        return str(address) if address else None

    def endpoint(self, service: str) -> str | None:
        return self.status(service).endpoint

    @staticmethod
    def _checked(weights: Mapping[str, int]) -> dict[str, int]:
        try:
            return normalise_weights(weights)
        except DeploymentError as error:
            raise ServingPlatformError(str(error)) from None

    def _require_app(self) -> None:
        if self._huawei.service_auth == "app" and not self._huawei.service_app_id:
            raise ServingPlatformError(
                '[huawei] service_app_id is empty: with service_auth = "app" clients call the service through '
                "a ModelArts app (create one under Real-Time Services > Authorize and set its id), or set "
                '[huawei] service_auth = "token" to call it with IAM tokens'
            )

    def _model_of(self, version: str) -> str:
        try:
            found = str(self._model_id(version))
        except ServingPlatformError:
            raise
        except Exception as error:  # the importer's errors: name the version
            raise ServingPlatformError(
                f"cannot find the ModelArts AI application of {version}: {error}",
                transient=bool(getattr(error, "transient", False)),
            ) from None
        with self._lock:
            self._versions_by_model[found] = version
        return found

    def check_specification(self) -> None:
        """Stop with the usable specifications unless `[huawei] service_specification` is one of them."""
        with self._lock:
            if self._specification_checked:
                return
        wanted = self._huawei.service_specification
        query = [("infer_type", "real-time")]
        if self._huawei.pool_id:
            query.append(("is_personal_cluster", "true"))
        answer = self._rest(
            "ShowServiceSpecifications", "real-time specifications", "GET", SPECIFICATIONS_PATH, query=query
        )
        offered = [item for item in answer.get("specifications") or [] if isinstance(item, dict)]
        usable = sorted(str(item.get("specification")) for item in offered if item.get("is_open", True))
        if wanted not in usable:
            closed = any(item.get("specification") == wanted for item in offered)
            why = "is not open to this account (a service ticket opens it)" if closed else "is not offered"
            raise ServingPlatformError(
                f"[huawei] service_specification {wanted!r} {why} for real-time services"
                f"{' in a dedicated pool' if self._huawei.pool_id else ''}; usable: {', '.join(usable) or 'none'}"
            )
        with self._lock:
            self._specification_checked = True

    def _new_entry(self, version: str, weight: int) -> dict[str, Any]:
        return {
            "model_id": self._model_of(version),
            "weight": weight,
            "specification": self._huawei.service_specification,
            "instance_count": self._huawei.service_instances,
            "envs": {VERSION_ENV: version},
        }

    @staticmethod
    def _kept_entry(entry: Mapping[str, Any], version: str, weight: int) -> dict[str, Any]:
        """An entry the service holds, with a new weight: its model, specification and instances unchanged."""
        kept: dict[str, Any] = {
            "model_id": str(entry.get("model_id")),
            "weight": weight,
            "specification": str(entry.get("specification")),
            "instance_count": int(entry.get("instance_count") or 1),
            "envs": {**dict(entry.get("envs") or {}), VERSION_ENV: version},
        }
        if entry.get("custom_spec"):
            kept["custom_spec"] = entry["custom_spec"]
        return kept

    def deploy(self, service: str, slots: Sequence[ModelSlot], reason: str = "") -> ServingStatus:
        wanted = self._checked({slot.version: slot.weight for slot in slots})
        self._require_app()
        service_id = self._service_id(service)
        if service_id is None:
            self.check_specification()
            body: dict[str, Any] = {
                "service_name": service,
                "description": description_from(reason),
                "infer_type": "real-time",
                "config": [self._new_entry(version, weight) for version, weight in wanted.items()],
            }
            if self._huawei.pool_id:
                body["pool_name"] = self._huawei.pool_id
            created = self._rest("CreateService", f"service {service!r}", "POST", SERVICES_PATH, body=body)
            service_id = str(created.get("service_id") or "") or None
            if service_id is None:
                raise ServingPlatformError(f"ModelArts CreateService for service {service!r} answered no service_id")
            with self._lock:
                self._ids[service] = service_id
        else:
            held = self._entries(self._show(service, service_id))
            if any(version not in held for version in wanted):
                self.check_specification()
            config = [
                self._kept_entry(held[version], version, weight)
                if version in held
                else self._new_entry(version, weight)
                for version, weight in wanted.items()
            ]
            # Entries left out are removed by the update: promotion serves the new champion alone.
            self._update(service, service_id, config)
        self._ensure_app_auth(service, service_id)
        return self.status(service)

    def set_weights(self, service: str, weights: Mapping[str, int], reason: str = "") -> ServingStatus:
        wanted = self._checked(weights)
        service_id = self._service_id(service)
        if service_id is None:
            raise ServingPlatformError(f"no ModelArts service named {service!r} to change weights on")
        held = self._entries(self._show(service, service_id))
        if set(wanted) != set(held):
            raise ServingPlatformError(
                f"weights {wanted} must name exactly the service's versions {sorted(held)} (deploy a version to add it)"
            )
        self._update(
            service,
            service_id,
            [self._kept_entry(held[version], version, weight) for version, weight in wanted.items()],
        )
        return self.status(service)

    def _update(self, service: str, service_id: str, config: list[dict[str, Any]]) -> None:
        self._rest(
            "UpdateService",
            f"service {service!r}",
            "PUT",
            SERVICE_PATH,
            path_params={"service_id": service_id},
            body={"config": config},
        )

    # --- app authentication ---------------------------------------------------------------------

    def _app_auth_api(self, service_id: str) -> dict[str, Any] | None:
        """The service's app-auth API (GetAppAuthApisInfo), cached once found."""
        answer = self._rest(
            "GetAppAuthApisInfo",
            f"app-auth APIs of service {service_id}",
            "GET",
            APP_AUTH_APIS_PATH,
            path_params={"service_id": service_id},
        )
        for api in answer.get("apis") or []:
            if isinstance(api, dict) and api.get("auth_type") == "APP" and api.get("api_id"):
                if api.get("predict_url"):
                    with self._lock:
                        self._app_urls[service_id] = str(api["predict_url"])
                return api
        return None

    def _ensure_app_auth(self, service: str, service_id: str) -> None:
        """With app authentication: the service has an app-auth API and the configured app may call it."""
        if self._huawei.service_auth != "app":
            return
        app_id = self._huawei.service_app_id
        target = f"service {service!r}"
        apps = {"apps": [{"app_id": app_id}]}
        api = self._app_auth_api(service_id)
        if api is None:
            answer = self._rest(
                "CreateAndAuthAppAuthApi",
                target,
                "POST",
                CREATE_APP_AUTH_API_PATH,
                path_params={"service_id": service_id},
                body=apps,
            )
            created = answer.get("api") if isinstance(answer.get("api"), dict) else {}
            if created and created.get("predict_url"):
                with self._lock:
                    self._app_urls[service_id] = str(created["predict_url"])
            self._check_authorised(answer, app_id, target)
            return
        auths = self._rest(
            "GetServiceAppAuthApiAuthInfo", target, "GET", API_AUTHS_PATH, path_params={"service_id": service_id}
        )
        authed = (
            (auths.get("app_auth_api") or {}).get("authed_apps") if isinstance(auths.get("app_auth_api"), dict) else []
        )
        if any(isinstance(app, dict) and app.get("app_id") == app_id for app in authed or []):
            return
        answer = self._rest(
            "AuthorizeApiToApigApps",
            target,
            "POST",
            AUTHORIZE_API_PATH,
            path_params={"service_id": service_id, "api_id": str(api["api_id"])},
            body=apps,
        )
        self._check_authorised(answer, app_id, target)

    @staticmethod
    def _check_authorised(answer: Mapping[str, Any], app_id: str, target: str) -> None:
        for result in answer.get("auth_result") or []:
            if isinstance(result, dict) and result.get("app_id") == app_id and not result.get("success"):
                raise ServingPlatformError(
                    f"ModelArts could not authorise app {app_id} ([huawei] service_app_id) to call {target}: "
                    f"{result.get('reason') or 'no reason given'}"
                )

    # --- evidence -------------------------------------------------------------------------------

    def stats(self, service: str, versions: Sequence[str], window_s: float) -> dict[str, VersionStats]:
        empty = {
            version: VersionStats(version=version, window_s=window_s, requests=0, errors=0) for version in versions
        }
        service_id = self._service_id(service)
        if service_id is None:
            return empty
        held = self._entries(self._show(service, service_id))
        models = {version: str(held[version].get("model_id")) for version in versions if version in held}
        if not models:
            return empty
        metrics = []
        for model_id in models.values():
            dimensions = [
                ces.MetricsDimension(name="service_id", value=service_id),
                ces.MetricsDimension(name="model_id", value=model_id),
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
            lambda: self._ces.batch_list_metric_data(ces.BatchListMetricDataRequest(body=body)),
        )
        by_model = {model_id: version for version, model_id in models.items()}
        totals: dict[tuple[str, str], float] = {}
        for series in response.metrics or []:
            dims = {str(item.name): str(item.value) for item in (series.dimensions or [])}
            found = by_model.get(dims.get("model_id", ""))
            if found is None or dims.get("service_id") != service_id:
                continue
            value = 0.0
            for point in series.datapoints or []:
                number = point.sum if point.sum is not None else point.average
                value += float(number or 0.0)
            totals[(found, str(series.metric_name))] = value
        result = dict(empty)
        for version in models:
            calls = round(totals.get((version, CALLS_METRIC), 0.0))
            failures = min(round(totals.get((version, FAILURES_METRIC), 0.0)), calls)
            result[version] = VersionStats(version=version, window_s=window_s, requests=calls, errors=failures)
        return result


def _weight(value: Any) -> int:
    """A `config[]` weight as ModelArts answers it (an integer, or a digit string as in the docs' examples)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


__all__ = [
    "CALLS_METRIC",
    "CES_NAMESPACE",
    "FAILURES_METRIC",
    "VERSION_ENV",
    "RealtimeServingPlatform",
    "build_clients",
    "description_from",
]
