"""The real `obs.ObsClient`, built the way production builds it, against the loopback OBS contract server.

`ObsObjectStore.from_settings` gets settings whose only difference from the production default is the
endpoint URL: `http://obs.<region>.myhuaweicloud.com:<port>` instead of `https://obs.<region>.myhuaweicloud.com`.
So the adapter picks what it picks in production (OBS's own signature, virtual-host addressing) and the
requests carry `Host: arsl-ml.obs.<region>.myhuaweicloud.com`. The test's DNS (`loopback_dns`) sends
those names to 127.0.0.1, where `ObsContractServer` verifies each request's HMAC-SHA1 signature, Host
and Date as OBS's API reference describes them (see tests/fixtures/obs_contract.py for each rule's page).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from arsl_tui.config import HuaweiSettings, Settings, StorageSettings, UploadSettings
from arsl_tui.domain.ports import ObjectNotFound, PermanentStoreError, TransientStoreError
from arsl_tui.providers.huawei.credentials import Credentials
from arsl_tui.providers.huawei.obs import MIB, ObsObjectStore
from tests.fixtures.obs_contract import MAX_CLOCK_SKEW_S, ObsContractServer, loopback_dns, sign, string_to_sign
from tests.providers.conftest import FAKE_CREDENTIALS

BUCKET = "arsl-ml"
REGION = "cn-north-4"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture
def obs() -> Iterator[ObsContractServer]:
    """The contract server, with the test's DNS pointing `*.myhuaweicloud.com` at it."""
    credentials = {FAKE_CREDENTIALS.access_key: FAKE_CREDENTIALS.secret_key}
    with ObsContractServer(credentials=credentials, buckets=(BUCKET,), region=REGION) as server, loopback_dns():
        yield server


def settings_for(server: ObsContractServer, home: Path) -> Settings:
    return Settings(
        backend="huawei",
        home=str(home),
        huawei=HuaweiSettings(region=server.region, obs_endpoint=server.endpoint, timeout_s=5.0),
        storage=StorageSettings(bucket=BUCKET),
        upload=UploadSettings(multipart_threshold_mb=5, part_size_mb=5),
    )


@pytest.fixture
def open_store(obs: ObsContractServer, tmp_path: Path) -> Iterator[Any]:
    """Builds stores through `from_settings` (the production path) and closes them after the test."""
    stores: list[ObsObjectStore] = []

    def open_one(credentials: Credentials = FAKE_CREDENTIALS) -> ObsObjectStore:
        store = ObsObjectStore.from_settings(
            settings_for(obs, tmp_path / "home"), credentials=credentials, max_retry_count=0
        )
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        store.close()


def raw_client(server: ObsContractServer, **options: Any) -> Any:
    """The SDK client itself, for the operations the port does not expose (multipart by hand, path style)."""
    from obs import ObsClient

    options.setdefault("path_style", False)
    return ObsClient(
        access_key_id=FAKE_CREDENTIALS.access_key,
        secret_access_key=FAKE_CREDENTIALS.secret_key,
        server=server.endpoint,
        signature="obs",
        is_signature_negotiation=False,
        max_retry_count=0,
        timeout=5,
        security_provider_policy=None,
        **options,
    )


# --- the production construction -------------------------------------------------------------------


def test_the_store_addresses_the_bucket_by_virtual_host_with_the_obs_signature(
    obs: ObsContractServer, open_store: Any
) -> None:
    default_host = urlparse(HuaweiSettings(region=REGION).endpoint("obs")).hostname
    assert urlparse(obs.endpoint).hostname == default_host == f"obs.{REGION}.myhuaweicloud.com"

    store = open_store()
    store.put_bytes("datasets/d1/a.jpg", b"abc", md5_hex(b"abc"))

    (seen,) = obs.requests
    assert (seen.method, seen.status, seen.code) == ("PUT", 200, None)
    assert seen.host == f"{BUCKET}.obs.{REGION}.myhuaweicloud.com:{obs.port}"
    assert seen.target == "/datasets/d1/a.jpg", "the bucket is in the Host name, not the path"
    assert seen.authorization_scheme == "OBS"
    assert seen.content_md5, "every put carries Content-MD5"
    assert seen.expected_string_to_sign is not None
    assert seen.expected_string_to_sign.endswith(f"\n/{BUCKET}/datasets/d1/a.jpg")


