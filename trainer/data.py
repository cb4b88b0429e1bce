"""The data set → a uint8 tensor cache of every split, decoded once.

`--data DIR` may hold (searched in this order, in DIR or its single sub-folder):
- `shards.json` and the WebDataset shards it names (`arsl upload --mode shards`). `shards.json` names
  each shard by its path relative to the folder holding `shards.json` (`shards/shard-000000.tar.gz`),
  so a data set's store prefix, copied down as it is (`manifest.json`, `shards.json`, `shards/`), is a
  DIR this reads; the classes come from `manifest.json` beside `shards.json` (see `trainer/shards.py`);
- `manifest.json` (`arsl-manifest/1`): paths, classes, MD5s and splits. The paths are relative to
  DIR, or to `DIR/files/` when that folder exists — the layout of `arsl upload --mode files`
  (`manifest.json`, `files/<class>/<name>`), so that prefix, copied down, is read as it is too;
- class folders only (`<class>/*.jpg|jpeg|png`, the ArSL2018 download layout): every file is hashed and
  assigned to a split from its MD5 with the manifest's rule, sha256("<seed>:<md5>"), so a folder and its
  manifest split the same way.

Every rank lists the same samples in the same order, decodes every `world_size`-th one (pixels as
`preprocess.decode_image` makes them, the same as serving), and the parts are all-gathered, so each
rank ends with the whole cache in memory (on the GPU when there is one) after decoding only its share.

A data set that carries its own integrity record must match it, or nothing is trained: a shard that
is missing, of another size, cut short, unreadable or of another MD5 than `shards.json` lists, and an
image that is missing or of another MD5 than `manifest.json` lists, is a `DataError` naming the file
(a model trained on part of the data would carry the whole data set's manifest id in its lineage).
Without such a record (class folders), a sample that cannot be used (unreadable, undecodable, not an
image) is left out, counted and reported by name; so is an undecodable image in an intact data set.
A split or class left without images is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from trainer.distributed import DistContext
from trainer.preprocess import IMAGE_SIZE, ImageDecodeError, decode_image
from trainer.shards import (
    SHARDS_INDEX_NAME,
    ShardEntry,
    ShardIndexError,
    ShardReadReport,
    iter_shard,
    read_shard_index,
)

MANIFEST_NAME = "manifest.json"
FILES_FOLDER = "files"
"""Where an upload in files mode puts the images, beside `manifest.json`."""
MANIFEST_FORMAT = "arsl-manifest/1"
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


class DataError(Exception):
    """The data cannot be trained on; the message names the file, split or class."""


@dataclass(frozen=True)
class SplitPolicy:
    """The manifest's split rule, for class folders without a manifest."""

    seed: int = 1337
    val: float = 0.1
    test: float = 0.1

    def assign(self, md5_hex: str) -> str:
        digest = hashlib.sha256(f"{self.seed}:{md5_hex}".encode()).digest()
        position = int.from_bytes(digest[:8], "big") / 2**64
        if position < self.test:
            return "test"
        if position < self.test + self.val:
            return "val"
        return "train"


@dataclass(frozen=True)
class Skipped:
    source: str
    problem: str

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "problem": self.problem}


@dataclass(frozen=True)
class Sample:
    source: str  # what an error message names: a relative path, or "<shard>:<key>"
    label: int
    split: str


@dataclass
class Listing:
    """Every sample of the data set in a fixed order, and the bytes of the ones this rank decodes."""

    kind: str
    root: Path
    classes: tuple[str, ...]
    dataset_id: str
    samples: list[Sample] = field(default_factory=list)
    payloads: dict[int, bytes] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged: list[Skipped] = field(default_factory=list)
    """Files that contradict the data set's own integrity record (this rank's share): fatal."""


@dataclass
class SplitData:
    images: torch.Tensor  # (N, 1, 64, 64) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class DataCache:
    kind: str
    root: Path
    classes: tuple[str, ...]
    dataset_id: str
    splits: dict[str, SplitData]
    skipped: list[Skipped]
    warnings: list[str]

    def pixel_mean_std(self) -> tuple[float, float]:
        """Mean and standard deviation of the training pixels in [0, 1] (the normalisation)."""
        images = self.splits["train"].images
        # A histogram of the 256 grey levels is exact and ~30× cheaper than summing float64 copies of every pixel.
        counts = torch.bincount(images.flatten(), minlength=256).to(torch.float64)
        levels = torch.arange(256, dtype=torch.float64, device=images.device) / 255.0
        count = images.numel()
        mean = float((counts * levels).sum()) / count
        std = max(float((counts * levels * levels).sum()) / count - mean * mean, 1e-12) ** 0.5
        return mean, std


