"""A deterministic, ArSL2018-shaped synthetic data set: 32 class folders of 64×64 grayscale JPEGs.

Each class is one hand shape: which of the five fingers (thumb … pinky) are extended is the class
index's five bits, so classes differ only in hand configuration, as signs do. Every image draws a
"signer" (one of 40 styles: palm size, finger proportions and thickness, skin and background tone,
left or right hand) and its own pose (rotation, scale, shift, finger spread and bend), lighting
gradient, background clutter, blur and sensor noise. The result is learnable by a small CNN but not
at a glance: it takes several epochs.

Determinism: every image has its own numpy Generator seeded from (seed, class, index) and every
signer style from (seed, signer), so the same seed gives byte-identical files regardless of the
number of worker processes. JPEGs are written by PIL with fixed quality and no metadata.
"""

from __future__ import annotations

import io
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from arsl_tui.domain.classes import ARSL_CLASSES, IMAGE_SIZE

SIGNERS = 40
JPEG_QUALITY = 90
_CANVAS = IMAGE_SIZE * 2  # shapes are drawn at twice the size and box-filtered down (anti-aliasing)
_IMAGE_STREAM = 0
_SIGNER_STREAM = 1
# Finger bases on the top edge of the palm (x offset, y offset) and natural lengths, in palm units.
_FINGER_BASES = ((-0.62, -0.80), (-0.21, -0.95), (0.21, -0.93), (0.60, -0.78))
_FINGER_LENGTHS = (1.30, 1.45, 1.35, 1.05)
_FINGER_SPREAD_DEG = (-12.0, -4.0, 4.0, 13.0)


class SynthError(Exception):
    """The data set cannot be written where asked; the message names the path and the reason."""


@dataclass(frozen=True)
class SynthSummary:
    out: Path
    images: int
    bytes: int


@dataclass(frozen=True)
class _Style:
    """One signer's hand and surroundings."""

    palm: float  # palm half-height in canvas pixels
    width_ratio: float
    finger_scale: tuple[float, float, float, float]
    thickness: float
    thumb_length: float
    skin: float
    background: float
    left_handed: bool


def finger_code(class_index: int) -> tuple[bool, bool, bool, bool, bool]:
    """Which fingers (thumb, index, middle, ring, pinky) are extended in this class's sign."""
    t, i, m, r, p = ((class_index >> bit) & 1 == 1 for bit in range(5))
    return t, i, m, r, p


def _signer_style(seed: int, signer: int) -> _Style:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SIGNER_STREAM, signer)))
    scale = rng.uniform(0.9, 1.12, size=4)
    return _Style(
        palm=float(rng.uniform(25.0, 30.0)),
        width_ratio=float(rng.uniform(0.78, 0.95)),
        finger_scale=(float(scale[0]), float(scale[1]), float(scale[2]), float(scale[3])),
        thickness=float(rng.uniform(6.0, 8.5)),
        thumb_length=float(rng.uniform(0.95, 1.2)),
        skin=float(rng.uniform(150.0, 235.0)),
        background=float(rng.uniform(20.0, 120.0)),
        left_handed=bool(rng.random() < 0.15),
    )


class _Pose:
    """Hand-local coordinates (palm centre at 0, fingers towards −y, palm units) → canvas pixels."""

    def __init__(self, rng: np.random.Generator, style: _Style) -> None:
        angle = math.radians(float(np.clip(rng.normal(0.0, 12.0), -30.0, 30.0)))
        self.scale = style.palm * float(rng.uniform(0.85, 1.15))
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.mirror = -1.0 if style.left_handed else 1.0
        centre = _CANVAS / 2
        self.cx = centre + float(rng.uniform(-5.0, 5.0)) * 2
        self.cy = centre + 26.0 + float(rng.uniform(-5.0, 5.0)) * 2

    def point(self, x: float, y: float) -> tuple[float, float]:
        x, y = x * self.scale * self.mirror, y * self.scale
        return self.cx + x * self.cos - y * self.sin, self.cy + x * self.sin + y * self.cos

    def points(self, coords: np.ndarray) -> list[tuple[float, float]]:
        return [self.point(float(x), float(y)) for x, y in coords]


def _stroke(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], width: float, fill: int) -> None:
    """A thick polyline with round joints and caps."""
    w = max(1, round(width))
    draw.line(points, fill=fill, width=w, joint="curve")
    radius = width / 2
    for x, y in (points[0], points[-1]):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)


