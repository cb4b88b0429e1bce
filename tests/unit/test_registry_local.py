"""The model registry on the local folder store: numbering, aliases, the log, concurrency, bad records."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from arsl_tui.domain.ports import ObjectStore
from arsl_tui.ops.registry import ModelRegistry, PackageError, inspect_package
from arsl_tui.providers.local.store import LocalObjectStore
from tests.fixtures import registry_checks
from tests.fixtures.model_packages import write_package


@pytest.fixture
def open_registry(tmp_path: Path) -> Callable[[], ModelRegistry]:
    root = tmp_path / "bucket"
    return lambda: ModelRegistry(LocalObjectStore(root), "models/")


def test_numbering_aliases_and_the_promotion_log(open_registry: Callable[[], ModelRegistry], tmp_path: Path) -> None:
    registry_checks.check_numbering_aliases_and_log(open_registry, tmp_path)


def test_registering_a_job_again_returns_its_version(
    open_registry: Callable[[], ModelRegistry], tmp_path: Path
) -> None:
    registry_checks.check_registering_a_job_again_returns_its_version(open_registry, tmp_path)


def test_concurrent_threads_get_distinct_versions(open_registry: Callable[[], ModelRegistry], tmp_path: Path) -> None:
    registry_checks.check_concurrent_writers_get_distinct_versions(open_registry, tmp_path, writers=8)


def test_corrupt_and_missing_records_name_the_key(open_registry: Callable[[], ModelRegistry], tmp_path: Path) -> None:
    registry_checks.check_corrupt_and_missing_records_are_named(open_registry, tmp_path)


def _register_in_process(root: str, scratch: str, seeds: list[int], start: multiprocessing.synchronize.Event) -> None:
    registry = ModelRegistry(LocalObjectStore(Path(root)), "models/")
    start.wait()
    for seed in seeds:
        registry_checks.register(registry, Path(scratch), seed)


def test_concurrent_processes_get_distinct_versions_and_lose_nothing(tmp_path: Path) -> None:
    root, scratch = tmp_path / "bucket", tmp_path / "scratch"
    groups = [[200, 201], [210, 211], [220, 221]]
    seeds = [seed for group in groups for seed in group]
    for seed in seeds:
        write_package(scratch / f"package-{seed}", seed, job_id=f"job-{seed}")
    context = multiprocessing.get_context("fork")
    start = context.Event()
    processes = [
        context.Process(target=_register_in_process, args=(str(root), str(scratch), seeds, start)) for seeds in groups
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    registry = ModelRegistry(LocalObjectStore(root), "models/")
    versions = registry.list()
    assert [record.version for record in versions] == [f"v{number}" for number in range(1, 7)]
    assert sorted(record.lineage.job_id for record in versions) == sorted(f"job-{s}" for s in seeds)
    log = registry.log()
    assert sorted(entry.to_version for entry in log if entry.action == "register") == [f"v{n}" for n in range(1, 7)]
    assert registry.aliases()["challenger"] == "v6"


class LostReplyStore:
    """Forwards to a real store, but answers the first conditional create of each key as if it was retried
    after a lost reply: the object is created, and the caller hears 'it already exists'."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.seen: set[str] = set()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def put_if_absent(self, key: str, data: bytes, md5_hex: str) -> bool:
        created = self.inner.put_if_absent(key, data, md5_hex)
        if key not in self.seen:
            self.seen.add(key)
            return False
        return created


def test_a_lost_reply_to_a_successful_create_does_not_skip_a_number(tmp_path: Path) -> None:
    store = LostReplyStore(LocalObjectStore(tmp_path / "bucket"))
    registry = ModelRegistry(store, "models/")  # type: ignore[arg-type]
    assert registry_checks.register(registry, tmp_path, 31).version == "v1"
    assert registry_checks.register(registry, tmp_path, 32).version == "v2"
    assert [entry.seq for entry in registry.log()] == [1, 2, 3, 4, 5]


def test_put_if_absent_creates_once_and_never_exposes_a_partial_file(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "bucket")
    assert store.put_if_absent("a/b.json", b"first", "8b04d5e3775d298e78455efc5ca404d5")
    assert not store.put_if_absent("a/b.json", b"second", "a9f0e61a137d86aa9db53465e0801612")
    assert store.get_bytes("a/b.json") == b"first"
    info = store.head("a/b.json")
    assert info is not None and info.md5 == "8b04d5e3775d298e78455efc5ca404d5"
    assert os.listdir(tmp_path / "bucket" / ".arsl-store" / "tmp") == []
    with pytest.raises(Exception, match=r"MD5 mismatch storing 'c.json'"):
        store.put_if_absent("c.json", b"data", "0" * 32)
    assert store.head("c.json") is None
    store.put_bytes("folder/inner.json", b"x", "9dd4e461268c8034f5c8564e155c67a6")
    with pytest.raises(Exception, match=r"a folder has that name"):
        store.put_if_absent("folder", b"x", "9dd4e461268c8034f5c8564e155c67a6")


def test_packages_that_could_unpickle_or_were_changed_are_refused(tmp_path: Path) -> None:
    package = write_package(tmp_path / "pkg", 1)
    assert inspect_package(package).config["weights"] == "model.safetensors"
    (package / "extra.pt").write_bytes(b"\x80\x04pickle")
    with pytest.raises(PackageError, match=r"extra.pt: .pt files can run code when loaded \(pickle\)"):
        inspect_package(package)
    (package / "extra.pt").unlink()
    weights = package / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    with pytest.raises(PackageError, match=r"differs from weights_sha256 .* the package was changed after export"):
        inspect_package(package)
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(PackageError, match=r"model.safetensors: the safetensors header is not JSON"):
        inspect_package(package)
    (package / "config.json").unlink()
    with pytest.raises(PackageError, match=r"no config.json"):
        inspect_package(package)


def test_a_damaged_or_ahead_alias_cache_is_ignored_and_the_log_replayed(
    open_registry: Callable[[], ModelRegistry], tmp_path: Path
) -> None:
    registry = open_registry()
    registry_checks.register(registry, tmp_path, 41)
    registry_checks.register(registry, tmp_path, 42)
    expected = registry.aliases()
    assert expected == {"champion": "v1", "challenger": "v2"}
    for cache in (b"{not json", b'{"seq": 99, "aliases": {"champion": "v2"}, "registered": [], "overridden": []}'):
        registry.store.put_bytes("models/aliases.json", cache, hashlib.md5(cache, usedforsecurity=False).hexdigest())
        assert open_registry().aliases() == expected