def find_data_root(folder: Path) -> Path:
    """`folder`, or its single sub-folder when that is where the data set lies (ModelArts inputs)."""
    if not folder.exists():
        raise DataError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise DataError(f"{folder}: is a file, expected a data set folder")
    if (folder / SHARDS_INDEX_NAME).is_file() or (folder / MANIFEST_NAME).is_file():
        return folder
    entries = [entry for entry in folder.iterdir() if not entry.name.startswith(".")]
    folders = [entry for entry in entries if entry.is_dir()]
    if len(folders) == 1 and len(entries) == 1:
        inner = folders[0]
        inner_folders = [entry for entry in inner.iterdir() if entry.is_dir() and not entry.name.startswith(".")]
        if (inner / SHARDS_INDEX_NAME).is_file() or (inner / MANIFEST_NAME).is_file() or inner_folders:
            return inner
    return folder


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read(path: Path) -> bytes | str:
    """File bytes, or why they cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return "file not found"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"


def _list_folder(root: Path, policy: SplitPolicy, owned: Callable[[int], bool]) -> Listing:
    class_folders = sorted(entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not class_folders:
        raise DataError(
            f"{root}: no class folders (expected <class>/*.jpg), no {MANIFEST_NAME}, no {SHARDS_INDEX_NAME}"
        )
    classes = tuple(folder.name for folder in class_folders)
    listing = Listing(kind="folder", root=root, classes=classes, dataset_id="")
    identity = hashlib.sha256()
    for label, folder in enumerate(class_folders):
        files = sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))
        images = [entry for entry in files if entry.suffix.lower() in IMAGE_SUFFIXES]
        for entry in files:
            if entry.suffix.lower() not in IMAGE_SUFFIXES:
                listing.skipped.append(Skipped(f"{folder.name}/{entry.name}", "not a .jpg, .jpeg or .png file"))
        if not images:
            raise DataError(f"class {folder.name!r} has no images ({folder})")
        for entry in images:
            source = f"{folder.name}/{entry.name}"
            data = _read(entry)
            if isinstance(data, str):
                listing.skipped.append(Skipped(source, data))
                continue
            md5 = _md5(data)
            identity.update(f"{source}\0{md5}\n".encode())
            index = len(listing.samples)
            listing.samples.append(Sample(source, label, policy.assign(md5)))
            if owned(index):
                listing.payloads[index] = data
    listing.dataset_id = "folder-sha256:" + identity.hexdigest()
    return listing


def _list_manifest(root: Path, owned: Callable[[int], bool]) -> Listing:
    path = root / MANIFEST_NAME
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise DataError(f"{path}: format is {found!r}, expected {MANIFEST_FORMAT!r}")
    try:
        classes = tuple(str(name) for name in raw["classes"])
        entries = [
            (str(item["path"]), str(item["class"]), str(item["md5"]), str(item["split"])) for item in raw["images"]
        ]
    except (KeyError, TypeError) as error:
        raise DataError(f"{path}: missing or malformed field ({error})") from None
    label_of = {name: index for index, name in enumerate(classes)}
    listing = Listing(kind="manifest", root=root, classes=classes, dataset_id=str(raw.get("id", "")))
    images = root / FILES_FOLDER if (root / FILES_FOLDER).is_dir() else root
    resolved_root = images.resolve()
    for relative, cls, md5, split in entries:
        if cls not in label_of:
            raise DataError(f"{path}: image {relative!r} has class {cls!r}, which is not in 'classes'")
        if split not in SPLITS:
            raise DataError(f"{path}: image {relative!r} has split {split!r}, expected one of {', '.join(SPLITS)}")
        file = (images / relative).resolve()
        if not file.is_relative_to(resolved_root):
            raise DataError(f"{path}: image path {relative!r} leaves the data set folder")
        index = len(listing.samples)
        listing.samples.append(Sample(relative, label_of[cls], split))
        if owned(index):
            data = _read(file)
            if isinstance(data, str):
                listing.damaged.append(Skipped(relative, data))
            elif _md5(data) != md5:
                listing.damaged.append(
                    Skipped(
                        relative,
                        f"content differs from the manifest ({len(data)} bytes, "
                        f"MD5 {_md5(data)}, the manifest says {md5})",
                    )
                )
            else:
                listing.payloads[index] = data
    return listing


def _damaged_shard(root: Path, name: str, problem: str) -> DataError:
    return DataError(
        f"{root / name}: {problem}; the shard is not the one {SHARDS_INDEX_NAME} lists, so the data "
        "set copy is incomplete or damaged: download or upload it again (nothing was trained)"
    )


def _check_shard_file(root: Path, entry: ShardEntry) -> None:
    """Fail fast on a shard that is missing or of another size than `shards.json` lists."""
    try:
        size = (root / entry.name).stat().st_size
    except FileNotFoundError:
        raise _damaged_shard(root, entry.name, "file not found") from None
    except OSError as error:
        raise _damaged_shard(root, entry.name, f"cannot be read ({error.strerror or error})") from None
    if size != entry.bytes:
        raise _damaged_shard(root, entry.name, f"{size} bytes, {SHARDS_INDEX_NAME} lists {entry.bytes}")


def _manifest_classes(root: Path) -> tuple[str, ...] | None:
    for candidate in (root / MANIFEST_NAME, root.parent / MANIFEST_NAME):
        try:
            raw = json.loads(candidate.read_bytes())
            return tuple(str(name) for name in raw["classes"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _list_shards(root: Path, policy: SplitPolicy, owned: Callable[[int], bool]) -> Listing:
    try:
        index = read_shard_index(root / SHARDS_INDEX_NAME)
    except ShardIndexError as error:
        raise DataError(str(error)) from None
    listing = Listing(kind="shards", root=root, classes=(), dataset_id=index.manifest_id)
    names: dict[int, str] = {}
    for entry in index.shards:
        _check_shard_file(root, entry)
        report = ShardReadReport()
        for shard_sample in iter_shard(root / entry.name, report, entry.samples):
            source = f"{entry.name}:{shard_sample.key}"
            meta = shard_sample.meta()
            data = shard_sample.image()
            label = shard_sample.class_index()
            if data is None or label is None:
                missing = "image" if data is None else ".cls class index"
                listing.skipped.append(Skipped(source, f"sample has no {missing}"))
                continue
            md5 = _md5(data)
            if isinstance(meta.get("md5"), str) and meta["md5"] != md5:
                listing.skipped.append(Skipped(source, "image bytes differ from the MD5 in its .json (corrupt)"))
                continue
            split = meta.get("split") if meta.get("split") in SPLITS else policy.assign(md5)
            if isinstance(meta.get("class"), str):
                names.setdefault(label, meta["class"])
            sample_index = len(listing.samples)
            listing.samples.append(Sample(str(meta.get("path") or source), label, str(split)))
            if owned(sample_index):
                listing.payloads[sample_index] = data
        if report.problem is not None:
            raise _damaged_shard(
                root, entry.name, f"{report.problem}; {SHARDS_INDEX_NAME} lists {entry.samples} sample(s)"
            )
        if report.md5 != entry.md5:
            raise _damaged_shard(root, entry.name, f"MD5 {report.md5}, {SHARDS_INDEX_NAME} lists {entry.md5}")
        if report.samples != entry.samples:
            raise _damaged_shard(
                root, entry.name, f"{report.samples} sample(s), {SHARDS_INDEX_NAME} lists {entry.samples}"
            )
    if not listing.samples:
        raise DataError(f"{root / SHARDS_INDEX_NAME}: the shards hold no readable samples")
    classes = _manifest_classes(root)
    top = max(sample.label for sample in listing.samples)
    if classes is None or len(classes) <= top:
        unnamed = [number for number in range(top + 1) if number not in names]
        if unnamed:
            raise DataError(
                f"{root}: class index {unnamed[0]} has no images in the shards and no manifest.json names the classes"
            )
        classes = tuple(names[number] for number in range(top + 1))
    listing.classes = classes
    return listing


def list_dataset(folder: Path, policy: SplitPolicy, owned: Callable[[int], bool]) -> Listing:
    root = find_data_root(Path(folder))
    if (root / SHARDS_INDEX_NAME).is_file():
        return _list_shards(root, policy, owned)
    if (root / MANIFEST_NAME).is_file():
        return _list_manifest(root, owned)
    return _list_folder(root, policy, owned)


def _decode_owned(listing: Listing, threads: int) -> tuple[dict[int, np.ndarray], list[Skipped]]:
    indices = sorted(listing.payloads)

    def decode(index: int) -> np.ndarray | str:
        try:
            return decode_image(listing.payloads[index])
        except ImageDecodeError as error:
            return str(error)

    pixels: dict[int, np.ndarray] = {}
    skipped: list[Skipped] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for index, result in zip(indices, pool.map(decode, indices), strict=True):
            if isinstance(result, str):
                skipped.append(Skipped(listing.samples[index].source, result))
            else:
                pixels[index] = result
    return pixels, skipped


def _gather(
    local_images: torch.Tensor, local_labels: torch.Tensor, context: DistContext
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    if not context.distributed:
        return [local_images], [local_labels]
    images = [torch.empty_like(local_images) for _ in range(context.world_size)]
    labels = [torch.empty_like(local_labels) for _ in range(context.world_size)]
    dist.all_gather(images, local_images)
    dist.all_gather(labels, local_labels)
    return images, labels


def _gather_skipped(skipped: list[Skipped], context: DistContext) -> list[Skipped]:
    """Every rank's skipped samples, once each (sent as JSON bytes: no pickle between ranks either)."""
    if not context.distributed:
        return skipped
    payload = torch.frombuffer(bytearray(json.dumps([item.to_json() for item in skipped]).encode()), dtype=torch.uint8)
    length = torch.tensor([payload.numel()], dtype=torch.int64, device=context.device)
    lengths = [torch.empty_like(length) for _ in range(context.world_size)]
    dist.all_gather(lengths, length)
    longest = max(int(value.item()) for value in lengths)
    padded = torch.zeros(longest, dtype=torch.uint8, device=context.device)
    padded[: payload.numel()] = payload.to(context.device)
    parts = [torch.empty_like(padded) for _ in range(context.world_size)]
    dist.all_gather(parts, padded)
    seen: dict[tuple[str, str], None] = {}
    for part, size in zip(parts, lengths, strict=True):
        for item in json.loads(bytes(part[: int(size.item())].cpu().tolist())):
            seen.setdefault((item["source"], item["problem"]))
    return [Skipped(source, problem) for source, problem in seen]


