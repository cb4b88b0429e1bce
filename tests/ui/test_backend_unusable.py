"""A console on a backend that cannot work here (huawei without credentials) shows one notice, reads nothing,
keeps its keys from crashing it, and quits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arsl_tui.config import Settings
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.services import ConsoleServices
from tests.ui.conftest import screen_text

READERS = (
    "validate",
    "new_control",
    "run_upload",
    "resumable_run",
    "list_upload_runs",
    "open_training_platform",
    "open_registry",
    "open_monitor",
    "collect_status",
    "open_canary",
    "open_pipeline_log",
    "launch_pipeline",
    "signal_pipeline",
)


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "OBS_ACCESS_KEY_ID", "OBS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", str(tmp_path / "no-credentials-file"))


def recording_services(called: list[str]) -> ConsoleServices:
    """Services that note every call: a console that cannot use its backend must make none."""

    def reader(name: str) -> Any:
        def read(*_args: Any) -> Any:
            called.append(name)
            raise AssertionError(f"{name} was called")

        read.honours_read_only = True  # type: ignore[attr-defined]
        return read

    return ConsoleServices(**{name: reader(name) for name in READERS})


async def test_the_console_shows_the_problem_once_and_reads_nothing(no_credentials: None, arsl_home: Path) -> None:
    called: list[str] = []
    app = ArslApp(
        Settings(backend="huawei", home=str(arsl_home)), theme="arsl-dark", services=recording_services(called)
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for key in ("1", "2", "3", "4", "5", "6", "d", "S", "X", "y", "e"):  # tabs, pipeline, upload: all off
            await pilot.press(key)
        await pilot.pause()
        text = screen_text(app)
        assert "The huawei backend cannot be used on this machine" in text
        assert "no Huawei Cloud credentials found" in text
        assert text.count("no Huawei Cloud credentials found") == 1, text
        assert "Overview" not in text and "Upload" not in text, text
        assert not app.query("TabbedContent") and not app.query("PipelineLine")
        await pilot.press("l")  # the log has it too, once, and it is the error `Y` copies
        await pilot.pause()
        assert "no Huawei Cloud credentials found" in app.last_error
        await pilot.press("q")
    assert app.return_code == 0
    assert called == []
