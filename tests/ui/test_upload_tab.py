"""The Upload tab against the real validator, the real upload engine and the local store."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from arsl_tui.config import Settings
from arsl_tui.domain.ports import ObjectInfo
from arsl_tui.ops import upload as upload_engine
from arsl_tui.ops.upload_process import StoreFactory, run_upload_in_child
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.services import ConsoleServices, UploadControlLike, UploadOrder, default_services
from arsl_tui.ui.widgets.class_chart import ClassCountChart
from arsl_tui.ui.widgets.problem_list import ProblemList
from arsl_tui.ui.widgets.status_line import StatusLine
from tests.fixtures.upload_child_store import GateServer
from tests.ui.conftest import AppFactory, ScriptedUpload, screen_text, settle, validate_folder


def status_text(app: ArslApp) -> str:
    return app.query_one("#upload-status", StatusLine).message


async def test_a_path_that_does_not_exist(make_app: AppFactory, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, tmp_path / "no-such-folder")
        assert status_text(app) == f"✗ {tmp_path / 'no-such-folder'}: no such folder"
        assert app.upload_tab.validated is None
        await pilot.press("1")  # still running and responsive; the digits switch tabs at once
        assert app.active_tab == "overview"


async def test_a_file_instead_of_a_folder(make_app: AppFactory, tmp_path: Path) -> None:
    a_file = tmp_path / "images.zip"
    a_file.write_bytes(b"PK")
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, a_file)
        assert status_text(app) == f"✗ {a_file}: is a file, expected a folder of class folders"
        assert "Traceback" not in screen_text(app)


async def test_a_folder_without_images(make_app: AppFactory, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, empty)
        assert "no class folders with images" in status_text(app)
        await pilot.press("S")  # nothing validated: start does not open a dialog
        assert not isinstance(app.screen, ConfirmScreen)


async def test_an_empty_path_is_named_as_the_problem(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, "")
        assert "Type the path of a data set folder first" in status_text(app)


async def test_validation_shows_counts_table_chart_and_problems(make_app: AppFactory, make_dataset: Any) -> None:
    folder = make_dataset(per_class=2, name="with-problems")
    (folder / "ain" / "ain_0000.jpg").write_bytes(b"not a jpeg")
    (folder / "notaclass").mkdir()
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, folder)
        table = app.query_one("#counts-table", DataTable)
        assert table.row_count == 33  # 32 classes and the totals row
        ain_row = [str(cell) for cell in table.get_row("ain")]
        assert ain_row[-1] == "1"
        assert [str(cell) for cell in table.get_row("__all__")][-1] == "63"
        chart = app.query_one("#counts-chart", ClassCountChart)
        assert dict(chart._counts)["ain"] == 1 and dict(chart._counts)["zay"] == 2
        problems = app.query_one("#problems", ProblemList)
        listed = [str(problems.get_option_at_index(i).prompt) for i in range(problems.option_count)]
        assert any("ain/ain_0000.jpg" in line and "corrupt" in line for line in listed)
        assert any("notaclass/" in line and "unknown_class" in line for line in listed)
        assert "2 problem(s)" in status_text(app)
        await pilot.press("S")
        assert isinstance(app.screen, ConfirmScreen)
        assert any("left out and listed as quarantined" in line for line in app.screen.what_happens)


async def test_confirmation_says_what_happens_and_no_changes_nothing(
    make_app: AppFactory, tiny_dataset: Path, console_settings: Settings
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, tiny_dataset)
        await pilot.press("S")
        assert isinstance(app.screen, ConfirmScreen)
        said = "\n".join(app.screen.what_happens)
        assert "Upload 96 images" in said and str(tiny_dataset) in said
        assert str(console_settings.home_dir / "store" / "arsl-ml") in said and "shards" in said
        await pilot.press("enter")  # the focused button is Cancel
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("S", "n")
        await pilot.press("S", "escape")
        await settle(app, pilot)
        assert app.upload_tab.control is None
        # The Overview's status read may create the (empty) store folder; no object was written to it.
        assert not [path for path in (console_settings.home_dir / "store").rglob("*") if path.is_file()]


async def test_upload_runs_to_done_against_the_local_store(
    make_app: AppFactory, tiny_dataset: Path, console_settings: Settings
) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, tiny_dataset)
        manifest_id = app.upload_tab.validated.manifest_id  # type: ignore[union-attr]
        await pilot.press("S", "y")
        await settle(app, pilot)
        assert status_text(app).startswith("✓ Uploaded: ")
        view = app.upload_tab.view
        assert view.status == "done" and view.files_done == view.files_total == 96
        assert view.bytes_done == view.bytes_total > 0
        assert app.upload_tab.progress_events_received == view.objects_total
        text = screen_text(app)
        assert "✓ done" in text and "96 / 96" in text
        await pilot.press("y")  # copy the run id (OSC 52)
        assert app.clipboard == view.run_id
        await pilot.press("1")
        await settle(app, pilot)
        data_rows = [line for line in screen_text(app).splitlines() if line.strip().startswith("data ")]
        assert any("✓ done" in row and f"data set {manifest_id[:8]}" in row for row in data_rows), data_rows
    store = LocalObjectStore(console_settings.home_dir / "store" / "arsl-ml")
    assert store.head(f"datasets/{manifest_id}/manifest.json") is not None
    runs = upload_engine.list_upload_runs(console_settings)
    assert [run.status for run in runs] == ["done"]


class GatedStore(LocalObjectStore):
    """The local store, but each put waits for the test to open the gate (so a run can be caught mid-way)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.put_started = threading.Event()

    def put_file(self, key: str, path: Path, md5_hex: str) -> ObjectInfo:
        self.put_started.set()
        self.gate.wait(60)
        return super().put_file(key, path, md5_hex)


