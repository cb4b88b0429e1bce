"""Pack a validated data set into deterministic WebDataset tar shards plus `shards.json`.

Each sample is three tar members sharing a key (the image's MD5, unique in a manifest and free of
dots, as WebDataset needs): `<key>.cls` (the class index as text), `<key>.jpg|png` (the original
bytes) and `<key>.json` (`{"class", "md5", "path", "split"}`). Samples are ordered by key, which
mixes the classes within every shard, so a trainer's shard-level shuffle sees every class early.
Every tar header carries mtime 0, uid/gid 0 and empty owner names, so the same manifest and shard
size always give byte-identical shards (and so the same MD5s, which resuming relies on).

Shards are written one at a time, streaming, into a private folder that is renamed into place when
the whole set is complete; one image at a time is held in memory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tarfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arsl_tui.domain.classes import class_index
from arsl_tui.domain.manifest import ImageRecord, Manifest

SHARDS_INDEX_NAME = "shards.json"
SHARDS_FORMAT = "arsl-shards/1"
_BLOCK = tarfile.BLOCKSIZE
_END_OF_ARCHIVE = 2 * _BLOCK
_IMAGE_EXTENSIONS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}


class ShardError(Exception):
    """The shards cannot be built; the message names the file."""


class PackingCancelled(Exception):
    """Packing stopped because the caller asked it to."""


@dataclass(frozen=True)
class ShardInfo:
    name: str
    bytes: int
    md5: str
    samples: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "md5": self.md5, "samples": self.samples}


@dataclass(frozen=True)
class ShardSet:
    """A finished set of shards on disk and the bytes of its `shards.json`."""

    folder: Path
    shards: tuple[ShardInfo, ...]
    index_bytes: bytes

    @property
    def index_md5(self) -> str:
        return hashlib.md5(self.index_bytes, usedforsecurity=False).hexdigest()

    @property
    def samples(self) -> int:
        return sum(shard.samples for shard in self.shards)

    def path(self, shard: ShardInfo) -> Path:
        return self.folder / shard.name


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


def sample_key(image: ImageRecord) -> str:
    return image.md5


def sample_order(manifest: Manifest) -> list[ImageRecord]:
    """The order samples are packed in: by key, so classes mix within shards."""
    ordered = sorted(manifest.images, key=sample_key)
    for before, after in itertools.pairwise(ordered):
        if sample_key(before) == sample_key(after):
            raise ShardError(f"{before.path} and {after.path} have the same content; a manifest holds each image once")
    return ordered


def index_bytes(manifest_id: str, shard_size_bytes: int, shards: Iterable[ShardInfo]) -> bytes:
    listed = [shard.to_json() for shard in shards]
    body = {"format": SHARDS_FORMAT, "manifest_id": manifest_id, "shard_size_bytes": shard_size_bytes,
            "samples": sum(item["samples"] for item in listed), "shards": listed}
    return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


def parse_index(data: bytes, source: str = SHARDS_INDEX_NAME) -> tuple[str, int, tuple[ShardInfo, ...]]:
    """(manifest id, shard size, shards) of a `shards.json`."""
    try:
        raw = json.loads(data)
        if raw["format"] != SHARDS_FORMAT:
            raise ShardError(f"{source}: format {raw['format']!r}, expected {SHARDS_FORMAT!r}")
        shards = tuple(ShardInfo(name=str(item["name"]), bytes=int(item["bytes"]), md5=str(item["md5"]),
                                 samples=int(item["samples"])) for item in raw["shards"])
        return str(raw["manifest_id"]), int(raw["shard_size_bytes"]), shards
    except (ValueError, KeyError, TypeError) as error:
        raise ShardError(f"{source}: missing or malformed field ({error})") from None


def build_shards(manifest: Manifest, dataset_root: Path, folder: Path, shard_size_bytes: int, *,
                 manifest_id: str | None = None, on_progress: Callable[[int, int], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> ShardSet:
    """Pack `manifest`'s images (read from `dataset_root`) into `folder`, reusing a complete earlier build.

    `manifest_id` saves recomputing the manifest's id (a hash of all of it) when the caller has it.
    `on_progress(samples_packed, samples_total)` is called as images go in; `cancelled()` is polled
    and, once true, packing stops with `PackingCancelled` and leaves nothing behind.
    """
    manifest_id = manifest_id or manifest.id
    existing = load_shard_set(folder, manifest_id, shard_size_bytes)
    if existing is not None:
        return existing
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = folder.with_name(f".{folder.name}.building-{uuid.uuid4().hex[:8]}")
    building.mkdir()
    try:
        shards = _pack(manifest, dataset_root, building, shard_size_bytes, on_progress, cancelled)
        (building / SHARDS_INDEX_NAME).write_bytes(index_bytes(manifest_id, shard_size_bytes, shards))
        os.replace(building, folder)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return ShardSet(folder=folder, shards=tuple(shards), index_bytes=(folder / SHARDS_INDEX_NAME).read_bytes())


def load_shard_set(folder: Path, manifest_id: str, shard_size_bytes: int) -> ShardSet | None:
    """A complete earlier build in `folder` for this manifest and size, every shard's MD5 re-checked; else None."""
    index_path = folder / SHARDS_INDEX_NAME
    try:
        data = index_path.read_bytes()
        built_for, built_size, shards = parse_index(data, str(index_path))
    except (OSError, ShardError):
        return None
    if built_for != manifest_id or built_size != shard_size_bytes:
        return None
    for shard in shards:
        try:
            if _file_md5(folder / shard.name) != shard.md5:
                return None
        except OSError:
            return None
    return ShardSet(folder=folder, shards=shards, index_bytes=data)