# --- put, get, head, list, delete ------------------------------------------------------------------


def test_put_get_head_download_delete_round_trip(obs: ObsContractServer, open_store: Any, tmp_path: Path) -> None:
    store = open_store()
    image = os.urandom(3000)
    put = store.put_bytes("datasets/d1/ain/0001.jpg", image, md5_hex(image))
    assert (put.size, put.md5, put.etag) == (3000, md5_hex(image), md5_hex(image))
    source = tmp_path / "shards.json"
    source.write_bytes(b'{"shards": []}\n')
    assert store.put_file("datasets/d1/shards.json", source, md5_hex(source.read_bytes())).size == source.stat().st_size
    assert obs.objects(BUCKET)["datasets/d1/shards.json"].data == source.read_bytes()

    head = store.head("datasets/d1/ain/0001.jpg")
    assert head is not None and (head.size, head.md5) == (3000, md5_hex(image))
    assert store.head("datasets/d1/ain/missing.jpg") is None
    assert store.get_bytes("datasets/d1/ain/0001.jpg") == image
    copy = tmp_path / "down" / "0001.jpg"
    store.download_file("datasets/d1/ain/0001.jpg", copy)
    assert copy.read_bytes() == image

    store.delete("datasets/d1/ain/0001.jpg")
    store.delete("datasets/d1/ain/0001.jpg")  # OBS answers 204 for a missing object too
    assert store.head("datasets/d1/ain/0001.jpg") is None
    with pytest.raises(ObjectNotFound, match="NoSuchKey"):
        store.get_bytes("datasets/d1/ain/0001.jpg")
    assert all(seen.authorization_scheme == "OBS" and seen.code in (None, "NoSuchKey") for seen in obs.requests)


@pytest.mark.parametrize("key", ["datasets/d1/with space.jpg", "datasets/d1/plus+sign.jpg", "datasets/d1/عين/0001.jpg"])
def test_keys_that_need_encoding_are_signed_as_they_are_sent(obs: ObsContractServer, open_store: Any, key: str) -> None:
    store = open_store()
    store.put_bytes(key, b"x", md5_hex(b"x"))
    assert store.get_bytes(key) == b"x"
    assert list(obs.objects(BUCKET)) == [key]


def test_temporary_credentials_sign_their_security_token(obs: ObsContractServer, open_store: Any) -> None:
    temporary = Credentials(
        access_key=FAKE_CREDENTIALS.access_key,
        secret_key=FAKE_CREDENTIALS.secret_key,
        security_token="token-fake-0123",
        source="tests",
    )
    open_store(temporary).put_bytes("datasets/d1/a.jpg", b"abc", md5_hex(b"abc"))

    (seen,) = obs.requests
    assert seen.status == 200
    assert seen.expected_string_to_sign is not None
    assert "\nx-obs-security-token:token-fake-0123\n" in seen.expected_string_to_sign


def test_a_body_that_does_not_match_its_content_md5_is_refused(obs: ObsContractServer, open_store: Any) -> None:
    store = open_store()
    with pytest.raises(TransientStoreError, match="BadDigest"):
        store.put_bytes("datasets/d1/bad.jpg", b"the body", md5_hex(b"another body"))
    assert "datasets/d1/bad.jpg" not in obs.objects(BUCKET)


