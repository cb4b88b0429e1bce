"""The built wheel, unpacked outside the checkout, carries its themes and its type marker.

The wheel is built offline from a copy of the sources (`--no-build-isolation`: the dev extra brings
setuptools), so the checkout gets no build folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "arsl_tui", "trainer")

pytestmark = pytest.mark.e2e

_LOAD_THEMES = """
import json, arsl_tui
from arsl_tui.ui.themes import BUNDLED_THEMES_DIR, load_theme_dirs
catalogue = load_theme_dirs([BUNDLED_THEMES_DIR])
print(json.dumps({"package": arsl_tui.__file__, "themes": sorted(catalogue.themes), "problems": catalogue.problems}))
"""


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path / "wheel"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
            "-w",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("arsl-*.whl")
    return wheel


def test_the_unpacked_wheel_finds_every_bundled_theme(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    bundled = sorted(path.name for path in (ROOT / "arsl_tui" / "ui" / "bundled_themes").glob("*.toml"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {f"arsl_tui/ui/bundled_themes/{name}" for name in bundled} <= names
        assert "arsl_tui/py.typed" in names
        site = tmp_path / "site"
        archive.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_THEMES],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert Path(loaded["package"]).is_relative_to(site)
    assert loaded["problems"] == []
    assert loaded["themes"] == sorted(name.removesuffix(".toml") for name in bundled)
