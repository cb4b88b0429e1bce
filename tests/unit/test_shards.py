"""WebDataset shards: complete, exact, compressed, deterministic to the byte, reused only when intact."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

from arsl_tui.domain.classes import ARSL_CLASSES, class_index
from arsl_tui.domain.manifest import ImageRecord, Manifest, SplitPolicy
from arsl_tui.ops.dataset import ValidationReport, validate_dataset
from arsl_tui.ops.shards import (
    SHARDS_INDEX_NAME,
    TAIL_SHARE,
    PackingCancelled,
    ShardError,
    _image_extension,
    _sample_bytes,
    _sample_members,
    build_shards,
    load_shard_set,
    parse_index,
    plan_shards,
    shard_limit,
    tar_header,
)
from tests.conftest import DatasetFactory

SHARD_BYTES = 40_000


@pytest.fixture
def report(make_dataset: DatasetFactory) -> ValidationReport:
    result = validate_dataset(make_dataset(per_class=4), SplitPolicy())
    assert result.ok
    return result


def read_samples(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            assert member.mtime == 0 and member.uid == 0 and member.gid == 0
            assert member.uname == "" and member.gname == ""
            key, _, extension = member.name.partition(".")
            handle = archive.extractfile(member)
            assert handle is not None
            samples[key][extension] = handle.read()
    return samples


def test_shards_hold_every_image_exactly_once(report: ValidationReport, tmp_path: Path) -> None:
    shard_set = build_shards(report.manifest, report.root, tmp_path / "staging", SHARD_BYTES)
    assert len(shard_set.shards) > 1, "the size limit splits the set"
    seen: dict[str, dict[str, bytes]] = {}
    for number, shard in enumerate(shard_set.shards):
        # The layout: shards.json names each shard relative to its own folder.
        assert shard.name == f"shards/shard-{number:06d}.tar.gz"
        path = shard_set.path(shard)
        assert path == tmp_path / "staging" / "shards" / f"shard-{number:06d}.tar.gz"
        data = path.read_bytes()
        assert (len(data), hashlib.md5(data).hexdigest()) == (shard.bytes, shard.md5)
        samples = read_samples(path)
        assert len(samples) == shard.samples
        # The uncompressed tar stream stays within the limit; the stored object is smaller still.
        assert len(gzip.decompress(data)) <= SHARD_BYTES
        assert not seen.keys() & samples.keys()
        seen.update(samples)
    by_md5 = {image.md5: image for image in report.manifest.images}
    assert seen.keys() == by_md5.keys()
    for key, sample in seen.items():
        image = by_md5[key]
        assert sample["jpg"] == (report.root / image.path).read_bytes()
        assert sample["cls"] == str(class_index(image.cls)).encode()
        assert json.loads(sample["json"]) == {
            "path": image.path,
            "class": image.cls,
            "split": image.split,
            "md5": image.md5,
        }
    manifest_id, size, listed = parse_index((shard_set.folder / SHARDS_INDEX_NAME).read_bytes())
    assert (manifest_id, size, listed) == (report.manifest.id, SHARD_BYTES, shard_set.shards)
    assert sum(shard.samples for shard in listed) == len(report.manifest.images)


def test_classes_are_mixed_within_a_shard(report: ValidationReport, tmp_path: Path) -> None:
    shard_set = build_shards(report.manifest, report.root, tmp_path / "staging", SHARD_BYTES)
    first = read_samples(shard_set.path(shard_set.shards[0]))
    classes = {json.loads(sample["json"])["class"] for sample in first.values()}
    assert len(classes) > len(first) // 3, "samples are not grouped by class folder"


def test_same_data_gives_byte_identical_shards(report: ValidationReport, tmp_path: Path) -> None:
    first = build_shards(report.manifest, report.root, tmp_path / "one", SHARD_BYTES, workers=1)
    second = build_shards(report.manifest, report.root, tmp_path / "two", SHARD_BYTES, workers=2)  # processes
    assert first.shards == second.shards
    assert first.index_bytes == second.index_bytes
    for shard in first.shards:
        data = first.path(shard).read_bytes()
        assert data == second.path(shard).read_bytes()
        # A gzip header that records no time and no file name (FLG 0, MTIME 0): nothing varies per build.
        assert data[:4] == b"\x1f\x8b\x08\x00" and data[4:8] == bytes(4)


def test_compression_removes_the_tar_framing(report: ValidationReport, tmp_path: Path) -> None:
    shard_set = build_shards(report.manifest, report.root, tmp_path / "staging", SHARD_BYTES)
    stored = sum(shard.bytes for shard in shard_set.shards)
    tar = sum(len(gzip.decompress(shard_set.path(shard).read_bytes())) for shard in shard_set.shards)
    images = report.manifest.total_bytes
    # These test images are noise JPEGs, which do not compress: what goes is the three 512-byte headers
    # and the padding of every sample, so the shards come close to the images' own bytes.
    assert tar > images + 3 * 512 * len(report.manifest.images)
    assert stored < images * 1.05


def test_an_intact_build_is_reused_and_a_damaged_one_rebuilt(report: ValidationReport, tmp_path: Path) -> None:
    folder = tmp_path / "staging"
    built = build_shards(report.manifest, report.root, folder, SHARD_BYTES)
    shard_path = built.path(built.shards[0])
    inode = shard_path.stat().st_ino
    assert build_shards(report.manifest, report.root, folder, SHARD_BYTES).shards == built.shards
    assert shard_path.stat().st_ino == inode, "reused, not rewritten"
    assert load_shard_set(folder, report.manifest.id, SHARD_BYTES * 2) is None, "another size is another build"
    assert load_shard_set(folder, "0" * 64, SHARD_BYTES) is None

    damaged = bytearray(shard_path.read_bytes())
    damaged[700] ^= 0xFF
    shard_path.write_bytes(bytes(damaged))
    assert load_shard_set(folder, report.manifest.id, SHARD_BYTES) is None
    rebuilt = build_shards(report.manifest, report.root, folder, SHARD_BYTES)
    assert rebuilt.shards == built.shards
    assert hashlib.md5(shard_path.read_bytes()).hexdigest() == built.shards[0].md5


def test_an_image_changed_since_validation_is_refused(report: ValidationReport, tmp_path: Path) -> None:
    victim = report.root / report.manifest.images[5].path
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(ShardError, match=r"changed since it was validated"):
        build_shards(report.manifest, report.root, tmp_path / "staging", SHARD_BYTES)
    assert not (tmp_path / "staging").exists()
    assert not list(tmp_path.glob(".staging.building-*")), "a failed build leaves nothing behind"


def test_cancelling_stops_packing_and_leaves_nothing(report: ValidationReport, tmp_path: Path) -> None:
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 1  # polled as shards complete: stops at the second poll, with shards still to pack

    with pytest.raises(PackingCancelled):
        build_shards(report.manifest, report.root, tmp_path / "out" / "staging", SHARD_BYTES, cancelled=cancelled)
    assert not list((tmp_path / "out").iterdir())


def test_a_shard_name_outside_its_folder_is_refused(report: ValidationReport, tmp_path: Path) -> None:
    shard_set = build_shards(report.manifest, report.root, tmp_path / "staging", SHARD_BYTES)
    index = json.loads(shard_set.index_bytes)
    for name in ("../elsewhere.tar.gz", "/abs.tar.gz", "shards/.hidden.tar.gz"):
        index["shards"][0]["name"] = name
        with pytest.raises(ShardError, match="not a relative path inside its folder"):
            parse_index(json.dumps(index).encode())


@pytest.mark.parametrize(
    ("name", "size"), [("a.cls", 1), ("0" * 32 + ".json", 137), ("x" * 100, 8**11 - 1), ("é.jpg", 0)]
)
def test_hand_built_headers_equal_tarfiles(name: str, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
    assert tar_header(name, size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def test_a_build_left_by_a_killed_process_is_removed_and_a_live_ones_kept(
    report: ValidationReport, tmp_path: Path
) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(ended.stdout)  # a process that has exited: its build can never be finished
    abandoned = tmp_path / f".staging.building-{dead_pid}-0badc0de"
    (abandoned / "shards").mkdir(parents=True)
    (abandoned / "shards" / "shard-000000.tar.gz.partial-1-x").write_bytes(b"half a shard")
    live = tmp_path / f".staging.building-{os.getpid()}-00c0ffee"  # this process is alive: not ours to remove
    live.mkdir()
    build_shards(report.manifest, report.root, tmp_path / "staging", SHARD_BYTES)
    assert not abandoned.exists()
    assert live.exists()


def test_the_first_and_last_shards_are_smaller_so_the_link_is_busy_early_and_idle_late_only_briefly() -> None:
    # 30,000 images of 12 KB: about 420 MB of tar, planned without reading a file.
    images = tuple(
        ImageRecord(
            path=f"{ARSL_CLASSES[index % 32]}/img{index:05d}.jpg",
            cls=ARSL_CLASSES[index % 32],
            bytes=12_000,
            md5=hashlib.md5(str(index).encode()).hexdigest(),
            split="train",
            width=64,
            height=64,
            mode="L",
        )
        for index in range(30_000)
    )
    size = 64 << 20
    planned = plan_shards(Manifest(SplitPolicy(), images), size)
    assert [shard_limit(number, size) for number in range(4)] == [size // 16, size // 4, size, size]
    assert [shard.tar_bytes <= shard_limit(shard.number, size) for shard in planned] == [True] * len(planned)
    sizes = [shard.tar_bytes for shard in planned]
    assert sizes[0] > size // 16 - 20_000 and sizes[1] > size // 4 - 20_000, "each takes what its limit allows"
    assert sizes[2] > size - 20_000, "then full shards"
    tail = sizes[2:]
    assert tail == sorted(tail, reverse=True), "then shrinking ones"
    for index, tar_bytes in enumerate(sizes):
        # The samples still to plan are fewer bytes than the shards that hold them (archive padding).
        assert tar_bytes <= max(sum(sizes[index:]) // TAIL_SHARE, size // 16) + 2 * 10_240 or index < 2
    assert max(sizes[-3:]) <= size // 16, "the last shards are no bigger than the first"
    assert sum(len(shard.samples) for shard in planned) == len(images)
    # A small configured size is not cut further: a ramp step under 1 MiB would only add requests.
    assert [shard_limit(number, 4 << 20) for number in range(3)] == [4 << 20, 1 << 20, 4 << 20]
    assert [shard_limit(number, 1 << 20) for number in range(3)] == [1 << 20] * 3


@pytest.mark.parametrize(
    "path",
    ["ain/a.jpg", "ain/a.JPEG", "ain/b.tar.png", "ain/..jpg", "ain/a..png", "ain/.b.jpg", 'ain/q"u\\o\nte\x01é.jpg'],
)
def test_planning_counts_a_sample_exactly_as_packing_writes_it(path: str) -> None:
    """The plan's fast count of a sample's bytes (no JSON encoded where no value needs an escape) must equal
    what packing writes, or shards overflow their limit."""
    md5 = hashlib.md5(path.encode()).hexdigest()
    image = ImageRecord(path=path, cls="ain", bytes=1500, md5=md5, split="val", width=64, height=64, mode="L")
    members = _sample_members(path, md5, "ain", "val", b"x" * 1500)
    assert _sample_bytes(image) == sum(512 + -(-len(data) // 512) * 512 for _, data in members)


@pytest.mark.parametrize("path", ["ain/.jpg", "ain/a.", "ain/a.gif", "ain/jpg", "a.b/c"])
def test_a_path_without_an_image_extension_is_refused_by_name(path: str) -> None:
    with pytest.raises(ShardError, match=r"extension is not \.jpg, \.jpeg or \.png"):
        _image_extension(path)
