"""The serving stand-ins: ModelArts AI applications that are really imported, real-time services that really
serve them, their app authentication, and Cloud Eye figures computed from what was served.

Registered on the stack's `ContractServer` (which checks every management call's route, signature and body):
the contract fakes keep their validation and their answers; this module adds the behaviour.

- **AI applications** (`ModelArtsModelsFake`, every CreateModel body checked by `validate_create_model`): a
  created model is `publishing` while the stand-in fetches its `source_location` folder from the OBS stand-in
  and checks it against "Model Package Specifications" (inference-modelarts-0055,
  https://support.huaweicloud.com/intl/en-us/inference-modelarts/inference-modelarts-0055.html) and the
  model configuration rules of inference-modelarts-0056 (the same validator as CreateModel's body); then
  `published`, or `failed` (`building_failed` when only its pip dependencies are wrong: they are installed
  when the image is built). ShowModel documents no field with the cause, so the cause is kept here
  (`import_problems`) and logged. DeleteModel removes one with its package copy. Fault `import_fails`.
- **Real-time services** (`RealtimeServicesFake`, CreateService/UpdateService bodies checked by its
  validators): each `config[]` model runs as its own process (`serving_worker.py`: the package's
  `customize_service.py` through its documented hooks) on 127.0.0.1. A service is `deploying` until every
  instance answers `GET /health`, then `running`; an instance that dies while starting makes it `failed`
  with `error_msg`. Faults `service_stuck_deploying` (the create or update that takes it starts no
  instance; the next update starts them) and `drop_connection_after_put` (UpdateService is applied, then the
  connection is closed without an answer; arm it with `match=UpdateService` so OBS PUTs keep theirs).
- **Inference** (`InferenceDoor`): `POST /v1/infers/{service_id}` on the app-auth address (the predict_url of
  the service's app-auth API, `X-Apig-AppCode` of an app authorised on it) or the service address
  (`access_address`, IAM token). Requests are split by the configured weights (a seeded generator), each
  call counted per model; throttled above `requests_per_second` (ModelArts' default traffic limit, 100/s).
  Fault `error_500_mid_canary`: a call routed to a challenger (any entry but the oldest) answers 500.
- **Management throttling**: fault `throttle_429` answers a ModelArts management call with 429 and API
  Gateway's throttling body.
- **Cloud Eye**: `SYS.ModelArts` `total_called_times`, `successfully_called_times` and `failed_called_times`
  per `service_id` + `model_id` and per `service_id` ("ModelArts Metrics", modelarts_23_0187), one point per
  call as it is served; alarm rules on `SYS.ModelArts` (when the server has the v2 alarm routes) are
  evaluated from those points whenever alarm records are listed.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from tests.fixtures.ces_contract import CES_V2, CloudEyeFake
from tests.fixtures.ces_metrics_fake import CloudEyeMetricsFake
from tests.fixtures.huawei_contract import Call, ContractError, ContractServer, Reply
from tests.fixtures.huawei_serving_fakes import CES_V1
from tests.fixtures.modelarts_models_fake import ModelArtsModelsFake, validate_create_model
from tests.fixtures.modelarts_realtime_fake import FakeModel as ServiceModel
from tests.fixtures.modelarts_realtime_fake import FakeRealtimeService, RealtimeServicesFake
from tests.huawei_rehearsal.faults import Faults

WORKER = Path(__file__).with_name("serving_worker.py")
MODEL_FOLDER = "model"
INFERENCE_CODE = "customize_service.py"
CES_NAMESPACE = "SYS.ModelArts"
MODEL_FILE_SUFFIXES = (".pt", ".pth", ".safetensors")
"""inference-modelarts-0055's PyTorch layout has the model file beside config.json (.pt or .pth); inference code
that loads its weights itself may keep them as safetensors, which this project does."""
DEFAULT_REQUESTS_PER_SECOND = 100
"""ModelArts' default traffic limit of a real-time service: 100 requests per second, changeable per service
("Inference performance test: constraints", bestpractice-modelarts/modelarts_llm_infer_90851)."""
REHEARSAL_APP_ID = "5a6b7c8d9e0f41a2b3c4d5e6f7a8b9c0"
"""The ModelArts app every stand-in stack has: its id goes into `[huawei] service_app_id`."""
REHEARSAL_APP_CODE = "rehearsal-appcode-0123456789abcdef"
"""Its AppCode, a fixed test credential like the stack's AK/SK: clients send it as `X-Apig-AppCode`."""
APP_CODE_HEADER = "X-Apig-AppCode"
TOKEN_HEADER = "X-Auth-Token"

