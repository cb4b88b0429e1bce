"""Helpers of the bad-input suite: the config keys and the CLI commands enumerated from the code itself,
wrong values for each, hostile image bytes, a data set folder full of hostile names, and snapshots of
the folders nothing may write to.

Nothing here hard-codes the list of keys or commands: `config_keys()` reads the settings dataclasses and
`cli_leaves()` walks the argparse tree, so a key or command added later is fuzzed without a change here.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import math
import os
import shutil
import stat
import struct
import typing
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from arsl_tui.cli import build_parser
from arsl_tui.config import Settings
from arsl_tui.providers.local.store import RESERVED_DIR

# --- config keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigKey:
    """One setting: `section` None for the top-level keys (backend, read_only, home)."""

    section: str | None
    name: str
    annotation: Any
    rules: Mapping[str, Any]
    default: Any

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name

    @property
    def env_var(self) -> str:
        return "ARSL_" + self.dotted.replace(".", "_").upper()

    @property
    def kind(self) -> str:
        """int, float, bool, str, choice or steps."""
        origin = typing.get_origin(self.annotation)
        if origin is Literal:
            return "choice"
        if origin is tuple:
            return "steps"
        return str(self.annotation.__name__)

    @property
    def choices(self) -> tuple[Any, ...]:
        return typing.get_args(self.annotation)

    def bounds(self) -> tuple[float | None, float | None]:
        return self.rules.get("low"), self.rules.get("high")

    def file_text(self, value: Any) -> str:
        """A config file that sets this key (only) to `value`."""
        line = f"{toml_key(self.name)} = {toml_literal(value)}\n"
        return f"[{self.section}]\n{line}" if self.section else line


def config_keys() -> list[ConfigKey]:
    """Every key of every section, from the dataclasses (keymap and the internal `source` left out)."""
    keys = []
    hints = typing.get_type_hints(Settings)
    for top in dataclasses.fields(Settings):
        if top.name in ("keymap", "source"):
            continue
        if dataclasses.is_dataclass(top.default):
            section_cls = type(top.default)
            section_hints = typing.get_type_hints(section_cls)
            for item in dataclasses.fields(section_cls):
                keys.append(
                    ConfigKey(
                        top.name, item.name, section_hints[item.name], item.metadata, getattr(top.default, item.name)
                    )
                )
        else:
            keys.append(ConfigKey(None, top.name, hints[top.name], top.metadata, top.default))
    return keys


_CONTROL = "bad\x1b[31mred\x07"
_HUGE_TEXT = "x" * 5_000


def wrong_file_values(key: ConfigKey) -> list[Any]:
    """Values of the wrong type, out of range or otherwise unusable for `key`, as a TOML file can hold them."""
    tables: list[Any] = [{"nested": 1}, [1, 2]]
    kind = key.kind
    if kind == "int":
        low, high = key.bounds()
        values: list[Any] = ["12", 1.5, True, -(10**30), 10**30, *tables]
        if low is not None:
            values.append(int(low) - 1)
        values.append(int(high) + 1 if high is not None else 10**10)
        return values
    if kind == "float":
        low, high = key.bounds()
        values = ["0.5", True, math.nan, math.inf, -math.inf, 1e300, *tables]
        if low is not None:
            values.append(float(low) - 1.0)
        if high is not None:
            values.append(float(high) * 10 + 1)
        return values
    if kind == "bool":
        return ["true", 1, 0, "yes", *tables]
    if kind == "choice":
        first = str(key.choices[0])
        return [
            "no-such-choice",
            "",
            first.upper() if first.upper() != first else first.lower(),
            5,
            [first],
            _CONTROL,
            *tables[:1],
        ]
    if kind == "steps":
        return [
            [],
            [0, 100],
            [10, 101],
            [50, 10, 100],
            [10, 20],
            "10,100",
            [1.5, 100],
            [True, 100],
            [[10], 100],
            {"a": 1},
            [-5, 100],
            [10**30],
        ]
    assert kind == "str", kind
    values = [5, 1.5, True, ["x"], {"a": "b"}, _CONTROL, "line\nbreak", "nul\x00byte", _HUGE_TEXT + "\x1b"]
    if key.rules.get("required"):
        values.append("")
    if key.rules.get("pattern") is not None:
        values += ["../escape/", "/absolute/", "UPPER Case", "a/./b/", "-", "..", _HUGE_TEXT]
    return values


def wrong_env_texts(key: ConfigKey) -> list[str]:
    """Environment variable values that do not parse as `key`'s type or break its rules."""
    kind = key.kind
    low, high = key.bounds()
    if kind == "int":
        texts = ["twelve", "1.5", "", "0x10", "１２", "9" * 5000, "1e3", "--1"]
        if low is not None:
            texts.append(str(int(low) - 1))
        texts.append(str(int(high) + 1) if high is not None else str(10**30))
        return texts
    if kind == "float":
        texts = ["nan", "inf", "-inf", "1e999", "abc", "", "１.５", "0x1p3"]
        if low is not None:
            texts.append(str(float(low) - 1.0))
        return texts
    if kind == "bool":
        return ["maybe", "", "2", "tru", "ja"]
    if kind == "choice":
        return ["no-such-choice", "", " " + str(key.choices[0]) + "\x1b"]
    if kind == "steps":
        return ["", "a,b", "50,10,100", "0,100", "10,200", "10;100", "10,20"]
    assert kind == "str", kind
    texts = [_CONTROL, "tab\there", "line\nbreak", "undecodable\udcff", _HUGE_TEXT + "\x07"]
    if key.rules.get("required"):
        texts.append("")
    if key.rules.get("pattern") is not None:
        texts += ["../escape/", "/absolute/", "UPPER Case"]
    return texts