def services_with_store(store: GatedStore) -> ConsoleServices:
    real = default_services()

    def run_upload(settings: Settings, order: UploadOrder, on_event: Any, control: UploadControlLike) -> Any:
        request = upload_engine.UploadRequest(
            dataset_dir=order.dataset_dir,
            mode=order.mode,  # type: ignore[arg-type]
            allow_problems=order.allow_problems,
            concurrency=2,
        )
        return upload_engine.run_upload(settings, request, store=store, on_event=on_event, control=control)  # type: ignore[arg-type]

    return dataclasses.replace(real, run_upload=run_upload)


async def test_pause_resume_cancel_then_reopen_offers_to_resume(
    make_app: AppFactory, make_dataset: Any, console_settings: Settings
) -> None:
    folder = make_dataset(per_class=1, name="small")
    store = GatedStore(console_settings.home_dir / "store" / "arsl-ml")
    files_mode = dataclasses.replace(
        console_settings, upload=dataclasses.replace(console_settings.upload, mode="files")
    )
    app = make_app(files_mode, services=services_with_store(store))
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, folder)
        await pilot.press("S", "y")
        assert await asyncio.to_thread(store.put_started.wait, 30)
        await pilot.press("p")
        assert app.upload_tab.phase == "paused" and app.upload_tab.control.paused  # type: ignore[union-attr]
        assert "‖ paused" in screen_text(app)
        await pilot.press("r")
        assert app.upload_tab.phase == "uploading" and not app.upload_tab.control.paused  # type: ignore[union-attr]
        await pilot.press("X")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        store.gate.set()
        await settle(app, pilot)
        assert app.upload_tab.view.status == "cancelled"
        assert "■ Cancelled" in status_text(app)
    record = upload_engine.resumable_run(console_settings)
    assert record is not None and record.status == "cancelled"

    store.gate.set()
    reopened = make_app(files_mode, services=services_with_store(store))
    async with reopened.run_test(size=(80, 24)) as pilot:
        await settle(reopened, pilot)
        await pilot.press("2")
        banner = reopened.query_one("#resume-banner").message  # type: ignore[attr-defined]
        assert f"cancelled upload run {record.run_id[:8]}" in banner and "r resumes" in banner
        await pilot.press("r")
        assert isinstance(reopened.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(reopened, pilot)
        assert reopened.upload_tab.view.status == "done"
    assert upload_engine.resumable_run(console_settings) is None


async def test_quitting_mid_upload_asks_then_cancels_cleanly(make_app: AppFactory, tiny_dataset: Path) -> None:
    scripted = ScriptedUpload(hold_until_cancelled=True)
    app = make_app(services=scripted.services())
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, tiny_dataset)
        await pilot.press("S", "y")
        assert await asyncio.to_thread(scripted.holding.wait, 30)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen) and app.is_running
        await pilot.press("y")
        await settle(app, pilot)
    assert scripted.controls[0].cancelled
    assert app.return_code == 0


async def test_progress_is_coalesced_not_rendered_per_event(make_app: AppFactory, tiny_dataset: Path) -> None:
    scripted = ScriptedUpload(progress_steps=20_000)
    app = make_app(services=scripted.services(), progress_interval_s=0.25)
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, tiny_dataset)
        await pilot.press("S", "y")
        await settle(app, pilot)
        tab = app.upload_tab
        assert tab.progress_events_received == 20_000
        assert tab.progress_renders < 100
        assert tab.view.objects_done == 20_000 and tab.view.status == "done"


async def test_file_names_in_problems_are_shown_as_written_not_as_markup(
    make_app: AppFactory, make_dataset: Any
) -> None:
    folder = make_dataset(per_class=1, name="hostile-names")
    (folder / "ain" / "[@click=app.quit]x.jpg").write_bytes(b"not a jpeg")
    (folder / "ain" / "esc\x1b[31mred.jpg").write_bytes(b"not a jpeg either")
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, folder)
        problems = app.query_one("#problems", ProblemList)
        listed = [str(problems.get_option_at_index(i).prompt) for i in range(problems.option_count)]
        assert any("[@click=app.quit]x.jpg" in line for line in listed), listed
        assert any("esc\\x1b[31mred.jpg" in line for line in listed), listed
        assert not any("\x1b" in line for line in listed)
        assert app.is_running