# API Gateway in front of every ModelArts API and of the app-auth address: "Error Codes" of the API Request
# Signing Guide (https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-errorcode.html).
API_NOT_FOUND = (404, "APIGW.0101", "The API does not exist or has not been published in the environment.")
APP_AUTH_FAILED = (401, "APIGW.0303", "Incorrect app authentication information.")
APP_NOT_AUTHORISED = (403, "APIGW.0304", "The app is not authorized to access the API.")
IAM_AUTH_FAILED = (401, "APIGW.0301", "Incorrect IAM authentication information.")
GATEWAY_THROTTLED = (
    429,
    "APIGW.0308",
    "The throttling threshold has been reached: policy user over ratelimit,limit:100,time:1 minute",
)
# The dispatcher behind the gateway: "Error ModelArts.4206 Occurred in Real-Time Service Prediction"
# (modelarts_13_0217: traffic above the service's limit; the page gives no status, 429 is the stand-in's),
# ModelArts.4503 (modelarts_13_0219: "backend service not found or failed to respond"; 503 is the
# stand-in's), ModelArts.4302 (modelarts_13_0218: "Failed to invoke backend service due to connection
# refused"; 502 is the stand-in's).
SERVICE_THROTTLED = (429, "ModelArts.4206", "The request traffic on the API exceeded the threshold.")
BACKEND_UNAVAILABLE = (503, "ModelArts.4503", "Failed to respond due to backend service not found or failed to respond")
BACKEND_REFUSED = (
    502,
    "ModelArts.4302",
    "Gateway forwarding error. Failed to invoke backend service due to connection refused.",
)
# What the inference code's failure looks like to a client ("Error MR.0105 Occurred in Real-Time Service
# Prediction", modelarts_13_0192): the body of `error_500_mid_canary`'s answers.
MODEL_FAILED_BODY: dict[str, Any] = {"erno": "MR.0105", "msg": "Recognition failed", "words_result": {}}

MODEL_OPERATIONS = ("CreateModel", "ListModels", "ShowModel", "ShowModelEngineAndRuntime", "DeleteModel")
SERVICE_OPERATIONS = (
    "create_service",
    "update_service",
    "show_service",
    "list_services",
    "show_service_specifications",
    "list_app_auth_apis",
    "create_and_auth_app_auth_api",
    "show_api_auths",
    "authorize_api_to_apps",
)


class ObjectSource(Protocol):
    """What the serving stand-in needs of the OBS stand-in (`obs_standin.ObsStore`)."""

    def download_prefix(self, bucket: str, prefix: str, destination: Path) -> list[Path]: ...


class DroppedAnswer(Exception):
    """Raised by a handler whose change is applied: the server closes the connection without answering."""


