"""Pack a validated data set into deterministic, gzip-compressed WebDataset tar shards plus `shards.json`.

The layout — the same in the packing folder, in the store and in a downloaded data set:

    <folder>/shards.json
    <folder>/shards/shard-000000.tar.gz
    <folder>/shards/shard-000001.tar.gz …

`shards.json` (format `arsl-shards/2`) names every shard by its `/`-separated path relative to the
folder that holds `shards.json` (`"shards/shard-000000.tar.gz"`). The upload engine stores each
shard at `<data set prefix><that path>`, beside `shards.json` and `manifest.json`, so the data set's
prefix folder, copied down as it is, is a folder the trainer reads (`trainer/shards.py` applies the
same rule; `arsl-shards/1` sets, plain `.tar` files named without a folder, follow it too).

Each sample is three tar members sharing a key (the image's MD5, unique in a manifest and free of
dots, as WebDataset needs): `<key>.cls` (the class index as text), `<key>.jpg|png` (the original
bytes) and `<key>.json` (`{"class", "md5", "path", "split"}`). Samples are ordered by key, which
mixes the classes within every shard, so a trainer's shard-level shuffle sees every class early.

Compression: a shard is one gzip stream (zlib level 1). JPEG bytes barely compress; what does is
the tar framing — three 512-byte headers and zero padding per sample, which would otherwise triple a
64×64 image's ~1.5 KB — and the repeated JPEG tables. Level 1 is as fast as compression gets and
higher levels save only a few percent more. Every tar header carries mtime 0, uid/gid 0 and empty
owner names, and the gzip header mtime 0 and no file name, so the same manifest and shard size give
byte-identical shards (and so the same MD5s, which resuming relies on) with the same zlib.

Shard boundaries come from the manifest alone: a sample's uncompressed tar size follows from its
image size and metadata, and a shard takes samples while its uncompressed tar stream stays within
`shard_size_bytes` (the compressed object is smaller; the first two are smaller still, `RAMP`, so the
link is busy early). So every shard is known before any is
packed, and they are packed in parallel: one task per shard, in worker processes for large sets (in
a thread for small ones), at most one queued beyond the workers. A worker holds one image at a time
and writes its shard to a temporary name that is renamed when complete. `ShardPacking` hands each
shard over as soon as it is complete — the upload engine sends it while the next ones are packed.
A build happens in a private folder that becomes `folder` once complete; a complete earlier build
whose every MD5 checks out is reused.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import tarfile
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from arsl_tui.domain.classes import class_index
from arsl_tui.domain.manifest import ImageRecord, Manifest
from arsl_tui.ops.dataset import decoded_shape, start_resource_tracker
from arsl_tui.ops.processes import WORKER_DIED, available_cpus, process_pool

SHARDS_INDEX_NAME = "shards.json"
SHARDS_FORMAT = "arsl-shards/2"
SHARDS_FOLDER = "shards"
SHARD_SUFFIX = ".tar.gz"
GZIP_LEVEL = 1
_BLOCK = tarfile.BLOCKSIZE
_END_OF_ARCHIVE = 2 * _BLOCK
_IMAGE_EXTENSIONS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}
_PROCESS_MIN_SAMPLES = 4096
"""Below this many samples, packing in a thread is quicker than starting worker processes."""
_WRITE_CHUNK = 1 << 20
_POLL_S = 0.1

SampleSpec = tuple[str, str, str, str]
"""(path, md5, class, split) of one sample: what a packing task needs, cheap to send to a worker."""
Shape = tuple[int, int, str]
"""(width, height, Pillow mode) an image is expected to decode to."""


class ShardError(Exception):
    """The shards cannot be built; the message names the file."""


class PackingCancelled(Exception):
    """Packing stopped because the caller asked it to."""


class ShardCheckFailed(Exception):
    """Packing with `check_decoding` found images that do not decode to the shape the manifest gives them."""

    def __init__(self, paths: Sequence[str]) -> None:
        super().__init__(f"{len(paths)} image(s) do not decode as their headers say, e.g. {paths[0]}")
        self.paths = tuple(paths)


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


@dataclass(frozen=True)
class PlannedShard:
    """One shard before packing: its name, its samples in order and its uncompressed tar size."""

    number: int
    name: str
    samples: tuple[SampleSpec, ...]
    tar_bytes: int
    shapes: tuple[Shape, ...] = ()
    """Per sample, the shape the manifest records (for packing that checks decoding)."""


def shard_name(number: int) -> str:
    return f"{SHARDS_FOLDER}/shard-{number:06d}{SHARD_SUFFIX}"


def sample_key(image: ImageRecord) -> str:
    return image.md5


def sample_order(manifest: Manifest) -> list[ImageRecord]:
    """The order samples are packed in: by key, so classes mix within shards."""
    ordered = sorted(manifest.images, key=sample_key)
    for before, after in itertools.pairwise(ordered):
        if sample_key(before) == sample_key(after):
            raise ShardError(f"{before.path} and {after.path} have the same content; a manifest holds each image once")
    return ordered


RAMP = (16, 4)
"""The first shards hold a 16th, then a quarter of `shard_size_bytes`: sending starts once the first shard is
packed, and one full 64 MB shard takes one worker about 3 s on a two-core machine, while the link idles."""
RAMP_MIN_BYTES = 1 << 20
"""No ramp step below this: shards that small would only add requests."""
TAIL_SHARE = 4
"""Near the end a shard takes at most this fraction of the tar bytes still to plan: the last shards shrink
(down to the ramp's first step), so once packing ends only small shards are left to send, not one full
shard per worker."""


def shard_limit(number: int, shard_size_bytes: int, remaining_bytes: int | None = None) -> int:
    """The most uncompressed tar bytes shard `number` may hold: `RAMP` for the first ones, and a `TAIL_SHARE`
    of `remaining_bytes` (the samples not yet planned) near the end, but never less than the first ramp step
    or `RAMP_MIN_BYTES`."""
    smallest = max(shard_size_bytes // RAMP[0], RAMP_MIN_BYTES)
    limit = shard_size_bytes
    if number < len(RAMP) and shard_size_bytes // RAMP[number] >= RAMP_MIN_BYTES:
        limit = shard_size_bytes // RAMP[number]
    if remaining_bytes is not None:
        limit = min(limit, max(remaining_bytes // TAIL_SHARE, smallest))
    return limit


def plan_shards(manifest: Manifest, shard_size_bytes: int) -> list[PlannedShard]:
    """Cut the ordered samples into shards of at most `shard_limit` bytes of uncompressed tar, end-of-archive
    marker and record padding included (a shard always takes at least one sample)."""
    planned: list[PlannedShard] = []
    current: list[SampleSpec] = []
    shapes: list[Shape] = []
    offset = 0

    def close() -> None:
        planned.append(
            PlannedShard(
                number=len(planned),
                name=shard_name(len(planned)),
                samples=tuple(current),
                tar_bytes=_archive_bytes(offset),
                shapes=tuple(shapes),
            )
        )

    ordered = sample_order(manifest)
    sizes = [_sample_bytes(image) for image in ordered]
    remaining = sum(sizes)
    limit = shard_limit(0, shard_size_bytes, remaining)
    for image, size in zip(ordered, sizes, strict=True):
        if current and _archive_bytes(offset + size) > limit:
            close()
            current, shapes, offset = [], [], 0
            limit = shard_limit(len(planned), shard_size_bytes, remaining)
        current.append((image.path, image.md5, image.cls, image.split))
        shapes.append((image.width, image.height, image.mode))
        offset += size
        remaining -= size
    if current:
        close()
    return planned


def index_bytes(manifest_id: str, shard_size_bytes: int, shards: Iterable[ShardInfo]) -> bytes:
    listed = [shard.to_json() for shard in shards]
    body = {
        "format": SHARDS_FORMAT,
        "manifest_id": manifest_id,
        "shard_size_bytes": shard_size_bytes,
        "samples": sum(item["samples"] for item in listed),
        "shards": listed,
    }
    return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


def parse_index(data: bytes, source: str = SHARDS_INDEX_NAME) -> tuple[str, int, tuple[ShardInfo, ...]]:
    """(manifest id, shard size, shards) of a `shards.json`."""
    try:
        raw = json.loads(data)
        if raw["format"] != SHARDS_FORMAT:
            raise ShardError(f"{source}: format {raw['format']!r}, expected {SHARDS_FORMAT!r}")
        shards = tuple(
            ShardInfo(
                name=str(item["name"]), bytes=int(item["bytes"]), md5=str(item["md5"]), samples=int(item["samples"])
            )
            for item in raw["shards"]
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ShardError(f"{source}: missing or malformed field ({error})") from None
    for shard in shards:
        if not _is_inner_path(shard.name):
            raise ShardError(f"{source}: shard name {shard.name!r} is not a relative path inside its folder")
    return str(raw["manifest_id"]), int(raw["shard_size_bytes"]), shards


def _is_inner_path(name: str) -> bool:
    """A `/`-separated relative path that stays inside its folder and names no hidden file or folder."""
    return "\\" not in name and all(part and not part.startswith(".") for part in name.split("/"))


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
            if file_md5(folder / shard.name) != shard.md5:
                return None
        except OSError:
            return None
    return ShardSet(folder=folder, shards=shards, index_bytes=data)


class ShardPacking:
    """Packs a manifest's shards and hands each over as soon as it is complete.

    Use as a context manager: leaving it stops the workers (cancelling queued shards, waiting for the
    few in flight) and removes the private build folder unless `keep()` moved it into place.
    Not thread-safe: one thread drives it (`start`, then `poll` until `complete`).
    """

    def __init__(
        self,
        manifest: Manifest,
        dataset_root: Path,
        folder: Path,
        shard_size_bytes: int,
        *,
        manifest_id: str | None = None,
        workers: int | None = None,
        check_decoding: bool = False,
    ) -> None:
        self.manifest_id = manifest_id or manifest.id
        self.check_decoding = check_decoding
        """Decode every image while packing it and compare it with the manifest (`ShardCheckFailed`)."""
        self.mismatched: list[str] = []
        """Images a checking build found not to decode as the manifest says (such a build is never kept)."""
        self.folder = folder
        self.shard_size_bytes = shard_size_bytes
        self.reused = load_shard_set(folder, self.manifest_id, shard_size_bytes)
        self.plan: list[PlannedShard] = [] if self.reused is not None else plan_shards(manifest, shard_size_bytes)
        self.samples_total = len(manifest.images)
        self._root = dataset_root
        self._workers = (
            workers if workers is not None else available_cpus() if self.samples_total >= _PROCESS_MIN_SAMPLES else 1
        )
        self._executor: Executor | None = None
        self._queued = list(reversed(self.plan))
        self._running: dict[Future[tuple[int, str, tuple[str, ...]]], PlannedShard] = {}
        self._finished: dict[int, ShardInfo] = {}
        self._building: Path | None = None
        self._shard_set: ShardSet | None = self.reused

    def __enter__(self) -> ShardPacking:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    @property
    def shards_total(self) -> int:
        return len(self.reused.shards) if self.reused is not None else len(self.plan)

    @property
    def shards_done(self) -> int:
        return self.shards_total if self.reused is not None else len(self._finished)

    @property
    def samples_packed(self) -> int:
        if self.reused is not None:
            return self.samples_total
        return sum(shard.samples for shard in self._finished.values())

    @property
    def complete(self) -> bool:
        return self.shards_done == self.shards_total

    def start(self) -> None:
        """Start packing (nothing to do for a reused build)."""
        if self.reused is not None or self._executor is not None:
            return
        _remove_abandoned_builds(self.folder)
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self._building = self.folder.with_name(f".{self.folder.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        (self._building / SHARDS_FOLDER).mkdir(parents=True)
        if self._workers > 1:
            start_resource_tracker()
        self._executor = (
            process_pool(self._workers)
            if self._workers > 1
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="arsl-pack")
        )
        self._submit()

    def waitables(self) -> list[Future[Any]]:
        """Futures that complete when a shard does (for `concurrent.futures.wait`)."""
        return list(self._running)

    def poll(self) -> list[ShardInfo]:
        """Shards completed since the last call (never blocks); raises ShardError when packing failed and
        ShardCheckFailed when a checking build found an image that does not decode as the manifest says."""
        completed: list[ShardInfo] = []
        for future in [future for future in self._running if future.done()]:
            planned = self._running.pop(future)
            try:
                size, md5, mismatched = future.result()
            except BrokenProcessPool as error:
                raise ShardError(WORKER_DIED.format(detail=f"packing {planned.name}: {error}")) from None
            self.mismatched.extend(mismatched)
            shard = ShardInfo(name=planned.name, bytes=size, md5=md5, samples=len(planned.samples))
            self._finished[planned.number] = shard
            completed.append(shard)
        if self.mismatched:
            raise ShardCheckFailed(self.mismatched)
        self._submit()
        return sorted(completed, key=lambda shard: shard.name)

    def path(self, name: str) -> Path:
        """Where the shard `name` is (or will be, once packed) until the build is kept or closed."""
        if self.reused is not None:
            return self.reused.folder / name
        if self._building is None:
            raise ShardError("packing has not started")
        return self._building / name

    def planned_bytes(self) -> dict[str, int]:
        """Shard name → its uncompressed tar size (an upper bound of the packed object's size)."""
        return {planned.name: planned.tar_bytes for planned in self.plan}

    def shard_set(self) -> ShardSet:
        """The complete set (writing its `shards.json` the first time), in the folder it is in now."""
        if self._shard_set is not None:
            return self._shard_set
        if not self.complete or self._building is None:
            raise ShardError("the shards are not all packed yet")
        shards = tuple(self._finished[number] for number in range(len(self.plan)))
        data = index_bytes(self.manifest_id, self.shard_size_bytes, shards)
        _write_atomically(self._building / SHARDS_INDEX_NAME, data)
        self._shard_set = ShardSet(folder=self._building, shards=shards, index_bytes=data)
        return self._shard_set

    def keep(self) -> ShardSet:
        """Move the complete build into `folder` (for a later run to reuse) and return it there."""
        shard_set = self.shard_set()
        self._stop()
        if self._building is not None and self._building.exists():
            if self.folder.exists():
                shutil.rmtree(self.folder)
            os.replace(self._building, self.folder)
            self._building = None
            shard_set = ShardSet(folder=self.folder, shards=shard_set.shards, index_bytes=shard_set.index_bytes)
            self._shard_set = shard_set
        return shard_set

    def close(self) -> None:
        self._stop()
        if self._building is not None:
            shutil.rmtree(self._building, ignore_errors=True)
            self._building = None

    def _stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._queued.clear()
        self._running.clear()

    def _submit(self) -> None:
        # One task queued beyond the workers keeps them busy without holding every shard's samples in a queue.
        if self._executor is None or self._building is None:
            return
        while self._queued and len(self._running) <= self._workers:
            planned = self._queued.pop()
            target = str(self._building / planned.name)
            future = (
                self._executor.submit(pack_shard, str(self._root), target, planned.samples, planned.shapes)
                if self.check_decoding
                else self._executor.submit(pack_shard, str(self._root), target, planned.samples)
            )
            self._running[future] = planned


def build_shards(
    manifest: Manifest,
    dataset_root: Path,
    folder: Path,
    shard_size_bytes: int,
    *,
    manifest_id: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    workers: int | None = None,
) -> ShardSet:
    """Pack `manifest`'s images (read from `dataset_root`) into `folder`, reusing a complete earlier build.

    `manifest_id` saves recomputing the manifest's id (a hash of all of it) when the caller has it.
    `on_progress(samples_packed, samples_total)` is called as shards complete; `cancelled()` is polled
    and, once true, packing stops with `PackingCancelled` and leaves nothing behind. `workers`: packing
    processes (None: one per CPU for large sets; 1: a thread of this process).
    """
    with ShardPacking(
        manifest, dataset_root, folder, shard_size_bytes, manifest_id=manifest_id, workers=workers
    ) as packing:
        if packing.reused is not None:
            return packing.reused
        packing.start()
        while not packing.complete:
            if cancelled is not None and cancelled():
                raise PackingCancelled
            wait(packing.waitables(), timeout=_POLL_S, return_when=FIRST_COMPLETED)
            if packing.poll() and on_progress is not None:
                on_progress(packing.samples_packed, packing.samples_total)
        return packing.keep()


# -- packing one shard (in a worker process, or a thread for small sets) --------------------------------


def pack_shard(
    root: str, target: str, samples: Sequence[SampleSpec], shapes: Sequence[Shape] | None = None
) -> tuple[int, str, tuple[str, ...]]:
    """Write one gzip-compressed tar shard of `samples` to `target`; returns (bytes, MD5) of the file and,
    with `shapes` (one per sample), the paths of the images that do not decode to their shape.

    Written to a temporary name and renamed once complete and flushed to disk, so `target` is always
    either absent or whole.
    """
    mismatched: list[str] = []
    partial = f"{target}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip header: mtime 0, no name
    digest = hashlib.md5(usedforsecurity=False)
    pending = bytearray()
    size = 0
    try:
        with open(partial, "xb") as handle:

            def emit(data: bytes) -> None:
                nonlocal size
                if data:
                    handle.write(data)
                    digest.update(data)
                    size += len(data)

            offset = 0
            for number, (path, md5, cls, split) in enumerate(samples):
                image = _read_image(root, path, md5)
                if shapes is not None and decoded_shape(image) != shapes[number]:
                    mismatched.append(path)
                for name, data in _sample_members(path, md5, cls, split, image):
                    pending += tar_header(name, len(data))
                    pending += data
                    pending += bytes(_padded(len(data)) - len(data))
                    offset += _BLOCK + _padded(len(data))
                if len(pending) >= _WRITE_CHUNK:
                    emit(compressor.compress(pending))
                    pending.clear()
            # The end-of-archive marker and record padding, exactly as `tarfile` closes an archive.
            pending += bytes(_archive_bytes(offset) - offset)
            emit(compressor.compress(pending))
            emit(compressor.flush())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return size, digest.hexdigest(), tuple(mismatched)


def _image_extension(path: str) -> str:
    # The suffix as `PurePosixPath(path).suffix` gives it, without building a path per image.
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    suffix = name[dot:].lower() if 0 < dot < len(name) - 1 else ""
    extension = _IMAGE_EXTENSIONS.get(suffix)
    if extension is None:
        raise ShardError(f"{path}: extension is not .jpg, .jpeg or .png")
    return extension


def _meta(path: str, md5: str, cls: str, split: str) -> bytes:
    return json.dumps(
        {"class": cls, "md5": md5, "path": path, "split": split},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


_META_FRAME = len(_meta("", "", "", ""))
_JSON_ESCAPED = re.compile(r'[\x00-\x1f"\\]')
"""What `json.dumps(..., ensure_ascii=False)` writes as an escape rather than as the character itself."""


def _meta_size(path: str, md5: str, cls: str, split: str) -> int:
    """len(_meta(...)), counted without encoding JSON when no value needs an escape (planning's hot path)."""
    text = path + md5 + cls + split
    if _JSON_ESCAPED.search(text):
        return len(_meta(path, md5, cls, split))
    return _META_FRAME + len(text.encode())


def _sample_members(path: str, md5: str, cls: str, split: str, data: bytes) -> list[tuple[str, bytes]]:
    return [
        (f"{md5}.cls", str(class_index(cls)).encode()),
        (f"{md5}.{_image_extension(path)}", data),
        (f"{md5}.json", _meta(path, md5, cls, split)),
    ]


def _sample_bytes(image: ImageRecord) -> int:
    """A sample's three members in the uncompressed tar stream, headers and padding included."""
    _image_extension(image.path)
    sizes = (len(str(class_index(image.cls))), image.bytes, _meta_size(image.path, image.md5, image.cls, image.split))
    return sum(_BLOCK + _padded(size) for size in sizes)


def _archive_bytes(members_bytes: int) -> int:
    """The tar stream's size once the end-of-archive marker and the record padding follow the members."""
    total = members_bytes + _END_OF_ARCHIVE
    return -(-total // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


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
    header[0 : len(encoded)] = encoded
    header[124:136] = b"%011o\0" % size
    header[148:155] = b"%06o\0" % sum(header)
    return bytes(header)


def _read_image(root: str, path: str, md5: str) -> bytes:
    full = os.path.join(root, path)
    try:
        with open(full, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise ShardError(f"{full}: cannot be read ({error.strerror})") from None
    if hashlib.md5(data, usedforsecurity=False).hexdigest() != md5:
        raise ShardError(f"{full}: changed since it was validated (MD5 differs from the manifest); validate again")
    return data


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with temporary.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _remove_abandoned_builds(folder: Path) -> None:
    """Private build folders left by packing processes that no longer exist (a `kill -9`, a crash)."""
    for stale in folder.parent.glob(f".{folder.name}.building-*"):
        owner = stale.name.rsplit(".building-", 1)[1].split("-", 1)[0]
        if owner.isdigit() and not _process_exists(int(owner)):
            shutil.rmtree(stale, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