def test_list_pages_by_marker_past_1000_keys(obs: ObsContractServer, open_store: Any) -> None:
    store = open_store()
    keys = [f"datasets/d2/img/{index:05d}.jpg" for index in range(1003)]
    with ThreadPoolExecutor(max_workers=4) as pool:  # one client shared by threads, as the upload engine does
        list(pool.map(lambda key: store.put_bytes(key, key.encode(), md5_hex(key.encode())), keys))
    store.put_bytes("datasets/d2-other/x.jpg", b"x", md5_hex(b"x"))

    listed = list(store.list("datasets/d2/"))

    assert [info.key for info in listed] == keys
    assert all(info.md5 == md5_hex(info.key.encode()) for info in listed)
    pages = [seen.target for seen in obs.requests if seen.method == "GET" and seen.target.startswith("/?")]
    assert len(pages) == 2
    assert "marker=" not in pages[0]
    assert "marker=datasets/d2/img/00999.jpg" in pages[1].replace("%2F", "/")

    seen_before = len(obs.requests)
    since = [info.key for info in store.list("datasets/d2/", after="datasets/d2/img/01000.jpg")]
    assert since == keys[1001:]
    later = obs.requests[seen_before:]
    pages = [seen.target for seen in later if seen.method == "GET" and seen.target.startswith("/?")]
    assert len(pages) == 1 and "marker=datasets/d2/img/01000.jpg" in pages[0].replace("%2F", "/")


# --- multipart: the adapter's large-file path ------------------------------------------------------


def test_a_large_file_goes_up_in_parts_and_reads_back_verified(
    obs: ObsContractServer, open_store: Any, tmp_path: Path
) -> None:
    store = open_store()
    source = tmp_path / "shard-0001.tar"
    data = os.urandom(11 * MIB + 5)
    source.write_bytes(data)

    stored = store.put_file("datasets/d3/shard-0001.tar", source, md5_hex(data))

    assert stored.etag is not None and stored.etag.endswith("-3"), "three 5 MiB parts"
    kept = obs.objects(BUCKET)["datasets/d3/shard-0001.tar"]
    assert kept.data == data and kept.metadata == {"arsl-md5": md5_hex(data)}
    steps = [(seen.method, seen.target.split("?")[1].split("=")[0]) for seen in obs.requests if "?" in seen.target]
    assert steps[0] == ("POST", "uploads") and steps[-1] == ("POST", "uploadId")
    assert sorted(steps[1:-1]) == [("PUT", "partNumber")] * 3
    assert obs.pending_uploads() == {}

    head = store.head("datasets/d3/shard-0001.tar")
    assert head is not None and (head.size, head.md5) == (len(data), md5_hex(data))
    assert [info.md5 for info in store.list("datasets/d3/")] == [md5_hex(data)]
    assert store.get_bytes("datasets/d3/shard-0001.tar") == data


def test_multipart_rules_of_the_api_reference(obs: ObsContractServer) -> None:
    from obs import CompleteMultipartUploadRequest, CompletePart

    client = raw_client(obs)
    try:
        key = "datasets/d4/parts.bin"
        upload_id = client.initiateMultipartUpload(BUCKET, key).body.uploadId
        small, last = b"s" * 1024, b"l" * 10
        first = client.uploadPart(BUCKET, key, 1, upload_id, content=small)
        second = client.uploadPart(BUCKET, key, 2, upload_id, content=last)
        assert (first.status, second.status) == (200, 200)

        wrong_etag = CompleteMultipartUploadRequest(
            [CompletePart(1, md5_hex(b"other")), CompletePart(2, second.body.etag)]
        )
        refused = client.completeMultipartUpload(BUCKET, key, upload_id, wrong_etag)
        assert (refused.status, refused.errorCode) == (400, "InvalidPart")

        too_small = CompleteMultipartUploadRequest(
            [CompletePart(1, first.body.etag), CompletePart(2, second.body.etag)]
        )
        refused = client.completeMultipartUpload(BUCKET, key, upload_id, too_small)
        assert (refused.status, refused.errorCode) == (400, "EntityTooSmall")

        assert client.abortMultipartUpload(BUCKET, key, upload_id).status == 204
        gone = client.uploadPart(BUCKET, key, 3, upload_id, content=last)
        assert (gone.status, gone.errorCode) == (404, "NoSuchUpload")
        assert key not in obs.objects(BUCKET) and obs.pending_uploads() == {}
    finally:
        client.close()


# --- copy: the staged manifest made final with one server-side request -----------------------------