def obs_location(source_location: str) -> tuple[str, str]:
    """(bucket, folder prefix) of CreateModel's `source_location`: `https://<bucket>.obs.<domain>/<path>`
    (CreateModel's example) or `/<bucket>/<path>` (the SDK reference's form)."""
    if source_location.startswith("https://"):
        parts = urlsplit(source_location)
        bucket, prefix = (parts.hostname or "").split(".", 1)[0], parts.path.lstrip("/")
    else:
        bucket, _, prefix = source_location.lstrip("/").partition("/")
    return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def package_problems(root: Path, request: Mapping[str, Any]) -> tuple[str, list[str]]:
    """("published" or the failed status, why) for the folder CreateModel pointed at, downloaded to `root`."""
    model = root / MODEL_FOLDER
    # inference-modelarts-0055: the folder holds `model/`, with exactly one config.json and one
    # customize_service.py directly in it, and the model file(s).
    if not model.is_dir():
        return "failed", [f"no {MODEL_FOLDER}/ folder under {request.get('source_location')}"]
    problems = []
    config_path = model / "config.json"
    config: Any = None
    if not config_path.is_file():
        problems.append(f"{MODEL_FOLDER}/config.json is missing")
    else:
        try:
            config = json.loads(config_path.read_bytes())
        except ValueError as error:
            problems.append(f"{MODEL_FOLDER}/config.json is not JSON ({error})")
    if not (model / INFERENCE_CODE).is_file():
        problems.append(f"{MODEL_FOLDER}/{INFERENCE_CODE} is missing")
    if not any(path.suffix in MODEL_FILE_SUFFIXES for path in model.rglob("*") if path.is_file()):
        problems.append(f"{MODEL_FOLDER}/ holds no model file ({', '.join(MODEL_FILE_SUFFIXES)})")
    if problems or not isinstance(config, dict):
        return "failed", problems or [f"{MODEL_FOLDER}/config.json is not a JSON object"]
    # inference-modelarts-0056, Table 1: model_algorithm and model_type are mandatory; its fields follow the
    # rules CreateModel's body does (runtime per engine, one API on "/", pip dependencies): the same validator.
    for name in ("model_algorithm", "model_type"):
        if not config.get(name):
            problems.append(f"{MODEL_FOLDER}/config.json has no {name}")
    as_request = {
        **{
            key: config[key]
            for key in ("model_algorithm", "model_type", "runtime", "apis", "dependencies")
            if key in config
        },
        "model_name": request["model_name"],
        "model_version": request["model_version"],
        "source_location": request["source_location"],
    }
    checked = validate_create_model(Call("CreateModel", "POST", "", [], {}, as_request, {}))
    dependencies = [text for text in checked if text.startswith("dependencies")]
    problems += [f"{MODEL_FOLDER}/config.json: {text}" for text in checked if text not in dependencies]
    if problems:
        return "failed", problems
    if dependencies:
        return "building_failed", [f"{MODEL_FOLDER}/config.json: {text}" for text in dependencies]
    return "published", []


class _Models(ModelArtsModelsFake):
    """AI applications that publish (or fail) when their package has been fetched and checked."""

    def __init__(self, standin: ServingStandin) -> None:
        self.standin = standin
        super().__init__(standin.server)

    def _create(self, call: Call) -> Reply:
        reply = super()._create(call)
        self.standin._import_started(str(reply.body["model_id"]), dict(call.body))
        return reply

    def deleted(self, model_ids: list[str]) -> None:
        self.standin._models_deleted(model_ids)


class _Services(RealtimeServicesFake):
    """Real-time services whose instances really run; their addresses are the stand-in's inference door."""

    def __init__(self, standin: ServingStandin) -> None:
        self.standin = standin
        super().__init__(standin.server, region=standin.region)

    def access_address(self, service_id: str) -> str:
        return f"{self.standin.door.url}/v1/infers/{service_id}"

    def app_auth_address(self, service_id: str) -> str:
        return f"{self.standin.app_door.url}/v1/infers/{service_id}"

    def _create(self, call: Call) -> Reply:
        reply = super()._create(call)
        self.standin._deploy(str(reply.body["service_id"]), call)
        return reply

    def _update(self, call: Call) -> Reply:
        reply = super()._update(call)
        service_id = call.path_params["service_id"]
        if "status" not in call.body:
            self.standin._deploy(service_id, call)
        if self.standin.faults.take("drop_connection_after_put", detail=f"UpdateService {call.path}") is not None:
            raise DroppedAnswer(call.path)
        return reply


