"""Huawei Cloud preflight for `arsl doctor`: can this account run every phase, as configured, before
anything is uploaded, submitted or billed?

The checks, in the order a user fixes them (the README's "Pointing it at Huawei Cloud" follows it):
credentials; each endpoint reachable and accepting the signature (one cheap read call each: OBS, ModelArts,
Cloud Eye, API Gateway when an instance is configured, SMN when a topic is); the bucket and whether it
honours conditional creates (the model registry depends on them); the training engine and flavor; the
serving specification; pool or public serving mode; API Gateway instance or app authentication; the SMN
topic.

Read-only, with one exception the registry itself makes on first use: the conditional-create probe writes
a random `.arsl-probe-…` key twice and deletes it (`obs.ObsObjectStore`). In read-only mode it is not run.
Every call has a total deadline (`sdk_clients.call_with_deadline`), so one silent endpoint cannot hold the
report; a 401 or 403 reads as "signing refused", no answer as "unreachable".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arsl_tui.domain.pipeline import PhaseName
from arsl_tui.ops.doctor import Check
from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing, load_credentials

if TYPE_CHECKING:
    from arsl_tui.config import Settings

_UPLOAD, _TRAIN, _GATE = PhaseName.UPLOAD.value, PhaseName.TRAIN.value, PhaseName.GATE.value
_DEPLOY, _CANARY, _ALARMS = PhaseName.DEPLOY.value, PhaseName.CANARY.value, PhaseName.ALARMS.value
_ALL = (_UPLOAD, _TRAIN, _GATE, _DEPLOY, _CANARY, _ALARMS)
_OBS_PHASES = (_UPLOAD, _TRAIN, _GATE, _DEPLOY)
_MODELARTS_PHASES = (_TRAIN, _DEPLOY, _CANARY)
_REGISTRY_PHASES = (_GATE, _DEPLOY, _CANARY)
_SERVING_PHASES = (_DEPLOY, _CANARY)
_CES_PHASES = (_CANARY, _ALARMS)
_SIGNING_CODES = frozenset({"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "APIGW.0301"})
REGISTRY_PROBE_NEAR = "log/0"
"""The conditional-create probe runs beside the registry's promotion log, the keys it vouches for."""

# ShowServiceSpecifications, GET /v1/{project_id}/services/specifications ("Obtaining Supported Service
# Deployment Specifications", https://support.huaweicloud.com/intl/en-us/api-modelarts/ShowServiceSpecifications.html).
SPECIFICATIONS_PATH = "/v1/{project_id}/services/specifications"
# SMN ListTopicDetails, GET /v2/{project_id}/notifications/topics/{topic_urn} ("Querying Details About a
# Topic", https://support.huaweicloud.com/intl/en-us/api-smn/ListTopicDetails.html). No SMN SDK is installed:
# the call is signed and sent by a ModelArts client's `do_http_request` pointed at the SMN endpoint.
SMN_TOPIC_PATH = "/v2/{project_id}/notifications/topics/{topic_urn}"


@dataclass(frozen=True)
class Refusal:
    """Why a probe call did not succeed: an HTTP status and error code, or none (no answer)."""

    status: int | None
    code: str | None
    text: str

    @property
    def signing_refused(self) -> bool:
        return self.status in (401, 403) or (self.code or "") in _SIGNING_CODES

    @property
    def unreachable(self) -> bool:
        return self.status is None


@dataclass(frozen=True)
class Answer:
    value: Any = None
    refusal: Refusal | None = None


def ask(
    call: Callable[[], Any], *, service: str, operation: str, target: str, secrets: tuple[str, ...], deadline_s: float
) -> Answer:
    """`call()` within `deadline_s`; its value, or why it failed (credentials redacted)."""
    from arsl_tui.domain.ports import StoreError
    from arsl_tui.providers.huawei.errors import failure_from_exception
    from arsl_tui.providers.huawei.sdk_clients import CallStalled, call_with_deadline

    try:
        return Answer(value=call_with_deadline(lambda _request: call(), None, deadline_s, operation))
    except CallStalled:
        return Answer(refusal=Refusal(None, "CallStalled", f"no answer within {deadline_s:g} s"))
    except StoreError as error:
        return Answer(refusal=Refusal(error.status, error.code, str(error)))
    except Exception as error:
        failure = failure_from_exception(error, service=service, operation=operation, target=target, secrets=secrets)
        return Answer(refusal=Refusal(failure.status, failure.code, failure.message))


def _facts(refusal: Refusal) -> str:
    facts = [f"HTTP {refusal.status}"] if refusal.status is not None else []
    if refusal.code:
        facts.append(f"error code {refusal.code}")
    return ", ".join(facts) or refusal.text


