"""`arsl --read-only` and `arsl --theme NAME` start the console like `arsl console …` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arsl_tui.cli import main


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, arsl_home: Path) -> list[dict[str, Any]]:
    """The options `run_console` was called with (the console itself is not started)."""
    calls: list[dict[str, Any]] = []

    def run_console(settings: Any, *, read_only: bool = False, theme: str | None = None) -> int:
        calls.append(
            {
                "read_only": read_only,
                "theme": theme,
                "home": settings.home_dir,
                "settings_read_only": settings.read_only,
            }
        )
        return 0

    monkeypatch.setattr("arsl_tui.ui.app.run_console", run_console)
    return calls


@pytest.mark.parametrize(
    ("argv", "read_only", "theme"),
    [
        ([], False, None),
        (["--read-only"], True, None),
        (["--theme", "nord"], False, "nord"),
        (["--read-only", "--theme", "arsl-light"], True, "arsl-light"),
        (["console", "--read-only", "--theme", "nord"], True, "nord"),
        (["--read-only", "console"], True, None),
    ],
)
def test_both_forms_reach_the_console(
    started: list[dict[str, Any]], arsl_home: Path, argv: list[str], read_only: bool, theme: str | None
) -> None:
    assert main(argv) == 0
    # The flag reaches the settings too: the tabs' state readers open the home read-only from them.
    assert started == [{"read_only": read_only, "theme": theme, "home": arsl_home, "settings_read_only": read_only}]


def test_console_options_before_another_command_are_a_usage_error(
    started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--read-only", "upload", "data"])
    assert stopped.value.code == 2
    assert "--read-only before a command only start the console" in capsys.readouterr().err
    assert started == []
