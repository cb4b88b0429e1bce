"""Validate a class-folder data set and write its manifest.

Accepts the ArSL2018 layout (`<root>/<class>/*.jpg|JPG`) and the same layout one folder down,
as the real download unpacks (`ArASL_Database_54K_Final/<class>/...`). Every image is decoded;
problems (corrupt files, unknown class folders, duplicates, unsafe names, symlinks) make the data
set unfit to upload unless they are quarantined; notes (not 64×64 grayscale) are only reported,
because the trainer normalises them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from arsl_tui.domain.classes import ARSL_CLASSES, IMAGE_EXTENSIONS, IMAGE_SIZE
from arsl_tui.domain.keys import UnsafeKeyError, check_relative_path
from arsl_tui.domain.manifest import ImageRecord, Manifest, SplitPolicy, build_manifest

MANIFEST_NAME = "manifest.json"
_OWN_FILES = frozenset({MANIFEST_NAME, "shards.json"})


class DatasetError(Exception):
    """The folder cannot be read as a data set at all (missing, not a folder, no images)."""


@dataclass(frozen=True)
class Finding:
    path: str
    kind: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "detail": self.detail}


@dataclass
class ValidationReport:
    root: Path
    manifest: Manifest
    problems: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    files_scanned: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def class_counts(self) -> dict[str, int]:
        return {name: sum(split_counts.values()) for name, split_counts in self.manifest.counts().items()}

    def to_json(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "ok": self.ok,
            "manifest_id": self.manifest.id,
            "images": len(self.manifest.images),
            "bytes": self.manifest.total_bytes,
            "files_scanned": self.files_scanned,
            "counts": self.manifest.counts(),
            "problems": [item.to_json() for item in self.problems],
            "notes": [item.to_json() for item in self.notes],
        }


@dataclass(frozen=True)
class _Candidate:
    relative: str
    cls: str
    absolute: Path


@dataclass(frozen=True)
class _Decoded:
    candidate: _Candidate
    record: ImageRecord | None
    problem: Finding | None
    note: Finding | None


def find_dataset_root(folder: Path) -> Path:
    """The folder holding the class folders: `folder` itself or its single sub-folder."""
    if not folder.exists():
        raise DatasetError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: is a file, expected a folder of class folders")
    try:
        entries = [entry for entry in os.scandir(folder) if not entry.name.startswith(".")]
    except OSError as error:
        raise DatasetError(f"{folder}: cannot be read ({error.strerror})") from None
    if any(entry.name in ARSL_CLASSES for entry in entries if entry.is_dir(follow_symlinks=False)):
        return folder
    subfolders = [entry for entry in entries if entry.is_dir(follow_symlinks=False)]
    files = [entry for entry in entries if entry.name not in _OWN_FILES and not entry.is_dir(follow_symlinks=False)]
    if len(subfolders) == 1 and not files:
        inner = Path(subfolders[0].path)
        if any(entry.name in ARSL_CLASSES for entry in os.scandir(inner) if entry.is_dir(follow_symlinks=False)):
            return inner
    return folder


def _display(path: str) -> str:
    """A printable form of a file name that may hold undecodable bytes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _walk(root: Path, problems: list[Finding]) -> Iterator[_Candidate]:
    for top in sorted(os.scandir(root), key=lambda entry: entry.name):
        name = top.name
        if name.startswith(".") or (name in _OWN_FILES and top.is_file(follow_symlinks=False)):
            continue
        if top.is_symlink():
            problems.append(Finding(_display(name), "symlink", "symbolic links are not followed"))
            continue
        if not top.is_dir(follow_symlinks=False):
            problems.append(Finding(_display(name), "stray_file", "file outside any class folder"))
            continue
        if name not in ARSL_CLASSES:
            count = sum(1 for _ in Path(top.path).rglob("*"))
            problems.append(Finding(_display(name) + "/", "unknown_class",
                                    f"folder is not one of the 32 ArSL2018 classes ({count} entries skipped)"))
            continue
        yield from _walk_class(root, Path(top.path), name, problems)


