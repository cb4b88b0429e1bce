"""Theme files (TOML) → Textual `Theme`s.

A theme file holds the fields of `textual.theme.Theme` at top level and an optional
`[variables]` table of CSS variable overrides:

    name = "arsl-dark"
    dark = true
    primary = "#5fafd7"
    [variables]
    footer-key-foreground = "#5fafd7"

Every problem names the file, the key and the value; a bad file is skipped, never fatal.

The bundled themes are package data (`arsl_tui/ui/bundled_themes/`), read through importlib.resources so that
an installed wheel finds them wherever it lives.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import BUILTIN_THEMES, Theme

BUNDLED_THEMES_DIR: Traversable = files("arsl_tui.ui") / "bundled_themes"
DEFAULT_THEME = "arsl-dark"
SIXTEEN_COLOUR_THEME = "arsl-16"
FALLBACK_THEME = "textual-dark"

_COLOUR_KEYS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)
_NUMBER_KEYS = ("luminosity_spread", "text_alpha")
_BOOL_KEYS = ("dark", "ansi")
_KNOWN_KEYS = frozenset({"name", "variables", *_COLOUR_KEYS, *_NUMBER_KEYS, *_BOOL_KEYS})
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class ThemeFileError(Exception):
    """A theme file that cannot be used; the message names the file and the key."""


def parse_theme(table: dict[str, Any], source: str) -> Theme:
    """Check a parsed theme table and build the Theme; raises ThemeFileError."""
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        raise ThemeFileError(f"{source}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(_KNOWN_KEYS))})")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ThemeFileError(f"{source}: name = {name!r}: expected lower-case letters, digits and dashes")
    if "primary" not in table:
        raise ThemeFileError(f"{source}: missing key 'primary' (the main accent colour)")
    fields: dict[str, Any] = {"name": name}
    for key in _COLOUR_KEYS:
        if key not in table:
            continue
        value = table[key]
        if not isinstance(value, str):
            raise ThemeFileError(f'{source}: {key} = {value!r}: expected a colour string such as "#5fafd7"')
        try:
            Color.parse(value)
        except ColorParseError:
            raise ThemeFileError(
                f'{source}: {key} = {value!r}: not a colour (use #rrggbb, a name such as "red", or ansi_blue …)'
            ) from None
        fields[key] = value
    for key in _BOOL_KEYS:
        if key in table:
            if not isinstance(table[key], bool):
                raise ThemeFileError(f"{source}: {key} = {table[key]!r}: expected true or false")
            fields[key] = table[key]
    for key in _NUMBER_KEYS:
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ThemeFileError(f"{source}: {key} = {value!r}: expected a number between 0 and 1")
            fields[key] = float(value)
    variables = table.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise ThemeFileError(f'{source}: [variables] must be a table of name = "value" strings')
    if fields.get("ansi"):
        # ANSI themes get no generated variables from Textual; start from its own ANSI theme's set.
        base = BUILTIN_THEMES["ansi-dark" if fields.get("dark", True) else "ansi-light"].variables
        variables = {**base, **variables}
    fields["variables"] = dict(variables)
    theme = Theme(**fields)
    try:
        theme.to_color_system().generate()
    except Exception as error:  # Textual's colour maths rejected a value
        raise ThemeFileError(f"{source}: the colours do not form a theme ({error})") from None
    return theme


def load_theme_file(path: Traversable) -> Theme:
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise ThemeFileError(f"{path}: theme file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ThemeFileError(f"{path}: not valid TOML ({error})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ThemeFileError(f"{path}: cannot be read ({error})") from None
    return parse_theme(table, str(path))


@dataclass
class ThemeCatalogue:
    """Themes found in the theme folders, and what went wrong with the others."""

    themes: dict[str, Theme] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def load_theme_dirs(folders: Sequence[Traversable]) -> ThemeCatalogue:
    """Every `*.toml` in the folders, in order; a later folder's theme replaces an earlier one's."""
    catalogue = ThemeCatalogue()
    for folder in folders:
        if not folder.is_dir():
            continue
        theme_files = (entry for entry in folder.iterdir() if entry.name.endswith(".toml"))
        for path in sorted(theme_files, key=lambda entry: entry.name):
            try:
                theme = load_theme_file(path)
            except ThemeFileError as error:
                catalogue.problems.append(f"theme skipped: {error}")
                continue
            catalogue.themes[theme.name] = theme
    return catalogue


def theme_folders(home_dir: Path) -> list[Traversable]:
    """Bundled themes first, then the user's `<home>/themes`."""
    return [BUNDLED_THEMES_DIR, home_dir / "themes"]
