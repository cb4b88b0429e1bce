"""The gateway process: `python -m arsl_tui.serving --home DIR [--config PATH] [--detach] [--ready-fd N]`.

Started by `arsl deploy` / `arsl service start` (see `providers/local/serving_control.py`), not by hand.
It takes `<home>/serving/gateway.lock` (a second gateway on the same home refuses to start and says
which one runs), loads the stored deployment's model packages, binds `[gateway] host:port` (port 0:
any free port), records its pid and port, and serves the app under uvicorn until SIGTERM, when it
answers the requests it holds and exits. `--ready-fd` gets one JSON line once it serves (or the
reason it cannot), so the starter never polls.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from arsl_tui.config import ConfigError, GatewaySettings, Settings, load_settings
from arsl_tui.domain.serving import Deployment
from arsl_tui.providers.local.serving_control import (
    LOCK_FILE,
    ProcessRecord,
    ServingError,
    ServingState,
    ensure_admin_token,
    models_dir,
    process_start_ticks,
    serving_dir,
)
from arsl_tui.serving.auth import KeyStore, KeyVerifier

if TYPE_CHECKING:
    from arsl_tui.serving.app import BodyPace

log = logging.getLogger("arsl.gateway")

EXIT_ALREADY_RUNNING = 1
EXIT_CONFIG = 2
EXIT_START_FAILED = 3


class StartupError(Exception):
    def __init__(self, message: str, reason: str = "start_failed", exit_code: int = EXIT_START_FAILED) -> None:
        super().__init__(message)
        self.reason = reason
        self.exit_code = exit_code


class Readiness:
    """The one line the starter waits for on `--ready-fd`."""

    def __init__(self, descriptor: int | None) -> None:
        self._stream: IO[str] | None = os.fdopen(descriptor, "w", encoding="utf-8") if descriptor is not None else None

    def _send(self, payload: dict[str, Any]) -> None:
        if self._stream is None:
            return
        with contextlib.suppress(OSError):
            self._stream.write(json.dumps(payload) + "\n")
            self._stream.close()
        self._stream = None

    def ready(self, **details: Any) -> None:
        self._send({"ok": True, **details})

    def fail(self, message: str, reason: str) -> None:
        self._send({"ok": False, "error": message, "reason": reason})


def model_loader(home: Path) -> Callable[[str], Any]:
    from arsl_tui.serving.batching import load_model

    def load(version: str) -> Any:
        folder = models_dir(home) / version
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"the package of {version} is not in {folder}; `arsl deploy {version}` fetches it from the registry"
            )
        return load_model(version, folder)

    return load


def body_pace(gateway: GatewaySettings) -> BodyPace:
    """The `[gateway] body_*` settings as the rule the app applies to every request body."""
    from arsl_tui.serving.app import BodyPace

    return BodyPace(
        min_bytes_per_s=gateway.body_min_kb_per_s * 1024, grace_s=gateway.body_grace_s, max_s=gateway.body_timeout_s
    )


def build_gateway(
    settings: Settings,
    home: Path,
    state: ServingState,
    deployment: Deployment,
    *,
    on_ready: Callable[[], None] | None = None,
) -> Any:
    """Load the deployment's models and wire a Gateway (models load here, before any socket opens)."""
    from arsl_tui.serving.app import Gateway, GatewayLimits
    from arsl_tui.serving.routing import Router

    load = model_loader(home)
    models = {version: load(version) for version in deployment.versions}
    gateway_settings = settings.gateway
    limits = GatewayLimits(
        max_body_bytes=gateway_settings.max_body_kb * 1024,
        api_call_limit=gateway_settings.api_call_limit,
        app_call_limit=gateway_settings.app_call_limit,
        ip_call_limit=gateway_settings.ip_call_limit,
        time_unit=gateway_settings.time_unit,
        max_batch=gateway_settings.max_batch,
        max_wait_s=gateway_settings.max_wait_ms / 1000,
        max_queue=gateway_settings.max_queue,
        body_pace=body_pace(gateway_settings),
    )
    return Gateway(
        router=Router(deployment, models),
        loader=load,
        persist=state.save_deployment,
        verifier=KeyVerifier(KeyStore(state.db)),
        limits=limits,
        admin_token=ensure_admin_token(home),
        on_ready=on_ready,
        shadow_capacity=settings.canary.shadow_queue,
    )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise StartupError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); set [gateway] port to a "
            "free port (0 picks one)",
            "bind_failed",
            EXIT_CONFIG,
        ) from None
    return sock