def test_copy_is_one_put_with_the_copy_source_header_and_no_body(obs: ObsContractServer, open_store: Any) -> None:
    store = open_store()
    manifest = b'{"shards": ["shard-0001.tar"]}\n'
    store.put_bytes("datasets/d9/.manifest.json.staged", manifest, md5_hex(manifest))
    store.put_bytes("datasets/d9/manifest.json", b"an older one", md5_hex(b"an older one"))
    seen_before = len(obs.requests)

    copied = store.copy("datasets/d9/.manifest.json.staged", "datasets/d9/manifest.json", md5_hex(manifest))

    assert (copied.key, copied.size, copied.md5, copied.etag) == (
        "datasets/d9/manifest.json",
        len(manifest),
        md5_hex(manifest),
        md5_hex(manifest),
    )
    head, put = obs.requests[seen_before:]
    assert (head.method, head.target, head.status) == ("HEAD", "/datasets/d9/.manifest.json.staged", 200)
    assert (put.method, put.target, put.status, put.code) == ("PUT", "/datasets/d9/manifest.json", 200, None)
    assert put.copy_source == f"/{BUCKET}/datasets/d9/.manifest.json.staged"
    assert put.body_size == 0 and not put.content_md5, "no bytes travel with a copy"
    assert put.authorization_scheme == "OBS" and put.expected_string_to_sign is not None
    assert f"\nx-obs-copy-source:/{BUCKET}/datasets/d9/.manifest.json.staged\n" in put.expected_string_to_sign
    assert f"\nx-obs-copy-source-if-match:{md5_hex(manifest)}\n" in put.expected_string_to_sign
    assert obs.objects(BUCKET)["datasets/d9/manifest.json"].data == manifest
    assert store.get_bytes("datasets/d9/manifest.json") == manifest


def test_copy_of_a_key_that_needs_encoding_is_signed_as_sent(obs: ObsContractServer, open_store: Any) -> None:
    store = open_store()
    store.put_bytes("datasets/عين/with space+.staged", b"x", md5_hex(b"x"))
    store.copy("datasets/عين/with space+.staged", "datasets/عين/final json", md5_hex(b"x"))
    assert obs.objects(BUCKET)["datasets/عين/final json"].data == b"x"
    assert all(seen.status == 200 for seen in obs.requests)


def test_copy_of_a_multipart_source_is_confirmed_by_a_head(
    obs: ObsContractServer, open_store: Any, tmp_path: Path
) -> None:
    store = open_store()
    source = tmp_path / "big.bin"
    data = os.urandom(6 * MIB)
    source.write_bytes(data)
    stored = store.put_file("datasets/d9/big.staged", source, md5_hex(data))
    assert stored.etag is not None and stored.etag.endswith("-2")
    seen_before = len(obs.requests)

    copied = store.copy("datasets/d9/big.staged", "datasets/d9/big.bin", md5_hex(data))

    assert (copied.size, copied.md5, copied.etag) == (len(data), md5_hex(data), stored.etag)
    assert [(seen.method, seen.target) for seen in obs.requests[seen_before:]] == [
        ("HEAD", "/datasets/d9/big.staged"),
        ("PUT", "/datasets/d9/big.bin"),
        ("HEAD", "/datasets/d9/big.bin"),
    ]
    assert obs.objects(BUCKET)["datasets/d9/big.bin"].metadata == {"arsl-md5": md5_hex(data)}, "metadata copied"


def test_copy_of_a_missing_source_is_a_permanent_error_naming_it(obs: ObsContractServer, open_store: Any) -> None:
    store = open_store()
    store.put_bytes("datasets/d9/manifest.json", b"kept", md5_hex(b"kept"))

    with pytest.raises(PermanentStoreError, match=r"no object 'datasets/d9/\.manifest\.json\.staged'") as refused:
        store.copy("datasets/d9/.manifest.json.staged", "datasets/d9/manifest.json", md5_hex(b"kept"))

    assert (refused.value.code, refused.value.status) == ("NoSuchKey", 404)
    assert not refused.value.transient
    assert obs.objects(BUCKET)["datasets/d9/manifest.json"].data == b"kept"
    assert [seen.method for seen in obs.requests][-1] == "HEAD", "no copy is sent for a source that is not there"


