"""The rehearsal stack: every stand-in on 127.0.0.1, a port file naming them, a config pointing `arsl` at them.

    stack = Stack(workdir).start()     # OBS, ModelArts (training; models and services when serving_standin
    ...                                #   is there), Cloud Eye and API Gateway routes, the faults admin route
    stack.stop()

What runs:

- `ObsStandin` (obs_standin.py): OBS with its objects under `<workdir>/obs/`, reached at
  `http://obs.<region>.myhuaweicloud.com:<port>` (see `loopback_site/sitecustomize.py` for how other
  processes resolve that name to 127.0.0.1).
- One `ContractServer` for the SDK-signed services (ModelArts, Cloud Eye, API Gateway routes of the route
  table): `modelarts_endpoint`, `ces_endpoint`, `apig_endpoint`, `iam_endpoint`, `smn_endpoint` and
  `aom_endpoint` all point at it; the fakes registered on it decide what is answered.
- `TrainingStandin` (training_standin.py) on that server; `register_serving` from serving_standin.py, when
  that module exists, on the same server with the same OBS store and faults.
- `Faults` (faults.py), kept in `<workdir>/faults.json`, with its admin route.

Files it writes: `<workdir>/config.toml` (a complete arsl configuration: `backend = "huawei"`, the endpoints,
the bucket, a training engine and flavor the stand-in offers; no credentials, which never go in config) and,
when asked, the port file (JSON, see `describe`), written last and atomically: its presence means ready.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures.huawei_contract import ContractServer
from tests.huawei_rehearsal.faults import Faults, FaultsAdmin
from tests.huawei_rehearsal.obs_standin import ObsStandin
from tests.huawei_rehearsal.training_standin import DEFAULT_OUTPUT_SYNC_S, TrainingStandin

LOOPBACK_SITE = Path(__file__).with_name("loopback_site")
"""Put on PYTHONPATH (with ARSL_REHEARSAL_LOOPBACK_DNS=1) so `*.myhuaweicloud.com` resolves to 127.0.0.1."""
LOOPBACK_DNS_ENV = "ARSL_REHEARSAL_LOOPBACK_DNS"
DEFAULT_REGION = "af-north-1"
DEFAULT_BUCKET = "arsl-ml"
SIGNED_SERVICES = (
    "huaweicloudsdkmodelarts/v1",
    "huaweicloudsdkces/v1",
    "huaweicloudsdkces/v2",
    "huaweicloudsdkces/v3",
    "huaweicloudsdkapig/v2",
)
"""Every SDK service of the route table on one server (no two of their routes match the same request)."""
TRAINING_ENGINE = ("PyTorch", "pytorch_2.1.0-cuda_12.1-py_3.10.6-ubuntu_22.04-x86_64")
"""A documented preset the stand-in offers (develop-modelarts-1417), the configured default."""
TRAINING_FLAVOR = "modelarts.vm.cpu.8u"
"""A CPU flavor: the stand-in runs jobs on this host's CPU, and says so."""


@dataclass(frozen=True)
class RehearsalCredentials:
    """Fixed test credentials: the stand-ins accept these and nothing else; they open no real account."""

    access_key: str = "REHEARSALAK00000000000"
    secret_key: str = "rehearsal-sk-not-a-real-secret-0123456789"
    project_id: str = "5e1f0a2b3c4d5e6f7a8b9c0d1e2f3a4b"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)


