"""Loopback servers for the provider tests: moto's S3 server and the fault-injecting S3 sink.

Everything binds 127.0.0.1, and every client gets explicit fake credentials, so no SDK ever looks
at the environment, a credentials file or a metadata service.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.providers.huawei.credentials import Credentials

FAKE_CREDENTIALS = Credentials(access_key="AKFAKE0000TEST", secret_key="sk-fake-never-real-0123456789", source="tests")
_bucket_numbers = itertools.count(1)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released), for connection-refused cases."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (port chosen by the OS), shared by the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    yield f"http://127.0.0.1:{port}"
    server.stop()


def create_bucket(endpoint: str, name: str) -> None:
    """Create `name` with the raw SDK (bucket creation is not part of the port)."""
    from obs import ObsClient

    client: Any = ObsClient(
        access_key_id=FAKE_CREDENTIALS.access_key,
        secret_access_key=FAKE_CREDENTIALS.secret_key,
        server=endpoint,
        signature="v4",
        region="us-east-1",
        path_style=True,
        max_retry_count=0,
        timeout=10,
    )
    try:
        result = client.createBucket(name)
        assert result.status < 300, (result.status, result.errorCode, result.errorMessage)
    finally:
        client.close()


@pytest.fixture
def moto_bucket(moto_endpoint: str) -> str:
    """A fresh, empty bucket on the shared moto server."""
    name = f"arsl-test-{next(_bucket_numbers)}"
    create_bucket(moto_endpoint, name)
    return name


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints"
