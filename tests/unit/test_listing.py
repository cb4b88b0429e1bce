"""Listing a prefix in key ranges at once: every object exactly once, in key order, expected or not."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from arsl_tui.domain.ports import ObjectInfo, ObjectStore
from arsl_tui.ops.listing import list_prefix, range_bounds
from arsl_tui.providers.local.store import LocalObjectStore
from tests.fixtures.store_wrappers import PassThroughStore


class CountingStore(PassThroughStore):
    """Records the `after` of each listing."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.afters: list[str] = []

    def list(self, prefix: str, after: str = "") -> Iterator[ObjectInfo]:
        self.afters.append(after)
        return self.inner.list(prefix, after)


def put(store: LocalObjectStore, key: str) -> None:
    store.put_bytes(key, key.encode(), hashlib.md5(key.encode()).hexdigest())


def test_bounds_split_the_expected_keys_evenly_and_few_keys_are_one_listing() -> None:
    keys = [f"k{index:05d}" for index in range(100)]
    assert range_bounds(keys, keys_per_range=25) == ["k00024", "k00049", "k00074"]
    assert range_bounds(reversed(keys), keys_per_range=25) == ["k00024", "k00049", "k00074"]
    assert range_bounds(keys, keys_per_range=60) == [], "one range: a plain listing"
    assert len(range_bounds([f"k{index:06d}" for index in range(10_000)], keys_per_range=10)) == 15, "at most 16"


def test_ranges_cover_every_key_once_including_unexpected_ones(tmp_path: Path) -> None:
    local = LocalObjectStore(tmp_path / "bucket")
    expected = [f"ds/files/{label:02d}/{index:03d}.jpg" for label in range(8) for index in range(40)]
    # Unexpected objects before the first expected key, between two ranges' bounds, after the last one,
    # and outside the prefix (never listed).
    unexpected = ["ds/.manifest.json.staged", "ds/files/00/000.jpg.tmp", "ds/files/03/0395.jpg", "ds/zzz"]
    for key in [*expected, *unexpected, "dt/files/00/000.jpg", "d/x"]:
        put(local, key)
    store = CountingStore(local)
    bounds = range_bounds(expected, keys_per_range=40)
    assert len(bounds) == 7

    listed = list_prefix(store, "ds/", expected, keys_per_range=40)

    keys = [info.key for info in listed]
    assert keys == sorted([*expected, *unexpected])
    assert sorted(store.afters) == ["", *bounds]
    assert all(info.md5 == hashlib.md5(info.key.encode()).hexdigest() for info in listed)


def test_a_missing_expected_key_leaves_no_gap(tmp_path: Path) -> None:
    local = LocalObjectStore(tmp_path / "bucket")
    expected = [f"p/{index:04d}" for index in range(200)]
    for key in expected:
        put(local, key)
    bounds = range_bounds(expected, keys_per_range=50)
    for key in bounds:  # the bounds themselves are missing from the store
        local.delete(key)
    listed = [info.key for info in list_prefix(local, "p/", expected, keys_per_range=50)]
    assert listed == [key for key in expected if key not in bounds]