# ----- the engine in its own process (what the console runs) ------------------------------------------


def services_in_child(pids: list[int], store_factory: StoreFactory | None = None) -> ConsoleServices:
    """The default services, but the upload runs through `run_upload_in_child` (its pid kept in `pids`)."""
    real = default_services()

    def run_upload(settings: Settings, order: UploadOrder, on_event: Any, control: UploadControlLike) -> Any:
        request = upload_engine.UploadRequest(
            dataset_dir=order.dataset_dir,
            mode=order.mode,  # type: ignore[arg-type]
            allow_problems=order.allow_problems,
            concurrency=2,
        )
        return run_upload_in_child(
            settings,
            request,
            on_event=on_event,
            control=control,
            store_factory=store_factory,
            on_child_started=pids.append,
        )

    return dataclasses.replace(real, run_upload=run_upload)


@pytest.fixture
def gate() -> Iterator[GateServer]:
    with GateServer() as server:
        yield server


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_upload_in_a_child_process_shows_its_progress_to_done(
    make_app: AppFactory, tiny_dataset: Path, console_settings: Settings
) -> None:
    pids: list[int] = []
    app = make_app(services=services_in_child(pids))
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, tiny_dataset)
        manifest_id = app.upload_tab.validated.manifest_id  # type: ignore[union-attr]
        await pilot.press("S", "y")
        await settle(app, pilot)
        assert len(pids) == 1 and pids[0] != os.getpid(), status_text(app)
        assert status_text(app).startswith("✓ Uploaded: ")
        view = app.upload_tab.view
        assert view.status == "done" and view.files_done == view.files_total == 96
        # Progress crosses the pipe coalesced, but the count of engine events it stands for is kept.
        assert app.upload_tab.progress_events_received == view.objects_total
        assert "96 / 96" in screen_text(app)
    assert not process_exists(pids[0])
    store = LocalObjectStore(console_settings.home_dir / "store" / "arsl-ml")
    assert store.head(f"datasets/{manifest_id}/manifest.json") is not None


async def test_a_killed_upload_process_is_reported_on_the_tab_and_resumable(
    make_app: AppFactory, make_dataset: Any, console_settings: Settings, gate: GateServer
) -> None:
    folder = make_dataset(per_class=1, name="small")
    pids: list[int] = []
    factory = gate.store_factory(console_settings.home_dir / "store" / "arsl-ml")
    files_mode = dataclasses.replace(
        console_settings, upload=dataclasses.replace(console_settings.upload, mode="files")
    )
    app = make_app(files_mode, services=services_in_child(pids, factory))
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, folder)
        await pilot.press("S", "y")
        assert await asyncio.to_thread(gate.put_started.wait, 60)
        os.kill(pids[0], signal.SIGKILL)
        await settle(app, pilot)
        assert app.is_running and app.upload_tab.phase == "idle"
        assert app.upload_tab.view.status == "failed"
        assert "was killed by SIGKILL" in status_text(app) and "resume" in status_text(app)
        assert "Traceback" not in screen_text(app)
        banner = app.query_one("#resume-banner").message  # type: ignore[attr-defined]
        assert "interrupted upload run" in banner and "r resumes" in banner
    record = upload_engine.resumable_run(console_settings)
    assert record is not None and record.status == "interrupted"


async def test_pause_and_cancel_reach_the_upload_process_which_ends(
    make_app: AppFactory, make_dataset: Any, console_settings: Settings, gate: GateServer
) -> None:
    folder = make_dataset(per_class=1, name="small")
    pids: list[int] = []
    factory = gate.store_factory(console_settings.home_dir / "store" / "arsl-ml")
    files_mode = dataclasses.replace(
        console_settings, upload=dataclasses.replace(console_settings.upload, mode="files")
    )
    app = make_app(files_mode, services=services_in_child(pids, factory))
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, folder)
        await pilot.press("S", "y")
        assert await asyncio.to_thread(gate.put_started.wait, 60)
        await pilot.press("p")
        assert app.upload_tab.phase == "paused" and "‖ paused" in screen_text(app)
        await pilot.press("r", "X")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        gate.open()
        await settle(app, pilot)
        assert app.upload_tab.view.status == "cancelled"
        assert "■ Cancelled" in status_text(app)
    assert not process_exists(pids[0])
    record = upload_engine.resumable_run(console_settings)
    assert record is not None and record.status == "cancelled"


async def test_a_large_set_is_validated_by_worker_processes_started_inside_the_console(
    make_app: AppFactory, tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large sets are decoded by spawned workers; inside a running app `sys.stderr` has no descriptor, which
    # multiprocessing's resource tracker needs when the first pool starts.
    from arsl_tui.ops import dataset

    monkeypatch.setattr(dataset, "_PROCESS_MIN_FILES", 32)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await validate_folder(app, pilot, tiny_dataset)
        assert app.upload_tab.last_error == ""
        assert app.upload_tab.validated is not None and app.upload_tab.validated.images == 96