def test_a_copy_of_other_content_leaves_the_key_as_it_was(obs: ObsContractServer, open_store: Any) -> None:
    store = open_store()
    store.put_bytes("datasets/d9/.manifest.json.staged", b"a stale manifest", md5_hex(b"a stale manifest"))
    store.put_bytes("datasets/d9/manifest.json", b"kept", md5_hex(b"kept"))

    with pytest.raises(TransientStoreError, match="left as it was") as refused:
        store.copy("datasets/d9/.manifest.json.staged", "datasets/d9/manifest.json", md5_hex(b"the new manifest"))

    assert refused.value.code == "NotConfirmed"
    assert obs.objects(BUCKET)["datasets/d9/manifest.json"].data == b"kept"
    assert not [seen for seen in obs.requests if seen.copy_source is not None]


@pytest.mark.parametrize("race", ["deleted", "replaced"])
def test_a_source_changed_between_the_check_and_the_copy_is_refused_by_the_server(
    obs: ObsContractServer, open_store: Any, monkeypatch: pytest.MonkeyPatch, race: str
) -> None:
    store = open_store()
    staged = "datasets/d9/.manifest.json.staged"
    store.put_bytes(staged, b"checked", md5_hex(b"checked"))
    checked = store.head(staged)
    store.put_bytes("datasets/d9/manifest.json", b"kept", md5_hex(b"kept"))
    if race == "deleted":
        store.delete(staged)
    else:
        store.put_bytes(staged, b"swapped in", md5_hex(b"swapped in"))
    monkeypatch.setattr(store, "head", lambda key: checked if key == staged else None)  # what the check saw

    with pytest.raises((PermanentStoreError, TransientStoreError)) as refused:
        store.copy(staged, "datasets/d9/manifest.json", md5_hex(b"checked"))

    copy = obs.requests[-1]
    assert copy.copy_source is not None
    if race == "deleted":
        assert (copy.status, copy.code) == (404, "NoSuchKey")
        assert isinstance(refused.value, PermanentStoreError) and refused.value.code == "NoSuchKey"
        assert staged in str(refused.value)
    else:
        assert (copy.status, copy.code) == (412, "PreconditionFailed")
        assert isinstance(refused.value, TransientStoreError) and refused.value.code == "NotConfirmed"
    assert obs.objects(BUCKET)["datasets/d9/manifest.json"].data == b"kept"


