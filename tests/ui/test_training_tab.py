"""The Training tab on a recorded job: incremental metrics, curves, submit with the form, stop, the full log."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from textual.widgets import Input

from arsl_tui.config import Settings
from arsl_tui.domain.jobs import JobPhase, TrainingError
from arsl_tui.ui.app import ArslApp
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.form import FormScreen
from arsl_tui.ui.screens.log_view import LogViewScreen
from arsl_tui.ui.services import default_services
from arsl_tui.ui.widgets.plot_slot import PlotSlot
from arsl_tui.ui.widgets.status_line import StatusLine
from tests.ui.conftest import screen_text, settle
from tests.ui.fakes import (
    T0,
    Clock,
    RecordedJob,
    RecordedPlatform,
    clock_at,
    epoch_time,
    job_status,
    recorded_platform,
    records_through_epoch,
)


def training_app(settings: Settings, platform: RecordedPlatform, now: float | Clock, **options: Any) -> ArslApp:
    clock = now if isinstance(now, Clock) else clock_at(now)
    services = dataclasses.replace(default_services(), open_training_platform=lambda _: platform, clock=clock)
    return ArslApp(settings, theme="arsl-dark", services=services, **options)


def demo_like_records() -> list[dict[str, Any]]:
    """Ten epochs as trainer/train.py writes them: epoch 8 has the highest validation accuracy, epoch 9 the
    lowest validation loss (marked `best`: the weights the trainer keeps), and the final record says so."""
    accuracy = [0.61, 0.88, 0.95, 0.968, 0.975, 0.981, 0.986, 0.9911, 0.9905, 0.9900]
    loss = [1.2, 0.42, 0.16, 0.09, 0.071, 0.058, 0.049, 0.0412, 0.0384, 0.0397]
    records: list[dict[str, Any]] = []
    lowest = float("inf")
    for epoch, (val_acc, val_loss) in enumerate(zip(accuracy, loss, strict=True), start=1):
        records.append(
            {
                "type": "epoch",
                "epoch": epoch,
                "step": 40 * epoch,
                "time": T0 + 20 * epoch,
                "elapsed_s": 20.0 * epoch,
                "train_loss": val_loss,
                "train_acc": val_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "images_per_s": 500.0,
                "best": val_loss < lowest,
            }
        )
        lowest = min(lowest, val_loss)
    records.append(
        {
            "type": "final",
            "epoch": 10,
            "time": T0 + 205,
            "elapsed_s": 205.0,
            "best_epoch": 9,
            "val_acc": 0.9905,
            "val_loss": 0.0384,
            "test_acc": 0.992,
            "test_loss": 0.036,
        }
    )
    return records


def jobs_table_text(app: ArslApp) -> str:
    """The job list's rows as the screen shows them (80×24: the first lines under the tab bar)."""
    return "\n".join(screen_text(app).splitlines()[4:9])


def status_message(app: ArslApp) -> str:
    return app.query_one("#training-status", StatusLine).message


async def test_metrics_are_read_incrementally_and_the_curves_grow_on_each_refresh(console_settings: Settings) -> None:
    platform = recorded_platform(records_through_epoch(3))
    app = training_app(console_settings, platform, epoch_time(3) + 4)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        tab = app.training_tab
        assert tab.selected == "job-live"  # the newest job is selected
        text = screen_text(app)
        assert "► running" in text and "✓ completed" in text and "✗ failed" in text
        assert "epoch 3/10" in text and "ETA" in text and "CPU 188 %" in text
        assert len(tab.curves.val_acc) == 3
        first_reads = [call for name, call in platform.calls if name == "metrics" and call.startswith("job-live@")]
        assert first_reads[0] == "job-live@0"
        platform.reveal("job-live", records_through_epoch(6) - records_through_epoch(3))
        polls = tab.polls
        tab.poll()  # what the 1 s timer calls
        await settle(app, pilot)
        assert tab.polls > polls
        reads = [call for name, call in platform.calls if name == "metrics" and call.startswith("job-live@")]
        assert int(reads[-1].split("@")[1]) > 0  # from the byte cursor, not from the start
        assert len(tab.curves.val_acc) == 6
        assert "epoch 6/10" in screen_text(app)
        assert app.query_one("#accuracy-plot", PlotSlot).chart == tab.curves.accuracy_chart()
        await pilot.press("down")  # the job list has the focus: pick the next job …
        await pilot.pause()
        await pilot.press("y")  # … and copy its id
        assert app.clipboard == "job-weak"


