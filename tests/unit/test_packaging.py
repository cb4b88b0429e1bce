"""What the wheel ships: every package-data pattern matches a file, every data file is shipped, and the
themes the configuration names are package data found through importlib.resources."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files
from pathlib import Path

from arsl_tui.config import ConsoleSettings
from arsl_tui.ui.themes import DEFAULT_THEME, SIXTEEN_COLOUR_THEME, load_theme_dirs

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "arsl_tui"


def _package_data_patterns() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        pyproject = tomllib.load(handle)
    patterns: list[str] = pyproject["tool"]["setuptools"]["package-data"]["arsl_tui"]
    return patterns


def _documented_theme_names() -> set[str]:
    """The names `config.toml` lists for `[console] theme`, the default, and the 16-colour pick."""
    line = next(line for line in (ROOT / "config.toml").read_text().splitlines() if line.startswith("theme ="))
    listed = set(re.findall(r"\barsl-[a-z0-9-]+", line))
    assert listed, f"config.toml names no theme on its theme line: {line!r}"
    return listed | {ConsoleSettings().theme, DEFAULT_THEME, SIXTEEN_COLOUR_THEME}


def test_every_package_data_pattern_matches_a_file() -> None:
    phantoms = [pattern for pattern in _package_data_patterns() if not any(PACKAGE.glob(pattern))]
    assert phantoms == []


def test_every_data_file_in_the_package_is_shipped() -> None:
    shipped = {path for pattern in _package_data_patterns() for path in PACKAGE.glob(pattern)}
    data_files = {
        path
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    }
    assert sorted(str(path.relative_to(PACKAGE)) for path in data_files - shipped) == []


def test_the_package_is_marked_typed() -> None:
    assert (files("arsl_tui") / "py.typed").is_file()
    assert "py.typed" in _package_data_patterns()


def test_every_theme_the_config_names_is_package_data() -> None:
    bundled = files("arsl_tui.ui") / "bundled_themes"
    catalogue = load_theme_dirs([bundled])
    assert catalogue.problems == []
    assert _documented_theme_names() <= set(catalogue.themes)