def load_cache(folder: Path, policy: SplitPolicy, context: DistContext, *, threads: int | None = None) -> DataCache:
    """Decode the data set once, shared between ranks, into uint8 tensors on `context.device`."""
    world, rank = context.world_size, context.rank
    listing = list_dataset(folder, policy, lambda index: index % world == rank)
    # Every rank checked its own share of the files: decide together, so all stop or none does.
    damaged = _gather_skipped(listing.damaged, context)
    if damaged:
        shown = "; ".join(f"{item.source}: {item.problem}" for item in damaged[:5])
        more = f" (and {len(damaged) - 5} more)" if len(damaged) > 5 else ""
        raise DataError(
            f"{listing.root}: {len(damaged)} image(s) do not match {MANIFEST_NAME}: {shown}{more}; the "
            "data set copy is incomplete or damaged: download or upload it again (nothing was trained)"
        )
    total = len(listing.samples)
    if total == 0:
        raise DataError(f"{listing.root}: the data set lists no images")
    pixels, decode_skipped = _decode_owned(listing, threads or max(1, (os.cpu_count() or 1) // world))
    per_rank = -(-total // world)
    local_images = torch.zeros((per_rank, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    local_labels = torch.full((per_rank,), -1, dtype=torch.int64)
    for slot, index in enumerate(range(rank, total, world)):
        if index in pixels:
            local_images[slot] = torch.from_numpy(pixels[index])
            local_labels[slot] = listing.samples[index].label
    gathered_images, gathered_labels = _gather(
        local_images.to(context.device), local_labels.to(context.device), context
    )
    images = torch.empty((total, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, device=context.device)
    labels = torch.empty((total,), dtype=torch.int64, device=context.device)
    for source_rank in range(world):
        count = len(range(source_rank, total, world))
        images[source_rank::world] = gathered_images[source_rank][:count]
        labels[source_rank::world] = gathered_labels[source_rank][:count]
    skipped = _gather_skipped(listing.skipped + decode_skipped, context)
    split_codes = torch.tensor([SPLITS.index(sample.split) for sample in listing.samples], device=context.device)
    usable = labels >= 0
    splits: dict[str, SplitData] = {}
    for code, name in enumerate(SPLITS):
        chosen = torch.nonzero(usable & (split_codes == code)).flatten()
        splits[name] = SplitData(images=images[chosen].unsqueeze(1).contiguous(), labels=labels[chosen].contiguous())
    cache = DataCache(
        kind=listing.kind,
        root=listing.root,
        classes=listing.classes,
        dataset_id=listing.dataset_id,
        splits=splits,
        skipped=skipped,
        warnings=listing.warnings,
    )
    check_cache(cache)
    return cache


def check_cache(cache: DataCache) -> None:
    """Refuse data that would train or evaluate silently wrong: empty splits, classes without images."""
    for name in SPLITS:
        if len(cache.splits[name]) == 0:
            raise DataError(
                f"{cache.root}: the {name!r} split has no usable images "
                f"({len(cache.skipped)} skipped); the run needs train, val and test images"
            )
    counts = torch.bincount(cache.splits["train"].labels, minlength=len(cache.classes)).tolist()
    empty = [cache.classes[index] for index, count in enumerate(counts) if count == 0]
    if empty:
        raise DataError(
            f"{cache.root}: class(es) {', '.join(repr(name) for name in empty)} have no usable training images"
        )
