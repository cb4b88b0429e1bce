"""Validate a class-folder data set and write its manifest.

Accepts the ArSL2018 layout (`<root>/<class>/*.jpg|JPG`) and the same layout one folder down,
as the real download unpacks (`ArASL_Database_54K_Final/<class>/...`). Every image is decoded;
problems (corrupt files, unknown class folders, duplicates, unsafe names, symlinks) make the data
set unfit to upload unless they are quarantined; notes (not 64×64 grayscale) are only reported,
because the trainer normalises them.

Decoding is the cost (~0.1 ms of mostly GIL-bound Python per 64×64 JPEG), so large sets are checked
by one worker process per CPU: this process lists each class folder's names and hands them out in
chunks, at most two per worker in flight, and takes the results back in order — the report is the same,
entry for entry, as checking everything here, and memory does not grow with the number of files
beyond the records the manifest keeps.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import os
import re
import stat
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from arsl_tui.domain.classes import ARSL_CLASSES, IMAGE_EXTENSIONS, IMAGE_SIZE
from arsl_tui.domain.keys import UnsafeKeyError, check_relative_path
from arsl_tui.domain.manifest import ImageRecord, Manifest, SplitPolicy, build_manifest
from arsl_tui.ops.processes import WORKER_DIED, WorkerProcessFailed, available_cpus, process_pool

MANIFEST_NAME = "manifest.json"
STAGED_MANIFEST_NAME = ".manifest.json.staged"
"""Where an upload sends the manifest beside the data set, before copying it to `manifest.json` at the end."""
_OWN_FILES = frozenset({MANIFEST_NAME, STAGED_MANIFEST_NAME, "shards.json"})
_CHUNK = 512
"""Entries per task handed to a worker: big enough that a task's overhead is small, small enough to keep
results coming in steady order."""
_PROCESS_MIN_FILES = 4096
"""Below this many files, decoding in this process is quicker than starting worker processes (~0.5 s)."""
MAX_IMAGE_BYTES = 32 * 1024 * 1024
"""An ArSL2018 image is ~2 KB; a bigger file is refused unread (a sparse 100 GB "image" must not fill memory)."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Larger images are refused from their header, before decoding (a small file can declare gigapixels)."""
_INVISIBLE = frozenset({0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF})


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


class _Checked(NamedTuple):
    """What checking one directory entry found: an image record, or a problem; perhaps a note."""

    record: ImageRecord | None
    problem: Finding | None
    note: Finding | None
    decoded: bool
    """Whether the file got as far as being read and decoded (what `files_scanned` counts)."""


def holds_dataset(folder: Path) -> bool:
    """Whether `folder` (or its single sub-folder) has a manifest.json or at least one class folder."""
    root = find_dataset_root(folder)
    if (root / MANIFEST_NAME).is_file():
        return True
    try:
        return any(entry.name in ARSL_CLASSES and entry.is_dir(follow_symlinks=False) for entry in os.scandir(root))
    except OSError as error:
        raise DatasetError(f"{shown(str(root))}: cannot be read ({error.strerror})") from None


def find_dataset_root(folder: Path) -> Path:
    """The folder holding the class folders: `folder` itself or its single sub-folder."""
    where = shown(str(folder))
    try:
        mode = os.stat(folder).st_mode
    except FileNotFoundError:
        raise DatasetError(f"{where}: no such folder") from None
    except OSError as error:  # too long a name, a symlink loop, a file used as a folder
        raise DatasetError(f"{where}: cannot be read ({error.strerror})") from None
    if not stat.S_ISDIR(mode):
        raise DatasetError(f"{where}: is a file, expected a folder of class folders")
    try:
        entries = [entry for entry in os.scandir(folder) if not entry.name.startswith(".")]
        if any(entry.name in ARSL_CLASSES for entry in entries if entry.is_dir(follow_symlinks=False)):
            return folder
        subfolders = [entry for entry in entries if entry.is_dir(follow_symlinks=False)]
        files = [entry for entry in entries if entry.name not in _OWN_FILES and not entry.is_dir(follow_symlinks=False)]
        if len(subfolders) == 1 and not files:
            inner = Path(subfolders[0].path)
            if any(entry.name in ARSL_CLASSES for entry in os.scandir(inner) if entry.is_dir(follow_symlinks=False)):
                return inner
    except OSError as error:
        raise DatasetError(f"{where}: cannot be read ({error.strerror})") from None
    return folder


