"""`arsl doctor` on the local backend: disk, the gateway's port, torch; read-only on a fresh home."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from arsl_tui.ops.doctor import Check, judge
from arsl_tui.providers.local.preflight import gateway_port, home_disk_space


def run_doctor(home: Path, *extra: str, port: int = 0) -> subprocess.CompletedProcess[str]:
    """`arsl doctor` as a user runs it, in a fresh process (so what it imports is what it really imports)."""
    environment = {"ARSL_HOME": str(home), "ARSL_GATEWAY_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "arsl_tui", "--backend", "local", *extra, "doctor"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=home.parent,
        timeout=120,
        check=False,
    )


def test_local_doctor_on_a_fresh_home_passes_and_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    done = run_doctor(home, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [check["name"] for check in report["checks"]] == ["disk space", "gateway port", "torch"]
    assert report["healthy"] is True
    assert "the home does not exist yet" in report["checks"][0]["detail"]
    assert not home.exists()


def test_local_doctor_prints_one_line_per_check(tmp_path: Path) -> None:
    done = run_doctor(tmp_path / "fresh")
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in lines[:3]] == ["✓ disk space", "✓ gateway port", "✓ torch"]
    assert lines[3] == "local: every phase has what it needs"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port held by a program that is not a gateway (it accepts and says nothing)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_port_held_by_another_program_blocks_deploy(tmp_path: Path, busy_port: int) -> None:
    done = run_doctor(tmp_path / "fresh", "--json", port=busy_port)
    report = json.loads(done.stdout)
    assert done.returncode == 1
    assert report["blocked_phases"] == ["deploy", "canary"]
    [port] = [check for check in report["checks"] if check["name"] == "gateway port"]
    assert port["ok"] is False and f"127.0.0.1:{busy_port} is used by another program" in port["detail"]
    assert "[gateway] port" in port["fix"]


class _HealthHandler(BaseHTTPRequestHandler):
    """Answers `GET /v1/health` with the gateway's documented fields (see serving/app.py)."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "weights": {"v1": 100}, "stable": "v1", "canary": None}).encode()
        self.send_response(200 if self.path == "/v1/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_a_port_held_by_a_gateway_is_fine() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        check = gateway_port("127.0.0.1", int(server.server_address[1]))
    finally:
        server.shutdown()
        server.server_close()
    assert check.ok and "served by an arsl gateway already" in check.detail


def test_too_little_disk_space_blocks_the_data_phases(tmp_path: Path) -> None:
    check = home_disk_space(tmp_path, minimum=1 << 62)
    assert not check.ok and "at least" in check.detail and "ARSL_HOME" in check.fix
    assert judge("local", [check]).blocked_phases == ("data", "upload", "train")


def test_torch_is_found_without_being_imported() -> None:
    # In a fresh interpreter: in this one another test may have imported torch already.
    probe = (
        "import sys\n"
        "from arsl_tui.providers.local.preflight import torch_present\n"
        "check = torch_present()\n"
        "print(check.ok, check.detail.startswith('torch '), 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["True", "True", "False"], done.stderr


def test_a_failing_check_no_phase_needs_is_advice() -> None:
    advice = Check("note", False, "something optional is off", "fix it some day")
    assert judge("local", [advice]).healthy