def uvicorn_server(app: Any, sock: socket.socket) -> Any:
    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http="auto",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,
        backlog=2048,
    )
    return uvicorn.Server(config)


def _take_lock(home: Path, state: ServingState) -> IO[bytes]:
    path = serving_dir(home) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        record = state.process()
        where = f" (pid {record.pid}, {record.endpoint})" if record is not None else ""
        raise StartupError(
            f"a gateway is running already on {home}{where}; a second one is not started",
            "already_running",
            EXIT_ALREADY_RUNNING,
        ) from None
    return handle


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(home: Path, config_path: str | None, ready: Readiness) -> int:
    try:
        settings = load_settings(config_path, cli_overrides={"home": str(home)})
    except ConfigError as error:
        raise StartupError(f"config error: {error}", "config", EXIT_CONFIG) from None
    state = ServingState.open(home)
    lock = _take_lock(home, state)
    try:
        deployment = state.deployment()
        if deployment is None:
            raise StartupError(
                "nothing is deployed: `arsl deploy VERSION` chooses what to serve", "no_deployment", EXIT_CONFIG
            )
        from arsl_tui.serving.app import create_app
        from arsl_tui.serving.batching import PackageError, configure_torch

        threads = configure_torch(settings.gateway.torch_threads)
        if not _is_loopback(settings.gateway.host):
            log.warning(
                "listening on %s:%d: reachable from other machines (gateway.host is not a loopback address)",
                settings.gateway.host,
                settings.gateway.port,
            )
        sock = bind(settings.gateway.host, settings.gateway.port)
        host, port = sock.getsockname()[:2]
        record = ProcessRecord(
            pid=os.getpid(),
            start_ticks=process_start_ticks(os.getpid()) or 0,
            host=host,
            port=port,
            started_at=time.time(),
        )

        def announce() -> None:
            state.record_process(record)
            log.info("serving %s on %s (torch threads %d)", dict(deployment.weights), record.endpoint, threads)
            ready.ready(
                pid=record.pid, host=host, port=port, endpoint=record.endpoint, weights=dict(deployment.weights)
            )

        try:
            gateway = build_gateway(settings, home, state, deployment, on_ready=announce)
        except (PackageError, FileNotFoundError) as error:
            sock.close()
            raise StartupError(f"cannot load a model: {error}", "model_load", EXIT_START_FAILED) from None
        server = uvicorn_server(create_app(gateway), sock)
        try:
            server.run(sockets=[sock])
        finally:
            state.clear_process(record.pid)
        return 0
    finally:
        lock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arsl_tui.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="the arsl home folder whose deployment to serve")
    parser.add_argument("--config", default=None, help="config file (else $ARSL_CONFIG, ./config.toml, defaults)")
    parser.add_argument("--ready-fd", type=int, default=None, help="write one JSON line here once serving")
    parser.add_argument("--detach", action="store_true", help="fork away from the starter first")
    args = parser.parse_args(argv)
    if args.detach and os.fork() > 0:
        os._exit(0)  # the starter reaps this parent at once; the gateway is nobody's child
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ready = Readiness(args.ready_fd)
    try:
        return serve(args.home.resolve(), args.config, ready)
    except StartupError as error:
        log.error("%s", error)
        ready.fail(str(error), error.reason)
        return error.exit_code
    except ServingError as error:
        log.error("%s", error)
        ready.fail(str(error), "start_failed")
        return EXIT_START_FAILED
    except Exception as error:
        log.exception("the gateway failed to start")
        ready.fail(f"{type(error).__name__}: {error}", "start_failed")
        return EXIT_START_FAILED


__all__ = ["Readiness", "StartupError", "bind", "body_pace", "build_gateway", "main", "serve", "uvicorn_server"]
