"""The dataset manifest: what a data set holds, its stable split and its content-addressed id.

`manifest.json` (format `arsl-manifest/1`):

    {"format": "arsl-manifest/1", "id": "<sha256 of the canonical form without id>",
     "classes": [32 names], "split": {"seed": 1337, "val": 0.1, "test": 0.1},
     "images": [
      {"path": "ain/x.jpg", "bytes": 1234, "md5": "<hex>", "split": "train", "width": 64, "height": 64,
       "mode": "L", "class": "ain"},      (one record per line in the file)
      ...],
     "counts": {"ain": {"train": n, "val": n, "test": n}, ...},
     "quarantined": [{"path": "...", "problem": "..."}]}

Images are sorted by path. The split of an image depends only on the seed and its MD5, so
re-uploads and re-validations keep every image on the same side, and exact duplicates can never
straddle train and test.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from arsl_tui.domain.classes import ARSL_CLASSES

MANIFEST_FORMAT = "arsl-manifest/1"
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    """A manifest that cannot be read or is inconsistent; the message names the field."""


@dataclass(frozen=True)
class ImageRecord:
    path: str
    cls: str
    bytes: int
    md5: str
    split: str
    width: int
    height: int
    mode: str

    def to_json(self) -> dict[str, Any]:
        # Spelled out, not `asdict` (15× slower: ~2 s for 108k images); keys in the order manifest.json has.
        return {
            "path": self.path,
            "bytes": self.bytes,
            "md5": self.md5,
            "split": self.split,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "class": self.cls,
        }


@dataclass(frozen=True)
class SplitPolicy:
    seed: int = 1337
    val: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise ManifestError(f"split fractions val={self.val} test={self.test} must be in [0, 1) and sum below 1")

    def assign(self, md5_hex: str) -> str:
        """The split of an image with this content hash."""
        digest = hashlib.sha256(f"{self.seed}:{md5_hex}".encode()).digest()
        position = int.from_bytes(digest[:8], "big") / 2**64
        if position < self.test:
            return "test"
        if position < self.test + self.val:
            return "val"
        return "train"


@dataclass(frozen=True)
class Manifest:
    split: SplitPolicy
    images: tuple[ImageRecord, ...]
    quarantined: tuple[Mapping[str, str], ...] = field(default=())

    @property
    def id(self) -> str:
        return manifest_id(self.body())

    @property
    def total_bytes(self) -> int:
        return sum(image.bytes for image in self.images)

    def counts(self) -> dict[str, dict[str, int]]:
        counts = {name: dict.fromkeys(SPLITS, 0) for name in ARSL_CLASSES}
        for image in self.images:
            counts[image.cls][image.split] += 1
        return counts

    def body(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "classes": list(ARSL_CLASSES),
            "split": asdict(self.split),
            "images": [image.to_json() for image in self.images],
            "counts": self.counts(),
            "quarantined": [dict(item) for item in self.quarantined],
        }

    def to_json_bytes(self) -> bytes:
        body = self.body()
        return "".join(manifest_text(body, manifest_id(body))).encode()


def manifest_text(body: Mapping[str, Any], identifier: str) -> Iterator[str]:
    """The text of manifest.json, in pieces (the whole string of a 100k-image manifest is ~15 MB at once).

    JSON indented by one space, except that each image record is one line, `json.dumps(record)` as it is:
    a third smaller than a record spread over ten indented lines, and one image per line to grep or diff.
    Plain records (str and int values) are written a few hundred at a time by json's C encoder.
    """
    whole = {"id": identifier, **body}
    images = whole.get("images")
    placeholder = f"arsl-images-{uuid.uuid4().hex}"
    skeleton = json.dumps({**whole, "images": placeholder}, indent=1, ensure_ascii=False)
    before, found, after = skeleton.partition(json.dumps(placeholder))
    if not isinstance(images, list) or not images or not found or placeholder in before + after:
        yield json.dumps(whole, indent=1, ensure_ascii=False) + "\n"
        return
    yield before + "[\n  "
    for start in range(0, len(images), _RECORDS_PER_PIECE):
        yield ("" if start == 0 else ",\n  ") + _record_lines(images[start : start + _RECORDS_PER_PIECE])
    yield "\n ]" + after + "\n"


_RECORDS_PER_PIECE = 512
_LINED = json.JSONEncoder(ensure_ascii=False, separators=(",\n", ": "))
"""Encodes flat records with a raw line break after every comma; json escapes a line break inside a string,
so a raw one followed by a quote separates two members, and followed by a brace two records."""


def _record_lines(records: list[Any]) -> str:
    """`records` as `json.dumps(record)` lines joined by `,<break>  `."""
    if not all(_plain_record(record) for record in records):
        return ",\n  ".join(json.dumps(record, ensure_ascii=False) for record in records)
    return _LINED.encode(records)[1:-1].replace(',\n"', ', "').replace(",\n{", ",\n  {")


def _plain_record(record: Any) -> bool:
    """A non-empty dict of str keys whose values are str or int (not bool): what `_LINED` can write."""
    return (
        type(record) is dict
        and bool(record)
        and all(type(key) is str and type(value) in (str, int) for key, value in record.items())
    )


def canonical_bytes(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_id(body: Mapping[str, Any]) -> str:
    """sha256 of the canonical form of the manifest without its `id` field."""
    return hashlib.sha256(canonical_bytes({k: v for k, v in body.items() if k != "id"})).hexdigest()


def build_manifest(
    images: Iterable[ImageRecord], split: SplitPolicy, quarantined: Iterable[Mapping[str, str]] = ()
) -> Manifest:
    ordered = tuple(sorted(images, key=lambda image: image.path))
    return Manifest(split=split, images=ordered, quarantined=tuple(sorted(quarantined, key=lambda item: item["path"])))


def parse_manifest(data: bytes, source: str = "manifest.json") -> Manifest:
    """Read a manifest, checking its format and that its id matches its content."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{source}: not valid JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        raise ManifestError(
            f"{source}: format is {raw.get('format') if isinstance(raw, dict) else None!r}, "
            f"expected {MANIFEST_FORMAT!r}"
        )
    try:
        split = SplitPolicy(**raw["split"])
        images = tuple(
            ImageRecord(
                path=item["path"],
                cls=item["class"],
                bytes=int(item["bytes"]),
                md5=item["md5"],
                split=item["split"],
                width=int(item["width"]),
                height=int(item["height"]),
                mode=item["mode"],
            )
            for item in raw["images"]
        )
        manifest = Manifest(split=split, images=images, quarantined=tuple(raw.get("quarantined", ())))
    except (KeyError, TypeError, ValueError) as error:
        raise ManifestError(f"{source}: missing or malformed field ({error})") from None
    if raw.get("id") != manifest.id:
        raise ManifestError(f"{source}: id {raw.get('id')!r} does not match its content ({manifest.id})")
    return manifest