def endpoint_check(
    name: str, endpoint: str, answer: Answer, *, setting: str, permission: str, needed_by: tuple[str, ...]
) -> Check:
    """Reachable and signing accepted, from one read call's answer. An answer about a missing resource
    (404) still proves both: the resource's own check reports it."""
    refusal = answer.refusal
    if refusal is None or (refusal.status is not None and refusal.status < 500 and not refusal.signing_refused):
        return Check(name, True, f"{endpoint} answers and accepts the signature", needed_by=needed_by)
    if refusal.signing_refused:
        fix = (
            "check HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK (and the security token of temporary credentials)"
            if refusal.status == 401 or refusal.code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "APIGW.0301")
            else f"grant the IAM user {permission} in this project, and check HUAWEICLOUD_SDK_PROJECT_ID"
        )
        return Check(name, False, f"signing refused by {endpoint} ({_facts(refusal)})", fix, needed_by)
    if refusal.unreachable:
        return Check(
            name,
            False,
            f"cannot reach {endpoint}: {refusal.text}",
            f"check huawei.{setting} (empty: the region's public endpoint) and the network or proxy",
            needed_by,
        )
    return Check(name, False, f"{endpoint} failed ({_facts(refusal)})", "try again later", needed_by)


def _not_checked(name: str, why: str, needed_by: tuple[str, ...]) -> Check:
    return Check(name, False, f"not checked: {why}", "fix the check it depends on first", needed_by, skipped=True)


def _skipped(name: str, why: str, needed_by: tuple[str, ...] = ()) -> Check:
    return Check(name, True, why, needed_by=needed_by, skipped=True)


def _listed(values: list[str]) -> str:
    return ", ".join(values) if values else "none"


def credentials_check(environ: Mapping[str, str] | None = None) -> tuple[Check, Credentials | None]:
    try:
        credentials = load_credentials(environ)
    except CredentialsMissing as missing:
        return Check("credentials", False, str(missing), "set the access key pair as described", _ALL), None
    if not credentials.project_id:
        return (
            Check(
                "credentials",
                False,
                f"access key {credentials.masked_access_key} from {credentials.source}, but no project id",
                "set HUAWEICLOUD_SDK_PROJECT_ID (or project_id in the SDK credentials file) to the project of "
                "your region",
                _ALL,
            ),
            None,
        )
    return (
        Check(
            "credentials",
            True,
            f"access key {credentials.masked_access_key}, project {credentials.project_id} ({credentials.source})",
            needed_by=_ALL,
        ),
        credentials,
    )