@dataclass
class Instance:
    """One model's process in one service."""

    service_id: str
    model_id: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    ready: bool = False
    failure: str = ""


@dataclass
class ModelCalls:
    """What one model version of one service served."""

    total: int = 0
    failed: int = 0
    statuses: list[int] = field(default_factory=list)


class _Metrics:
    """Cloud Eye's metric data: the full fake (rules, records) when the server has the v2 routes, else the batch
    query alone."""

    def __init__(self, server: ContractServer) -> None:
        services = {route.service for route in server.routes}
        self.cloud_eye: CloudEyeFake | None = None
        self.batch: CloudEyeMetricsFake | None = None
        self._lock = threading.Lock()
        if CES_V2 in services and CES_V1 in services:
            self.cloud_eye = CloudEyeFake(server)
        elif CES_V1 in services:
            self.batch = CloudEyeMetricsFake(server)

    def add(self, metric: str, dimensions: Mapping[str, str], at: float, value: float) -> None:
        if self.cloud_eye is not None:
            self.cloud_eye.add_point(CES_NAMESPACE, metric, dimensions, at, value)
        elif self.batch is not None:
            key = (CES_NAMESPACE, metric, tuple(sorted(dimensions.items())))
            with self._lock:
                points = list(self.batch.series.get(key, []))
                points.append((int(at * 1000), value))
                self.batch.set_points(CES_NAMESPACE, metric, dimensions, points)


