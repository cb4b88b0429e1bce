"""`arsl gateway setup` on a dedicated API Gateway instance (APIG v2), through `huaweicloudsdkapig`.

Puts the ModelArts service behind API Gateway the way the seed workflow's phase 4 asks, idempotently
(every object is looked up by name first; what exists and matches is left alone):

1. an API group (`[huawei] apig_group_name`), and the independent domain `[huawei] apig_domain` bound
   to it. Without one, clients can only use the group's debugging domain, which API Gateway allows
   1,000 calls a day: the report says so in `warnings`;
2. an API in it — `POST /v1/predict`, `auth_type` APP with app-code auth in the `X-Apig-AppCode`
   header, backed over HTTPS by the service's prediction URL (updated when the URL or the backend
   credential changed). The backend call carries what the ModelArts service needs to accept it: the
   service runs with application authentication and the API sends the AppCode of an app authorised
   on it as a constant `X-Apig-AppCode` backend header (taken from `$ARSL_SERVICE_APP_CODE`, never
   from the config file). Short of a custom backend authorizer (a FunctionGraph function to write and
   run), API Gateway has no way to send its backend an IAM token or an AK/SK signature: app
   authentication is the documented mode a gateway can carry as plain backend parameters;
3. publication to the environment (`[huawei] apig_environment`, RELEASE by default) — only when
   the API is new or changed or not published there yet; each publication's `version_id` is
   returned so that a gateway-level rollback (`rollback_to`, the "switch version" call) is possible;
4. an app (`[huawei] apig_app_name`) and an app code for it (made only if it has none: the code is
   returned once, when created, and never stored or logged), authorised for the API in the
   environment;
5. a throttling policy from `[gateway]` (api / app / ip call limits per time unit) bound to the
   published API, updated when the limits changed.

Every SDK error becomes an `ApigError` naming the call, the object, the HTTP status, the error code
and the request id; `transient` says whether running the setup again later can help.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import huaweicloudsdkapig.v2 as apig
import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from arsl_tui.domain.errors import BackendCallError
from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing, load_credentials
from arsl_tui.providers.huawei.errors import failure_from_exception
from arsl_tui.providers.huawei.sdk_clients import basic_credentials, build_sdk_client

if TYPE_CHECKING:
    from arsl_tui.config import Settings

SERVICE = "API Gateway"
PREDICT_PATH = "/v1/predict"
BACKEND_TIMEOUT_MS = 40_000
"""The prediction limit API Gateway puts in front of ModelArts (40 s)."""
PAGE = 100
APP_CODE_HEADER = "X-Apig-AppCode"
"""How a client of an app-authenticated ModelArts service proves itself (inference-modelarts-0025)."""
SERVICE_APP_CODE_ENV = "ARSL_SERVICE_APP_CODE"
"""Where the AppCode the gateway sends to the ModelArts service comes from: a credential, so never config."""
DEBUG_DOMAIN_DAILY_CALLS = 1_000
"""API Gateway's cap on calls through a group's debugging domain (apig_03_0006)."""

T = TypeVar("T")


class ApigError(BackendCallError):
    """API Gateway refused or failed a call; a `BackendCallError`, so ops and the CLI handle it unnamed."""

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None) -> None:
        super().__init__(message, status=status, transient=transient)


@dataclass(frozen=True)
class ThrottleLimits:
    api_call_limits: int
    app_call_limits: int
    ip_call_limits: int
    time_unit: str
    time_interval: int = 1


@dataclass(frozen=True)
class GatewaySpec:
    group_name: str
    api_name: str
    app_name: str
    environment: str
    backend_url: str
    """The ModelArts service's prediction URL for app authentication (https://…/v1/infers/<service id>)."""
    limits: ThrottleLimits
    backend_app_code: str = field(default="", repr=False)
    """The AppCode the API sends to the service as `X-Apig-AppCode`; empty: the setup refuses to start."""
    domain: str = ""
    """The independent domain to bind to the group; empty: only the debugging domain."""

    @property
    def throttle_name(self) -> str:
        return f"{self.api_name}_throttle"


