"""ObsObjectStore against the S3 sink: what moto cannot show (Content-MD5 checks, each fault kind,
kept-alive connections), and the sink itself as the bench starts it (a separate process)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arsl_tui.domain.ports import PermanentStoreError, TransientStoreError
from arsl_tui.providers.huawei.obs import ObsObjectStore
from tests.fixtures.s3sink import Faults, S3Sink
from tests.providers.conftest import FAKE_CREDENTIALS

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "arsl-sink"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture
def sink() -> Iterator[S3Sink]:
    with S3Sink(buckets=[BUCKET]) as server:
        yield server


def make_store(endpoint: str, tmp_path: Path, timeout_s: float = 5.0) -> ObsObjectStore:
    return ObsObjectStore(
        server=endpoint,
        bucket=BUCKET,
        credentials=FAKE_CREDENTIALS,
        checkpoint_dir=tmp_path / "cp",
        timeout_s=timeout_s,
        max_retry_count=0,
    )


def test_a_body_that_does_not_match_its_content_md5_is_refused_and_not_stored(sink: S3Sink, tmp_path: Path) -> None:
    store = make_store(sink.endpoint, tmp_path)
    with pytest.raises(TransientStoreError, match="BadDigest") as caught:
        store.put_bytes("a.jpg", b"what was sent", md5_hex(b"what was meant"))
    assert caught.value.status == 400 and caught.value.request_id
    source = tmp_path / "b.jpg"
    source.write_bytes(b"file content")
    with pytest.raises(TransientStoreError, match="BadDigest"):
        store.put_file("b.jpg", source, md5_hex(b"other content"))
    assert sink.objects(BUCKET) == {}
    assert sink.stats()["bad_digest"] == 2


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (Faults(fail_503=1.0), r"HTTP 503, error code ServiceUnavailable"),
        (Faults(drop=1.0), r"ConnectionResetError|BrokenPipeError|RemoteDisconnected"),
        (Faults(stall=1.0, stall_s=1.0), r"TimeoutError.*timed out"),
        (Faults(drop_after_store=1.0), r"ConnectionResetError|RemoteDisconnected"),
    ],
)
def test_each_injected_fault_surfaces_as_a_transient_error(
    faults: Faults, expected: str, sink: S3Sink, tmp_path: Path
) -> None:
    store = make_store(sink.endpoint, tmp_path, timeout_s=0.3)
    sink.set_faults(faults)
    data = os.urandom(200_000)
    with pytest.raises(TransientStoreError, match=expected):
        store.put_bytes("x.bin", data, md5_hex(data))
    stored = sink.objects(BUCKET)
    # Only a reset after storing leaves the object in place: the case the engine's recheck exists for.
    assert stored == ({"x.bin": (len(data), md5_hex(data))} if faults.drop_after_store else {})
    sink.set_faults(Faults())
    assert store.put_bytes("x.bin", data, md5_hex(data)).md5 == md5_hex(data)


def test_denied_access_is_permanent_and_names_the_request(sink: S3Sink, tmp_path: Path) -> None:
    store = make_store(sink.endpoint, tmp_path)
    sink.set_faults(Faults(deny=True))
    with pytest.raises(PermanentStoreError) as caught:
        store.head("datasets/x.jpg")
    assert caught.value.status == 403  # a HEAD answer has no body, so no error code
    with pytest.raises(PermanentStoreError, match=r"HTTP 403, error code AccessDenied, request id \w+") as put:
        store.put_bytes("datasets/x.jpg", b"x", md5_hex(b"x"))
    assert "'arsl-sink'" in str(put.value) and "'datasets/x.jpg'" in str(put.value)
    assert FAKE_CREDENTIALS.secret_key not in str(put.value)


def test_requests_share_kept_alive_connections_and_listing_pages(sink: S3Sink, tmp_path: Path) -> None:
    store = make_store(sink.endpoint, tmp_path)
    keys = [f"many/{index:05d}" for index in range(2050)]
    for key in keys:
        store.put_bytes(key, key.encode(), md5_hex(key.encode()))
    assert [info.key for info in store.list("many/")] == keys
    assert [info.key for info in store.list("many/0204")] == [f"many/0204{digit}" for digit in range(10)]
    stats = sink.stats()
    assert stats["list_objects"] == 3 + 1
    assert stats["connections"] == 1, "long_conn_mode keeps one connection for sequential requests"


def test_the_delay_and_the_bandwidth_cap_hold_back_requests(tmp_path: Path) -> None:
    # Lower bounds only: they hold however slow the machine is.
    data = os.urandom(400_000)
    with S3Sink(buckets=[BUCKET], delay_s=0.15, bandwidth_bytes_per_s=2_000_000) as slow:
        store = make_store(slow.endpoint, tmp_path)
        started = time.monotonic()
        store.put_bytes("slow.bin", data, md5_hex(data))
        assert time.monotonic() - started >= 0.15 + 0.2 - 0.01
        started = time.monotonic()
        assert store.get_bytes("slow.bin") == data
        assert time.monotonic() - started >= 0.15 + 0.2 - 0.01


def test_the_sink_runs_as_a_process_printing_its_port_first(tmp_path: Path) -> None:
    store_dir = tmp_path / "blobs"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fixtures.s3sink",
            "--port",
            "0",
            "--delay-ms",
            "5",
            "--bandwidth-mbit",
            "100",
            "--bucket",
            BUCKET,
            "--store-dir",
            str(store_dir),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        store = make_store(f"http://127.0.0.1:{port}", tmp_path)
        data = os.urandom(3000)
        store.put_bytes("on-disk.bin", data, md5_hex(data))
        assert store.get_bytes("on-disk.bin") == data
        assert [path.read_bytes() for path in store_dir.iterdir()] == [data], "disk mode keeps data in files"
    finally:
        process.terminate()
        _out, errors = process.communicate(timeout=30)
    assert process.returncode == 0
    assert json.loads(errors.strip().splitlines()[-1])["put_object"] == 1


def test_a_copy_lands_server_side_with_the_right_bytes(tmp_path: Path) -> None:
    # A bandwidth cap of 10 kB/s: were the copy's 400 kB charged to the link, it would take 40 s.
    data = os.urandom(400_000)
    with S3Sink(buckets=[BUCKET], bandwidth_bytes_per_s=10_000, store_dir=tmp_path / "blobs") as slow:
        store = make_store(slow.endpoint, tmp_path)
        store.put_bytes("datasets/d1/.manifest.json.staged", b"x", md5_hex(b"x"))
        slow.corrupt_object(BUCKET, "datasets/d1/.manifest.json.staged", data, keep_etag=False)  # 400 kB in place
        store.put_bytes("datasets/d1/manifest.json", b"old", md5_hex(b"old"))

        started = time.monotonic()
        copied = store.copy("datasets/d1/.manifest.json.staged", "datasets/d1/manifest.json", md5_hex(data))
        assert time.monotonic() - started < 5.0, "a server-side copy sends no bytes over the link"

        assert (copied.size, copied.md5, copied.etag) == (len(data), md5_hex(data), md5_hex(data))
        store.delete("datasets/d1/.manifest.json.staged")
        assert slow.objects(BUCKET) == {"datasets/d1/manifest.json": (len(data), md5_hex(data))}
        assert slow.read_object(BUCKET, "datasets/d1/manifest.json") == data, "the copy outlives its source"
        assert slow.stats()["copy_object"] == 1


def test_a_copy_is_refused_for_a_missing_or_other_source(sink: S3Sink, tmp_path: Path) -> None:
    store = make_store(sink.endpoint, tmp_path)
    store.put_bytes("final", b"kept", md5_hex(b"kept"))
    with pytest.raises(PermanentStoreError, match="no object 'staged'") as missing:
        store.copy("staged", "final", md5_hex(b"kept"))
    assert (missing.value.code, missing.value.status) == ("NoSuchKey", 404)
    store.put_bytes("staged", b"stale", md5_hex(b"stale"))
    with pytest.raises(TransientStoreError, match="left as it was"):
        store.copy("staged", "final", md5_hex(b"fresh"))
    assert sink.read_object(BUCKET, "final") == b"kept"
    assert sink.stats()["copy_object"] == 0, "both are refused before a copy is sent"


def test_a_failed_copy_is_transient(sink: S3Sink, tmp_path: Path) -> None:
    store = make_store(sink.endpoint, tmp_path)
    store.put_bytes("staged", b"m", md5_hex(b"m"))
    checked = store.head("staged")
    sink.set_faults(Faults(fail_503=1.0))
    store.head = lambda key: checked  # type: ignore[method-assign]  # the check passed; the copy meets the 503
    with pytest.raises(TransientStoreError, match="HTTP 503"):
        store.copy("staged", "final", md5_hex(b"m"))
    sink.set_faults(Faults())
    assert store.copy("staged", "final", md5_hex(b"m")).md5 == md5_hex(b"m")
    assert sink.read_object(BUCKET, "final") == b"m"