def _walk_class(root: Path, folder: Path, cls: str, problems: list[Finding]) -> Iterator[_Candidate]:
    for entry in sorted(os.scandir(folder), key=lambda item: item.name):
        relative = f"{cls}/{entry.name}"
        shown = _display(relative)
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            problems.append(Finding(shown, "symlink", "symbolic links are not followed"))
            continue
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            problems.append(Finding(shown + "/", "nested_folder", "class folders must hold image files only"))
            continue
        if not stat.S_ISREG(mode):
            problems.append(Finding(shown, "not_a_file", "not a regular file"))
            continue
        try:
            check_relative_path(relative)
        except UnsafeKeyError as error:
            problems.append(Finding(shown, "unsafe_name", str(error)))
            continue
        if Path(entry.name).suffix.lower() not in IMAGE_EXTENSIONS:
            problems.append(Finding(shown, "not_an_image", "extension is not .jpg, .jpeg or .png"))
            continue
        yield _Candidate(relative, cls, Path(entry.path))


def _decode(candidate: _Candidate, split: SplitPolicy) -> _Decoded:
    from PIL import Image, UnidentifiedImageError

    try:
        data = candidate.absolute.read_bytes()
    except OSError as error:
        return _Decoded(candidate, None, Finding(candidate.relative, "unreadable", error.strerror or str(error)), None)
    if not data:
        return _Decoded(candidate, None, Finding(candidate.relative, "empty_file", "0 bytes"), None)
    try:
        import io

        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height, mode = image.width, image.height, image.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return _Decoded(candidate, None, Finding(candidate.relative, "corrupt", f"cannot decode image ({error})"),
                        None)
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    record = ImageRecord(path=candidate.relative, cls=candidate.cls, bytes=len(data), md5=md5,
                         split=split.assign(md5), width=width, height=height, mode=mode)
    note = None
    if (width, height) != (IMAGE_SIZE, IMAGE_SIZE) or mode != "L":
        note = Finding(candidate.relative, "normalised",
                       f"{width}×{height} {mode}; the trainer converts it to {IMAGE_SIZE}×{IMAGE_SIZE} grayscale")
    return _Decoded(candidate, record, None, note)


ProgressCallback = Callable[[int], None]


def _bounded_map(pool: ThreadPoolExecutor, function: Callable[[_Candidate], _Decoded],
                 items: Iterable[_Candidate], depth: int) -> Iterator[_Decoded]:
    """`pool.map` in order, but with at most `depth` items submitted ahead: `Executor.map` submits
    everything at once, which holds a future per file (hundreds of MB for 100k images)."""
    pending: deque[Future[_Decoded]] = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def validate_dataset(folder: Path, split: SplitPolicy, *, quarantine: bool = False,
                     on_progress: ProgressCallback | None = None, workers: int = 4) -> ValidationReport:
    """Decode every image under `folder` and build its manifest.

    With `quarantine`, problem files are left out of the manifest (and listed in it as
    quarantined); without it they are left out too, but the report is not ok.
    """
    root = find_dataset_root(Path(folder))
    problems: list[Finding] = []
    notes: list[Finding] = []
    records: list[ImageRecord] = []
    first_by_md5: dict[str, str] = {}
    scanned = 0
    candidates = _walk(root, problems)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for decoded in _bounded_map(pool, lambda candidate: _decode(candidate, split), candidates, 8 * workers):
            scanned += 1
            if on_progress is not None and scanned % 256 == 0:
                on_progress(scanned)
            if decoded.problem is not None:
                problems.append(decoded.problem)
                continue
            record = decoded.record
            assert record is not None
            earlier = first_by_md5.get(record.md5)
            if earlier is not None:
                problems.append(Finding(record.path, "duplicate", f"same content as {earlier}"))
                continue
            first_by_md5[record.md5] = record.path
            records.append(record)
            if decoded.note is not None:
                notes.append(decoded.note)
    if on_progress is not None:
        on_progress(scanned)
    if scanned == 0 and not problems:
        raise DatasetError(f"{root}: no class folders with images (expected <class>/*.jpg for the 32 ArSL2018 classes)")
    present = {record.cls for record in records}
    for name in ARSL_CLASSES:
        if name not in present:
            problems.append(Finding(name + "/", "empty_class", "no usable images for this class"))
    quarantined = [{"path": item.path, "problem": f"{item.kind}: {item.detail}"}
                   for item in problems if quarantine and item.kind not in ("empty_class",)]
    manifest = build_manifest(records, split, quarantined)
    return ValidationReport(root=root, manifest=manifest, problems=problems, notes=notes, files_scanned=scanned)


def write_manifest(report: ValidationReport, destination: Path | None = None) -> Path:
    """Write manifest.json atomically beside the class folders (or to `destination`)."""
    target = destination or report.root / MANIFEST_NAME
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    temporary.write_bytes(report.manifest.to_json_bytes())
    os.replace(temporary, target)
    return target
