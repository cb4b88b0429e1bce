"""A request body that arrives too slowly is answered 408 and its connection closed; a slow but steady
upload is not (the rule is a minimum rate after a grace period, `[gateway] body_*`).

The clients are raw sockets on a real gateway on 127.0.0.1. They pace what they send by waiting for
the server's answer with a socket timeout, so an answer (or a closed connection) ends the wait at once.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from dataclasses import dataclass

import pytest

from arsl_tui.config import Settings
from arsl_tui.serving.auth import HEADER
from arsl_tui.serving.server import body_pace
from tests.serving.conftest import GatewayFactory, LiveGateway, image_bytes

GRACE_S = 0.5
MIN_KB_PER_S = 4.0
TIMEOUT_S = 5.0
PACE = {"gateway.body_grace_s": GRACE_S, "gateway.body_min_kb_per_s": MIN_KB_PER_S, "gateway.body_timeout_s": TIMEOUT_S}
SLACK_S = 3.0
"""What a busy test machine may add to the documented bound before the 408 is read."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool
    """The server closed the connection after an answer that said `Connection: close`."""

    def json(self) -> dict:
        return json.loads(self.body)


def connect(live: LiveGateway) -> socket.socket:
    port = int(live.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def request_head(live: LiveGateway, content_type: str, length: int) -> bytes:
    return (
        f"POST /v1/predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n{HEADER}: {live.key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def send_paced(sock: socket.socket, body: bytes, chunk: int, interval_s: float, limit_s: float) -> bytes:
    """Send `body` `chunk` bytes at a time, one chunk per `interval_s` spent waiting for an answer; what the
    server sent before the body was complete (b"" if nothing, or when `limit_s` ran out first)."""
    started = time.monotonic()
    for start in range(0, len(body), chunk):
        if time.monotonic() - started > limit_s:
            break
        try:
            sock.sendall(body[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):  # closed after its answer: read that below
            sock.settimeout(5)
            return sock.recv(65536)
        if start + chunk >= len(body):
            break
        sock.settimeout(interval_s)
        try:
            early = sock.recv(65536)
        except TimeoutError:
            continue
        return early if early else b"<closed>"
    return b""


def read_answer(sock: socket.socket, received: bytes = b"", timeout_s: float = 30.0) -> Answer:
    """Read one HTTP response (with Content-Length) and whether the connection was closed after it."""
    sock.settimeout(timeout_s)
    data = received
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"the connection closed without an answer: {data!r}"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        more = sock.recv(65536)
        assert more, "the connection closed inside the answer"
        body += more
    closed = False
    if headers.get("connection") == "close":  # then the server must close at once
        sock.settimeout(5)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
        except ConnectionResetError:
            closed = True
    return Answer(int(status_line.split()[1]), headers, body[:length], closed)


def multipart(images: list[bytes]) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{index}.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + image
        + b"\r\n"
        for index, image in enumerate(images)
    ]
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


def test_a_trickled_body_gets_408_within_the_documented_bound(make_gateway: GatewayFactory) -> None:
    live = make_gateway(overrides=PACE)
    with connect(live) as sock:
        sock.sendall(request_head(live, "image/jpeg", 1_000_000))
        started = time.monotonic()
        # 10 bytes a second is far below the minimum rate: nothing after the grace period holds it up.
        early = send_paced(sock, b"\xff" * 1_000_000, chunk=1, interval_s=0.1, limit_s=GRACE_S + SLACK_S)
        elapsed = time.monotonic() - started
        assert early, f"no answer {elapsed:.1f} s into a trickled body"
        answer = read_answer(sock, early)
    assert answer.status == 408, answer
    assert answer.json()["code"] == "body_too_slow"
    assert "body_min_kb_per_s" in answer.json()["error"] and "4 KB/s" in answer.json()["error"]
    assert answer.headers.get("connection") == "close" and answer.closed
    # Not before the grace period, and within it plus what the few bytes sent bought.
    assert GRACE_S <= elapsed <= GRACE_S + SLACK_S, elapsed
    with live.client(headers=live.headers) as client:  # the gateway still serves
        assert (
            client.post("/v1/predict", content=image_bytes(1), headers={"Content-Type": "image/jpeg"}).status_code
            == 200
        )


def test_a_slow_but_steady_batch_upload_succeeds(make_gateway: GatewayFactory) -> None:
    live = make_gateway(overrides=PACE)
    content_type, body = multipart([image_bytes(seed) for seed in range(12)])
    rate = 3 * MIN_KB_PER_S * 1024  # slow, but three times the minimum
    assert len(body) / rate > 3 * GRACE_S, "the upload must outlast the grace period to mean anything"
    with connect(live) as sock:
        sock.sendall(request_head(live, content_type, len(body)))
        chunk = 1024
        early = send_paced(sock, body, chunk=chunk, interval_s=chunk / rate, limit_s=TIMEOUT_S)
        assert not early, f"answered before the body was complete: {early[:300]!r}"
        answer = read_answer(sock)
    assert answer.status == 200, answer
    assert len(answer.json()["results"]) == 12


def test_no_body_takes_longer_than_the_total_cap(make_gateway: GatewayFactory) -> None:
    cap_s = 1.0
    live = make_gateway(overrides={**PACE, "gateway.body_timeout_s": cap_s})
    rate = 4 * MIN_KB_PER_S * 1024
    with connect(live) as sock:
        sock.sendall(request_head(live, "image/jpeg", int(rate * 4 * cap_s)))
        started = time.monotonic()
        early = send_paced(
            sock, b"\xff" * int(rate * 4 * cap_s), chunk=1024, interval_s=1024 / rate, limit_s=cap_s + SLACK_S
        )
        elapsed = time.monotonic() - started
        answer = read_answer(sock, early)
    assert answer.status == 408, answer
    assert "longer than 1 s in all" in answer.json()["error"] and "body_timeout_s" in answer.json()["error"]
    assert cap_s <= elapsed <= cap_s + SLACK_S, elapsed


@pytest.mark.parametrize(
    ("size", "bytes_per_s", "answered"),
    [
        (12 * 1024 * 1024, 1_000_000 / 8, False),  # a 12 MB batch at 1 Mbit/s
        (12 * 1024 * 1024, 256_000 / 8, False),  # … and at 256 kbit/s
        (1_000_000, 10, True),  # 10 bytes a second
    ],
)
def test_the_default_pace_passes_slow_uploads_and_cuts_a_trickle(size: int, bytes_per_s: float, answered: bool) -> None:
    pace = body_pace(Settings().gateway)
    if not answered:
        assert size <= Settings().gateway.max_body_kb * 1024, "an honest batch must not meet a 413 instead"
    chunk = 65_536 if bytes_per_s > 1000 else 1
    received, now = 0, 0.0
    while received < size:
        now += chunk / bytes_per_s  # when the next chunk has arrived
        if now > pace.allowed_s(received):
            break
        received += chunk
    assert (received < size) is answered
    if answered:
        assert now <= pace.grace_s + 1, "a trickle is cut right after the grace period"
