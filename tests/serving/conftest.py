"""Gateways for the tests: the real app under uvicorn, on 127.0.0.1, in a thread of the test process.

The listening socket is bound before the server thread starts, so a request sent at once waits in
the kernel's backlog until the server accepts it: nothing needs to wait for the server to come up.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.serving import Deployment
from arsl_tui.providers.local.serving_control import ServingState, models_dir, read_admin_token
from arsl_tui.serving.auth import HEADER, KeyStore
from arsl_tui.serving.server import bind, build_gateway, uvicorn_server
from tests.serving.packages import export_random_package, install_packages

# Generous limits so that only the tests about throttling meet them.
UNLIMITED = {"gateway.api_call_limit": 1_000_000, "gateway.app_call_limit": 1_000_000, "gateway.time_unit": "SECOND"}


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real packages (trainer.export, random weights): v1 and v2 answer differently."""
    root = tmp_path_factory.mktemp("packages")
    return {"v1": export_random_package(root / "v1", seed=1), "v2": export_random_package(root / "v2", seed=2)}


def image_bytes(seed: int, size: tuple[int, int] = (64, 64), mode: str = "L", fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="RGB").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def gateway_settings(home: Path, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults plus `overrides`, never the repository's config.toml or the caller's ARSL_* variables."""
    return load_settings(
        None, cli_overrides={"home": str(home), **UNLIMITED, **(overrides or {})}, environ={}, cwd=home
    )


@dataclass
class LiveGateway:
    url: str
    home: Path
    state: ServingState
    gateway: Any
    server: Any
    thread: threading.Thread
    key: str

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {read_admin_token(self.home)}"}

    @property
    def headers(self) -> dict[str, str]:
        return {HEADER: self.key}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=30, **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=30, **kwargs)

    def keys(self) -> KeyStore:
        return KeyStore(self.state.db)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the gateway thread did not end"
        self.state.close()


def start_gateway(
    home: Path, packages: Mapping[str, Path], deployment: Deployment, overrides: Mapping[str, Any] | None = None
) -> LiveGateway:
    home.mkdir(parents=True, exist_ok=True)
    settings = gateway_settings(home, {"gateway.port": 0, **(overrides or {})})
    install_packages(models_dir(home), dict(packages))
    state = ServingState.open(home)
    state.save_deployment(deployment, "test start")
    gateway = build_gateway(settings, home, state, deployment)
    from arsl_tui.serving.app import create_app

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn_server(create_app(gateway), sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-gateway", daemon=True)
    thread.start()
    key = KeyStore(state.db).create("tests")
    return LiveGateway(
        url=f"http://127.0.0.1:{port}", home=home, state=state, gateway=gateway, server=server, thread=thread, key=key
    )


GatewayFactory = Callable[..., LiveGateway]


@pytest.fixture
def make_gateway(tmp_path: Path, packages: dict[str, Path]) -> Iterator[GatewayFactory]:
    started: list[LiveGateway] = []

    def make(
        deployment: Deployment | None = None, overrides: Mapping[str, Any] | None = None, name: str = "home"
    ) -> LiveGateway:
        live = start_gateway(
            tmp_path / name, packages, deployment or Deployment(stable="v1", weights={"v1": 100}), overrides
        )
        started.append(live)
        return live

    yield make
    for live in started:
        live.close()


@pytest.fixture
def canary_gateway(make_gateway: GatewayFactory) -> LiveGateway:
    """v1 stable at 90 %, v2 canary at 10 %."""
    return make_gateway(Deployment(stable="v1", canary="v2", weights={"v1": 90, "v2": 10}))


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory, packages: dict[str, Path]) -> Iterator[LiveGateway]:
    """One gateway for a whole module of read-only checks (fuzzing, schema conformance)."""
    live = start_gateway(
        tmp_path_factory.mktemp("shared") / "home",
        packages,
        Deployment(stable="v1", canary="v2", weights={"v1": 50, "v2": 50}),
        {"gateway.max_body_kb": 64},
    )
    yield live
    live.close()
