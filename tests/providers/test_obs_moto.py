"""ObsObjectStore with the real `obs.ObsClient` against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.config import HuaweiSettings, Settings, StorageSettings, UploadSettings
from arsl_tui.domain.ports import ObjectNotFound, PermanentStoreError, TransientStoreError
from arsl_tui.providers.huawei.obs import MIB, ObsObjectStore
from tests.providers.conftest import FAKE_CREDENTIALS, closed_port

ROOT = Path(__file__).resolve().parents[2]


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def make_store(endpoint: str, bucket: str, checkpoint_dir: Path, **options: Any) -> ObsObjectStore:
    options.setdefault("max_retry_count", 0)
    options.setdefault("timeout_s", 10.0)
    return ObsObjectStore(
        server=endpoint, bucket=bucket, credentials=FAKE_CREDENTIALS, checkpoint_dir=checkpoint_dir, **options
    )


def test_put_head_get_download_delete_round_trip(moto_endpoint: str, moto_bucket: str, tmp_path: Path) -> None:
    store = make_store(moto_endpoint, moto_bucket, tmp_path / "cp")
    image = os.urandom(3000)
    put = store.put_bytes("datasets/d1/ain/0001.jpg", image, md5_hex(image))
    assert (put.size, put.md5, put.etag) == (3000, md5_hex(image), md5_hex(image))

    source = tmp_path / "shards.json"
    source.write_bytes(b'{"shards": []}\n')
    stored_file = store.put_file("datasets/d1/shards.json", source, md5_hex(source.read_bytes()))
    assert stored_file.md5 == md5_hex(source.read_bytes())

    head = store.head("datasets/d1/ain/0001.jpg")
    assert head is not None and (head.size, head.md5) == (3000, md5_hex(image))
    assert store.head("datasets/d1/ain/missing.jpg") is None
    assert store.get_bytes("datasets/d1/ain/0001.jpg") == image

    copy = tmp_path / "down" / "0001.jpg"
    store.download_file("datasets/d1/ain/0001.jpg", copy)
    assert copy.read_bytes() == image
    assert list(copy.parent.iterdir()) == [copy], "no partial download left behind"

    store.delete("datasets/d1/ain/0001.jpg")
    store.delete("datasets/d1/ain/0001.jpg")  # deleting twice is not an error
    assert store.head("datasets/d1/ain/0001.jpg") is None
    with pytest.raises(ObjectNotFound, match="NoSuchKey"):
        store.get_bytes("datasets/d1/ain/0001.jpg")
    with pytest.raises(ObjectNotFound):
        store.download_file("datasets/d1/ain/0001.jpg", tmp_path / "gone.jpg")
    assert not (tmp_path / "gone.jpg").exists()


def test_list_pages_by_marker_past_1000_keys(moto_endpoint: str, moto_bucket: str, tmp_path: Path) -> None:
    store = make_store(moto_endpoint, moto_bucket, tmp_path / "cp")
    keys = [f"datasets/d2/img/{index:05d}.jpg" for index in range(1003)]
    with ThreadPoolExecutor(max_workers=8) as pool:  # one client shared by many threads, as the engine does
        for info in pool.map(lambda key: store.put_bytes(key, key.encode(), md5_hex(key.encode())), keys):
            assert info.md5 == md5_hex(info.key.encode())
    store.put_bytes("datasets/d2-other/x.jpg", b"x", md5_hex(b"x"))
    store.put_bytes("datasets/d1/y.jpg", b"y", md5_hex(b"y"))

    markers: list[str | None] = []
    real_list = store._client.listObjects

    def recording_list(*args: Any, **kwargs: Any) -> Any:
        markers.append(kwargs.get("marker"))
        return real_list(*args, **kwargs)

    store._client.listObjects = recording_list
    listed = list(store.list("datasets/d2/"))
    assert [info.key for info in listed] == keys
    assert all(info.md5 == md5_hex(info.key.encode()) and info.size == len(info.key) for info in listed)
    assert markers == [None, keys[999]], "two pages, the second starting after the 1,000th key"
    assert [info.key for info in store.list("datasets/d1/")] == ["datasets/d1/y.jpg"]


def test_a_put_whose_stored_etag_differs_from_the_md5_is_refused(
    moto_endpoint: str, moto_bucket: str, tmp_path: Path
) -> None:
    # moto ignores Content-MD5 (see the notes), so this exercises the adapter's own ETag check.
    store = make_store(moto_endpoint, moto_bucket, tmp_path / "cp")
    with pytest.raises(TransientStoreError, match="ETag") as caught:
        store.put_bytes("datasets/d3/a.jpg", b"actual content", md5_hex(b"other content"))
    assert caught.value.code == "ETagMismatch"
    with pytest.raises(PermanentStoreError, match="not a hex MD5"):
        store.put_bytes("datasets/d3/b.jpg", b"x", "not-an-md5")


def test_big_file_goes_multipart_and_head_reports_its_md5(moto_endpoint: str, moto_bucket: str, tmp_path: Path) -> None:
    store = make_store(moto_endpoint, moto_bucket, tmp_path / "cp", multipart_threshold=5 * MIB, part_size=5 * MIB)
    source = tmp_path / "shard-000000.tar"
    source.write_bytes(os.urandom(11 * MIB))
    expected = md5_hex(source.read_bytes())
    info = store.put_file("datasets/d4/shards/shard-000000.tar", source, expected)
    assert info.md5 == expected and info.etag is not None and info.etag.endswith("-3")
    head = store.head("datasets/d4/shards/shard-000000.tar")
    assert head is not None and (head.size, head.md5, head.etag) == (11 * MIB, expected, info.etag)
    assert md5_hex(store.get_bytes("datasets/d4/shards/shard-000000.tar")) == expected
    listed = list(store.list("datasets/d4/"))
    assert [(info.key, info.md5) for info in listed] == [("datasets/d4/shards/shard-000000.tar", expected)]
    assert not any((tmp_path / "cp").iterdir()), "the checkpoint is removed after success"
    with pytest.raises(PermanentStoreError, match="changed since it was recorded"):
        store.put_file("datasets/d4/shards/shard-000001.tar", source, md5_hex(b"something else"))


def test_a_copy_through_the_sdk_lands_with_the_right_bytes(
    moto_endpoint: str, moto_bucket: str, tmp_path: Path
) -> None:
    store = make_store(moto_endpoint, moto_bucket, tmp_path / "cp", multipart_threshold=5 * MIB, part_size=5 * MIB)
    manifest = b'{"shards": ["shard-000000.tar"]}\n'
    store.put_bytes("datasets/d5/.manifest.json.staged", manifest, md5_hex(manifest))
    store.put_bytes("datasets/d5/manifest.json", b"an older one", md5_hex(b"an older one"))

    copied = store.copy("datasets/d5/.manifest.json.staged", "datasets/d5/manifest.json", md5_hex(manifest))

    assert (copied.size, copied.md5) == (len(manifest), md5_hex(manifest))
    assert store.get_bytes("datasets/d5/manifest.json") == manifest
    store.delete("datasets/d5/.manifest.json.staged")
    head = store.head("datasets/d5/manifest.json")
    assert head is not None and (head.size, head.md5) == (len(manifest), md5_hex(manifest))

    # A multipart source: its ETag is no MD5, so the copy is confirmed by its `arsl-md5` metadata.
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(6 * MIB))
    expected = md5_hex(source.read_bytes())
    store.put_file("datasets/d5/big.staged", source, expected)
    big = store.copy("datasets/d5/big.staged", "datasets/d5/big.bin", expected)
    assert (big.size, big.md5) == (6 * MIB, expected)
    assert md5_hex(store.get_bytes("datasets/d5/big.bin")) == expected

    with pytest.raises(PermanentStoreError, match="no object 'datasets/d5/none'") as missing:
        store.copy("datasets/d5/none", "datasets/d5/manifest.json", md5_hex(manifest))
    assert missing.value.code == "NoSuchKey"
    with pytest.raises(TransientStoreError, match="left as it was"):
        store.copy("datasets/d5/big.staged", "datasets/d5/manifest.json", md5_hex(manifest))
    assert store.get_bytes("datasets/d5/manifest.json") == manifest


# The child process: uploads one big file through ObsObjectStore; in "kill" mode it dies (os._exit)
# from the progress callback part-way through; in "resume" mode it records which parts it sends.
CHILD = r"""
import json, os, sys
from pathlib import Path
from obs import ObsClient
from arsl_tui.providers.huawei.credentials import Credentials
from arsl_tui.providers.huawei.obs import MIB, ObsObjectStore

