"""`arsl data synth`: byte-identical output per seed, the ArSL2018 layout, refusal to overwrite."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.ops.synth import SynthError, finger_code, render_image, synthesize

ROOT = Path(__file__).resolve().parents[2]


def digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_layout_counts_and_image_format(tmp_path: Path) -> None:
    summary = synthesize(tmp_path / "data", per_class=3, seed=7)
    assert summary.images == 96
    files = sorted((tmp_path / "data").rglob("*.jpg"))
    assert len(files) == 96
    assert summary.bytes == sum(path.stat().st_size for path in files)
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == sorted(ARSL_CLASSES)
    for path in files[::7]:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "L", (64, 64))
            assert "exif" not in image.info
    assert not list(tmp_path.glob(".*")), "no staging folder left behind"


def test_same_seed_gives_byte_identical_files_whatever_the_worker_count(tmp_path: Path) -> None:
    first = synthesize(tmp_path / "a", per_class=16, seed=11, workers=2)  # 512 images: the process pool
    second = synthesize(tmp_path / "b", per_class=16, seed=11, workers=1)
    assert digests(first.out) == digests(second.out)
    other = synthesize(tmp_path / "c", per_class=16, seed=12, workers=1)
    assert set(digests(other.out).values()).isdisjoint(digests(first.out).values())


def test_images_vary_within_a_class_and_classes_differ_in_hand_shape() -> None:
    images = np.stack([render_image(5, 9, index) for index in range(6)]).astype(np.float32)
    assert min(np.abs(images[0] - images[index]).mean() for index in range(1, 6)) > 3
    assert len({finger_code(index) for index in range(32)}) == 32


def test_existing_non_empty_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        synthesize(out, per_class=1, seed=1)
    assert [path.name for path in out.iterdir()] == ["keep.txt"]
    (tmp_path / "file").write_text("")
    with pytest.raises(SynthError, match="not a folder"):
        synthesize(tmp_path / "file", per_class=1, seed=1)


def test_empty_existing_folder_is_filled(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert synthesize(tmp_path / "empty", per_class=1, seed=1).images == 32


def test_cli_reports_and_refuses(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "arsl_tui", "--json", "data", "synth", str(tmp_path / "d"), "--per-class", "2"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '"images": 64' in done.stdout
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_jpeg_bytes_do_not_depend_on_anything_but_the_pixels() -> None:
    pixels = render_image(3, 4, 5)
    from arsl_tui.ops.synth import encode_jpeg

    data = encode_jpeg(pixels)
    assert data == encode_jpeg(pixels.copy())
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert np.abs(decoded.astype(np.int16) - pixels).mean() < 4