class Stack:
    """Start, describe and stop every stand-in; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        *,
        region: str = DEFAULT_REGION,
        bucket: str = DEFAULT_BUCKET,
        output_sync_s: float | None = DEFAULT_OUTPUT_SYNC_S,
        serving: bool = True,
        credentials: RehearsalCredentials = RehearsalCredentials(),
        config_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.workdir = workdir.resolve()
        self.region = region
        self.bucket = bucket
        self.credentials = credentials
        self.output_sync_s = output_sync_s
        self.with_serving = serving
        self.config_overrides = {section: dict(values) for section, values in (config_overrides or {}).items()}
        self.faults = Faults(self.workdir / "faults.json")
        self.admin: FaultsAdmin | None = None
        self.obs: ObsStandin | None = None
        self.server: ContractServer | None = None
        self.training: TrainingStandin | None = None
        self.serving: Any = None
        self.serving_problem = ""
        """Why the serving stand-ins are not running, when they are not."""

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        keys = {self.credentials.access_key: self.credentials.secret_key}
        try:
            self.admin = FaultsAdmin(self.faults).start()
            self.obs = ObsStandin(
                root=self.workdir / "obs",
                credentials=keys,
                buckets=(self.bucket,),
                region=self.region,
                faults=self.faults,
            ).start()
            self.server = ContractServer(
                services=SIGNED_SERVICES, credentials=keys, project_id=self.credentials.project_id
            ).start()
            self.training = TrainingStandin(
                self.server, self.obs.store, self.workdir, self.faults, output_sync_s=self.output_sync_s
            )
            if self.with_serving:
                self.serving = self._start_serving()
            self.write_config()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_serving(self) -> Any:
        try:
            from tests.huawei_rehearsal.serving_standin import register_serving
        except ImportError as missing:
            self.serving_problem = f"serving_standin is not importable: {missing}"
            return None
        assert self.server is not None and self.obs is not None
        return register_serving(self.server, self.obs.store, self.workdir / "serving", self.faults)

    def stop(self) -> None:
        """Stop everything that started (job processes and serving workers included); safe to call twice."""
        if self.training is not None:
            self.training.close()
        if self.serving is not None:
            close = getattr(self.serving, "close", None) or getattr(self.serving, "stop", None)
            if close is not None:
                close()
            self.serving = None
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.obs is not None:
            self.obs.stop()
            self.obs = None
        if self.admin is not None:
            self.admin.stop()
            self.admin = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- what clients are told ------------------------------------------------------------------------

    @property
    def obs_endpoint(self) -> str:
        assert self.obs is not None
        return self.obs.endpoint  # http://obs.<region>.myhuaweicloud.com:<port>

    def endpoints(self) -> dict[str, str]:
        assert self.server is not None and self.admin is not None
        signed = self.server.endpoint
        return {
            "obs": self.obs_endpoint,
            "modelarts": signed,
            "ces": signed,
            "apig": signed,
            "iam": signed,
            "smn": signed,
            "aom": signed,
            "faults": self.admin.url,
        }

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.toml"

    def config_sections(self) -> dict[str, dict[str, Any]]:
        endpoints = self.endpoints()
        huawei: dict[str, Any] = {"region": self.region}
        huawei |= {f"{name}_endpoint": url for name, url in endpoints.items() if name != "faults"}
        app_id = self._serving_constant("REHEARSAL_APP_ID")
        if app_id:
            huawei["service_app_id"] = app_id
        sections: dict[str, dict[str, Any]] = {
            "huawei": huawei,
            "storage": {"bucket": self.bucket},
            "train": {
                "engine_name": TRAINING_ENGINE[0],
                "engine_version": TRAINING_ENGINE[1],
                "flavor_id": TRAINING_FLAVOR,
            },
        }
        for section, values in self.config_overrides.items():
            sections.setdefault(section, {}).update(values)
        return sections

    def write_config(self) -> Path:
        lines = [
            "# Written by the Huawei rehearsal stack (tests/huawei_rehearsal): every endpoint is a loopback",
            "# stand-in. Credentials are not here: they are in the port file's `env`, as on a real host.",
            'backend = "huawei"',
        ]
        for section, values in self.config_sections().items():
            lines += ["", f"[{section}]"] + [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        _write_atomic(self.config_path, "\n".join(lines) + "\n")
        return self.config_path

    def _serving_constant(self, name: str) -> str:
        if self.serving is None:
            return ""
        module = sys.modules.get(type(self.serving).__module__)
        return str(getattr(module, name, "") or "")

    def client_environment(self) -> dict[str, str]:
        """What an `arsl` process needs in its environment to use the stack (merge into os.environ)."""
        pythonpath = os.pathsep.join(part for part in (str(LOOPBACK_SITE), os.environ.get("PYTHONPATH", "")) if part)
        environment = {
            "HUAWEICLOUD_SDK_AK": self.credentials.access_key,
            "HUAWEICLOUD_SDK_SK": self.credentials.secret_key,
            "HUAWEICLOUD_SDK_PROJECT_ID": self.credentials.project_id,
            "ARSL_CONFIG": str(self.config_path),
            "PYTHONPATH": pythonpath,
            LOOPBACK_DNS_ENV: "1",
        }
        app_code = self._serving_constant("REHEARSAL_APP_CODE")
        if app_code:
            # `arsl_tui.ops.serving.KEY_ENV`: the key arsl's probes and `arsl predict` send (X-Apig-AppCode).
            environment["ARSL_APP_CODE"] = app_code
        return environment

    def describe(self) -> dict[str, Any]:
        """The port file's content."""
        return {
            "version": 1,
            "pid": os.getpid(),
            "workdir": str(self.workdir),
            "region": self.region,
            "bucket": self.bucket,
            "project_id": self.credentials.project_id,
            "credentials": {
                "access_key": self.credentials.access_key,
                "secret_key": self.credentials.secret_key,
                "project_id": self.credentials.project_id,
                "note": "fixed test credentials of the loopback stand-ins; they open no real account",
            },
            "endpoints": self.endpoints(),
            "faults_file": str(self.faults.path),
            "config": str(self.config_path),
            "env": self.client_environment(),
            "serving": self.serving is not None,
            "serving_problem": self.serving_problem,
        }

    def write_port_file(self, path: Path) -> Path:
        _write_atomic(path, json.dumps(self.describe(), indent=2) + "\n")
        return path


__all__ = ["LOOPBACK_DNS_ENV", "LOOPBACK_SITE", "RehearsalCredentials", "Stack"]