def _draw_hand(
    mask: ImageDraw.ImageDraw,
    creases: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    style: _Style,
    pose: _Pose,
    code: tuple[bool, bool, bool, bool, bool],
) -> None:
    thickness = style.thickness * pose.scale / style.palm
    # Forearm: a tapered band from below the palm to beyond the canvas edge.
    arm_width = style.width_ratio * 0.8
    mask.polygon(
        pose.points(np.array([[-arm_width, 0.5], [arm_width, 0.5], [arm_width * 1.1, 4.5], [-arm_width * 1.1, 4.5]])),
        fill=255,
    )
    theta = np.linspace(0.0, 2 * math.pi, 28, endpoint=False)
    palm = np.stack([style.width_ratio * np.cos(theta), np.sin(theta)], axis=1)
    mask.polygon(pose.points(palm), fill=255)
    thumb, *fingers = code
    for finger, extended in enumerate(fingers):
        bx, by = _FINGER_BASES[finger]
        bx *= style.width_ratio
        spread = math.radians(_FINGER_SPREAD_DEG[finger] + float(rng.normal(0.0, 6.0)))
        if extended:
            length = _FINGER_LENGTHS[finger] * style.finger_scale[finger] * float(rng.uniform(0.9, 1.05))
            bend = math.radians(float(rng.normal(0.0, 8.0)))
            mx, my = bx + math.sin(spread) * length * 0.55, by - math.cos(spread) * length * 0.55
            tx = mx + math.sin(spread + bend) * length * 0.45
            ty = my - math.cos(spread + bend) * length * 0.45
            _stroke(mask, pose.points(np.array([[bx, by + 0.2], [mx, my], [tx, ty]])), thickness, 255)
        else:
            # A curled finger: a knuckle bump on the palm edge and a fold line across the palm.
            kx, ky = bx + math.sin(spread) * 0.3, by - 0.18
            _stroke(mask, pose.points(np.array([[bx, by + 0.1], [kx, ky]])), thickness * 1.05, 255)
            fold = float(rng.uniform(0.45, 0.65))
            _stroke(
                creases,
                pose.points(np.array([[kx, ky + 0.05], [bx * 0.9, by + fold]])),
                max(2.0, thickness * 0.45),
                255,
            )
    base = (-style.width_ratio * 0.92, 0.15)
    if thumb:
        angle = math.radians(-58.0 + float(rng.normal(0.0, 8.0)))
        length = 1.05 * style.thumb_length
        mid = (base[0] + math.sin(angle) * length * 0.5, base[1] - math.cos(angle) * length * 0.5)
        tip = (mid[0] + math.sin(angle - 0.2) * length * 0.5, mid[1] - math.cos(angle - 0.2) * length * 0.5)
        _stroke(mask, pose.points(np.array([base, mid, tip])), thickness * 1.1, 255)
    else:
        tip = (float(rng.uniform(-0.05, 0.2)), float(rng.uniform(-0.35, -0.1)))
        _stroke(mask, pose.points(np.array([base, (base[0] + 0.15, base[1] - 0.25)])), thickness * 1.1, 255)
        _stroke(creases, pose.points(np.array([(base[0] + 0.1, base[1] - 0.1), tip])), thickness * 0.9, 255)


def _clutter(rng: np.random.Generator, style: _Style) -> Image.Image:
    """Background: flat tone plus a few random lines and blobs (drawn at full 64×64 resolution)."""
    level = int(np.clip(style.background + rng.normal(0.0, 15.0), 0, 255))
    image = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), level)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 6))):
        tone = int(np.clip(level + rng.normal(0.0, 45.0), 0, 255))
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(-8, IMAGE_SIZE + 8, size=4))
        if rng.random() < 0.5:
            draw.line((x0, y0, x1, y1), fill=tone, width=int(rng.integers(1, 4)))
        else:
            r = float(rng.uniform(2.0, 9.0))
            draw.ellipse((x0 - r, y0 - r * 0.7, x0 + r, y0 + r * 0.7), fill=tone)
    return image