def accepted_value_is_sane(key: ConfigKey, value: Any) -> bool:
    """A loaded value has the key's type and keeps to its bounds and text rules (never a silent default is
    checked by the caller, comparing it with what was written)."""
    kind = key.kind
    low, high = key.bounds()
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "choice":
        return value in key.choices
    if kind == "str":
        if not isinstance(value, str) or any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in value):
            return False
        return not (key.rules.get("required") and not value)
    items = value if kind == "steps" else (value,)
    for item in items:
        if kind == "float" and (not isinstance(item, float) or not math.isfinite(item)):
            return False
        if kind in ("int", "steps") and (not isinstance(item, int) or isinstance(item, bool)):
            return False
        if (low is not None and item < low) or (high is not None and item > high):
            return False
    return True


def toml_key(name: str) -> str:
    bare = name and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in name)
    return name if bare else toml_literal(name)


def toml_literal(value: Any) -> str:
    """`value` as TOML (basic strings with \\u escapes, so control characters survive the round trip)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = []
        for char in value:
            if char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F or 0xD800 <= ord(char) <= 0xDFFF:
                escaped.append(f"\\u{ord(char):04x}")
            else:
                escaped.append(char)
        return '"' + "".join(escaped) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{toml_key(str(k))} = {toml_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def shown_fragment(value: Any) -> str:
    """The start of how a message must name `value` (its repr, cut where the config cuts long values)."""
    return repr(value)[:40]


# --- the command tree -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """A command that runs something: its words (`train submit`) and its arguments."""

    words: tuple[str, ...]
    positionals: tuple[argparse.Action, ...]
    options: tuple[argparse.Action, ...]
    """Options that take a value (flags such as --yes are left out: they have no value to spoil)."""

    @property
    def name(self) -> str:
        return " ".join(self.words)

    @property
    def required(self) -> tuple[argparse.Action, ...]:
        return tuple(action for action in self.positionals if action.nargs in (None, "+"))

    @property
    def required_options(self) -> tuple[argparse.Action, ...]:
        return tuple(action for action in self.options if action.required)


_COMMON = {"help", "config", "backend", "json"}


def cli_leaves(parser: argparse.ArgumentParser | None = None) -> list[Leaf]:
    """Every command with a handler, from the real parser (`arsl`'s tree as `main` builds it)."""
    leaves: list[Leaf] = []

    def walk(node: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        if node.get_default("handler") is not None:
            positionals = tuple(
                action
                for action in node._actions
                if not action.option_strings and not isinstance(action, argparse._SubParsersAction)
            )
            options = tuple(
                action
                for action in node._actions
                if action.option_strings and action.dest not in _COMMON and action.nargs != 0
            )
            leaves.append(Leaf(words, positionals, options))
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, (*words, name))

    walk(parser or build_parser(), ())
    return leaves


def takes_number(action: argparse.Action) -> bool:
    """An option parsed as a number (argparse `type` int/float or one of the CLI's bounded number types)."""
    kind = action.type
    return kind in (int, float) or getattr(kind, "__qualname__", "").startswith(("whole_number", "number"))


# --- folders nothing may write to -----------------------------------------------------------------


def listing(folder: Path) -> frozenset[str]:
    """The names directly in `folder` (empty if it is gone)."""
    try:
        return frozenset(os.listdir(folder))
    except FileNotFoundError:
        return frozenset()


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under `folder` (not following symlinks): relative path → (mode, size)."""
    found: dict[str, tuple[int, int]] = {}
    for current, folders, files in os.walk(folder):
        for name in [*folders, *files]:
            path = os.path.join(current, name)
            status = os.lstat(path)
            size = status.st_size if stat.S_ISREG(status.st_mode) else 0
            found[os.path.relpath(path, folder)] = (stat.S_IFMT(status.st_mode), size)
    return found


# --- image bytes ----------------------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], mode: str = "L", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB").convert(mode)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, *, depth: int = 8, colour: int = 0, rows: int = 1) -> bytes:
    """A well-formed PNG header declaring `width`×`height` (colour 0 gray, 2 RGB, 6 RGBA) whose IDAT holds
    `rows` rows of zeros: with rows = height a real image that deflate shrinks ~1000×, a decompression bomb."""
    bytes_per_pixel = {0: 1, 2: 3, 4: 2, 6: 4}[colour] * depth // 8
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width * bytes_per_pixel + 1)
    idat = b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF whose logical screen is `width`×`height` around a 1×1 frame."""
    small = encoded(Image.new("L", (1, 1)), "GIF")
    return small[:6] + struct.pack("<HH", width, height) + small[10:]


def jpeg_declaring(width: int, height: int) -> bytes:
    """A 8×8 baseline JPEG whose frame header (SOF0) claims `width`×`height`."""
    data = bytearray(encoded(noise((8, 8)), "JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def animated_gif(frames: int = 5) -> bytes:
    images = [noise((64, 64), "L", seed) for seed in range(frames)]
    return encoded(images[0], "GIF", save_all=True, append_images=images[1:], duration=40, loop=0)


def cmyk_jpeg() -> bytes:
    return encoded(noise((64, 64), "RGB", 5).convert("CMYK"), "JPEG")


def png16() -> bytes:
    """64×64 grayscale with 16 bits a pixel (Pillow's mode I;16)."""
    pixels = np.random.default_rng(3).integers(0, 65535, size=(64, 64), dtype=np.uint16)
    image = Image.fromarray(pixels)
    assert image.mode == "I;16", image.mode
    return encoded(image, "PNG")


def rgb16_png() -> bytes:
    """64×64 RGB with 16 bits a channel (written by hand: Pillow does not save 16-bit RGB)."""
    rng = np.random.default_rng(4)
    rows = b"".join(
        b"\x00" + rng.integers(0, 65535, size=64 * 3, dtype=np.uint16).astype(">u2").tobytes() for _ in range(64)
    )
    header = struct.pack(">IIBBBBB", 64, 64, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def other_formats() -> dict[str, bytes]:
    """Images Pillow reads but the gateway does not take: refused from their header, never decoded."""
    small = noise((16, 16), "RGB")
    return {
        "ico": encoded(small, "ICO"),
        "pcx": encoded(small, "PCX"),
        "tga": encoded(small, "TGA"),
        "ppm": encoded(small, "PPM"),
        "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n",
    }


# --- memory of this process -----------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Start a new peak-RSS measurement (Linux: clear_refs 5); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def rss_kb(field: str = "VmHWM") -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


# --- a data set folder with hostile names ---------------------------------------------------------


@dataclass
class HostileSet:
    root: Path
    outside: Path
    """A folder beside the data set that symlinks point into; nothing in it may be read or changed."""
    expected: dict[str, str]
    """Relative path (as a finding names it) → the problem kind validation must report for it."""
    accepted: set[str]
    """Odd but harmless names that must go through as images (and into the store, escaped nowhere)."""
    hidden: set[str]
    """Dot files, skipped silently by design (editor and OS droppings): in no finding, manifest or store."""
    outside_md5s: set[str]


def _mkfile(parent: Path, name: bytes, data: bytes) -> None:
    descriptor = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644, dir_fd=os.open(parent, os.O_RDONLY))
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def deep_folder(base: Path, total_bytes: int) -> Path:
    """A folder under `base` whose absolute path is about `total_bytes` long (PATH_MAX is 4096)."""
    folder = base
    while len(os.fsencode(folder)) < total_bytes - 250:
        folder = folder / ("d" * 200)
    folder = folder / ("e" * max(1, total_bytes - len(os.fsencode(folder)) - 1))
    folder.mkdir(parents=True)
    return folder


def iter_store_keys(store_root: Path) -> Iterator[str]:
    """Every object key of a local directory store (its reserved metadata folder left out)."""
    for current, _folders, files in os.walk(store_root):
        for name in files:
            relative = os.path.relpath(os.path.join(current, name), store_root)
            if relative.split(os.sep, 1)[0] != RESERVED_DIR:
                yield relative


def _jpeg(seed: int) -> bytes:
    return encoded(noise((64, 64), "L", 10_000 + seed), "JPEG", quality=90)


def hostile_dataset(root: Path, outside: Path) -> HostileSet:
    """Spoil the good data set at `root` (every class folder holding images) with hostile entries.

    `outside` is created beside it: symlinks point into it, and it holds images whose content must never
    reach a manifest or the store.
    """
    outside.mkdir()
    (outside / "ain").mkdir()
    secrets = {outside / "secret.jpg": _jpeg(1), outside / "ain" / "inner.jpg": _jpeg(2)}
    for path, data in secrets.items():
        path.write_bytes(data)
    expected: dict[str, str] = {}
    accepted: set[str] = set()
    hidden: set[str] = set()

    def put(relative: bytes, data: bytes, kind: str | None) -> None:
        parent, _, name = relative.rpartition(b"/")
        _mkfile(root / os.fsdecode(parent), name, data)
        shown = os.fsdecode(relative).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if kind is None:
            accepted.add(shown)
        elif kind == "hidden":
            hidden.add(shown)
        else:
            expected[shown] = kind

    put(b"ain/sub\\..\\..\\evil.jpg", _jpeg(3), "unsafe_name")  # '..' components, Windows style
    put(b"ain/..\\..\\hidden.jpg", _jpeg(13), "hidden")  # a dot file: skipped like .DS_Store, never stored
    put(b"ain/C:\\Windows\\win.jpg", _jpeg(4), "unsafe_name")  # an absolute-looking name
    put(b"aleff/evil\x1b[31mred\x1b[0m.jpg", _jpeg(5), "unsafe_name")
    put(b"aleff/new\nline.jpg", _jpeg(6), "unsafe_name")
    put(b"aleff/bell\x07\r.jpg", _jpeg(7), "unsafe_name")
    put(b"dal/bad\xffname\xfe.jpg", _jpeg(8), "unsafe_name")
    put(b"al/" + b"a" * 251 + b".jpg", _jpeg(9), None)  # 255 bytes: the longest name a file system allows
    put("bb/\u202egpj.exe.jpg".encode(), _jpeg(10), None)  # a bidi override: harmless once escaped on screen
    put(b"kaaf/bomb.png", png_declaring(100_000, 100_000), "too_big")
    put(b"kaaf/wide.png", png_declaring(5000, 4000, rows=4000), "too_big")
    put(b"khaa/truncated.jpg", _jpeg(11)[:200], "corrupt")
    put(b"khaa/empty.jpg", b"", "empty_file")
    with open(root / "jeem" / "sparse.jpg", "wb") as handle:  # 64 GB that takes no disk: must not be read
        handle.truncate(64 * 2**30)
    expected["jeem/sparse.jpg"] = "too_big"

    links = {
        "dha/link.jpg": outside / "secret.jpg",
        "dha/linkdir": outside,
        "dhad/loop.jpg": Path("loop.jpg"),
        "fa/dangling.jpg": outside / "absent.jpg",
        "ra/up.jpg": Path("../../outside/secret.jpg"),
    }
    for relative, target in links.items():
        (root / relative).symlink_to(target)
        expected[relative] = "symlink"
    shutil.rmtree(root / "ya")
    (root / "ya").symlink_to(outside, target_is_directory=True)  # a whole class folder elsewhere
    expected["ya"] = "symlink"
    (root / "loop").symlink_to("loop")
    expected["loop"] = "symlink"
    os.mkfifo(root / "gaaf" / "fifo.jpg")
    expected["gaaf/fifo.jpg"] = "not_a_file"
    try:  # /dev/zero under an image's name: reading it would never end
        os.mknod(root / "ghain" / "zero.jpg", stat.S_IFCHR | 0o644, os.makedev(1, 5))
        expected["ghain/zero.jpg"] = "not_a_file"
    except PermissionError:
        pass
    (root / "laam" / "sub").mkdir()
    expected["laam/sub/"] = "nested_folder"
    (root / "\x1b[2Jclear.txt").write_text("a stray file with an escape in its name")
    expected["\x1b[2Jclear.txt"] = "stray_file"
    (root / "ha" / "locked.jpg").write_bytes(_jpeg(12))
    (root / "ha" / "locked.jpg").chmod(0)
    if os.geteuid() != 0:  # root reads any file whatever its mode
        expected["ha/locked.jpg"] = "unreadable"
    md5s = {hashlib.md5(data, usedforsecurity=False).hexdigest() for data in secrets.values()}
    return HostileSet(
        root=root, outside=outside, expected=expected, accepted=accepted, hidden=hidden, outside_md5s=md5s
    )
