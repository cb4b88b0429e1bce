"""The `ModelImporter` port on ModelArts AI applications (the v1 model management API).

A registered version becomes an AI application named `[huawei] service_name`, whose ModelArts version is
the registry's number written as `x.y.z` (`platform_version`). ModelArts reads it from an OBS folder in the
layout of `trainer/modelarts/layout.py` (PyTorch, `model/config.json` + `model/customize_service.py`) and
publishes it in the background: `publishing` → `published`, or `failed` / `building_failed`.

Operations (none is in the SDK 3.1.219, so `rest.rest_json` sends them with the SDK's signing):
- `GET /v1/{project_id}/models/ai-engine-runtimes`: the runtimes ModelArts offers for PyTorch; an unknown
  runtime is refused here, naming the valid ones, before anything is created ("Obtaining the Model Runtime",
  ShowModelEngineAndRuntime).
- `GET /v1/{project_id}/models?model_name=&model_version=`: an AI application imported before, found by name
  and version, so importing twice creates nothing ("Querying the AI Application List", ListModels).
- `POST /v1/{project_id}/models`: create it ("Creating an AI Application", CreateModel).
- `GET /v1/{project_id}/models/{model_id}`: its `model_status` ("Obtaining Details About an AI Application",
  ShowModel). The page documents no field with the cause of a failure: the status and its documented
  meaning are what there is to report; the console's event list of the AI application has the details.
- `DELETE /v1/{project_id}/models/{model_id}`: delete one AI application ("Deleting an AI application",
  DeleteModel; without `cascade`, so the other versions of the name stay). The answer lists the ids deleted
  (`delete_success_list`) and those that were not, each with its `error_msg` (`delete_failed_list`). A failed
  import is deleted this way so that the same name and version can be imported again.

Errors become `ModelImportError` with the message style of `errors.failure_from_exception`; throttling,
5xx, timeouts and refused connections are transient. Credentials are passed explicitly and never shown.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import huaweicloudsdkmodelarts.v1 as ma
import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from arsl_tui.domain.ports import ImportedModel, ModelImportError
from arsl_tui.domain.registry import VersionFormatError, parse_version
from arsl_tui.providers.huawei.credentials import Credentials, CredentialsMissing, load_credentials
from arsl_tui.providers.huawei.errors import failure_from_exception
from arsl_tui.providers.huawei.rest import rest_json
from arsl_tui.providers.huawei.sdk_clients import (
    CallStalled,
    basic_credentials,
    build_sdk_client,
    call_deadline_s,
    call_with_deadline,
)
from trainer.modelarts import layout

if TYPE_CHECKING:
    from arsl_tui.config import Settings

SERVICE = "ModelArts"
PLATFORM = "modelarts"
MODELS_PATH = "/v1/{project_id}/models"
MODEL_PATH = "/v1/{project_id}/models/{model_id}"
RUNTIMES_PATH = "/v1/{project_id}/models/ai-engine-runtimes"
# ModelArts SDK reference, "Importing a Model" (model_name): 1-64 letters, digits, '_' and '-', starting
# with a letter; CreateModel says 1 to 64 characters.
MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_VERSION_NUMBER = 98 * 10_000 + 9_999
"""The highest registry number `platform_version` can write: CreateModel's `model_version` is three numbers
of at most two digits each."""
_DESCRIPTION_FORBIDDEN = re.compile(r"[&!'\"<>=]")
READY = frozenset({"published"})
# ListModels, `model_status`: publishing, published, failed (publishing failed), building, building_failed.
FAILED = {"failed": "publishing the AI application failed", "building_failed": "creating its image failed"}


def platform_version(version: str) -> str:
    """The registry's `vN` as ModelArts' `x.y.z` (CreateModel: "Digit.Digit.Digit", each 0-99 without a
    leading zero): N in base 100, the first number one higher so it is never 0 (v1 → 1.0.1, v203 → 1.2.3)."""
    try:
        number = parse_version(version)
    except VersionFormatError as error:
        raise ModelImportError(str(error)) from None
    if number > MAX_VERSION_NUMBER:
        raise ModelImportError(f"{version} is past the last version ModelArts' x.y.z numbering can hold")
    return f"{1 + number // 10_000}.{number // 100 % 100}.{number % 100}"


def obs_url(bucket: str, region: str, key: str) -> str:
    """The OBS address of `key` in the form CreateModel's example gives `source_location`."""
    return f"https://{bucket}.obs.{region}.myhuaweicloud.com/{key}"