def render_image(seed: int, class_index: int, index: int) -> np.ndarray:
    """One 64×64 uint8 grayscale sample of class `class_index` (deterministic in its arguments)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_IMAGE_STREAM, class_index, index)))
    style = _signer_style(seed, int(rng.integers(SIGNERS)))
    pose = _Pose(rng, style)
    mask_image = Image.new("L", (_CANVAS, _CANVAS), 0)
    crease_image = Image.new("L", (_CANVAS, _CANVAS), 0)
    _draw_hand(ImageDraw.Draw(mask_image), ImageDraw.Draw(crease_image), rng, style, pose, finger_code(class_index))
    mask = np.asarray(mask_image.reduce(2), dtype=np.float32) / 255.0
    crease = np.asarray(crease_image.reduce(2), dtype=np.float32) / 255.0
    background = np.asarray(_clutter(rng, style), dtype=np.float32)
    skin = style.skin * float(rng.uniform(0.9, 1.08))
    hand = skin * (1.0 - 0.38 * crease * mask)
    image = background * (1.0 - mask) + hand * mask
    # Lighting: a linear gradient in a random direction, multiplicative.
    direction = float(rng.uniform(0.0, 2 * math.pi))
    strength = float(rng.uniform(0.0, 0.45))
    ramp = np.linspace(-0.5, 0.5, IMAGE_SIZE, dtype=np.float32)
    gradient = math.cos(direction) * ramp[None, :] + math.sin(direction) * ramp[:, None]
    image *= 1.0 + strength * gradient
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="L")
    if rng.random() < 0.7:
        picture = picture.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.6))))
    noisy = np.asarray(picture, dtype=np.float32) + rng.normal(
        0.0, float(rng.uniform(2.0, 10.0)), size=(IMAGE_SIZE, IMAGE_SIZE)
    ).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """Baseline JPEG with a fixed quality and no metadata, so the bytes depend only on the pixels."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    return buffer.getvalue()


def _write_class(args: tuple[Path, int, int, int]) -> int:
    folder, class_index, per_class, seed = args
    name = ARSL_CLASSES[class_index]
    folder.mkdir()
    written = 0
    for index in range(per_class):
        data = encode_jpeg(render_image(seed, class_index, index))
        (folder / f"{name}_{index:05d}.jpg").write_bytes(data)
        written += len(data)
    return written


def _check_destination(out: Path) -> None:
    if out.name in ("", ".", ".."):  # the staging folder is a sibling named after it: it needs a real name
        raise SynthError(f"{out}: give the new folder a name (not '', '.' or '..')")
    try:
        _check_existing(out)
    except OSError as error:  # a name too long, a symlink loop, a file used as a folder
        raise SynthError(f"{out}: cannot be used ({error.strerror or error})") from None


def _check_existing(out: Path) -> None:
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise SynthError(f"{out}: exists and is not a folder")
        if any(out.iterdir()):
            raise SynthError(f"{out}: exists and is not empty; choose a new folder")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SynthError(f"{out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SynthError(f"{out}: {parent} is not writable")


def synthesize(out: Path, *, per_class: int, seed: int, workers: int | None = None) -> SynthSummary:
    """Write `per_class` images for each of the 32 classes to `out/<class>/<class>_NNNNN.jpg`.

    The folder appears complete or not at all: images are written to a hidden sibling folder that is
    renamed to `out` at the end.
    """
    out = Path(out)
    if per_class < 1:
        raise SynthError(f"per_class must be at least 1, got {per_class}")
    if seed < 0:
        raise SynthError(f"seed must be at least 0, got {seed}")
    _check_destination(out)
    staging = out.parent / f".{out.name}.synth-{os.getpid()}"
    try:
        staging.mkdir(parents=True)
    except OSError as error:
        raise SynthError(f"{out}: cannot create the folder ({error.strerror or error})") from None
    jobs = [(staging / name, index, per_class, seed) for index, name in enumerate(ARSL_CLASSES)]
    count = workers if workers is not None else min(os.cpu_count() or 1, len(jobs))
    try:
        if count <= 1 or per_class * len(jobs) < 512:
            sizes = [_write_class(job) for job in jobs]
        else:
            with ProcessPoolExecutor(max_workers=count) as pool:
                sizes = list(pool.map(_write_class, jobs))
        if out.is_dir():
            out.rmdir()  # checked empty above
        os.replace(staging, out)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise SynthError(f"{out}: cannot write the data set ({error.strerror or error})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SynthSummary(out=out, images=per_class * len(jobs), bytes=sum(sizes))
