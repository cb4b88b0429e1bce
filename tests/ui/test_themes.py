"""Theme files: the bundled three load, bad files are named and skipped, the console falls back."""

from __future__ import annotations

from pathlib import Path

import pytest

from arsl_tui.ui.themes import BUNDLED_THEMES_DIR, ThemeFileError, load_theme_dirs, load_theme_file
from tests.ui.conftest import AppFactory


def test_bundled_themes_are_a_dark_a_light_and_a_16_colour_one() -> None:
    catalogue = load_theme_dirs([BUNDLED_THEMES_DIR])
    assert catalogue.problems == []
    themes = catalogue.themes
    assert themes["arsl-dark"].dark and not themes["arsl-light"].dark
    sixteen = themes["arsl-16"]
    assert sixteen.ansi and all(
        str(value).startswith("ansi_") for value in (sixteen.primary, sixteen.error, sixteen.success, sixteen.warning)
    )


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ('name = "x"\nprimary = "#zzzzzz"\n', "primary = '#zzzzzz': not a colour"),
        ('name = "x"\nprimary = "#5fafd7"\nsparkle = true\n', "unknown key 'sparkle'"),
        ('name = "Bad Name"\nprimary = "#5fafd7"\n', "name = 'Bad Name'"),
        ('name = "x"\n', "missing key 'primary'"),
        ('name = "x"\nprimary = "#5fafd7"\ntext_alpha = 3\n', "text_alpha = 3: expected a number between 0 and 1"),
        ('name = "x" primary', "not valid TOML"),
    ],
)
def test_a_bad_theme_file_names_the_file_and_the_key(tmp_path: Path, content: str, named: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(content)
    with pytest.raises(ThemeFileError) as error:
        load_theme_file(path)
    assert str(error.value).startswith(str(path)) and named in str(error.value)


def test_a_bad_user_theme_is_skipped_and_reported(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text('name = "broken"\nprimary = "blurple"\n')
    (tmp_path / "fine.toml").write_text('name = "fine"\nprimary = "#ff8700"\n')
    catalogue = load_theme_dirs([BUNDLED_THEMES_DIR, tmp_path])
    assert "fine" in catalogue.themes and "broken" not in catalogue.themes
    assert catalogue.problems == [
        f"theme skipped: {tmp_path / 'broken.toml'}: primary = 'blurple': not a colour "
        '(use #rrggbb, a name such as "red", or ansi_blue …)'
    ]


async def test_unknown_theme_name_falls_back_with_a_message(make_app: AppFactory) -> None:
    app = make_app(theme="no-such-theme")
    async with app.run_test(size=(80, 24)):
        assert app.theme == "arsl-dark"
        assert "theme 'no-such-theme' not found" in app.last_error


async def test_bad_theme_file_given_by_path_falls_back(make_app: AppFactory, tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nprimary = 12\n')
    app = make_app(theme=str(path))
    async with app.run_test(size=(80, 24)):
        assert app.theme == "arsl-dark"
        assert str(path) in app.last_error and "primary = 12" in app.last_error


async def test_a_theme_file_in_the_home_themes_folder_can_be_chosen(make_app: AppFactory, arsl_home: Path) -> None:
    (arsl_home / "themes").mkdir()
    (arsl_home / "themes" / "mine.toml").write_text('name = "mine"\nprimary = "#ff8700"\ndark = true\n')
    app = make_app(theme="mine")
    async with app.run_test(size=(80, 24)):
        assert app.theme == "mine"


async def test_a_16_colour_terminal_gets_the_16_colour_theme(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("COLORTERM", raising=False)
    monkeypatch.delenv("TEXTUAL_COLOR_SYSTEM", raising=False)
    app = make_app(theme=None)
    async with app.run_test(size=(80, 24)):
        assert app.console.color_system == "standard"
        assert app.theme == "arsl-16"
    chosen = make_app(theme="arsl-light")  # an explicit --theme wins
    async with chosen.run_test(size=(80, 24)):
        assert chosen.theme == "arsl-light"
