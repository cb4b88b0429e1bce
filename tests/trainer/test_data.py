"""The trainer reads class folders, manifests and shards the way the console writes them."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from arsl_tui.domain.manifest import SplitPolicy as ConsoleSplitPolicy
from arsl_tui.ops.dataset import validate_dataset, write_manifest
from arsl_tui.ops.shards import build_shards
from tests.trainer.conftest import solo_context
from trainer.data import DataError, SplitPolicy, list_dataset, load_cache
from trainer.preprocess import ImageDecodeError, decode_image

POLICY = SplitPolicy(seed=1337, val=0.2, test=0.2)


def everything(_: int) -> bool:
    return True


def shards_of(data: Path, target: Path) -> Path:
    report = validate_dataset(data, ConsoleSplitPolicy(seed=1337, val=0.2, test=0.2))
    build_shards(report.manifest, report.root, target, shard_size_bytes=200_000)
    return target


def shard_files(folder: Path) -> list[Path]:
    return sorted((folder / "shards").glob("shard-*.tar.gz"))


def rewrite_shard(shard: Path, change: Callable[[bytearray], None]) -> None:
    """Decompress a shard, let `change` edit the tar bytes in place, compress it again."""
    data = bytearray(gzip.decompress(shard.read_bytes()))
    change(data)
    shard.write_bytes(gzip.compress(bytes(data), mtime=0))


def test_folder_split_matches_the_console_manifest(small_data: Path) -> None:
    listing = list_dataset(small_data, POLICY, everything)
    report = validate_dataset(small_data, ConsoleSplitPolicy(seed=1337, val=0.2, test=0.2))
    assert {sample.source: sample.split for sample in listing.samples} == {
        image.path: image.split for image in report.manifest.images
    }
    assert listing.classes[0] == "ain" and len(listing.classes) == 32
    assert len(listing.payloads) == 320


def test_manifest_shards_and_folder_give_the_same_cache(small_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "with-manifest"
    shutil.copytree(small_data, data)
    report = validate_dataset(data, ConsoleSplitPolicy(seed=1337, val=0.2, test=0.2))
    write_manifest(report)
    shards = shards_of(data, tmp_path / "shards")
    assert len(shard_files(shards)) > 2
    caches = {
        kind: load_cache(path, POLICY, solo_context())
        for kind, path in (("folder", small_data), ("manifest", data), ("shards", shards))
    }
    assert {cache.kind for cache in caches.values()} == {"folder", "manifest", "shards"}
    assert caches["manifest"].dataset_id == report.manifest.id == caches["shards"].dataset_id
    for split in ("train", "val", "test"):
        reference = caches["folder"].splits[split]
        for kind in ("manifest", "shards"):
            other = caches[kind].splits[split]
            assert len(other) == len(reference)
            # shards are ordered by MD5, folders by path: compare the multiset of (label, pixels)
            ordered = sorted(zip(reference.labels.tolist(), reference.images.flatten(1).sum(1).tolist(), strict=True))
            assert sorted(zip(other.labels.tolist(), other.images.flatten(1).sum(1).tolist(), strict=True)) == ordered
    assert all(not cache.skipped for cache in caches.values())


def test_corrupt_image_in_the_middle_of_a_shard_stops_the_run_naming_the_shard(
    small_data: Path, tmp_path: Path
) -> None:
    shards = shards_of(small_data, tmp_path / "shards")
    shard = shard_files(shards)[1]
    name = shard.relative_to(shards).as_posix()
    with tarfile.open(shard) as archive:
        images = [member for member in archive.getmembers() if member.name.endswith(".jpg")]
    victim = images[len(images) // 2]

    def spoil(tar: bytearray) -> None:  # overwrite the middle of the JPEG data, keeping the tar structure
        middle = victim.offset_data + victim.size // 2
        tar[middle : middle + 64] = b"\x00" * 64

    rewrite_shard(shard, spoil)
    # Training on what is left would carry the full data set's manifest id over partial data.
    with pytest.raises(DataError, match=rf"{re.escape(name)}: \d+ bytes, shards.json lists \d+"):
        load_cache(shards, POLICY, solo_context())


def test_truncated_shard_stops_the_run_naming_the_shard(small_data: Path, tmp_path: Path) -> None:
    shards = shards_of(small_data, tmp_path / "shards")
    last = shard_files(shards)[-1]
    size = last.stat().st_size
    with last.open("r+b") as handle:
        handle.truncate(size // 2)
    name = last.relative_to(shards).as_posix()
    with pytest.raises(DataError, match=rf"{re.escape(name)}: \d+ bytes, shards.json lists \d+"):
        load_cache(shards, POLICY, solo_context())


def test_plain_tar_shards_of_the_first_format_are_still_read(small_data: Path, tmp_path: Path) -> None:
    shards = shards_of(small_data, tmp_path / "shards")
    compressed = load_cache(shards, POLICY, solo_context())
    index = json.loads((shards / "shards.json").read_bytes())
    plain = tmp_path / "plain"
    plain.mkdir()
    for entry in index["shards"]:  # arsl-shards/1: uncompressed tars beside shards.json, named without a folder
        tar = gzip.decompress((shards / entry["name"]).read_bytes())
        entry["name"] = entry["name"].removeprefix("shards/").removesuffix(".gz")
        (plain / entry["name"]).write_bytes(tar)
        entry["bytes"], entry["md5"] = len(tar), hashlib.md5(tar).hexdigest()
    index["format"] = "arsl-shards/1"
    (plain / "shards.json").write_text(json.dumps(index))
    cache = load_cache(plain, POLICY, solo_context())
    assert not cache.skipped and not cache.warnings
    for split in ("train", "val", "test"):
        assert torch.equal(cache.splits[split].labels, compressed.splits[split].labels)
        assert torch.equal(cache.splits[split].images, compressed.splits[split].images)


@pytest.mark.parametrize(
    "name",
    ["../outside.tar.gz", "/etc/passwd", "shards/../../x.tar", "shards/.hidden.tar", "shards\\x.tar", "shards//x.tar"],
)
def test_a_shard_name_leaving_the_folder_is_refused(small_data: Path, tmp_path: Path, name: str) -> None:
    shards = shards_of(small_data, tmp_path / "shards")
    index = json.loads((shards / "shards.json").read_bytes())
    index["shards"][0]["name"] = name
    (shards / "shards.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="is not a relative path inside"):
        load_cache(shards, POLICY, solo_context())


def test_manifest_md5_mismatch_stops_the_run_naming_the_image(small_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    write_manifest(validate_dataset(data, ConsoleSplitPolicy(seed=1337, val=0.2, test=0.2)))
    changed = data / "dal" / "dal_00003.jpg"
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(changed, format="JPEG")
    with pytest.raises(DataError, match=r"1 image\(s\) do not match manifest.json: dal/dal_00003.jpg: content differs"):
        load_cache(data, POLICY, solo_context())


def test_images_of_any_size_and_mode_become_64x64_grayscale(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGBA", (300, 200), (200, 10, 10, 255)).save(path)
    pixels = decode_image(path.read_bytes())
    assert pixels.shape == (64, 64) and pixels.dtype == np.uint8
    assert int(pixels[0, 0]) == round(0.299 * 200 + 0.587 * 10 + 0.114 * 10)
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        decode_image(b"this is not an image")
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")


def test_missing_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        load_cache(tmp_path / "absent", POLICY, solo_context())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_cache(tmp_path / "empty", POLICY, solo_context())


def test_pixel_statistics_are_those_of_the_training_split(small_data: Path) -> None:
    cache = load_cache(small_data, POLICY, solo_context())
    mean, std = cache.pixel_mean_std()
    pixels = cache.splits["train"].images.to(torch.float64) / 255
    assert mean == pytest.approx(pixels.mean().item(), rel=1e-9)
    assert std == pytest.approx(pixels.std(unbiased=False).item(), rel=1e-6)