async def test_submit_goes_through_the_form_and_a_confirmation_showing_the_spec(
    console_settings: Settings, tmp_path: Path
) -> None:
    platform = recorded_platform()
    app = training_app(console_settings, platform, epoch_time(10) + 4)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        await pilot.press("S")
        assert isinstance(app.screen, FormScreen)
        form = app.screen
        assert form.values()["epochs"] == str(console_settings.train.epochs)
        assert form.values()["batch_size"] == str(console_settings.train.batch_size)
        form.query_one("#field-dataset", Input).value = str(tmp_path)
        form.query_one("#field-epochs", Input).value = "two"
        await pilot.press("enter")
        assert app.screen is form  # refused in place, nothing typed is lost
        assert "epochs = 'two': expected a whole number" in screen_text(app)
        form.query_one("#field-epochs", Input).value = "2"
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        said = "\n".join(app.screen.what_happens)
        assert "Epochs 2 · batch 64" in said and "--epochs 2 --batch-size 64" in said and str(tmp_path) in said
        assert platform.submitted == []
        await pilot.press("y")
        await settle(app, pilot)
        assert [spec.epochs for spec in platform.submitted] == [2]
        assert platform.submitted[0].dataset == str(tmp_path)
        assert status_message(app).startswith("✓ Submitted job-0005")
        assert app.training_tab.selected == "job-0005"


async def test_a_data_set_that_cannot_be_resolved_reopens_the_form_with_the_reason(console_settings: Settings) -> None:
    app = training_app(console_settings, recorded_platform(), epoch_time(10))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        await pilot.press("S", "enter")  # no data set typed, and none uploaded on this home
        await settle(app, pilot)
        assert isinstance(app.screen, FormScreen)
        assert "none has been uploaded to the local backend" in screen_text(app)


async def test_stop_asks_first_then_stops_and_the_full_log_opens(console_settings: Settings) -> None:
    platform = recorded_platform(records_through_epoch(2))
    app = training_app(console_settings, platform, epoch_time(2) + 1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        await pilot.press("X")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Stop job job-live (Running, epoch 2/10)" in app.screen.what_happens[0]
        await pilot.press("n")
        assert platform.count("stop") == 0
        await pilot.press("X", "y")
        await settle(app, pilot)
        assert platform.count("stop") == 1
        assert "job-live is Terminated" in status_message(app)
        assert app.screen.active_bindings["X"].enabled is False  # an ended job cannot be stopped again
        await pilot.press("o")
        await settle(app, pilot)
        assert isinstance(app.screen, LogViewScreen)
        assert "epoch 10/10" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, LogViewScreen)


async def test_a_backend_outage_is_a_message_and_the_console_keeps_running(console_settings: Settings) -> None:
    platform = recorded_platform(records_through_epoch(1))
    app = training_app(console_settings, platform, epoch_time(1))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        platform.fail_with = TrainingError(
            "ModelArts GET /v2/p/training-jobs: 503 ModelArts.0001 service busy (request id r-1)",
            status=503,
            transient=True,
        )
        app.training_tab.poll(list_jobs=True)
        await settle(app, pilot)
        assert status_message(app) == (
            "✗ ModelArts GET /v2/p/training-jobs: 503 ModelArts.0001 service busy (request id r-1)"
        )
        assert "Traceback" not in screen_text(app)
        platform.fail_with = None
        platform.set_phase("job-live", JobPhase.FAILED)
        app.training_tab.poll(list_jobs=True)
        await settle(app, pilot)
        assert "✗ failed" in screen_text(app)
        await pilot.press("1")
        assert app.active_tab == "overview" and app.is_running


async def test_a_running_jobs_duration_keeps_its_unit_as_it_grows(console_settings: Settings) -> None:
    job_id = "job-20260101-100400-77aa"
    platform = RecordedPlatform([RecordedJob(job_status(job_id, JobPhase.RUNNING, started=T0), demo_like_records(), 3)])
    clock = Clock(T0 + 58)
    app = training_app(console_settings, platform, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        assert " 58 s " in next(line for line in jobs_table_text(app).splitlines() if job_id in line)
        clock.now = T0 + 85  # the next poll updates the cell in place: the column must grow with it
        app.training_tab.poll(list_jobs=True)
        await settle(app, pilot)
        row = next(line for line in jobs_table_text(app).splitlines() if job_id in line)
        assert "1 min 25 s" in row, row


async def test_the_best_epoch_shown_is_the_one_the_trainer_kept(console_settings: Settings) -> None:
    records = demo_like_records()
    final = records[-1]
    through_epoch_9 = 9  # while it runs: the epoch records' `best` marks
    platform = RecordedPlatform(
        [RecordedJob(job_status("job-demo", JobPhase.RUNNING, started=T0), records, through_epoch_9)]
    )
    app = training_app(console_settings, platform, T0 + 190)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(app, pilot)
        facts = str(app.query_one("#training-facts").render())
        assert f"best epoch {final['best_epoch']} (val acc {final['val_acc']:.4f})" in facts
        assert "(epoch 8)" not in screen_text(app)  # epoch 8 has the higher accuracy, not the kept weights
        platform.reveal("job-demo", len(records))
        platform.set_phase("job-demo", JobPhase.COMPLETED, ended=T0 + 210)
        app.training_tab.poll(list_jobs=True)
        await settle(app, pilot)
        text = screen_text(app)
        assert f"best epoch {final['best_epoch']} (val acc {final['val_acc']:.4f})" in text
        assert f"{final['val_acc']:.4f}   10/10" in jobs_table_text(app)  # the list's "best val" agrees