args = json.loads(sys.argv[1])
sent = []
progress = None
if args["phase"] == "kill":
    def progress(key, done, total):
        if done >= args["kill_after"]:
            os._exit(17)
else:
    real_upload_part = ObsClient._uploadPartWithNotifier
    def spy(self, bucketName, objectKey, partNumber, *rest, **options):
        sent.append(int(partNumber))
        return real_upload_part(self, bucketName, objectKey, partNumber, *rest, **options)
    ObsClient._uploadPartWithNotifier = spy
store = ObsObjectStore(server=args["server"], bucket=args["bucket"],
                       credentials=Credentials(access_key=args["ak"], secret_key=args["sk"]),
                       checkpoint_dir=Path(args["checkpoints"]), multipart_threshold=5 * MIB, part_size=5 * MIB,
                       multipart_tasks=args["tasks"], multipart_progress=progress, max_retry_count=0)
info = store.put_file(args["key"], Path(args["file"]), args["md5"])
print(json.dumps({"sent": sorted(sent), "etag": info.etag, "md5": info.md5}))
"""


def run_child(args: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_multipart_upload_killed_mid_way_resumes_with_only_the_missing_parts(
    moto_endpoint: str, moto_bucket: str, tmp_path: Path
) -> None:
    from obs import ObsClient

    parts = 5
    source = tmp_path / "shard-000007.tar"
    source.write_bytes(os.urandom((parts - 1) * 5 * MIB + 4321))
    expected = md5_hex(source.read_bytes())
    key = "datasets/d5/shards/shard-000007.tar"
    args = {
        "server": moto_endpoint,
        "bucket": moto_bucket,
        "ak": FAKE_CREDENTIALS.access_key,
        "sk": FAKE_CREDENTIALS.secret_key,
        "checkpoints": str(tmp_path / "cp"),
        "key": key,
        "file": str(source),
        "md5": expected,
    }

    killed = run_child({**args, "phase": "kill", "tasks": 1, "kill_after": 2 * 5 * MIB + 256 * 1024})
    assert killed.returncode == 17, killed.stderr
    store = make_store(moto_endpoint, moto_bucket, tmp_path / "cp", multipart_threshold=5 * MIB, part_size=5 * MIB)
    checkpoint = store.checkpoint_path(key)
    record = json.loads(checkpoint.read_text())
    confirmed = {part["partNumber"] for part in record["uploadParts"] if part["isCompleted"]}
    assert 2 <= len(confirmed) < parts
    assert store.head(key) is None, "nothing is visible until the upload completes"
    raw = ObsClient(
        access_key_id=FAKE_CREDENTIALS.access_key,
        secret_access_key=FAKE_CREDENTIALS.secret_key,
        server=moto_endpoint,
        signature="v4",
        path_style=True,
        max_retry_count=0,
    )
    on_server = raw.listParts(moto_bucket, key, record["uploadId"])
    assert on_server.status == 200
    assert confirmed <= {part.partNumber for part in on_server.body.parts}

    resumed = run_child({**args, "phase": "resume", "tasks": 3})
    assert resumed.returncode == 0, resumed.stderr
    outcome = json.loads(resumed.stdout.splitlines()[-1])
    assert outcome["sent"] == sorted(set(range(1, parts + 1)) - confirmed)
    assert outcome["md5"] == expected and outcome["etag"].endswith(f"-{parts}")
    assert not checkpoint.exists()
    assert md5_hex(store.get_bytes(key)) == expected
    head = store.head(key)
    assert head is not None and head.md5 == expected and head.size == source.stat().st_size


def test_a_missing_bucket_is_a_permanent_error_naming_it(moto_endpoint: str, tmp_path: Path) -> None:
    store = make_store(
        moto_endpoint, "arsl-no-such-bucket", tmp_path / "cp", multipart_threshold=5 * MIB, part_size=5 * MIB
    )
    with pytest.raises(PermanentStoreError) as caught:
        store.put_bytes("datasets/x.jpg", b"x", md5_hex(b"x"))
    message = str(caught.value)
    assert "arsl-no-such-bucket" in message and "datasets/x.jpg" in message
    assert "HTTP 404" in message and "NoSuchBucket" in message
    assert caught.value.status == 404 and caught.value.code == "NoSuchBucket"
    assert FAKE_CREDENTIALS.secret_key not in message

    big = tmp_path / "big.tar"
    big.write_bytes(os.urandom(6 * MIB))
    with pytest.raises(PermanentStoreError, match="NoSuchBucket"):
        store.put_file("datasets/big.tar", big, md5_hex(big.read_bytes()))
    with pytest.raises(PermanentStoreError, match="NoSuchBucket"):
        list(store.list("datasets/"))


def test_connection_refused_is_a_transient_error(tmp_path: Path) -> None:
    port = closed_port()
    store = make_store(f"http://127.0.0.1:{port}", "arsl-ml", tmp_path / "cp")
    with pytest.raises(TransientStoreError, match="ConnectionRefusedError") as caught:
        store.put_bytes("datasets/x.jpg", b"x", md5_hex(b"x"))
    assert f"127.0.0.1:{port}" in str(caught.value) and "'arsl-ml'" in str(caught.value)
    with pytest.raises(TransientStoreError):
        store.head("datasets/x.jpg")


def test_from_settings_reads_the_sdk_environment(
    moto_endpoint: str, moto_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        backend="huawei",
        home=str(tmp_path / "home"),
        huawei=HuaweiSettings(obs_endpoint=moto_endpoint, timeout_s=5.0),
        storage=StorageSettings(bucket=moto_bucket),
        upload=UploadSettings(multipart_threshold_mb=5, part_size_mb=5),
    )
    for name in ("OBS_ACCESS_KEY_ID", "OBS_SECRET_ACCESS_KEY", "HUAWEICLOUD_SDK_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", str(tmp_path / "no-credentials-file"))
    monkeypatch.delenv("HUAWEICLOUD_SDK_AK", raising=False)
    monkeypatch.delenv("HUAWEICLOUD_SDK_SK", raising=False)
    with pytest.raises(PermanentStoreError, match="HUAWEICLOUD_SDK_AK") as missing:
        ObsObjectStore.from_settings(settings)
    assert moto_bucket in str(missing.value)

    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", FAKE_CREDENTIALS.access_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", FAKE_CREDENTIALS.secret_key)
    store = ObsObjectStore.from_settings(settings)
    assert store.location == f"obs://{moto_bucket}"
    assert store.checkpoint_path("k").parent == tmp_path / "home" / "obs-checkpoints"
    store.put_bytes("datasets/from-settings.jpg", b"abc", md5_hex(b"abc"))
    head = store.head("datasets/from-settings.jpg")
    assert head is not None and head.md5 == md5_hex(b"abc")
