"""The directory-backed object store: atomic, checksummed writes, ordered listings, clear errors."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import threading
from pathlib import Path

import pytest

from arsl_tui.domain.ports import ObjectNotFound, PermanentStoreError, TransientStoreError
from arsl_tui.providers.local.store import RESERVED_DIR, LocalObjectStore


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "bucket")


def test_put_get_head_round_trip(store: LocalObjectStore, tmp_path: Path) -> None:
    info = store.put_bytes("datasets/x/a.bin", b"hello", md5(b"hello"))
    assert (info.key, info.size, info.md5) == ("datasets/x/a.bin", 5, md5(b"hello"))
    assert store.get_bytes("datasets/x/a.bin") == b"hello"
    assert store.head("datasets/x/a.bin") == info
    assert store.head("datasets/x/missing") is None
    assert store.head("datasets/x") is None, "a folder is not an object"
    # Objects live at their key, so local tools (and the local trainer) can read them directly.
    assert (tmp_path / "bucket" / "datasets" / "x" / "a.bin").read_bytes() == b"hello"

    source = tmp_path / "big.bin"
    payload = os.urandom(3 * (1 << 20) + 17)
    source.write_bytes(payload)
    stored = store.put_file("datasets/x/big.bin", source, md5(payload))
    assert stored.size == len(payload) and stored.md5 == md5(payload)
    target = tmp_path / "out" / "copy.bin"
    target.parent.mkdir()
    store.download_file("datasets/x/big.bin", target)
    assert target.read_bytes() == payload


def test_md5_mismatch_is_transient_and_leaves_nothing(store: LocalObjectStore, tmp_path: Path) -> None:
    with pytest.raises(TransientStoreError, match="MD5 mismatch") as caught:
        store.put_bytes("k/a", b"data", md5(b"other"))
    assert caught.value.code == "BadDigest"
    assert store.head("k/a") is None
    store.put_bytes("k/a", b"old", md5(b"old"))
    with pytest.raises(TransientStoreError):
        store.put_bytes("k/a", b"new", md5(b"corrupted in transit"))
    assert store.get_bytes("k/a") == b"old", "a failed put must not replace the object"
    assert not list((tmp_path / "bucket" / RESERVED_DIR / "tmp").iterdir()), "temporary files are cleaned up"


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "a\nb", f"{RESERVED_DIR}/meta/x"])
def test_unsafe_keys_are_refused(store: LocalObjectStore, key: str) -> None:
    with pytest.raises(PermanentStoreError) as caught:
        store.put_bytes(key, b"x", md5(b"x"))
    assert caught.value.code == "InvalidKey"
    assert str(caught.value).startswith("invalid object key")


def test_listing_is_in_key_order_and_hides_sidecars(store: LocalObjectStore) -> None:
    keys = ["a/b", "a-c", "a/b0", "a/b/c", "ab", "b", "a0", "ä/x", "a/é"]
    for key in keys:
        try:
            store.put_bytes(key, key.encode(), md5(key.encode()))
        except PermanentStoreError:
            # "a/b" is an object, so "a/b/c" cannot also be one in a file system: a clear refusal, not a crash.
            assert key == "a/b/c"
    stored = [key for key in keys if key != "a/b/c"]
    listed = list(store.list(""))
    assert [info.key for info in listed] == sorted(stored, key=lambda key: key.encode())
    assert all(info.md5 == md5(info.key.encode()) for info in listed)
    assert [info.key for info in store.list("a/")] == ["a/b", "a/b0", "a/é"]
    assert [info.key for info in store.list("a")] == ["a-c", "a/b", "a/b0", "a/é", "a0", "ab"]
    assert list(store.list("nothing/")) == []
    assert list(store.list(f"{RESERVED_DIR}/")) == []
    # `after`: only keys that sort after it, as OBS's marker; a key that is not stored still places the start.
    assert [info.key for info in store.list("a", after="a/b")] == ["a/b0", "a/é", "a0", "ab"]
    assert [info.key for info in store.list("a", after="a/c")] == ["a/é", "a0", "ab"]
    assert list(store.list("a", after="ab")) == []


def test_listing_after_any_marker_is_the_full_listing_past_it(store: LocalObjectStore) -> None:
    # Folders wholly before the marker are skipped unread; this checks that skipping loses and adds nothing.
    keys = ["d/a/1", "d/a/2", "d/a-b", "d/a0/x", "d/b/c/1", "d/b/c/2", "d/b/d", "d/bb", "d/é/1", "d/z"]
    for key in keys:
        store.put_bytes(key, key.encode(), md5(key.encode()))
    full = [info.key for info in store.list("d/")]
    assert full == sorted(keys)
    markers = {*keys, "", "d/", "d/a", "d/a/", "d/a/3", "d/b", "d/b/", "d/b/c", "d/b/c/", "d/b/cz", "d/é", "d/zz", "e"}
    for marker in sorted(markers):
        assert [info.key for info in store.list("d/", after=marker)] == [key for key in full if key > marker], marker


def test_key_clashing_with_a_folder_is_a_clear_permanent_error(store: LocalObjectStore) -> None:
    store.put_bytes("p/q/r", b"x", md5(b"x"))
    with pytest.raises(PermanentStoreError, match="clashes") as caught:
        store.put_bytes("p/q", b"y", md5(b"y"))
    assert caught.value.code == "KeyConflict"


def test_delete_removes_object_and_prunes_empty_folders(store: LocalObjectStore, tmp_path: Path) -> None:
    store.put_bytes("d/e/f", b"1", md5(b"1"))
    store.put_bytes("d/g", b"2", md5(b"2"))
    store.delete("d/e/f")
    store.delete("d/e/f")  # deleting a missing key is not an error, as in S3
    assert [info.key for info in store.list("")] == ["d/g"]
    assert not (tmp_path / "bucket" / "d" / "e").exists()
    with pytest.raises(ObjectNotFound):
        store.get_bytes("d/e/f")
    with pytest.raises(ObjectNotFound):
        store.download_file("d/e/f", tmp_path / "nowhere.bin")


def test_a_file_changed_behind_the_store_is_rehashed(store: LocalObjectStore, tmp_path: Path) -> None:
    store.put_bytes("k", b"original", md5(b"original"))
    (tmp_path / "bucket" / "k").write_bytes(b"tampered!")
    info = store.head("k")
    assert info is not None and info.md5 == md5(b"tampered!") and info.size == 9
    # A foreign file (no sidecar at all) is an object too, with its real MD5.
    (tmp_path / "bucket" / "foreign.txt").write_bytes(b"hi")
    assert {info.key: info.md5 for info in store.list("")}["foreign.txt"] == md5(b"hi")


def test_full_disk_is_a_clear_permanent_error(
    store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_space(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # fsync is where a full disk surfaces for delayed-allocation file systems.
    monkeypatch.setattr("arsl_tui.providers.local.store.os.fsync", no_space)
    with pytest.raises(PermanentStoreError, match="is full") as caught:
        store.put_bytes("k/full", b"data", md5(b"data"))
    assert caught.value.code == "NoSpace"
    assert str(tmp_path / "bucket") in str(caught.value)
    monkeypatch.undo()
    assert store.head("k/full") is None


def test_unusable_root_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(PermanentStoreError, match="store folder"):
        LocalObjectStore(blocker / "bucket")


def test_concurrent_puts_are_atomic(store: LocalObjectStore) -> None:
    versions = [bytes([index]) * (50_000 + index) for index in range(8)]
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            for _ in range(5):
                store.put_bytes("same/key", versions[index], md5(versions[index]))
                store.put_bytes(f"own/{index}", versions[index], md5(versions[index]))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    final = store.get_bytes("same/key")
    assert final in versions, "the object is one whole version, never a mix"
    info = store.head("same/key")
    assert info is not None and info.md5 == md5(final), "the recorded MD5 describes the bytes actually there"
    assert {info.key for info in store.list("own/")} == {f"own/{index}" for index in range(8)}


# --- copy ------------------------------------------------------------------------------------------


def test_copy_gives_an_identical_object_and_replaces_what_the_key_held(store: LocalObjectStore, tmp_path: Path) -> None:
    manifest = b'{"shards": ["a", "b"]}\n' * 1000
    store.put_bytes("datasets/d1/.manifest.json.staged", manifest, md5(manifest))
    store.put_bytes("datasets/d1/manifest.json", b"an older manifest", md5(b"an older manifest"))

    copied = store.copy("datasets/d1/.manifest.json.staged", "datasets/d1/manifest.json", md5(manifest).upper())

    assert (copied.key, copied.size, copied.md5) == ("datasets/d1/manifest.json", len(manifest), md5(manifest))
    assert store.get_bytes("datasets/d1/manifest.json") == manifest
    assert store.head("datasets/d1/manifest.json") == copied
    assert store.get_bytes("datasets/d1/.manifest.json.staged") == manifest, "the source stays"
    # The recorded MD5 describes the copy's own file (a fresh store instance trusts it without re-hashing).
    assert LocalObjectStore(tmp_path / "bucket")._recorded_md5(
        "datasets/d1/manifest.json", (tmp_path / "bucket" / "datasets/d1/manifest.json").stat()
    ) == md5(manifest)
    store.delete("datasets/d1/.manifest.json.staged")
    assert store.get_bytes("datasets/d1/manifest.json") == manifest, "the copy is its own file, not a link"
    assert not list((tmp_path / "bucket" / RESERVED_DIR / "tmp").iterdir())


def test_copy_of_a_missing_source_is_a_permanent_error_naming_it(store: LocalObjectStore) -> None:
    store.put_bytes("datasets/d1/manifest.json", b"kept", md5(b"kept"))
    store.put_bytes("datasets/d1/sub/x", b"x", md5(b"x"))
    for missing in ("datasets/d1/.manifest.json.staged", "datasets/d1/sub", "datasets/d1/manifest.json/x"):
        with pytest.raises(PermanentStoreError, match=re.escape(f"no object '{missing}'")) as caught:
            store.copy(missing, "datasets/d1/manifest.json", md5(b"kept"))
        assert (caught.value.code, caught.value.status) == ("NoSuchKey", 404)
    assert store.get_bytes("datasets/d1/manifest.json") == b"kept"


def test_copy_with_the_wrong_md5_raises_and_leaves_the_key_as_it_was(store: LocalObjectStore, tmp_path: Path) -> None:
    store.put_bytes("staged", b"the staged bytes", md5(b"the staged bytes"))
    store.put_bytes("final", b"what final held", md5(b"what final held"))

    with pytest.raises(TransientStoreError, match="left as it was") as caught:
        store.copy("staged", "final", md5(b"what the caller expected"))
    assert caught.value.code == "NotConfirmed"
    assert md5(b"the staged bytes") in str(caught.value)
    assert store.get_bytes("final") == b"what final held"
    with pytest.raises(TransientStoreError, match="left as it was"):
        store.copy("staged", "new-key", md5(b"what the caller expected"))
    assert store.head("new-key") is None
    assert not list((tmp_path / "bucket" / RESERVED_DIR / "tmp").iterdir()), "temporary files are cleaned up"


def test_copy_onto_itself_only_checks(store: LocalObjectStore) -> None:
    info = store.put_bytes("a/b", b"same", md5(b"same"))
    assert store.copy("a/b", "a/b", md5(b"same")) == info
    with pytest.raises(TransientStoreError) as caught:
        store.copy("a/b", "a/b", md5(b"other"))
    assert caught.value.code == "NotConfirmed"
    assert store.get_bytes("a/b") == b"same"


def test_copy_refuses_unsafe_keys(store: LocalObjectStore) -> None:
    store.put_bytes("a", b"x", md5(b"x"))
    for source, target in (("a", "../b"), ("../a", "b"), ("a", f"{RESERVED_DIR}/meta/x")):
        with pytest.raises(PermanentStoreError) as caught:
            store.copy(source, target, md5(b"x"))
        assert caught.value.code == "InvalidKey"