def test_a_source_past_the_single_copy_limit_is_refused_before_any_copy(
    obs: ObsContractServer, open_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import arsl_tui.providers.huawei.obs as obs_module

    store = open_store()
    store.put_bytes("datasets/d9/a.bin", b"0123456789", md5_hex(b"0123456789"))
    monkeypatch.setattr(obs_module, "MAX_COPY_SIZE", 9)

    with pytest.raises(PermanentStoreError, match="one copy may create") as refused:
        store.copy("datasets/d9/a.bin", "datasets/d9/b.bin", md5_hex(b"0123456789"))

    assert refused.value.code == "EntityTooLarge"
    assert not [seen for seen in obs.requests if seen.copy_source is not None]


def signed_copy(server: ObsContractServer, key: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """A copy request signed by hand (OBS signature), for what the SDK never sends: a body, a bad source."""
    sent = {"Date": formatdate(usegmt=True), **headers}
    if body:
        sent["Content-Type"] = "application/octet-stream"
    text = string_to_sign("PUT", list(sent.items()), BUCKET, f"/{key}", [])
    sent["Authorization"] = f"OBS {FAKE_CREDENTIALS.access_key}:{sign(FAKE_CREDENTIALS.secret_key, text)}"
    sent["Host"] = f"{BUCKET}.{server.endpoint_host}"
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("PUT", f"/{key}", body=body, headers=sent)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_copy_rules_of_the_api_reference(obs: ObsContractServer, open_store: Any) -> None:
    store = open_store()
    store.put_bytes("datasets/d9/src", b"0123456789", md5_hex(b"0123456789"))
    source = f"/{BUCKET}/datasets/d9/src"

    # obs_04_0082: the request carries no message body.
    assert signed_copy(obs, "datasets/d9/dst", {"x-obs-copy-source": source}, b"a body")[0] == 400
    # The copy source names the bucket and the object.
    for bad in (f"/{BUCKET}", f"/{BUCKET}/", "/", f"{BUCKET}"):
        status, answer = signed_copy(obs, "datasets/d9/dst", {"x-obs-copy-source": bad})
        assert (status, b"<Code>InvalidArgument</Code>" in answer) == (400, True), bad
    # A missing source object or bucket: 404.
    status, answer = signed_copy(obs, "datasets/d9/dst", {"x-obs-copy-source": f"/{BUCKET}/datasets/d9/none"})
    assert (status, b"<Code>NoSuchKey</Code>" in answer) == (404, True)
    status, answer = signed_copy(obs, "datasets/d9/dst", {"x-obs-copy-source": "/no-such-bucket/datasets/d9/src"})
    assert (status, b"<Code>NoSuchBucket</Code>" in answer) == (404, True)
    # The metadata directive is COPY or REPLACE; an object copied onto itself needs REPLACE.
    assert (
        signed_copy(obs, "datasets/d9/dst", {"x-obs-copy-source": source, "x-obs-metadata-directive": "MOVE"})[0] == 400
    )
    assert signed_copy(obs, "datasets/d9/src", {"x-obs-copy-source": source})[0] == 400
    # The source's ETag must match x-obs-copy-source-if-match: else 412.
    status, answer = signed_copy(
        obs, "datasets/d9/dst", {"x-obs-copy-source": source, "x-obs-copy-source-if-match": md5_hex(b"other")}
    )
    assert (status, b"<Code>PreconditionFailed</Code>" in answer) == (412, True)
    # At most 5 GB in one copy (lowered here, so the test needs no 5 GB object).
    obs.max_copy_size = 9
    status, answer = signed_copy(obs, "datasets/d9/dst", {"x-obs-copy-source": source})
    assert (status, b"<Code>EntityTooLarge</Code>" in answer) == (400, True)
    obs.max_copy_size = 10
    status, answer = signed_copy(obs, "datasets/d9/dst", {"x-obs-copy-source": source})
    assert status == 200 and b"<CopyObjectResult" in answer and md5_hex(b"0123456789").encode() in answer

    assert set(obs.objects(BUCKET)) == {"datasets/d9/src", "datasets/d9/dst"}


def test_the_sdk_reads_the_copy_answer_and_its_refusals(obs: ObsContractServer) -> None:
    client = raw_client(obs)
    try:
        assert client.putContent(BUCKET, "datasets/d9/src", content=b"abc").status == 200
        copied = client.copyObject(BUCKET, "datasets/d9/src", BUCKET, "datasets/d9/dst")
        missing = client.copyObject(BUCKET, "datasets/d9/none", BUCKET, "datasets/d9/dst2")
    finally:
        client.close()
    assert copied.status == 200
    assert copied.body.etag.strip('"') == md5_hex(b"abc") and copied.body.lastModified
    assert (missing.status, missing.errorCode) == (404, "NoSuchKey")
    assert "datasets/d9/dst2" not in obs.objects(BUCKET)


# --- what the server refuses (so its checks can fail) ----------------------------------------------


def test_a_wrong_secret_key_is_refused_signature_does_not_match(obs: ObsContractServer, open_store: Any) -> None:
    impostor = Credentials(access_key=FAKE_CREDENTIALS.access_key, secret_key="not-the-secret-key", source="tests")
    store = open_store(impostor)

    with pytest.raises(PermanentStoreError, match="SignatureDoesNotMatch") as refused:
        store.put_bytes("datasets/d5/a.jpg", b"abc", md5_hex(b"abc"))

    assert refused.value.status == 403
    assert "not-the-secret-key" not in str(refused.value)
    assert obs.objects(BUCKET) == {}
    (seen,) = obs.refusals()
    assert seen.code == "SignatureDoesNotMatch" and seen.expected_string_to_sign is not None


def test_a_wrong_secret_key_stops_a_multipart_upload_before_any_part(
    obs: ObsContractServer, open_store: Any, tmp_path: Path
) -> None:
    impostor = Credentials(access_key=FAKE_CREDENTIALS.access_key, secret_key="not-the-secret-key", source="tests")
    source = tmp_path / "big.bin"
    data = os.urandom(6 * MIB)
    source.write_bytes(data)

    with pytest.raises(PermanentStoreError, match="check the secret key") as refused:
        open_store(impostor).put_file("datasets/d5/big.bin", source, md5_hex(data))

    assert refused.value.status == 403
    assert [(seen.method, seen.target, seen.code) for seen in obs.requests] == [("HEAD", "/", "SignatureDoesNotMatch")]
    assert obs.pending_uploads() == {}


def test_a_missing_bucket_is_named_on_both_upload_paths(
    obs: ObsContractServer, tmp_path: Path, checkpoint_dir: Path
) -> None:
    store = ObsObjectStore(
        server=obs.endpoint,
        bucket="no-such-bucket",
        credentials=FAKE_CREDENTIALS,
        checkpoint_dir=checkpoint_dir,
        max_retry_count=0,
        timeout_s=5.0,
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )
    source = tmp_path / "big.bin"
    data = os.urandom(6 * MIB)
    source.write_bytes(data)
    try:
        with pytest.raises(PermanentStoreError, match="NoSuchBucket"):
            store.put_bytes("datasets/a.jpg", b"abc", md5_hex(b"abc"))
        with pytest.raises(PermanentStoreError, match="the bucket does not exist"):
            store.put_file("datasets/big.bin", source, md5_hex(data))
    finally:
        store.close()


def test_an_aws_v4_signature_is_not_taken_for_an_obs_one(obs: ObsContractServer, checkpoint_dir: Path) -> None:
    store = ObsObjectStore(
        server=obs.endpoint,
        bucket=BUCKET,
        credentials=FAKE_CREDENTIALS,
        checkpoint_dir=checkpoint_dir,
        max_retry_count=0,
        timeout_s=5.0,
        signature="v4",
    )
    try:
        with pytest.raises(PermanentStoreError, match="SignatureDoesNotMatch"):
            store.put_bytes("datasets/a.jpg", b"abc", md5_hex(b"abc"))
    finally:
        store.close()
    assert [seen.authorization_scheme for seen in obs.requests] == ["AWS4-HMAC-SHA256"]


def test_an_unknown_access_key_is_refused(obs: ObsContractServer, open_store: Any) -> None:
    stranger = Credentials(access_key="AKUNKNOWN", secret_key=FAKE_CREDENTIALS.secret_key, source="tests")
    with pytest.raises(PermanentStoreError, match="InvalidAccessKeyId"):
        open_store(stranger).get_bytes("datasets/d5/a.jpg")


def test_a_path_style_request_is_refused_virtual_host_domain_required(obs: ObsContractServer) -> None:
    client = raw_client(obs, path_style=True)
    try:
        result = client.putContent(BUCKET, "datasets/d6/a.jpg", content=b"abc")
    finally:
        client.close()

    assert (result.status, result.errorCode) == (403, "VirtualHostDomainRequired")
    (seen,) = obs.requests
    assert seen.host == f"obs.{REGION}.myhuaweicloud.com:{obs.port}" and seen.target == f"/{BUCKET}/datasets/d6/a.jpg"
    assert obs.objects(BUCKET) == {}


@pytest.mark.parametrize("skew_s", [MAX_CLOCK_SKEW_S + 60, -(MAX_CLOCK_SKEW_S + 60)])
def test_a_request_time_beyond_15_minutes_is_refused(obs: ObsContractServer, open_store: Any, skew_s: int) -> None:
    obs.clock = lambda: time.time() + skew_s  # the server's clock, not the client's, is moved

    with pytest.raises(PermanentStoreError, match="RequestTimeTooSkewed"):
        open_store().put_bytes("datasets/d7/a.jpg", b"abc", md5_hex(b"abc"))
    assert obs.objects(BUCKET) == {}


def test_a_request_time_within_15_minutes_is_accepted(obs: ObsContractServer, open_store: Any) -> None:
    obs.clock = lambda: time.time() + MAX_CLOCK_SKEW_S - 60

    open_store().put_bytes("datasets/d7/a.jpg", b"abc", md5_hex(b"abc"))
    assert list(obs.objects(BUCKET)) == ["datasets/d7/a.jpg"]


def test_an_unsigned_request_is_refused_with_an_xml_error(obs: ObsContractServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", obs.port, timeout=5)
    try:
        connection.request(
            "GET",
            "/datasets/d8/a.jpg",
            headers={"Host": f"{BUCKET}.{obs.endpoint_host}", "Date": formatdate(usegmt=True)},
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status == 403
    assert response.getheader("Content-Type") == "application/xml"
    assert b"<Code>AccessDenied</Code>" in body and b"<RequestId>" in body


def test_conditional_create_is_refused_where_obs_documents_no_create_only_header(
    obs: ObsContractServer, open_store: Any
) -> None:
    # OBS's PUT reference lists neither x-obs-forbid-overwrite nor If-None-Match, and says a PUT overwrites;
    # the adapter's start-up probe must then refuse conditional creates instead of trusting them.
    with pytest.raises(PermanentStoreError, match="does not honour conditional creates") as refused:
        open_store().put_if_absent("models/versions/0001.json", b"{}", md5_hex(b"{}"))

    assert refused.value.code == "ConditionalCreateUnsupported"
    assert obs.objects(BUCKET) == {}, "the probe object is removed and the real key never written"


# --- the server's StringToSign against the API reference's own examples ----------------------------


@pytest.mark.parametrize(
    ("method", "headers", "path", "query", "expected"),
    [
        # obs_04_0010 Table 2: obtaining an object.
        (
            "GET",
            [("Host", "bucket.obs.region.example.com"), ("Date", "Sat, 12 Oct 2015 08:12:38 GMT")],
            "/object.txt",
            [],
            "GET\n\n\nSat, 12 Oct 2015 08:12:38 GMT\n/bucket/object.txt",
        ),
        # obs_04_0010 Table 4: an upload with an x-obs- header and a Content-Type.
        (
            "PUT",
            [
                ("User-Agent", "curl/7.15.5"),
                ("Date", "Mon, 14 Oct 2015 12:08:34 GMT"),
                ("x-obs-acl", "public-read"),
                ("content-type", "text/plain"),
                ("Content-Length", "5913339"),
            ],
            "/object.txt",
            [],
            "PUT\n\ntext/plain\nMon, 14 Oct 2015 12:08:34 GMT\nx-obs-acl:public-read\n/bucket/object.txt",
        ),
        # obs_04_0010 Table 5: a sub-resource is part of the resource.
        (
            "GET",
            [("Date", "Sat, 12 Oct 2015 08:12:38 GMT")],
            "/object.txt",
            [("acl", "")],
            "GET\n\n\nSat, 12 Oct 2015 08:12:38 GMT\n/bucket/object.txt?acl",
        ),
        # obs_04_0010 Table 6: Content-MD5 signed, Date empty when x-obs-date is sent.
        (
            "PUT",
            [
                ("x-obs-date", "Tue, 15 Oct 2015 07:20:09 GMT"),
                ("Content-MD5", "I5pU0r4+sgO9Emgl1KMQUg=="),
                ("Content-Length", "5913339"),
            ],
            "/object.txt",
            [],
            "PUT\nI5pU0r4+sgO9Emgl1KMQUg==\n\n\nx-obs-date:Tue, 15 Oct 2015 07:20:09 GMT\n/bucket/object.txt",
        ),
    ],
)
def test_string_to_sign_matches_the_documented_examples(
    method: str, headers: list[tuple[str, str]], path: str, query: list[tuple[str, str]], expected: str
) -> None:
    assert string_to_sign(method, headers, "bucket", path, query) == expected


def test_string_to_sign_sorts_sub_resources_and_leaves_other_parameters_out() -> None:
    # obs_04_0010 Table 1 (CanonicalizedResource) example: /bucket-test/object-test?response-content-type=
    # text/plain&versionId=xxx; prefix/marker-style parameters are not sub-resources.
    query = [("versionId", "xxx"), ("marker", "m"), ("response-content-type", "text/plain")]
    text = string_to_sign("GET", [("Date", "d")], "bucket-test", "/object-test", query)
    assert text.endswith("\n/bucket-test/object-test?response-content-type=text/plain&versionId=xxx")
