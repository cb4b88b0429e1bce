"""Fixtures for the console tests: settings on a temporary home, app factories, fake services."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from arsl_tui.config import Settings
from arsl_tui.domain.events import EventSink, UploadFinished, UploadPhaseChanged, UploadProgressed, UploadStarted
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.services import ConsoleServices, UploadControlLike, UploadOrder, default_services


@pytest.fixture
def console_settings(arsl_home: Path) -> Settings:
    """Defaults on an empty temporary $ARSL_HOME (no config file, no ARSL_* variables)."""
    return Settings(home=str(arsl_home))


AppFactory = Callable[..., ArslApp]


@pytest.fixture
def make_app(console_settings: Settings) -> AppFactory:
    """An ArslApp on the test's settings, dark theme unless asked otherwise, progress unthrottled."""

    def make(settings: Settings | None = None, **options: Any) -> ArslApp:
        options.setdefault("theme", "arsl-dark")
        options.setdefault("progress_interval_s", 0.0)
        return ArslApp(settings or console_settings, **options)

    return make


async def settle(app: ArslApp, pilot: Pilot[Any]) -> None:
    """Wait for every worker (validation, upload, journal reads) and the messages they posted.

    An exclusive worker replaced by a newer one ends cancelled; that is not an error here.
    """
    for _ in range(3):
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:
            continue
        await pilot.pause()


async def type_text(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(
        *[{"/": "slash", " ": "space", ".": "full_stop", "-": "minus", "_": "underscore"}.get(ch, ch) for ch in text]
    )


async def validate_folder(app: ArslApp, pilot: Pilot[Any], folder: Path | str) -> None:
    """Open the Upload tab, put `folder` in the path field (as a paste would) and press Enter."""
    from arsl_tui.ui.widgets.path_input import PathInput

    await pilot.press("2")
    path_input = app.query_one(PathInput)
    path_input.focus()
    path_input.value = str(folder)
    await pilot.press("enter")
    await settle(app, pilot)


def screen_text(app: ArslApp) -> str:
    """The screen as plain text (what a user reads)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


# ----- fake services for deterministic snapshots -------------------------------------------------


@dataclass(frozen=True)
class FakeRun:
    run_id: str = "7f3e12ab90cd"
    dataset_dir: str = "/data/ArASL_Database_54K_Final"
    manifest_id: str = "c0ffee" * 10 + "beef"
    mode: str = "shards"
    destination: str = "local:/srv/arsl/store/arsl-ml/datasets/" + "c0ffee" * 10 + "beef/"
    status: str = "done"
    objects_total: int = 17
    objects_confirmed: int = 17
    bytes_total: int = 1_020_000_000
    bytes_confirmed: int = 1_020_000_000
    started_at: float = 1_767_261_600.0  # 2026-01-01 10:00 UTC
    updated_at: float = 1_767_262_200.0
    error: str = ""


class FakeControl:
    """Like ops.upload.UploadControl, with events a test can wait on."""

    def __init__(self) -> None:
        self._paused = threading.Event()
        self._cancelled = threading.Event()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def wait_until_cancelled(self, timeout_s: float = 60.0) -> bool:
        return self._cancelled.wait(timeout_s)


@dataclass(frozen=True)
class FakeOutcome:
    run_id: str
    status: str
    manifest_id: str
    destination: str
    objects_sent: int
    objects_skipped: int
    bytes_sent: int
    elapsed_s: float
    error: str = ""


def fixed_report(folder: Path, per_class: int = 3) -> Any:
    """A validation report built from fixed records (no file is read): snapshots then do not depend on
    the JPEG encoder that wrote a test data set."""
    import hashlib

    from arsl_tui.domain.classes import ARSL_CLASSES
    from arsl_tui.domain.manifest import ImageRecord, SplitPolicy, build_manifest
    from arsl_tui.ops.dataset import ValidationReport

    split = SplitPolicy()
    records = []
    for class_number, name in enumerate(ARSL_CLASSES):
        for index in range(per_class):
            md5 = hashlib.md5(f"{name}/{index}".encode(), usedforsecurity=False).hexdigest()
            records.append(
                ImageRecord(
                    path=f"{name}/{name}_{index:04d}.jpg",
                    cls=name,
                    bytes=1600 + class_number,
                    md5=md5,
                    split=split.assign(md5),
                    width=64,
                    height=64,
                    mode="L",
                )
            )
    return ValidationReport(root=folder, manifest=build_manifest(records, split), files_scanned=len(records))


@dataclass
class ScriptedUpload:
    """A fake engine: emits a fixed script of events, optionally holds until cancelled, then returns."""

    progress_steps: int = 3
    hold_until_cancelled: bool = False
    fixed_validation: bool = False
    """Validate with `fixed_report` instead of reading the folder."""
    runs: list[FakeRun] = field(default_factory=list)
    resumable: FakeRun | None = None
    controls: list[FakeControl] = field(default_factory=list)
    holding: threading.Event = field(default_factory=threading.Event)

    def run_upload(
        self, settings: Settings, order: UploadOrder, on_event: EventSink, control: UploadControlLike
    ) -> FakeOutcome:
        run = FakeRun()
        on_event(UploadPhaseChanged(run.run_id, "validating", str(order.dataset_dir)))
        on_event(
            UploadStarted(
                run_id=run.run_id,
                manifest_id=run.manifest_id,
                mode=order.mode,
                destination=run.destination,
                files_total=54_049,
                bytes_total=run.bytes_total,
                objects_total=run.objects_total,
                objects_already_confirmed=0,
            )
        )
        on_event(UploadPhaseChanged(run.run_id, "sending"))
        for step in range(1, self.progress_steps + 1):
            on_event(
                UploadProgressed(
                    run_id=run.run_id,
                    files_done=3179 * step,
                    files_total=54_049,
                    bytes_done=60_000_000 * step,
                    bytes_total=run.bytes_total,
                    objects_done=step,
                    objects_total=run.objects_total,
                    bytes_per_s=12_500_000.0,
                    eta_s=77.0 - step,
                    retries=1,
                    errors=0,
                )
            )
        if self.hold_until_cancelled:
            assert isinstance(control, FakeControl)
            self.holding.set()
            control.wait_until_cancelled()
            status = "cancelled"
        else:
            status = "done"
        on_event(
            UploadFinished(
                run_id=run.run_id,
                status=status,
                manifest_id=run.manifest_id,
                destination=run.destination,
                objects_sent=self.progress_steps,
                objects_skipped=0,
                bytes_sent=60_000_000 * self.progress_steps,
                elapsed_s=4.8,
            )
        )
        return FakeOutcome(
            run_id=run.run_id,
            status=status,
            manifest_id=run.manifest_id,
            destination=run.destination,
            objects_sent=self.progress_steps,
            objects_skipped=0,
            bytes_sent=60_000_000 * self.progress_steps,
            elapsed_s=4.8,
        )

    def new_control(self) -> FakeControl:
        control = FakeControl()
        self.controls.append(control)
        return control

    def validate(self, settings: Settings, folder: Path, on_progress: Callable[[int], None]) -> Any:
        if self.fixed_validation:
            return fixed_report(folder)
        return default_services().validate(settings, folder, on_progress)

    def services(self) -> ConsoleServices:
        return ConsoleServices(
            validate=self.validate,
            new_control=self.new_control,
            run_upload=self.run_upload,
            resumable_run=lambda settings: self.resumable,
            list_upload_runs=lambda settings, limit: list(self.runs)[:limit],
        )


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC, so timestamps on screen do not depend on the machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
