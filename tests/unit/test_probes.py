"""Labelled probes against a loopback HTTP server that answers with versions, through the real httpx sender.

The server plays a service with two versions behind one URL: every fourth request goes to v2, which
names the wrong label, and the eighth of each round of eight fails with a 503 that names v2 (as a
failing version's answer does). The probe images carry their true label as bytes, so the server
can answer right or wrong without a model.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from arsl_tui.domain.serving import VersionStats
from arsl_tui.ops.probes import ProbeAnswer, httpx_sender, merge_stats, run_probes
from arsl_tui.serving.auth import HEADER


class VersionedService(BaseHTTPRequestHandler):
    count: ClassVar[int] = 0
    lock: ClassVar[threading.Lock] = threading.Lock()
    keys: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.lock:
            type(self).count += 1
            number = type(self).count
            type(self).keys.append(self.headers.get(HEADER))
        label = body.decode().removeprefix("label:")
        status, version = 200, "v1"
        if number % 4 == 0:
            version = "v2"
            label = "wrong"
        if number % 8 == 0:
            status = 503
        # v1 answers as the model package's ModelArts API does (`predicted_label`), v2 as the local gateway.
        field = "label" if version == "v2" else "predicted_label"
        answer = json.dumps({"model_version": version, field: label}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def service() -> Iterator[str]:
    VersionedService.count = 0
    VersionedService.keys = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), VersionedService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/infers/svc"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.mark.parametrize("shared_client", [False, True], ids=["own-connections", "one-client-a-round"])
def test_each_answer_is_credited_to_the_version_it_names(service: str, shared_client: bool) -> None:
    samples = [(f"label:{name}".encode(), name) for name in ("ain", "al", "aleff", "bb") * 4]
    with httpx.Client(trust_env=False) as client:
        send = httpx_sender({HEADER: "app-code"}, client=client if shared_client else None)
        report = run_probes(service, samples, send)
    stats = report.version_stats(["v1", "v2", "v9"])
    assert report.sent == 16
    assert (stats["v1"].requests, stats["v1"].errors, stats["v1"].feedback, stats["v1"].correct) == (12, 0, 12, 12)
    # v2: 4 answers, 2 of them 503s (errors, no latency, no label); the other 2 wrong.
    assert (stats["v2"].requests, stats["v2"].errors, stats["v2"].feedback, stats["v2"].correct) == (4, 2, 2, 0)
    assert len(stats["v1"].latency_ms) == 12 and len(stats["v2"].latency_ms) == 2
    assert stats["v9"].requests == 0  # a version no probe reached has no evidence
    assert set(VersionedService.keys) == {"app-code"}  # probes call as clients do


def test_unanswered_probes_are_errors_of_no_version() -> None:
    samples = [(b"label:ain", "ain")] * 3
    report = run_probes("http://127.0.0.1:9/v1/infers/none", samples, httpx_sender({}, timeout_s=2))
    assert report.versions[""].errors == 3
    assert report.version_stats(["v1"])["v1"].requests == 0


def test_merge_adds_latency_and_accuracy_to_counts_only_stats() -> None:
    counts_only = {
        "v1": VersionStats(version="v1", window_s=60, requests=900, errors=3),
        "v2": VersionStats(version="v2", window_s=60, requests=100, errors=1),
    }
    answers = iter([ProbeAnswer(200, {"model_version": "v2", "label": "ain"}, 0.02)] * 5)
    report = run_probes("http://unused", [(b"x", "ain")] * 5, lambda _url, _image: next(answers))
    merged = merge_stats(counts_only, report.version_stats(["v1", "v2"]))
    assert (merged["v2"].requests, merged["v2"].errors) == (100, 1)  # the platform's counts include the probes
    assert merged["v2"].latency_ms == (20.0,) * 5 and (merged["v2"].feedback, merged["v2"].correct) == (5, 5)
    assert merged["v1"].latency_ms == () and merged["v1"].requests == 900