class HuaweiPreflight:
    """The probes of one configured account; `checks()` runs them in order."""

    def __init__(self, settings: Settings, credentials: Credentials, *, smn_endpoint: str | None = None) -> None:
        from arsl_tui.providers.huawei.sdk_clients import call_deadline_s

        self.settings = settings
        self.huawei = settings.huawei
        self.credentials = credentials
        self.secrets = credentials.secrets()
        self.deadline_s = call_deadline_s(settings.huawei.timeout_s)
        self.smn_endpoint = smn_endpoint or self.huawei.endpoint("smn")

    def _ask(self, service: str, operation: str, target: str, call: Callable[[], Any]) -> Answer:
        return ask(
            call, service=service, operation=operation, target=target, secrets=self.secrets, deadline_s=self.deadline_s
        )

    # --- the calls --------------------------------------------------------------------------------

    def _modelarts_client(self, endpoint: str | None = None) -> Any:
        from arsl_tui.providers.huawei.modelarts import build_client

        return build_client(endpoint or self.huawei.endpoint("modelarts"), self.credentials, self.huawei.timeout_s)

    def _obs_listing(self) -> tuple[Any, Answer]:
        from arsl_tui.domain.ports import StoreError
        from arsl_tui.providers.huawei.obs import ObsObjectStore

        try:
            store = ObsObjectStore.from_settings(self.settings, credentials=self.credentials, max_retry_count=0)
        except StoreError as error:
            return None, Answer(refusal=Refusal(error.status, error.code, str(error)))
        prefix = self.settings.storage.models_prefix
        answer = self._ask(
            "OBS", "list", f"bucket {self.settings.storage.bucket!r}", lambda: next(iter(store.list(prefix)), None)
        )
        return store, answer

    def _engines(self, client: Any) -> Answer:
        import huaweicloudsdkmodelarts.v1 as ma

        request = ma.ShowTrainingJobEnginesRequest()
        return self._ask(
            "ModelArts",
            "show_training_job_engines",
            "the preset engines",
            lambda: client.show_training_job_engines(request),
        )

    def _flavors(self, client: Any) -> Answer:
        import huaweicloudsdkmodelarts.v1 as ma

        request = ma.ShowTrainingJobFlavorsRequest()
        return self._ask(
            "ModelArts",
            "show_training_job_flavors",
            "the training flavors",
            lambda: client.show_training_job_flavors(request),
        )

    def _cloud_eye(self) -> Answer:
        import huaweicloudsdkces.v2 as ces2

        from arsl_tui.providers.huawei.ces import build_clients

        _v1, v2 = build_clients(self.huawei.endpoint("ces"), self.credentials, self.huawei.timeout_s)
        request = ces2.ListAlarmRulesRequest(offset=0, limit=1)
        return self._ask(
            "Cloud Eye", "list_alarm_rules", "the project's alarm rules", lambda: v2.list_alarm_rules(request)
        )

    def _api_gateway(self, instance_id: str) -> Answer:
        import huaweicloudsdkapig.v2 as apig

        from arsl_tui.providers.huawei.apig import build_client

        client = build_client(self.huawei.endpoint("apig"), self.credentials, self.huawei.timeout_s)
        request = apig.ListApiGroupsV2Request(instance_id=instance_id, limit=1)
        return self._ask(
            "API Gateway", "list_api_groups_v2", f"instance {instance_id!r}", lambda: client.list_api_groups_v2(request)
        )

    def _specifications(self, client: Any) -> Answer:
        from arsl_tui.providers.huawei.rest import rest_json

        query = [("infer_type", "real-time")]
        if self.huawei.pool_id:
            query.append(("is_personal_cluster", "true"))
        return self._ask(
            "ModelArts",
            "ShowServiceSpecifications",
            "real-time specifications",
            lambda: rest_json(client, "GET", SPECIFICATIONS_PATH, query=query),
        )

    def _smn_topic(self, urn: str) -> Answer:
        from arsl_tui.providers.huawei.rest import rest_json

        client = self._modelarts_client(self.smn_endpoint)
        return self._ask(
            "SMN",
            "ListTopicDetails",
            f"topic {urn!r}",
            lambda: rest_json(client, "GET", SMN_TOPIC_PATH, path_params={"topic_urn": urn}),
        )

    # --- the checks -------------------------------------------------------------------------------

    def checks(self) -> list[Check]:
        huawei, bucket = self.huawei, self.settings.storage.bucket
        store, listing = self._obs_listing()
        modelarts = self._modelarts_client()
        engines = self._engines(modelarts)
        instance_id = huawei.apig_instance_id.strip()
        topic = self.settings.alarms.smn_topic_urn.strip()
        checks = [
            endpoint_check(
                "OBS endpoint",
                huawei.endpoint("obs"),
                listing,
                setting="obs_endpoint",
                permission="OBS read access to the bucket (e.g. OBS ReadOnlyAccess)",
                needed_by=_OBS_PHASES,
            ),
            endpoint_check(
                "ModelArts endpoint",
                huawei.endpoint("modelarts"),
                engines,
                setting="modelarts_endpoint",
                permission="ModelArts access (e.g. ModelArts CommonOperations)",
                needed_by=_MODELARTS_PHASES,
            ),
            endpoint_check(
                "Cloud Eye endpoint",
                huawei.endpoint("ces"),
                self._cloud_eye(),
                setting="ces_endpoint",
                permission="Cloud Eye access (e.g. CES FullAccess)",
                needed_by=_CES_PHASES,
            ),
        ]
        gateway = self._api_gateway(instance_id) if instance_id else None
        if gateway is None:
            checks.append(_skipped("API Gateway endpoint", "no dedicated gateway instance (huawei.apig_instance_id)"))
        else:
            checks.append(
                endpoint_check(
                    "API Gateway endpoint",
                    huawei.endpoint("apig"),
                    gateway,
                    setting="apig_endpoint",
                    permission="API Gateway access (e.g. APIG FullAccess)",
                    needed_by=(_DEPLOY,),
                )
            )
        smn = self._smn_topic(topic) if topic else None
        if smn is None:
            checks.append(_skipped("SMN endpoint", "no alarm notifications (alarms.smn_topic_urn is empty)"))
        else:
            checks.append(
                endpoint_check(
                    "SMN endpoint",
                    self.smn_endpoint,
                    smn,
                    setting="smn_endpoint",
                    permission="SMN read access (e.g. SMN ReadOnlyAccess)",
                    needed_by=(_ALARMS,),
                )
            )
        checks += self._bucket_checks(store, listing, bucket)
        checks += self._training_checks(modelarts, engines)
        checks.append(self._specification_check(modelarts))
        checks.append(self._serving_mode_check())
        checks.append(self._gateway_or_app_auth_check(instance_id, gateway))
        checks.append(self._smn_topic_check(topic, smn))
        if store is not None:
            store.close()
        return checks

    def _bucket_checks(self, store: Any, listing: Answer, bucket: str) -> list[Check]:
        refusal = listing.refusal
        if refusal is not None and (refusal.unreachable or refusal.signing_refused or store is None):
            return [
                _not_checked("bucket", "OBS did not answer the listing", _OBS_PHASES),
                _not_checked("conditional create", "OBS did not answer the listing", _REGISTRY_PHASES),
            ]
        if refusal is not None:
            missing = refusal.status == 404 or refusal.code == "NoSuchBucket"
            return [
                Check(
                    "bucket",
                    False,
                    f"obs://{bucket} {'does not exist' if missing else 'cannot be listed'} ({_facts(refusal)})",
                    f"create the bucket {bucket!r} in {self.huawei.region} (without versioning), or set "
                    "storage.bucket to yours"
                    if missing
                    else "grant the IAM user read and write access to the bucket",
                    _OBS_PHASES,
                ),
                _not_checked("conditional create", "the bucket is not usable", _REGISTRY_PHASES),
            ]
        checks = [Check("bucket", True, f"obs://{bucket} exists and can be listed", needed_by=_OBS_PHASES)]
        if self.settings.read_only:
            checks.append(_skipped("conditional create", "not probed: read-only mode (the probe writes a key)"))
            return checks
        from arsl_tui.domain.keys import join_key
        from arsl_tui.domain.ports import StoreError

        near = join_key(self.settings.storage.models_prefix, REGISTRY_PROBE_NEAR)
        try:
            store.verify_conditional_create(near)
        except StoreError as error:
            checks.append(
                Check(
                    "conditional create",
                    False,
                    str(error),
                    "use a bucket without versioning on an endpoint that honours x-obs-forbid-overwrite or "
                    "If-None-Match: * (the model registry claims version numbers with them)",
                    _REGISTRY_PHASES,
                )
            )
        else:
            checks.append(
                Check(
                    "conditional create",
                    True,
                    f"obs://{bucket} refuses a second create of the same key (probe written and deleted)",
                    needed_by=_REGISTRY_PHASES,
                )
            )
        return checks

    def _training_checks(self, client: Any, engines: Answer) -> list[Check]:
        from arsl_tui.providers.huawei.modelarts import TrainingChoices

        train = self.settings.train
        if engines.refusal is not None:
            return [
                _not_checked("training engine", "ModelArts did not list its engines", (_TRAIN,)),
                _not_checked("training flavor", "ModelArts did not list its engines", (_TRAIN,)),
            ]
        flavors = self._flavors(client)
        choices = TrainingChoices.from_responses(engines.value, flavors.value)
        engine_problem = choices.engine_problem(train.engine_name, train.engine_version)
        engine_check = (
            Check("training engine", False, engine_problem, "set engine_name / engine_version in [train]", (_TRAIN,))
            if engine_problem
            else Check("training engine", True, f"{train.engine_name} {train.engine_version}", needed_by=(_TRAIN,))
        )
        flavor_problem = (
            f"ModelArts did not list its training flavors ({_facts(flavors.refusal)})"
            if flavors.refusal is not None
            else choices.flavor_problem(train.flavor_id)
        )
        flavor_check = (
            Check("training flavor", False, flavor_problem, "set flavor_id in [train]", (_TRAIN,))
            if flavor_problem
            else Check("training flavor", True, train.flavor_id, needed_by=(_TRAIN,))
        )
        return [engine_check, flavor_check]

    def _specification_check(self, client: Any) -> Check:
        name = "serving specification"
        if self.huawei.serving != "realtime":
            return _skipped(name, "new-version services run on the dedicated pool's own flavors", _SERVING_PHASES)
        wanted = self.huawei.service_specification or self.huawei.service_flavor
        answer = self._specifications(client)
        if answer.refusal is not None:
            return Check(
                name,
                False,
                f"ModelArts did not list its real-time specifications ({_facts(answer.refusal)})",
                "check the ModelArts endpoint and the IAM user's permissions",
                _SERVING_PHASES,
            )
        value = answer.value if isinstance(answer.value, dict) else {}
        offered = [item for item in value.get("specifications") or [] if isinstance(item, dict)]
        usable = sorted(str(item.get("specification")) for item in offered if item.get("is_open", True))
        if wanted in usable:
            return Check(name, True, f"{wanted} is open to this account", needed_by=_SERVING_PHASES)
        closed = any(item.get("specification") == wanted for item in offered)
        where = " in a dedicated pool" if self.huawei.pool_id else ""
        return Check(
            name,
            False,
            f"{wanted} {'is not open to this account' if closed else 'is not offered'} for real-time services{where}; "
            f"usable: {_listed(usable)}",
            "open it with a service ticket, or set [huawei] service_specification to a usable one",
            _SERVING_PHASES,
        )

    def _serving_mode_check(self) -> Check:
        name = "serving mode"
        mode = self.huawei.serving
        pool = self.huawei.pool_id.strip()
        if mode == "deployments" and not pool:
            return Check(
                name,
                False,
                'serving = "deployments" (new-version services) but no dedicated pool: they run on no other',
                'set [huawei] pool_id to your dedicated resource pool, or serving = "realtime" for the public pool',
                _SERVING_PHASES,
            )
        where = f"dedicated pool {pool}" if pool else "the public resource pool"
        kind = "new-version services with a deployment per version" if mode == "deployments" else "real-time services"
        return Check(name, True, f"{kind} on {where}", needed_by=_SERVING_PHASES)

    def _gateway_or_app_auth_check(self, instance_id: str, gateway: Answer | None) -> Check:
        name = "API Gateway or app auth"
        if gateway is not None:
            refusal = gateway.refusal
            if refusal is None:
                return Check(name, True, f"dedicated gateway instance {instance_id} answers", needed_by=(_DEPLOY,))
            missing = refusal.status == 404
            return Check(
                name,
                False,
                f"gateway instance {instance_id} {'does not exist' if missing else 'cannot be used'} "
                f"({_facts(refusal)})",
                "set huawei.apig_instance_id to an instance of this project and region, or leave it empty to use "
                "the service's app authentication",
                (_DEPLOY,),
            )
        if self.huawei.serving != "realtime":
            return Check(
                name,
                False,
                "new-version services are reached through a dedicated API Gateway instance, and none is configured",
                "set huawei.apig_instance_id",
                (_DEPLOY,),
            )
        auth = self.huawei.service_auth
        if auth != "app":
            return Check(
                name, True, "clients call the service with IAM tokens (service_auth = token)", needed_by=(_DEPLOY,)
            )
        app_id = self.huawei.service_app_id.strip()
        if app_id:
            return Check(name, True, f"app authentication, app {app_id}", needed_by=(_DEPLOY,))
        return Check(
            name,
            False,
            'service_auth = "app" but no app: clients would have no AppCode to call the service with',
            "create an app in ModelArts (App Authentication) and set [huawei] service_app_id, or set "
            'service_auth = "token"',
            (_DEPLOY,),
        )

    def _smn_topic_check(self, topic: str, smn: Answer | None) -> Check:
        name = "SMN topic"
        if smn is None:
            return _skipped(name, "alarms notify nobody (alarms.smn_topic_urn is empty)")
        refusal = smn.refusal
        if refusal is None:
            shown = smn.value.get("name", topic) if isinstance(smn.value, dict) else topic
            return Check(name, True, f"topic {shown} exists", needed_by=(_ALARMS,))
        if refusal.unreachable or refusal.signing_refused:
            return _not_checked(name, "SMN did not answer", (_ALARMS,))
        return Check(
            name,
            False,
            f"topic {topic} {'does not exist' if refusal.status == 404 else 'cannot be read'} ({_facts(refusal)})",
            "create the topic in SMN (and subscribe to it), or set alarms.smn_topic_urn to yours",
            (_ALARMS,),
        )


def huawei_checks(
    settings: Settings, *, environ: Mapping[str, str] | None = None, smn_endpoint: str | None = None
) -> list[Check]:
    """Every Huawei check, in order; without credentials, the credentials check and what it blocks."""
    from arsl_tui.providers.huawei.credentials import INSTALL_HINT, missing_sdk_modules

    missing = missing_sdk_modules()
    if missing:
        sdks = Check("Huawei Cloud SDKs", False, f"not installed here: {', '.join(missing)}", INSTALL_HINT, _ALL)
        return [sdks, _not_checked("Huawei Cloud endpoints", "the SDKs are missing", _ALL)]
    first, credentials = credentials_check(environ)
    if credentials is None:
        return [first, _not_checked("Huawei Cloud endpoints", "no usable credentials", _ALL)]
    return [first, *HuaweiPreflight(settings, credentials, smn_endpoint=smn_endpoint).checks()]


__all__ = ["Answer", "HuaweiPreflight", "Refusal", "ask", "credentials_check", "endpoint_check", "huawei_checks"]