def _display(path: str) -> str:
    """A file name that may hold undecodable bytes, as text (U+FFFD for each such byte).

    Findings keep every other character as it is, newlines and escapes included: they identify the file
    (the manifest's quarantine list, --json). Whoever prints one to a terminal escapes it (`shown`).
    """
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def shown(text: str) -> str:
    """`text` safe for a terminal: control characters (newlines, ANSI escapes) and bidi overrides as Python
    escapes, undecodable bytes as U+FFFD; for messages and for printing findings."""
    out = []
    for char in _display(text):
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F or code in _INVISIBLE:
            out.append(repr(char)[1:-1] if code < 0x80 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def _count_entries(folder: str, limit: int = 100_000) -> str:
    """How many entries a skipped folder holds, counted without following symlinks or going deeper."""
    try:
        with os.scandir(folder) as entries:
            count = sum(1 for _ in itertools.islice(entries, limit))
    except OSError as error:
        return f"unreadable: {error.strerror}"
    return f"{count}+ entries" if count >= limit else f"{count} entries"


def _chunks(root: Path, problems: list[Finding], classes: set[str]) -> Iterator[tuple[str, list[str]]]:
    """(class, up to _CHUNK entry names in name order) for every class folder; top-level problems go to `problems`,
    the class folders found to `classes`.

    Only names are listed here: every per-file check happens where the file is decoded (`_check_chunk`).
    """
    try:
        tops = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError as error:
        raise DatasetError(f"{shown(str(root))}: cannot be read ({error.strerror})") from None
    for top in tops:
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
            problems.append(
                Finding(
                    _display(name) + "/",
                    "unknown_class",
                    f"folder is not one of the 32 ArSL2018 classes ({_count_entries(top.path)} skipped)",
                )
            )
            continue
        classes.add(name)
        try:
            names = sorted(entry.name for entry in os.scandir(top.path) if not entry.name.startswith("."))
        except OSError as error:
            problems.append(Finding(name + "/", "unreadable", error.strerror or str(error)))
            continue
        for start in range(0, len(names), _CHUNK):
            yield name, names[start : start + _CHUNK]


def _check_chunk(root: str, cls: str, names: list[str], split: SplitPolicy) -> list[_Checked]:
    """Check and decode the entries `names` of class folder `cls` (in a worker process, or inline)."""
    return [_check_entry(root, cls, name, split) for name in names]


def _check_entry(root: str, cls: str, name: str, split: SplitPolicy) -> _Checked:
    relative = f"{cls}/{name}"
    label = _display(relative)
    path = os.path.join(root, cls, name)
    try:
        mode = os.lstat(path).st_mode
    except OSError as error:
        return _Checked(None, Finding(label, "unreadable", error.strerror or str(error)), None, False)
    if stat.S_ISLNK(mode):
        return _Checked(None, Finding(label, "symlink", "symbolic links are not followed"), None, False)
    if stat.S_ISDIR(mode):
        return _Checked(
            None, Finding(label + "/", "nested_folder", "class folders must hold image files only"), None, False
        )
    if not stat.S_ISREG(mode):
        return _Checked(None, Finding(label, "not_a_file", "not a regular file"), None, False)
    try:
        _check_name(relative, name)
    except UnsafeKeyError as error:
        return _Checked(None, Finding(label, "unsafe_name", str(error)), None, False)
    if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
        return _Checked(None, Finding(label, "not_an_image", "extension is not .jpg, .jpeg or .png"), None, False)
    return _decode(relative, cls, path, split)


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")
"""A file name `check_relative_path` never refuses inside a class folder: no control or surrogate character,
no separator, not `.` or `..`, short."""


def _check_name(relative: str, name: str) -> None:
    """`check_relative_path(relative)` for a class folder's entry `name`, with a quick way past plain names
    (the full check costs about as much as reading a 2 KB image)."""
    if _PLAIN_NAME.fullmatch(name) is None:
        check_relative_path(relative)


def _predict_chunk(root: str, cls: str, names: list[str], split: SplitPolicy) -> list[_Checked]:
    """`_check_chunk` with each image's size and mode read from its header; an entry it cannot judge that
    way comes back with neither record nor problem (see `predict_dataset`)."""
    out: list[_Checked] = []
    for name in names:
        relative = f"{cls}/{name}"
        path = os.path.join(root, cls, name)
        try:
            regular = stat.S_ISREG(os.lstat(path).st_mode)
            _check_name(relative, name)
        except (OSError, UnsafeKeyError):
            regular = False
        if not regular or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
            out.append(_check_entry(root, cls, name, split))  # what is not an image file is judged as ever
            continue
        try:
            data = _read_regular(path)
        except (OSError, ValueError):
            data = b""
        header = _header_size_mode(data)
        if header is None:
            out.append(_Checked(None, None, None, True))
            continue
        width, height, mode = header
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        record = ImageRecord(
            path=relative,
            cls=cls,
            bytes=len(data),
            md5=md5,
            split=split.assign(md5),
            width=width,
            height=height,
            mode=mode,
        )
        out.append(_Checked(record, None, _note(relative, width, height, mode), True))
    return out


_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
_PNG_MODES = {(0, 8): "L", (0, 1): "1", (2, 8): "RGB", (3, 8): "P", (4, 8): "LA", (6, 8): "RGBA"}
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""Start-of-frame markers (SOF0–SOF15); C4, C8 and CC share the range but are not frames."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _header_size_mode(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, Pillow mode) as a JPEG's frame header or a PNG's IHDR declares them; None for anything
    else, or anything this does not know how Pillow would open (a full validation judges those)."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 29:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        mode = _PNG_MODES.get((data[25], data[24]))
        sane = mode is not None and 0 < width * height <= MAX_IMAGE_PIXELS
        return (width, height, mode) if sane and mode is not None else None
    if not data.startswith(b"\xff\xd8"):
        return None
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        if marker in _JPEG_FRAMES:
            if offset + 10 > len(data):
                return None
            height = int.from_bytes(data[offset + 5 : offset + 7], "big")
            width = int.from_bytes(data[offset + 7 : offset + 9], "big")
            mode = _JPEG_MODES.get(data[offset + 9])
            sane = mode is not None and 0 < width * height <= MAX_IMAGE_PIXELS
            return (width, height, mode) if sane and mode is not None else None
        if marker == 0xDA or length < 2:  # scan data before any frame header: not a JPEG Pillow opens
            return None
        offset += 2 + length
    return None


class _TooManyPixels(Exception):
    def __init__(self, width: int, height: int) -> None:
        super().__init__(f"{width}×{height} pixels; at most {MAX_IMAGE_PIXELS} are decoded")


def _decoded(data: bytes) -> tuple[int, int, str]:
    """(width, height, mode) of the image `data`, fully decoded. Raises `_TooManyPixels` before decoding more
    than MAX_IMAGE_PIXELS, and whatever Pillow raises for bytes it cannot decode."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise _TooManyPixels(image.width, image.height)
        image.load()
        return image.width, image.height, image.mode


def decoded_shape(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, mode) of the image `data` once fully decoded as `validate_dataset` decodes it; None
    where validation would report it (too many pixels, not decodable)."""
    try:
        return _decoded(data)
    except Exception:  # whatever Pillow raises for these bytes, validation reports the file
        return None


def _note(relative: str, width: int, height: int, mode: str) -> Finding | None:
    if (width, height) == (IMAGE_SIZE, IMAGE_SIZE) and mode == "L":
        return None
    return Finding(
        relative,
        "normalised",
        f"{width}×{height} {mode}; the trainer converts it to {IMAGE_SIZE}×{IMAGE_SIZE} grayscale",
    )


def _read_regular(path: str) -> bytes:
    """The bytes of the regular file at `path`, never through a symlink (swapped in since the lstat), never
    blocking on a FIFO, never more than MAX_IMAGE_BYTES (ValueError)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:  # the descriptor itself, not a file object around it: that costs a third of reading a 2 KB image
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise ValueError("not a regular file")
        if status.st_size > MAX_IMAGE_BYTES:
            raise ValueError(f"{status.st_size} bytes; images are at most {MAX_IMAGE_BYTES // 2**20} MB")
        # Read what fstat promised (and one byte more): a read sized for the limit allocates 32 MB per file,
        # which cost more than decoding a 64×64 image. A file that grew since is read on, up to the limit.
        data = _read_up_to(descriptor, status.st_size + 1)
        if len(data) > status.st_size:
            data += _read_up_to(descriptor, MAX_IMAGE_BYTES + 1 - len(data))
    finally:
        os.close(descriptor)
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"more than {MAX_IMAGE_BYTES // 2**20} MB; images are smaller")
    return data


def _read_up_to(descriptor: int, limit: int) -> bytes:
    """Up to `limit` bytes from `descriptor`, fewer only at the end of the file (a read may return less)."""
    data = os.read(descriptor, limit)
    while 0 < len(data) < limit:
        more = os.read(descriptor, limit - len(data))
        if not more:
            break
        data += more
    return data


def _decode(relative: str, cls: str, path: str, split: SplitPolicy) -> _Checked:
    from PIL import Image

    try:
        data = _read_regular(path)
    except OSError as error:
        return _Checked(None, Finding(relative, "unreadable", error.strerror or str(error)), None, True)
    except ValueError as error:
        return _Checked(
            None, Finding(relative, "not_a_file" if "regular" in str(error) else "too_big", str(error)), None, True
        )
    if not data:
        return _Checked(None, Finding(relative, "empty_file", "0 bytes"), None, True)
    try:
        width, height, mode = _decoded(data)
    except _TooManyPixels as error:
        return _Checked(None, Finding(relative, "too_big", str(error)), None, True)
    except Image.DecompressionBombError as error:  # the header declares far more pixels than we decode
        return _Checked(None, Finding(relative, "too_big", shown(str(error))[:200]), None, True)
    except Exception as error:  # Pillow raises many types for hostile bytes; each is this file's problem
        detail = shown(str(error))[:200]
        return _Checked(
            None, Finding(relative, "corrupt", f"cannot decode image ({type(error).__name__}: {detail})"), None, True
        )
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    record = ImageRecord(
        path=relative, cls=cls, bytes=len(data), md5=md5, split=split.assign(md5), width=width, height=height, mode=mode
    )
    return _Checked(record, None, _note(relative, width, height, mode), True)


ProgressCallback = Callable[[int], None]


class _WithoutDescriptor:
    """A stream as it is, except that it has no file descriptor to hand to a child process."""

    def __init__(self, stream: object) -> None:
        self._stream = stream

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no file descriptor")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (which every spawned worker pool needs) where it can start.

    It is handed this process's stderr by descriptor, and a running Textual app replaces `sys.stderr` with
    a stream whose `fileno()` is -1: the console's first worker pool would then fail with "bad value(s) in
    fds_to_keep". There it starts with no stderr at all (its rare warnings would land on the console's
    screen anyway); everywhere else this is what the first pool would do.
    """
    from multiprocessing import resource_tracker

    try:
        usable = sys.stderr.fileno() >= 0
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError: it is skipped
        usable = True
    if usable:
        resource_tracker.ensure_running()
        return
    with contextlib.redirect_stderr(_WithoutDescriptor(sys.stderr)):
        resource_tracker.ensure_running()


ChunkCheck = Callable[[str, str, list[str], SplitPolicy], list[_Checked]]


def _check_all(
    root: Path,
    split: SplitPolicy,
    problems: list[Finding],
    classes: set[str],
    workers: int | None,
    check: ChunkCheck = _check_chunk,
    stopped: Callable[[], bool] | None = None,
) -> Iterator[_Checked]:
    """Every entry of every class folder checked, in path order.

    Large sets are checked by worker processes, chunk by chunk, with at most two chunks per worker
    queued: memory stays flat however many files there are, and results come back in order.
    """
    chunks = _chunks(root, problems, classes)
    head: list[tuple[str, list[str]]] = []
    listed = 0
    for chunk in chunks:
        head.append(chunk)
        listed += len(chunk[1])
        if listed >= _PROCESS_MIN_FILES:
            break
    count = workers if workers is not None else available_cpus() if listed >= _PROCESS_MIN_FILES else 1
    ordered = itertools.chain(head, chunks)
    if count <= 1:
        for cls, names in ordered:
            _stop_if(stopped)
            yield from check(str(root), cls, names, split)
        return
    start_resource_tracker()
    with process_pool(count) as pool:
        pending: deque[Future[list[_Checked]]] = deque()
        try:
            for cls, names in ordered:
                _stop_if(stopped)
                pending.append(pool.submit(check, str(root), cls, names, split))
                if len(pending) >= 2 * count:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BrokenProcessPool as error:
            raise WorkerProcessFailed(WORKER_DIED.format(detail=f"decoding images under {root}: {error}")) from None
        finally:
            for future in pending:
                future.cancel()


def _stop_if(stopped: Callable[[], bool] | None) -> None:
    if stopped is not None and stopped():
        raise ValidationStopped


class ValidationStopped(Exception):
    """The caller of `validate_dataset` asked it to stop (`stopped()` became true)."""


def validate_dataset(
    folder: Path,
    split: SplitPolicy,
    *,
    quarantine: bool = False,
    on_progress: ProgressCallback | None = None,
    workers: int | None = None,
    stopped: Callable[[], bool] | None = None,
) -> ValidationReport:
    """Decode every image under `folder` and build its manifest.

    With `quarantine`, problem files are left out of the manifest (and listed in it as
    quarantined); without it they are left out too, but the report is not ok. `workers`: processes
    that decode (None: one per CPU for large sets, none for small ones, where starting them costs more
    than it saves; 1: decode in this process). `stopped` is polled between chunks; once true, the
    validation ends with `ValidationStopped`.
    """
    root = find_dataset_root(Path(folder))
    problems: list[Finding] = []
    classes: set[str] = set()
    checked = _check_all(root, split, problems, classes, workers, _check_chunk, stopped)
    return _report(root, split, checked, problems, classes, quarantine=quarantine, on_progress=on_progress)


def predict_dataset(
    folder: Path, split: SplitPolicy, *, on_progress: ProgressCallback | None = None, workers: int | None = None
) -> ValidationReport | None:
    """The report `validate_dataset` gives for `folder` if every image decodes, in a fraction of its time; None
    when this pass finds anything that only a full validation may judge (then validate).

    Reads and hashes every file and takes each image's size and mode from its header (JPEG frame header,
    PNG IHDR) instead of decoding it, with every other rule of `validate_dataset` the same. A prediction is
    only a prediction: a file whose header is sound but whose data is not decodes only in a full
    validation, and an uploader must compare the two before it calls the data set complete.
    """
    root = find_dataset_root(Path(folder))
    problems: list[Finding] = []
    classes: set[str] = set()
    unsure = False

    def sure(checked: Iterator[_Checked]) -> Iterator[_Checked]:
        nonlocal unsure
        for entry in checked:
            if entry.record is None and entry.problem is None:
                unsure = True
                return
            yield entry

    checked = sure(_check_all(root, split, problems, classes, workers, _predict_chunk))
    report = _report(root, split, checked, problems, classes, on_progress=on_progress)
    return None if unsure or not report.ok else report


def _report(
    root: Path,
    split: SplitPolicy,
    checked_entries: Iterator[_Checked],
    problems: list[Finding],
    classes: set[str],
    *,
    quarantine: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ValidationReport:
    """The report of every checked entry: duplicates, empty classes, quarantine and the manifest."""
    notes: list[Finding] = []
    records: list[ImageRecord] = []
    first_by_md5: dict[str, str] = {}
    scanned = 0
    for checked in checked_entries:
        if checked.decoded:
            scanned += 1
            if on_progress is not None and scanned % 256 == 0:
                on_progress(scanned)
        if checked.problem is not None:
            problems.append(checked.problem)
            continue
        record = checked.record
        assert record is not None
        earlier = first_by_md5.get(record.md5)
        if earlier is not None:
            problems.append(Finding(record.path, "duplicate", f"same content as {earlier}"))
            continue
        first_by_md5[record.md5] = record.path
        records.append(record)
        if checked.note is not None:
            notes.append(checked.note)
    if on_progress is not None:
        on_progress(scanned)
    if scanned == 0 and not classes:  # no data set here at all: no report, and no manifest written into it
        found = f"; found {len(problems)} other entries, e.g. {shown(problems[0].path)}" if problems else ""
        raise DatasetError(
            f"{shown(str(root))}: no class folders with images (expected <class>/*.jpg for the 32 "
            f"ArSL2018 classes){found}"
        )
    present = {record.cls for record in records}
    for name in ARSL_CLASSES:
        if name not in present:
            problems.append(Finding(name + "/", "empty_class", "no usable images for this class"))
    quarantined = [
        {"path": item.path, "problem": f"{item.kind}: {item.detail}"}
        for item in problems
        if quarantine and item.kind not in ("empty_class",)
    ]
    manifest = build_manifest(records, split, quarantined)
    return ValidationReport(root=root, manifest=manifest, problems=problems, notes=notes, files_scanned=scanned)


def write_manifest(report: ValidationReport, destination: Path | None = None) -> Path:
    """Write manifest.json atomically beside the class folders (or to `destination`)."""
    target = destination or report.root / MANIFEST_NAME
    if target.name in ("", ".", ".."):
        raise DatasetError(f"{shown(str(target))}: not a file name for the manifest")
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    temporary.write_bytes(report.manifest.to_json_bytes())
    os.replace(temporary, target)
    return target