@dataclass
class GatewayReport:
    group_id: str = ""
    api_id: str = ""
    app_id: str = ""
    throttle_id: str = ""
    env_id: str = ""
    environment: str = ""
    publish_id: str = ""
    version_id: str = ""
    """The published version now in effect (a later setup or `rollback_to` can switch back to it)."""
    url: str = ""
    """Where clients call the API: the bound domain, else the group's debugging domain, + the API path."""
    domain: str = ""
    """The bound independent domain, or "" when clients have only the debugging domain."""
    warnings: list[str] = field(default_factory=list)
    """What works but will bite later (the debugging domain's daily cap)."""
    key: str | None = None
    """The app code, only when this setup created it (shown once)."""
    changed: list[str] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    """Published versions of the API in the environment, newest first (version_id, publish_time, effective)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "api_id": self.api_id,
            "app_id": self.app_id,
            "throttle_id": self.throttle_id,
            "env_id": self.env_id,
            "environment": self.environment,
            "publish_id": self.publish_id,
            "version_id": self.version_id,
            "url": self.url,
            "domain": self.domain,
            "warnings": list(self.warnings),
            "key": self.key,
            "changed": list(self.changed),
            "versions": list(self.versions),
        }


def build_client(endpoint: str, credentials: Credentials, timeout_s: float) -> Any:
    """An API Gateway client for `endpoint` signing with `credentials`."""
    return build_sdk_client(apig.ApigClient, endpoint, basic_credentials(credentials, "API Gateway"), timeout_s)


def service_app_code(environ: Mapping[str, str] | None = None) -> str:
    """The AppCode the gateway sends to the app-authenticated ModelArts service ("" if unset)."""
    return (os.environ if environ is None else environ).get(SERVICE_APP_CODE_ENV, "").strip()


def spec_from_settings(
    settings: Settings, backend_url: str, *, environ: Mapping[str, str] | None = None
) -> GatewaySpec:
    huawei, gateway = settings.huawei, settings.gateway
    return GatewaySpec(
        group_name=huawei.apig_group_name,
        api_name=huawei.apig_api_name,
        app_name=huawei.apig_app_name,
        environment=huawei.apig_environment,
        backend_url=backend_url,
        limits=ThrottleLimits(
            api_call_limits=gateway.api_call_limit,
            app_call_limits=gateway.app_call_limit,
            ip_call_limits=gateway.ip_call_limit,
            time_unit=gateway.time_unit,
        ),
        backend_app_code=service_app_code(environ),
        domain=huawei.apig_domain.strip().lower(),
    )


class ApigGateway:
    """One dedicated APIG instance of one project."""

    def __init__(self, *, client: Any, instance_id: str, secrets: tuple[str, ...] = ()) -> None:
        if not instance_id:
            raise ApigError("[huawei] apig_instance_id is empty: set the id of the dedicated API Gateway instance")
        self._client = client
        self._instance = instance_id
        self._secrets = secrets
        self._spec_secrets: tuple[str, ...] = ()
        """The AppCode of the setup under way: redacted from messages like the account's keys."""

    @classmethod
    def from_settings(cls, settings: Settings, *, credentials: Credentials | None = None) -> ApigGateway:
        try:
            credentials = credentials or load_credentials()
            client = build_client(settings.huawei.endpoint("apig"), credentials, settings.huawei.timeout_s)
        except CredentialsMissing as missing:
            raise ApigError(f"cannot use API Gateway: {missing}") from None
        return cls(client=client, instance_id=settings.huawei.apig_instance_id, secrets=credentials.secrets())

    def _call(self, operation: str, target: str, method: Callable[[Any], T], request: Any) -> T:
        try:
            return method(request)
        except (SdkException, requests.exceptions.RequestException, OSError) as error:
            failure = failure_from_exception(
                error, service=SERVICE, operation=operation, target=target, secrets=self._secrets + self._spec_secrets
            )
            raise ApigError(failure.message, transient=failure.transient, status=failure.status) from None

    # --- lookups --------------------------------------------------------------------------------

    def _group(self, spec: GatewaySpec, report: GatewayReport) -> Any:
        found = self._call(
            "list_api_groups_v2",
            f"API group {spec.group_name!r}",
            self._client.list_api_groups_v2,
            apig.ListApiGroupsV2Request(
                instance_id=self._instance, name=spec.group_name, precise_search="name", limit=PAGE
            ),
        )
        for group in found.groups or []:
            if group.name == spec.group_name:
                return group
        created = self._call(
            "create_api_group_v2",
            f"API group {spec.group_name!r}",
            self._client.create_api_group_v2,
            apig.CreateApiGroupV2Request(
                instance_id=self._instance,
                body=apig.ApiGroupCreate(name=spec.group_name, remark="arsl: sign classifier predictions"),
            ),
        )
        report.changed.append("group")
        return created

    def _bind_domain(self, spec: GatewaySpec, group: Any, report: GatewayReport) -> None:
        """Bind `spec.domain` to the group unless it is bound already; warn when clients have only the
        debugging domain."""
        bound = [str(item.domain).lower() for item in getattr(group, "url_domains", None) or []]
        if not spec.domain and bound:
            report.domain = bound[0]  # bound by hand: clients already have a domain without the daily cap
            return
        if not spec.domain:
            report.warnings.append(
                f"API group {spec.group_name!r} has only its debugging domain, which API Gateway allows "
                f"{DEBUG_DOMAIN_DAILY_CALLS:,} calls a day: bind your own domain with [huawei] apig_domain "
                "(its DNS A record pointing at the gateway) before clients depend on it"
            )
            return
        if spec.domain not in bound:
            # AssociateDomainV2 (POST .../api-groups/{group_id}/domains): url_domain required, at most 5 per group.
            self._call(
                "associate_domain_v2",
                f"domain {spec.domain!r} on API group {spec.group_name!r}",
                self._client.associate_domain_v2,
                apig.AssociateDomainV2Request(
                    instance_id=self._instance,
                    group_id=str(group.id),
                    body=apig.UrlDomainCreate(url_domain=spec.domain, min_ssl_version="TLSv1.2"),
                ),
            )
            report.changed.append("domain")
        report.domain = spec.domain

    def _environment(self, spec: GatewaySpec) -> str:
        found = self._call(
            "list_environments_v2",
            f"environment {spec.environment!r}",
            self._client.list_environments_v2,
            apig.ListEnvironmentsV2Request(instance_id=self._instance, name=spec.environment, limit=PAGE),
        )
        for env in found.envs or []:
            if env.name == spec.environment:
                return str(env.id)
        raise ApigError(
            f"API Gateway instance {self._instance} has no environment {spec.environment!r} ([huawei] apig_environment)"
        )

    def _api_body(self, spec: GatewaySpec, group_id: str) -> Any:
        parts = urlsplit(spec.backend_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApigError(f"the service URL {spec.backend_url!r} is not an http(s) URL")
        if parts.scheme != "https":
            # Simple (AppCode) authentication works over HTTPS only ("Configuring AppCodes for Simple
            # Authentication", apig_03_0058): over HTTP the service would refuse every call.
            raise ApigError(f"the service URL {spec.backend_url!r} is not HTTPS: its AppCode would be refused")
        backend = apig.BackendApiCreate(
            url_domain=parts.netloc,
            req_protocol=parts.scheme.upper(),
            req_method="POST",
            req_uri=parts.path or "/",
            timeout=BACKEND_TIMEOUT_MS,
            retry_count="-1",
        )
        return apig.ApiCreate(
            name=spec.api_name,
            type=1,
            req_protocol="HTTPS",
            req_method="POST",
            req_uri=PREDICT_PATH,
            auth_type="APP",
            auth_opt=apig.AuthOpt(app_code_auth_type="HEADER"),
            match_mode="NORMAL",
            backend_type="HTTP",
            group_id=group_id,
            backend_api=backend,
            # CreateApiV2 BackendParamBase: origin CONSTANT, location HEADER — the gateway adds this header to
            # every backend call, so the app-authenticated service accepts it (inference-modelarts-0025).
            backend_params=[
                apig.BackendParamBase(
                    origin="CONSTANT",
                    name=APP_CODE_HEADER,
                    location="HEADER",
                    value=spec.backend_app_code,
                    remark="AppCode of an app authorised on the ModelArts service",
                )
            ],
            remark="arsl: predictions by the ModelArts real-time service",
        )

    @staticmethod
    def _params(items: Any) -> set[tuple[str, str, str, str]]:
        return {(str(item.origin), str(item.name).lower(), str(item.location), str(item.value)) for item in items or []}

    @classmethod
    def _matches(cls, existing: Any, body: Any) -> bool:
        backend, wanted = existing.backend_api, body.backend_api
        return (
            cls._params(existing.backend_params) == cls._params(body.backend_params)
            and existing.auth_type == body.auth_type
            and existing.req_uri == body.req_uri
            and existing.req_method == body.req_method
            and backend is not None
            and backend.url_domain == wanted.url_domain
            and backend.req_uri == wanted.req_uri
            and str(backend.req_protocol).upper() == wanted.req_protocol
        )

    def _api(self, spec: GatewaySpec, group_id: str, report: GatewayReport) -> tuple[Any, bool]:
        body = self._api_body(spec, group_id)
        found = self._call(
            "list_apis_v2",
            f"API {spec.api_name!r}",
            self._client.list_apis_v2,
            apig.ListApisV2Request(
                instance_id=self._instance, group_id=group_id, name=spec.api_name, precise_search="name", limit=PAGE
            ),
        )
        existing = next((api for api in found.apis or [] if api.name == spec.api_name), None)
        if existing is None:
            created = self._call(
                "create_api_v2",
                f"API {spec.api_name!r}",
                self._client.create_api_v2,
                apig.CreateApiV2Request(instance_id=self._instance, body=body),
            )
            report.changed.append("api")
            return created, True
        # ListApisV2 leaves out backend parameters; the details (ShowDetailsOfApiV2) carry them.
        existing = self._call(
            "show_details_of_api_v2",
            f"API {spec.api_name!r}",
            self._client.show_details_of_api_v2,
            apig.ShowDetailsOfApiV2Request(instance_id=self._instance, api_id=existing.id),
        )
        if self._matches(existing, body):
            return existing, False
        updated = self._call(
            "update_api_v2",
            f"API {spec.api_name!r}",
            self._client.update_api_v2,
            apig.UpdateApiV2Request(instance_id=self._instance, api_id=existing.id, body=body),
        )
        report.changed.append("api")
        return updated, True

    def _published(self, api_id: str, env_id: str) -> list[Any]:
        found = self._call(
            "list_api_versions_v2",
            f"versions of API {api_id}",
            self._client.list_api_versions_v2,
            apig.ListApiVersionsV2Request(instance_id=self._instance, api_id=api_id, env_id=env_id, limit=PAGE),
        )
        return list(found.api_versions or [])

    def _publish_id(self, spec: GatewaySpec, group_id: str, env_id: str) -> str:
        found = self._call(
            "list_apis_v2",
            f"API {spec.api_name!r} in {spec.environment}",
            self._client.list_apis_v2,
            apig.ListApisV2Request(
                instance_id=self._instance,
                group_id=group_id,
                name=spec.api_name,
                env_id=env_id,
                precise_search="name",
                limit=PAGE,
            ),
        )
        api = next((item for item in found.apis or [] if item.name == spec.api_name), None)
        return str(api.publish_id) if api is not None and api.publish_id else ""

    def _app(self, spec: GatewaySpec, report: GatewayReport) -> str:
        found = self._call(
            "list_apps_v2",
            f"app {spec.app_name!r}",
            self._client.list_apps_v2,
            apig.ListAppsV2Request(instance_id=self._instance, name=spec.app_name, precise_search="name", limit=PAGE),
        )
        app = next((item for item in found.apps or [] if item.name == spec.app_name), None)
        if app is None:
            app = self._call(
                "create_an_app_v2",
                f"app {spec.app_name!r}",
                self._client.create_an_app_v2,
                apig.CreateAnAppV2Request(
                    instance_id=self._instance,
                    body=apig.AppCreate(name=spec.app_name, remark="arsl: clients of the sign classifier"),
                ),
            )
            report.changed.append("app")
        codes = self._call(
            "list_app_codes_v2",
            f"app codes of {spec.app_name!r}",
            self._client.list_app_codes_v2,
            apig.ListAppCodesV2Request(instance_id=self._instance, app_id=app.id, limit=PAGE),
        )
        if not (codes.app_codes or []):
            created = self._call(
                "create_app_code_auto_v2",
                f"an app code for {spec.app_name!r}",
                self._client.create_app_code_auto_v2,
                apig.CreateAppCodeAutoV2Request(instance_id=self._instance, app_id=app.id),
            )
            report.key = str(created.app_code)
            report.changed.append("app_code")
        return str(app.id)

    def _authorise(self, app_id: str, api_id: str, env_id: str, report: GatewayReport) -> None:
        found = self._call(
            "list_apis_binded_to_app_v2",
            f"APIs of app {app_id}",
            self._client.list_apis_binded_to_app_v2,
            apig.ListApisBindedToAppV2Request(
                instance_id=self._instance, app_id=app_id, api_id=api_id, env_id=env_id, limit=PAGE
            ),
        )
        if any(auth.api_id == api_id and auth.env_id == env_id for auth in found.auths or []):
            return
        self._call(
            "create_authorizing_apps_v2",
            f"app {app_id} on API {api_id}",
            self._client.create_authorizing_apps_v2,
            apig.CreateAuthorizingAppsV2Request(
                instance_id=self._instance, body=apig.ApiAuthCreate(env_id=env_id, app_ids=[app_id], api_ids=[api_id])
            ),
        )
        report.changed.append("authorisation")

    def _throttle(self, spec: GatewaySpec, report: GatewayReport) -> str:
        limits = spec.limits
        body = apig.ThrottleBaseInfo(
            name=spec.throttle_name,
            api_call_limits=limits.api_call_limits,
            app_call_limits=limits.app_call_limits,
            ip_call_limits=limits.ip_call_limits or None,
            time_interval=limits.time_interval,
            time_unit=limits.time_unit,
            type=1,
            remark="arsl: [gateway] call limits",
        )
        found = self._call(
            "list_request_throttling_policy_v2",
            f"throttling policy {spec.throttle_name!r}",
            self._client.list_request_throttling_policy_v2,
            apig.ListRequestThrottlingPolicyV2Request(
                instance_id=self._instance, name=spec.throttle_name, precise_search="name", limit=PAGE
            ),
        )
        existing = next((item for item in found.throttles or [] if item.name == spec.throttle_name), None)
        if existing is None:
            created = self._call(
                "create_request_throttling_policy_v2",
                f"throttling policy {spec.throttle_name!r}",
                self._client.create_request_throttling_policy_v2,
                apig.CreateRequestThrottlingPolicyV2Request(instance_id=self._instance, body=body),
            )
            report.changed.append("throttle")
            return str(created.id)
        same = (
            existing.api_call_limits == body.api_call_limits
            and existing.app_call_limits == body.app_call_limits
            and (existing.ip_call_limits or None) == body.ip_call_limits
            and existing.time_interval == body.time_interval
            and existing.time_unit == body.time_unit
        )
        if not same:
            self._call(
                "update_request_throttling_policy_v2",
                f"throttling policy {spec.throttle_name!r}",
                self._client.update_request_throttling_policy_v2,
                apig.UpdateRequestThrottlingPolicyV2Request(
                    instance_id=self._instance, throttle_id=existing.id, body=body
                ),
            )
            report.changed.append("throttle")
        return str(existing.id)

    def _bind(self, throttle_id: str, api_id: str, env_id: str, publish_id: str, report: GatewayReport) -> None:
        found = self._call(
            "list_apis_binded_to_request_throttling_policy_v2",
            f"APIs of policy {throttle_id}",
            self._client.list_apis_binded_to_request_throttling_policy_v2,
            apig.ListApisBindedToRequestThrottlingPolicyV2Request(
                instance_id=self._instance, throttle_id=throttle_id, env_id=env_id, api_id=api_id, limit=PAGE
            ),
        )
        if any(item.id == api_id for item in found.apis or []):
            return
        self._call(
            "associate_request_throttling_policy_v2",
            f"policy {throttle_id} on API {api_id}",
            self._client.associate_request_throttling_policy_v2,
            apig.AssociateRequestThrottlingPolicyV2Request(
                instance_id=self._instance,
                body=apig.ThrottleApiBindingCreate(strategy_id=throttle_id, publish_ids=[publish_id]),
            ),
        )
        report.changed.append("throttle_binding")

    # --- the use cases --------------------------------------------------------------------------

    def setup(self, spec: GatewaySpec) -> GatewayReport:
        if not spec.backend_app_code:
            raise ApigError(
                f"the ModelArts service accepts only authenticated calls, and API Gateway can authenticate to it "
                f"only with an AppCode: enable application authentication on the service, authorise an app on "
                f"it, and set {SERVICE_APP_CODE_ENV} to that app's AppCode"
            )
        self._spec_secrets = (spec.backend_app_code,)
        report = GatewayReport(environment=spec.environment)
        group = self._group(spec, report)
        report.group_id = str(group.id)
        self._bind_domain(spec, group, report)
        report.env_id = self._environment(spec)
        api, changed = self._api(spec, report.group_id, report)
        report.api_id = str(api.id)
        effective = [item for item in self._published(report.api_id, report.env_id) if item.status == 1]
        if changed or not effective:
            published = self._call(
                "create_or_delete_publish_record_for_api_v2",
                f"API {spec.api_name!r} to {spec.environment}",
                self._client.create_or_delete_publish_record_for_api_v2,
                apig.CreateOrDeletePublishRecordForApiV2Request(
                    instance_id=self._instance,
                    body=apig.ApiActionInfo(
                        action="online", env_id=report.env_id, api_id=report.api_id, remark="arsl gateway setup"
                    ),
                ),
            )
            report.publish_id, report.version_id = str(published.publish_id), str(published.version_id)
            report.changed.append("publish")
        else:
            report.publish_id = self._publish_id(spec, report.group_id, report.env_id)
            report.version_id = str(effective[0].version_id)
        report.app_id = self._app(spec, report)
        self._authorise(report.app_id, report.api_id, report.env_id, report)
        report.throttle_id = self._throttle(spec, report)
        self._bind(report.throttle_id, report.api_id, report.env_id, report.publish_id, report)
        report.versions = self.versions(report.api_id, report.env_id)
        domain = report.domain or str(getattr(group, "sl_domain", "") or "")
        report.url = f"https://{domain}{PREDICT_PATH}" if domain else ""
        return report

    def versions(self, api_id: str, env_id: str) -> list[dict[str, Any]]:
        """Published versions, newest first, with which one is in effect."""

        def when(item: Any) -> str:
            stamp = item.publish_time
            return stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp or "")

        items = sorted(self._published(api_id, env_id), key=when, reverse=True)
        return [
            {
                "version_id": str(item.version_id),
                "version_no": str(item.version_no or ""),
                "publish_time": when(item),
                "effective": item.status == 1,
            }
            for item in items
        ]

    def rollback_to(self, api_id: str, version_id: str) -> dict[str, Any]:
        """Make a previously published version of the API the effective one (a gateway-level rollback)."""
        switched = self._call(
            "change_api_version_v2",
            f"API {api_id} to version {version_id}",
            self._client.change_api_version_v2,
            apig.ChangeApiVersionV2Request(
                instance_id=self._instance, api_id=api_id, body=apig.ApiVersion(version_id=version_id)
            ),
        )
        return {
            "api_id": str(switched.api_id),
            "version_id": str(switched.version_id),
            "publish_id": str(switched.publish_id),
            "env_id": str(switched.env_id),
        }


__all__ = [
    "ApigError",
    "ApigGateway",
    "GatewayReport",
    "GatewaySpec",
    "ThrottleLimits",
    "build_client",
    "service_app_code",
    "spec_from_settings",
]
