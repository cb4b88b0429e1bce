"""The local backend's preflight for `arsl doctor`: disk space under the home, the gateway's port, torch.

Read-only: nothing is created (a home that does not exist yet is measured on its nearest existing folder)
and torch is looked up, never imported, so a check from the console does not load it into the UI process.
A port in use is fine when what answers there is an arsl gateway (`GET /v1/health`).
"""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import json
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from arsl_tui.domain.pipeline import PhaseName
from arsl_tui.ops.doctor import Check

if TYPE_CHECKING:
    from arsl_tui.config import Settings

GIB = 1024**3
MIN_FREE_BYTES = 2 * GIB
"""Room for a data set's shards, a job's checkpoints and model packages: the demo run needs well under this."""
HEALTH_TIMEOUT_S = 2.0
_DISK_PHASES = (PhaseName.DATA.value, PhaseName.UPLOAD.value, PhaseName.TRAIN.value)
_PORT_PHASES = (PhaseName.DEPLOY.value, PhaseName.CANARY.value)
_TORCH_PHASES = (PhaseName.TRAIN.value, PhaseName.DEPLOY.value, PhaseName.CANARY.value)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def home_disk_space(home: Path, minimum: int = MIN_FREE_BYTES) -> Check:
    where = _existing_ancestor(home)
    on = "" if where == home else f" (measured on {where}: the home does not exist yet)"
    try:
        free = shutil.disk_usage(where).free
    except OSError as error:
        return Check(
            "disk space",
            False,
            f"cannot measure the free space under {home}{on}: {error.strerror or error}",
            "check that the home folder is readable, or set ARSL_HOME / home in config.toml",
            _DISK_PHASES,
        )
    detail = f"{free / GIB:.1f} GiB free for {home}{on}"
    if free >= minimum:
        return Check("disk space", True, detail, needed_by=_DISK_PHASES)
    return Check(
        "disk space",
        False,
        f"{detail}; at least {minimum / GIB:.0f} GiB are needed",
        "free some space, or point ARSL_HOME (or home in config.toml) at a larger disk",
        _DISK_PHASES,
    )


def _answers_as_gateway(host: str, port: int) -> bool:
    shown = f"[{host}]" if ":" in host else host
    try:
        with urllib.request.urlopen(f"http://{shown}:{port}/v1/health", timeout=HEALTH_TIMEOUT_S) as answer:
            document = json.loads(answer.read(65536))
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(document, dict) and document.get("status") == "ok" and "weights" in document


def gateway_port(host: str, port: int) -> Check:
    """Free (the gateway can start there) or held by an arsl gateway (one already serves)."""
    name = "gateway port"
    if port == 0:
        return Check(name, True, f"{host}: any free port (gateway.port = 0)", needed_by=_PORT_PHASES)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            in_use = error.errno == errno.EADDRINUSE
        else:
            return Check(name, True, f"{host}:{port} is free", needed_by=_PORT_PHASES)
    if in_use and _answers_as_gateway(host, port):
        return Check(name, True, f"{host}:{port} is served by an arsl gateway already", needed_by=_PORT_PHASES)
    why = "is used by another program" if in_use else "cannot be bound here"
    return Check(
        name,
        False,
        f"{host}:{port} {why}",
        "stop what listens there, or choose another [gateway] port in config.toml",
        _PORT_PHASES,
    )


def torch_present() -> Check:
    """Looked up without importing it: importing torch takes seconds and hundreds of MB."""
    name = "torch"
    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return Check(
            name,
            False,
            "torch is not installed in this Python environment",
            "install the local extra: pip install -e '.[local]' (torch for the trainer and the gateway)",
            _TORCH_PHASES,
        )
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    return Check(name, True, f"torch {version} is installed", needed_by=_TORCH_PHASES)


def local_checks(settings: Settings) -> list[Check]:
    """Disk, port, torch: what the local backend needs on this machine."""
    return [
        home_disk_space(settings.home_dir),
        gateway_port(settings.gateway.host, settings.gateway.port),
        torch_present(),
    ]


__all__ = ["MIN_FREE_BYTES", "gateway_port", "home_disk_space", "local_checks", "torch_present"]