def _pack(manifest: Manifest, root: Path, building: Path, shard_size_bytes: int,
          on_progress: Callable[[int, int], None] | None, cancelled: Callable[[], bool] | None) -> list[ShardInfo]:
    # Images are read one at a time on this thread: they are tiny, and reader threads would only
    # fight over the GIL with the writer.
    ordered = sample_order(manifest)
    total = len(ordered)
    shards: list[ShardInfo] = []
    writer: _ShardWriter | None = None
    for packed, image in enumerate(ordered, start=1):
        if cancelled is not None and packed % 64 == 1 and cancelled():
            if writer is not None:
                writer.abandon()
            raise PackingCancelled
        members = _sample_members(image, _read_image(root, image))
        if writer is not None and writer.samples and \
                writer.offset + _members_size(members) + _END_OF_ARCHIVE > shard_size_bytes:
            shards.append(writer.close())
            writer = None
        if writer is None:
            writer = _ShardWriter(building, shard_name(len(shards)))
        writer.add(members)
        if on_progress is not None and (packed % 512 == 0 or packed == total):
            on_progress(packed, total)
    if writer is not None:
        shards.append(writer.close())
    return shards


def _sample_members(image: ImageRecord, data: bytes) -> list[tuple[str, bytes]]:
    extension = _IMAGE_EXTENSIONS.get(Path(image.path).suffix.lower())
    if extension is None:
        raise ShardError(f"{image.path}: extension is not .jpg, .jpeg or .png")
    key = sample_key(image)
    meta = json.dumps({"class": image.cls, "md5": image.md5, "path": image.path, "split": image.split},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return [(f"{key}.cls", str(class_index(image.cls)).encode()), (f"{key}.{extension}", data),
            (f"{key}.json", meta)]


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _members_size(members: list[tuple[str, bytes]]) -> int:
    return sum(_BLOCK + _padded(len(data)) for _, data in members)


def _header_template() -> bytes:
    """A USTAR header with every field we fix (mode 644, uid/gid 0, mtime 0, no owner names)."""
    info = tarfile.TarInfo("")
    info.size = 0
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    header = bytearray(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
    header[148:156] = b" " * 8  # the checksum is computed over the header with this field as spaces
    return bytes(header)


_TEMPLATE = _header_template()


def tar_header(name: str, size: int) -> bytes:
    """The USTAR header `tarfile` writes for a regular file `name` of `size` bytes with our fixed fields.

    Built by hand because `TarFile.addfile` costs more per member than reading and hashing the image.
    """
    encoded = name.encode("utf-8")
    if len(encoded) > 100:
        raise ShardError(f"member name longer than 100 bytes: {name!r}")
    header = bytearray(_TEMPLATE)
    header[0:len(encoded)] = encoded
    header[124:136] = b"%011o\0" % size
    header[148:155] = b"%06o\0" % sum(header)
    return bytes(header)


class _ShardWriter:
    """One tar file written member by member, hashed as it goes."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.path = folder / name
        self._handle = self.path.open("xb", buffering=1 << 20)
        self._digest = hashlib.md5(usedforsecurity=False)
        self.offset = 0
        self.samples = 0

    def _write(self, data: bytes) -> None:
        self._handle.write(data)
        self._digest.update(data)
        self.offset += len(data)

    def add(self, members: list[tuple[str, bytes]]) -> None:
        for name, data in members:
            self._write(tar_header(name, len(data)))
            self._write(data)
            padding = _padded(len(data)) - len(data)
            if padding:
                self._write(bytes(padding))
        self.samples += 1

    def close(self) -> ShardInfo:
        # The end-of-archive marker and record padding, exactly as `tarfile` closes an archive.
        self._write(bytes(_END_OF_ARCHIVE))
        remainder = self.offset % tarfile.RECORDSIZE
        if remainder:
            self._write(bytes(tarfile.RECORDSIZE - remainder))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        return ShardInfo(name=self.name, bytes=self.offset, md5=self._digest.hexdigest(), samples=self.samples)

    def abandon(self) -> None:
        self._handle.close()


def _read_image(root: Path, image: ImageRecord) -> bytes:
    path = root / image.path
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ShardError(f"{path}: cannot be read ({error.strerror})") from None
    if hashlib.md5(data, usedforsecurity=False).hexdigest() != image.md5:
        raise ShardError(f"{path}: changed since it was validated (MD5 differs from the manifest); validate again")
    return data


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