class ServingStandin:
    """AI applications, real-time services, app authentication and Cloud Eye data on `server` (see the module)."""

    def __init__(
        self,
        server: ContractServer,
        obs: ObjectSource,
        workdir: Path,
        faults: Faults,
        *,
        region: str = "af-north-1",
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.obs = obs
        self.workdir = workdir
        self.faults = faults
        self.region = region
        self.clock = clock
        """Drives the per-second traffic limit (a test freezes it)."""
        self.requests_per_second = DEFAULT_REQUESTS_PER_SECOND
        self.import_problems: dict[str, list[str]] = {}
        self.calls: dict[tuple[str, str], ModelCalls] = {}
        self.instances: dict[tuple[str, str], Instance] = {}
        self.app_codes: dict[str, str] = {}
        """AppCode → app id."""
        self._random = random.Random(seed)
        self._window: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        workdir.mkdir(parents=True, exist_ok=True)
        self.door = InferenceDoor(self, app_auth=False)
        self.app_door = InferenceDoor(self, app_auth=True)
        self.models = _Models(self)
        self.services = _Services(self)
        self.metrics = _Metrics(server)
        if self.metrics.cloud_eye is not None:
            server.handle("list_alarm_histories", self._alarm_histories)
        for operation, handler in self._management_handlers().items():
            server.handle(operation, self._throttled(operation, handler))
        self._quiet_dropped_answers()
        self.add_app(REHEARSAL_APP_CODE, REHEARSAL_APP_ID)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ServingStandin:
        self.door.start()
        self.app_door.start()
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True
            instances = list(self.instances.values())
            self._changed.notify_all()
        for instance in instances:
            _stop(instance.process)
        self.door.close()
        self.app_door.close()

    # --- driven by a test or the launcher -------------------------------------------------------

    def add_app(self, app_code: str, app_id: str | None = None) -> str:
        """A ModelArts app (an API Gateway app for app authentication) with one AppCode; returns its id."""
        app_id = app_id or uuid.uuid4().hex
        with self.services._lock:
            self.services.apps.add(app_id)
        with self._lock:
            self.app_codes[app_code] = app_id
        return app_id

    def wait_for(self, settled: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `settled()` holds (re-checked whenever a model or instance changes state)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._closed or settled(), timeout=timeout_s) and not self._closed

    def model_status(self, model_id: str) -> str:
        with self.models._lock:
            return self.models.models[model_id].status

    def publishing(self) -> list[str]:
        """The AI applications still being imported."""
        with self.models._lock:
            return [model.id for model in self.models.models.values() if model.status == "publishing"]

    def service(self, service_id: str) -> FakeRealtimeService:
        with self.services._lock:
            return self.services.services[service_id]

    def service_status(self, service_id: str) -> str:
        with self.services._lock:
            return self.services.services[service_id].status

    def calls_of(self, service_id: str) -> dict[str, ModelCalls]:
        """{model id: what it served} of one service."""
        with self._lock:
            return {model: calls for (service, model), calls in self.calls.items() if service == service_id}

    # --- management calls -----------------------------------------------------------------------

    def _management_handlers(self) -> dict[str, Callable[[Call], Reply]]:
        models, services = self.models, self.services
        return {
            "CreateModel": models._create,
            "ListModels": models._list,
            "ShowModel": models._show,
            "ShowModelEngineAndRuntime": models._runtimes,
            "DeleteModel": models._delete,
            "create_service": services._create,
            "update_service": services._update,
            "show_service": services._show,
            "list_services": services._list,
            "show_service_specifications": services._specifications,
            "list_app_auth_apis": services._list_app_auth_apis,
            "create_and_auth_app_auth_api": services._create_app_auth_api,
            "show_api_auths": services._api_auths,
            "authorize_api_to_apps": services._authorize,
        }

    def _throttled(self, operation: str, handler: Callable[[Call], Reply]) -> Callable[[Call], Reply]:
        def answer(call: Call) -> Reply:
            if self.faults.take("throttle_429", detail=f"{operation} {call.method} {call.path}") is not None:
                raise ContractError(*GATEWAY_THROTTLED)
            return handler(call)

        return answer

    def _quiet_dropped_answers(self) -> None:
        """A handler raising `DroppedAnswer` ends the request without an answer (the server closes the
        connection); the server's error hook would print a traceback for it, so that case is silenced."""
        httpd = self.server._httpd
        report = httpd.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            if not isinstance(sys.exc_info()[1], DroppedAnswer):
                report(request, client_address)

        httpd.handle_error = handle_error  # type: ignore[method-assign]

    # --- AI applications ------------------------------------------------------------------------

    def _import_started(self, model_id: str, request: dict[str, Any]) -> None:
        threading.Thread(
            target=self._import, args=(model_id, request), name=f"import-{model_id[:8]}", daemon=True
        ).start()

    def model_dir(self, model_id: str) -> Path:
        """Where an imported AI application's package lives (ModelArts keeps its own copy)."""
        return self.workdir / "models" / model_id

    def _import(self, model_id: str, request: dict[str, Any]) -> None:
        target = self.model_dir(model_id)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        what = f"{request['model_name']} {request['model_version']}"
        try:
            bucket, prefix = obs_location(str(request.get("source_location") or ""))
            self.obs.download_prefix(bucket, prefix, target)
            status, problems = package_problems(target, request)
        except (KeyError, ValueError, OSError) as error:
            status, problems = "failed", [f"cannot read {request.get('source_location')}: {error}"]
        if status == "published" and self.faults.take("import_fails", detail=what) is not None:
            status, problems = "failed", ["injected fault import_fails"]
        if status == "published":
            with self.services._lock:
                self.services.models[model_id] = ServiceModel(
                    model_id, str(request["model_name"]), str(request["model_version"])
                )
        else:
            _log(self.workdir, f"AI application {what} ({model_id}) {status}: {'; '.join(problems)}")
        with self._lock:
            self.import_problems[model_id] = problems
        self.models.advance(model_id, status)
        with self._changed:
            self._changed.notify_all()

    def _models_deleted(self, model_ids: list[str]) -> None:
        """DeleteModel: ModelArts' copy of each package goes with its AI application."""
        for model_id in model_ids:
            with self.services._lock:
                self.services.models.pop(model_id, None)
            with self._lock:
                self.import_problems.pop(model_id, None)
            shutil.rmtree(self.model_dir(model_id), ignore_errors=True)
            _log(self.workdir, f"AI application {model_id} deleted")

    # --- services and their instances -----------------------------------------------------------

    def _deploy(self, service_id: str, call: Call) -> None:
        """Start the instances a service's config needs and stop those it no longer has."""
        service = self.service(service_id)
        stuck = self.faults.take("service_stuck_deploying", detail=f"{service.name} {call.method}") is not None
        wanted = {str(entry["model_id"]) for entry in service.config}
        with self._lock:
            # An instance that failed to start is started again by the next deployment, as a redeploy does.
            gone = [
                key
                for key, instance in self.instances.items()
                if key[0] == service_id and (key[1] not in wanted or instance.failure)
            ]
            dropped = [self.instances.pop(key) for key in gone]
            missing = [model for model in sorted(wanted) if (service_id, model) not in self.instances]
        for instance in dropped:
            _stop(instance.process)
        if missing:
            with self.services._lock:
                service.status = "deploying"
                service.error_msg = ""
        if stuck:
            _log(self.workdir, f"service {service.name}: stuck deploying (injected fault service_stuck_deploying)")
            return
        for model_id in missing:
            self._start_instance(service, model_id)
        self._settle(service_id)

    def _start_instance(self, service: FakeRealtimeService, model_id: str) -> None:
        with self.services._lock:
            model = self.services.models[model_id]
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{service.id}-{model_id}.log"
        model_dir = self.model_dir(model_id) / MODEL_FOLDER
        environment = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        with log.open("ab") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(WORKER), "--model-dir", str(model_dir), "--model-name", model.name],
                cwd=model_dir,
                env=environment,
                stdin=subprocess.PIPE,  # the instance ends when this pipe closes (the stand-in stopped or died)
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        instance = Instance(service.id, model_id, process, log)
        with self._lock:
            self.instances[(service.id, model_id)] = instance
        threading.Thread(target=self._watch, args=(instance,), name=f"instance-{model_id[:8]}", daemon=True).start()

    def _watch(self, instance: Instance) -> None:
        """Follow an instance's start: ready when it answers health, failed when it ends first."""
        stdout: IO[bytes] | None = instance.process.stdout
        line = stdout.readline().decode("utf-8", "replace").strip() if stdout is not None else ""
        if line.startswith("READY "):
            port = int(line.split()[1])
            if _healthy(port):
                instance.port, instance.ready = port, True
        if not instance.ready:
            instance.process.wait()
            tail = instance.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
            instance.failure = f"model {instance.model_id} failed to start: {' | '.join(tail) or 'no output'}"
        self._settle(instance.service_id)

    def _settle(self, service_id: str) -> None:
        with self._lock:
            mine = {model: instance for (service, model), instance in self.instances.items() if service == service_id}
        with self.services._lock:
            service = self.services.services[service_id]
            service.ready = {model for model, instance in mine.items() if instance.ready}
            failures = [instance.failure for instance in mine.values() if instance.failure]
            wanted = {str(entry["model_id"]) for entry in service.config}
            if service.status == "deploying":
                if failures:
                    service.status, service.error_msg = "failed", "; ".join(failures)
                elif wanted and wanted <= service.ready:
                    service.status = "running"
                    service.update_time = int(time.time() * 1000)
        with self._changed:
            self._changed.notify_all()

    # --- inference ------------------------------------------------------------------------------

    def infer(self, service_id: str, headers: Mapping[str, str], body: bytes, *, app_auth: bool) -> tuple[int, Any]:
        """One call through the gateway and dispatcher to a model instance: (status, JSON body)."""
        with self.services._lock:
            service = self.services.services.get(service_id)
            api = service.app_auth_api if service is not None else None
            authorised = list(api.apps) if api is not None else []
        if service is None:
            return _error(API_NOT_FOUND)
        if app_auth:
            if api is None:
                return _error(API_NOT_FOUND)
            code = headers.get(APP_CODE_HEADER.lower(), "")
            with self._lock:
                app_id = self.app_codes.get(code) if code else None
            if app_id is None:
                return _error(APP_AUTH_FAILED)
            if app_id not in authorised:
                return _error(APP_NOT_AUTHORISED)
        elif not headers.get(TOKEN_HEADER.lower()):
            # An IAM token cannot be verified here: its presence is all the stand-in checks.
            return _error(IAM_AUTH_FAILED)
        if not self._admit(service_id):
            return _error(SERVICE_THROTTLED)
        entry = self._route(service)
        if entry is None:
            return _error(BACKEND_UNAVAILABLE)
        model_id, challenger = entry
        with self._lock:
            instance = self.instances.get((service_id, model_id))
        detail = f"infer {service.name} model {model_id}"
        answer: Any
        if challenger and self.faults.take("error_500_mid_canary", detail=detail) is not None:
            status, answer = 500, dict(MODEL_FAILED_BODY)
        elif instance is None or not instance.ready or instance.port is None:
            status, answer = _error(BACKEND_UNAVAILABLE)
        else:
            status, answer = _forward(instance.port, headers.get("content-type", "application/json"), body)
        self._count(service_id, model_id, status)
        return status, answer

    def _admit(self, service_id: str) -> bool:
        """The per-second traffic limit, counted in whole seconds of `clock`."""
        second = int(self.clock())
        with self._lock:
            current, count = self._window.get(service_id, (second, 0))
            if current != second:
                current, count = second, 0
            if count >= self.requests_per_second:
                return False
            self._window[service_id] = (current, count + 1)
            return True

    def _route(self, service: FakeRealtimeService) -> tuple[str, bool] | None:
        """(model id, whether it is a challenger) drawn by the config's weights; None if no version serves."""
        with self.services._lock:
            if service.status not in ("running", "concerning"):
                return None
            weights = service.weights()
            oldest = str(service.config[0]["model_id"]) if service.config else ""
        choices = [(model, weight) for model, weight in weights.items() if weight > 0]
        if not choices:
            return None
        with self._lock:
            point = self._random.uniform(0, sum(weight for _, weight in choices))
        for model, weight in choices:
            point -= weight
            if point < 0:
                return model, model != oldest
        return choices[-1][0], choices[-1][0] != oldest

    def _count(self, service_id: str, model_id: str, status: int) -> None:
        failed = status >= 400
        with self._lock:
            calls = self.calls.setdefault((service_id, model_id), ModelCalls())
            calls.total += 1
            calls.failed += int(failed)
            calls.statuses.append(status)
        now = time.time()
        for dimensions in ({"service_id": service_id, "model_id": model_id}, {"service_id": service_id}):
            self.metrics.add("total_called_times", dimensions, now, 1.0)
            self.metrics.add("failed_called_times", dimensions, now, float(failed))
            self.metrics.add("successfully_called_times", dimensions, now, float(not failed))

    # --- alarm states from the data -------------------------------------------------------------

    def _alarm_histories(self, call: Call) -> Reply:
        cloud_eye = self.metrics.cloud_eye
        assert cloud_eye is not None
        evaluate_rules(cloud_eye, time.time())
        return cloud_eye._list_histories(call)


