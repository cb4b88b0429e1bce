"""Fixtures shared by every test layer."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arsl_tui.domain.classes import ARSL_CLASSES


def jpeg_bytes(seed: int, size: tuple[int, int] = (64, 64), mode: str = "L") -> bytes:
    """A small JPEG whose content depends only on `seed` (so MD5s differ across seeds)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="L").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


DatasetFactory = Callable[..., Path]


@pytest.fixture
def make_dataset(tmp_path: Path) -> DatasetFactory:
    """Write a class-folder data set: `per_class` 64×64 grayscale JPEGs in each of the 32 classes."""

    def make(per_class: int = 3, name: str = "dataset", seed: int = 0) -> Path:
        root = tmp_path / name
        for class_number, class_name in enumerate(ARSL_CLASSES):
            folder = root / class_name
            folder.mkdir(parents=True)
            for index in range(per_class):
                image_seed = seed * 1_000_003 + class_number * 1_009 + index
                (folder / f"{class_name}_{index:04d}.jpg").write_bytes(jpeg_bytes(image_seed))
        return root

    return make


@pytest.fixture
def tiny_dataset(make_dataset: DatasetFactory) -> Path:
    """3 images × 32 classes, valid and problem-free."""
    return make_dataset(per_class=3)


@pytest.fixture
def arsl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $ARSL_HOME for the test, with no config file or ARSL_* variable leaking in."""
    home = tmp_path / "arsl-home"
    home.mkdir()
    for variable in [name for name in os.environ if name.startswith("ARSL_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("ARSL_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home