class ModelArtsModelImporter:
    """AI applications on ModelArts, one per registered version; thread-safe (the SDK client is)."""

    platform = PLATFORM

    def __init__(
        self,
        *,
        client: Any,
        name: str,
        bucket: str,
        region: str,
        timeout_s: float,
        runtime: str = layout.DEFAULT_RUNTIME,
        secrets: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not MODEL_NAME.match(name):
            raise ModelImportError(
                f"{name!r} cannot name a ModelArts AI application: 1-64 letters, digits, '_' or '-', "
                "starting with a letter (set [huawei] service_name)"
            )
        self._client = client
        self.name = name
        self._bucket = bucket
        self._region = region
        self._timeout_s = timeout_s
        self.runtime = runtime
        self._secrets = secrets
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, credentials: Credentials | None = None) -> ModelArtsModelImporter:
        huawei = settings.huawei
        try:
            credentials = credentials or load_credentials()
            basic = basic_credentials(credentials, "ModelArts")
        except CredentialsMissing as missing:
            raise ModelImportError(f"cannot import models into ModelArts: {missing}") from None
        client = build_sdk_client(ma.ModelArtsClient, huawei.endpoint("modelarts"), basic, huawei.timeout_s)
        return cls(
            client=client,
            name=huawei.service_name,
            bucket=settings.storage.bucket,
            region=huawei.region,
            timeout_s=huawei.timeout_s,
            secrets=credentials.secrets(),
        )

    # --- calls ----------------------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        target: str,
        method: str,
        path: str,
        *,
        path_params: Mapping[str, str] | None = None,
        query: tuple[tuple[str, str], ...] = (),
        body: Any = None,
    ) -> Any:
        deadline = call_deadline_s(self._timeout_s)
        try:
            return call_with_deadline(
                lambda _: rest_json(self._client, method, path, path_params=path_params, query=query, body=body),
                None,
                deadline,
                operation,
            )
        except CallStalled:
            raise ModelImportError(
                f"{SERVICE} {operation} for {target}: had not finished answering after {deadline:g} s",
                transient=True,
            ) from None
        except json.JSONDecodeError:
            raise ModelImportError(f"{SERVICE} {operation} for {target}: the answer is not JSON") from None
        except (SdkException, requests.exceptions.RequestException, OSError) as error:
            failure = failure_from_exception(
                error, service=SERVICE, operation=operation, target=target, secrets=self._secrets
            )
            raise ModelImportError(failure.message, transient=failure.transient) from None

    def _model(self, version: str, answer: Any, location: str = "") -> ImportedModel:
        if not isinstance(answer, Mapping) or not answer.get("model_id"):
            raise ModelImportError(f"{SERVICE} answered without a model_id for {version}: {str(answer)[:200]}")
        status = str(answer.get("model_status") or "")
        failed = status in FAILED
        return ImportedModel(
            version=version,
            model_id=str(answer["model_id"]),
            name=str(answer.get("model_name") or self.name),
            platform_version=str(answer.get("model_version") or platform_version(version)),
            status=status,
            location=str(answer.get("source_location") or location),
            ready=status in READY,
            failed=failed,
            detail=f"model_status {status!r}: {FAILED[status]}" if failed else "",
        )

    # --- the port -------------------------------------------------------------------------------

    def layout(self, version: str, package_id: str, package_config: Mapping[str, object]) -> dict[str, bytes]:
        return layout.layout_files(version, package_id, package_config, self.runtime)

    def package_path(self, path: str) -> str:
        return layout.package_path(path)

    def runtimes(self) -> list[str]:
        """The runtimes ModelArts offers for PyTorch AI applications."""
        answer = self._call("ShowModelEngineAndRuntime", "PyTorch runtimes", "GET", RUNTIMES_PATH)
        engines = answer.get("engine_runtimes") if isinstance(answer, Mapping) else None
        found: list[str] = []
        for engine in engines or []:
            if isinstance(engine, Mapping) and str(engine.get("ai_engine", "")).lower() == layout.MODEL_TYPE.lower():
                found.extend(str(item) for item in engine.get("runtimes") or [])
        return found

    def find(self, version: str) -> ImportedModel | None:
        wanted = platform_version(version)
        query = [("model_name", self.name), ("model_version", wanted)]
        if "_" in self.name:
            # ListModels: the name is matched fuzzily; an underscore needs exact_match=true to be taken literally.
            query.append(("exact_match", "true"))
        answer = self._call(
            "ListModels", f"AI application {self.name} {wanted}", "GET", MODELS_PATH, query=tuple(query)
        )
        models = answer.get("models") if isinstance(answer, Mapping) else None
        for item in models or []:
            if not isinstance(item, Mapping):
                continue
            if item.get("model_name") == self.name and item.get("model_version") == wanted:
                return self.show(version, str(item.get("model_id") or ""))
        return None

    def create(self, version: str, folder_key: str) -> ImportedModel:
        offered = self.runtimes()
        if self.runtime not in offered:
            raise ModelImportError(
                f"ModelArts offers no PyTorch runtime {self.runtime!r} here; it offers: "
                + (", ".join(offered) or "none")
            )
        location = obs_url(self._bucket, self._region, folder_key)
        description = _DESCRIPTION_FORBIDDEN.sub("", f"ArSL sign classifier {version}")[:100]
        body = {
            "model_name": self.name,
            "model_version": platform_version(version),
            "source_location": location,
            "model_type": layout.MODEL_TYPE,
            "runtime": self.runtime,
            "model_algorithm": "image_classification",
            "description": description,
            "install_type": ["real-time"],
        }
        answer = self._call(
            "CreateModel", f"AI application {self.name} {body['model_version']}", "POST", MODELS_PATH, body=body
        )
        created = self._model(version, {**body, "model_status": "publishing", **dict(answer or {})}, location)
        # CreateModel answers only the id: its state (and the location as ModelArts records it) comes from ShowModel.
        return self.show(version, created.model_id)

    def delete(self, version: str, model_id: str) -> None:
        """Delete one AI application (DeleteModel without `cascade`); `ModelImportError` unless the answer
        lists it as deleted."""
        if not model_id:
            raise ModelImportError(f"{SERVICE} DeleteModel for {version}: no model_id to delete")
        target = f"AI application {model_id}"
        answer = self._call("DeleteModel", target, "DELETE", MODEL_PATH, path_params={"model_id": model_id})
        deleted = answer.get("delete_success_list") if isinstance(answer, Mapping) else None
        if isinstance(deleted, list) and model_id in [str(item) for item in deleted]:
            return
        failures = answer.get("delete_failed_list") if isinstance(answer, Mapping) else None
        why = "; ".join(
            f"{item.get('error_code') or '?'} {item.get('error_msg') or ''}".strip()
            for item in failures or []
            if isinstance(item, Mapping) and str(item.get("model_id") or model_id) == model_id
        )
        raise ModelImportError(
            f"{SERVICE} DeleteModel for {target} ({version}) did not delete it: {why or str(answer)[:200]}"
        )

    def show(self, version: str, model_id: str) -> ImportedModel:
        if not model_id:
            raise ModelImportError(f"{SERVICE} listed an AI application for {version} without a model_id")
        answer = self._call(
            "ShowModel", f"AI application {model_id}", "GET", MODEL_PATH, path_params={"model_id": model_id}
        )
        return self._model(version, answer)


__all__ = [
    "FAILED",
    "PLATFORM",
    "ModelArtsModelImporter",
    "obs_url",
    "platform_version",
]
