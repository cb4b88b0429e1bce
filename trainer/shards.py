"""A small reader for the data set's WebDataset shards (`shards.json` + gzip-compressed or plain tar shards).

The layout an upload in shards mode leaves under the data set's prefix (and so in a downloaded copy):

    <data set folder>/manifest.json
    <data set folder>/shards.json
    <data set folder>/shards/shard-000000.tar.gz …

`shards.json`: `{"format": "arsl-shards/2", "manifest_id", "samples", "shards": [{"name", "bytes",
"md5", "samples"}, ...]}`. Every `name` is a `/`-separated path relative to the folder that holds
`shards.json` (`"shards/shard-000000.tar.gz"`): hand the trainer that folder and it finds every shard.
`arsl-shards/1` sets (plain `.tar` files beside `shards.json`, named without a folder) follow the same
rule and are still read. A name that is absolute, climbs out with `..` or names a hidden file is refused.

Each sample is consecutive tar members sharing a key (the part of the member name before the first
dot): `<key>.cls` (class index as ASCII), `<key>.jpg|jpeg|png` (the original image bytes) and
`<key>.json` (`{"class", "md5", "path", "split"}`). A shard is a tar stream, gzip-compressed or not:
the compression is recognised from the bytes, not the name.

`iter_shard` never raises on a bad byte: a shard that is missing, truncated or unreadable yields
what it could read and a problem in its report, and the report carries the MD5 of the file as stored
(compressed), hashed as it streams. The caller decides; `trainer/data.py` refuses to train on a
shard whose report has a problem or whose MD5, size or sample count is not what `shards.json` lists
(the tar stream of a gzip shard is not CRC-checked on the way, so only the MD5 proves its bytes).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHARDS_INDEX_NAME = "shards.json"
SHARDS_FORMATS = ("arsl-shards/1", "arsl-shards/2")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")


class ShardIndexError(ValueError):
    """`shards.json` cannot be used; the message names the field."""


@dataclass(frozen=True)
class ShardEntry:
    name: str
    bytes: int
    md5: str
    samples: int


@dataclass(frozen=True)
class ShardIndex:
    manifest_id: str
    shards: tuple[ShardEntry, ...]


@dataclass
class ShardSample:
    key: str
    members: dict[str, bytes] = field(default_factory=dict)

    def image(self) -> bytes | None:
        for extension in IMAGE_EXTENSIONS:
            if extension in self.members:
                return self.members[extension]
        return None

    def meta(self) -> dict[str, Any]:
        raw = self.members.get("json")
        if raw is None:
            return {}
        try:
            value = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return value if isinstance(value, dict) else {}

    def is_complete(self) -> bool:
        """Whether the sample has its class, its image and its metadata."""
        return "cls" in self.members and "json" in self.members and self.image() is not None

    def class_index(self) -> int | None:
        raw = self.members.get("cls")
        if raw is None:
            return None
        try:
            return int(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return None


@dataclass
class ShardReadReport:
    """What went wrong while streaming one shard (empty when nothing did)."""

    samples: int = 0
    problem: str | None = None
    md5: str | None = None


def read_shard_index(path: Path) -> ShardIndex:
    try:
        raw = json.loads(path.read_bytes())
    except OSError as error:
        raise ShardIndexError(f"{path}: cannot be read ({error.strerror or error})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ShardIndexError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("format") not in SHARDS_FORMATS:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise ShardIndexError(f"{path}: format is {found!r}, expected one of {', '.join(SHARDS_FORMATS)}")
    try:
        shards = tuple(
            ShardEntry(
                name=str(item["name"]), bytes=int(item["bytes"]), md5=str(item["md5"]), samples=int(item["samples"])
            )
            for item in raw["shards"]
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ShardIndexError(f"{path}: missing or malformed field in 'shards' ({error})") from None
    for entry in shards:
        if not _is_inner_path(entry.name):
            raise ShardIndexError(f"{path}: shard name {entry.name!r} is not a relative path inside {path.parent}")
    return ShardIndex(manifest_id=str(raw.get("manifest_id", "")), shards=shards)


def _is_inner_path(name: str) -> bool:
    """A `/`-separated relative path that stays inside its folder and names no hidden file or folder."""
    return "\\" not in name and all(part and not part.startswith(".") for part in name.split("/"))


def _split_name(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    key = f"{folder}/{stem}" if folder else stem
    return key, extension.lower() if dot else ""


class _HashingReader:
    """A read-only file wrapper that hashes what is read (tarfile streams through it)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.digest = hashlib.md5(usedforsecurity=False)

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._handle.read(size)
        self.digest.update(data)
        return data


def iter_shard(path: Path, report: ShardReadReport, expected: int | None = None) -> Iterator[ShardSample]:
    """Samples of one shard in order; problems go to `report` instead of raising. `expected`: the
    number of samples `shards.json` lists for it (a shard with fewer was cut short)."""
    try:
        handle = path.open("rb")
    except OSError as error:
        report.problem = f"cannot be opened ({error.strerror or error})"
        return
    with handle:
        reader = _HashingReader(handle)
        current: ShardSample | None = None
        try:
            # "r|*": a stream, compressed or not (gzip is recognised by its magic bytes).
            with tarfile.open(fileobj=reader, mode="r|*") as archive:  # type: ignore[call-overload]
                for member in archive:
                    if not member.isfile():
                        continue
                    key, extension = _split_name(member.name)
                    extracted = archive.extractfile(member)
                    data = extracted.read() if extracted is not None else b""
                    if len(data) != member.size:
                        raise tarfile.ReadError(f"member {member.name} is cut short")
                    if current is not None and current.key != key:
                        report.samples += 1
                        yield current
                        current = None
                    if current is None:
                        current = ShardSample(key)
                    current.members[extension] = data
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            report.problem = f"unreadable after {report.samples} samples ({error})"
            return
        # A stream cut at a header ends the tar iteration as quietly as a whole archive does, so a
        # shard that stops short of the samples `shards.json` lists was cut: its last sample counts
        # only if it has every member.
        cut = expected is not None and report.samples + (current is not None) < expected
        if current is not None and not (cut and not current.is_complete()):
            report.samples += 1
            yield current
        if cut:
            report.problem = f"unreadable after {report.samples} samples (the file ends early; {expected} listed)"
            return
        while reader.read(1 << 20):
            pass
        report.md5 = reader.digest.hexdigest()