def evaluate_rules(cloud_eye: CloudEyeFake, now: float) -> None:
    """Fire or recover each `SYS.ModelArts` rule from its metric's data (CreateAlarmRules' policy: the value
    of `filter` over each `period` compared with `value`; `count` periods in a row breaching raise the alarm,
    a period that does not breach clears it; period 1 is one point per period)."""
    with cloud_eye._lock:
        rules = [rule for rule in cloud_eye.rules.values() if rule.body.get("namespace") == CES_NAMESPACE]
    for rule in rules:
        policy = (rule.body.get("policies") or [{}])[0]
        resources = rule.body.get("resources") or [[]]
        dimensions = tuple(sorted((item["name"], item["value"]) for item in resources[0]))
        period = max(int(policy.get("period") or 1), 1)
        count = int(policy.get("count") or 1)
        with cloud_eye._lock:
            points = sorted(
                cloud_eye.points.get((CES_NAMESPACE, str(policy.get("metric_name")), dimensions), []),
                key=lambda point: point[0],  # stable: points of the same millisecond keep their order
            )
        values = _period_values(points, period, str(policy.get("filter") or "average"))
        if not values:
            continue
        breaching = [
            _breaches(value, str(policy.get("comparison_operator")), float(policy["value"])) for value in values
        ]
        with cloud_eye._lock:
            open_record = any(r.alarm_id == rule.alarm_id and r.status == "alarm" for r in cloud_eye.records)
        if not open_record and len(breaching) >= count and all(breaching[-count:]):
            cloud_eye.fire(str(rule.body["name"]), now, values[-1])
        elif open_record and not breaching[-1]:
            cloud_eye.recover(str(rule.body["name"]), now)


def _period_values(points: Iterable[tuple[int, float]], period: int, flt: str) -> list[float]:
    if period == 1:
        return [value for _, value in points]
    buckets: dict[int, list[float]] = {}
    for at, value in points:
        buckets.setdefault(at // (period * 1000), []).append(value)
    reduced = []
    for _, values in sorted(buckets.items()):
        mean = sum(values) / len(values)
        reduced.append(
            {"sum": sum(values), "max": max(values), "min": min(values), "average": mean}.get(
                flt, sum((value - mean) ** 2 for value in values) / len(values)
            )
        )
    return reduced


def _breaches(value: float, operator: str, threshold: float) -> bool:
    return {
        ">": value > threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        "<=": value <= threshold,
        "=": value == threshold,
        "!=": value != threshold,
    }.get(operator, False)


class InferenceDoor:
    """The inference address of the stand-in's services on 127.0.0.1: app authentication or IAM token."""

    def __init__(self, standin: ServingStandin, *, app_auth: bool) -> None:
        self.standin = standin
        self.app_auth = app_auth
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _door_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="inference-door",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()


def _door_handler(door: InferenceDoor) -> type[BaseHTTPRequestHandler]:
    class DoorHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = [part for part in urlsplit(self.path).path.split("/") if part]
            headers = {name.lower(): value for name, value in self.headers.items()}
            if len(parts) < 3 or parts[:2] != ["v1", "infers"]:
                status, answer = _error(API_NOT_FOUND)
            else:
                status, answer = door.standin.infer(parts[2], headers, body, app_auth=door.app_auth)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return DoorHandler


def _error(error: tuple[int, str, str]) -> tuple[int, dict[str, str]]:
    status, code, message = error
    return status, {"error_code": code, "error_msg": message}


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _forward(port: int, content_type: str, body: bytes) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        raw = response.read()
    except ConnectionRefusedError:
        return _error(BACKEND_REFUSED)
    except OSError:
        return _error(BACKEND_UNAVAILABLE)
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw or b"null")
    except ValueError:
        return response.status, {"raw": raw.decode("utf-8", "replace")}


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


def _log(workdir: Path, text: str) -> None:
    with (workdir / "serving.log").open("a", encoding="utf-8") as log:
        log.write(f"{time.strftime('%H:%M:%S')} {text}\n")


def register_serving(server: ContractServer, obs: ObjectSource, workdir: Path, faults: Faults) -> ServingStandin:
    """Register the serving stand-ins on `server` and start their inference addresses."""
    return ServingStandin(server, obs, workdir, faults).start()


__all__ = [
    "REHEARSAL_APP_CODE",
    "REHEARSAL_APP_ID",
    "DroppedAnswer",
    "InferenceDoor",
    "ModelCalls",
    "ServingStandin",
    "evaluate_rules",
    "obs_location",
    "package_problems",
    "register_serving",
]
