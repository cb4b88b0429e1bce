"""The upload engine in a child process (`ops.upload_process`): the same answers as in this process."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from arsl_tui.domain.events import Event, UploadFinished, UploadProgressed, UploadStarted
from arsl_tui.ops.dataset import DatasetError
from arsl_tui.ops.upload import UploadControl, UploadRefused, UploadRequest, list_upload_runs, run_upload
from arsl_tui.ops.upload_journal import JobLock
from arsl_tui.ops.upload_process import UploadProcessFailed, process_log, run_upload_in_child
from arsl_tui.providers.local.store import LocalObjectStore
from tests.conftest import jpeg_bytes
from tests.fixtures.upload_checks import assert_store_matches
from tests.unit.test_upload_engine import make_settings, validated


class CountingSink:
    """An EventSink that also takes coalesced progress with its count (as the console's feed does)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.progress_count = 0

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def add_progress(self, event: UploadProgressed, count: int) -> None:
        self.events.append(event)
        self.progress_count += count


@pytest.mark.parametrize("mode", ["files", "shards"])
def test_a_child_uploads_what_this_process_would_and_reports_every_object(
    tiny_dataset: Path, tmp_path: Path, mode: str
) -> None:
    settings = make_settings(tmp_path)
    sink = CountingSink()
    pids: list[int] = []
    outcome = run_upload_in_child(
        settings,
        UploadRequest(tiny_dataset, mode=mode),
        on_event=sink,
        on_child_started=pids.append,  # type: ignore[arg-type]
    )
    assert outcome.status == "done" and pids and pids[0] != os.getpid()
    manifest = validated(settings, tiny_dataset)
    assert outcome.manifest_id == manifest.id
    store = LocalObjectStore(settings.home_dir / "store" / "arsl-ml")
    assert_store_matches(store, settings, manifest, mode)
    started = next(event for event in sink.events if isinstance(event, UploadStarted))
    assert sink.progress_count == started.objects_total == outcome.objects_sent
    assert isinstance(sink.events[-1], UploadFinished) and sink.events[-1].status == "done"
    assert [run.status for run in list_upload_runs(settings)] == ["done"]


def test_a_refusal_names_the_same_problems_as_in_this_process(tiny_dataset: Path, tmp_path: Path) -> None:
    (tiny_dataset / "bb" / "cut.jpg").write_bytes(jpeg_bytes(99)[:300])
    (tiny_dataset / "ain" / "notes.txt").write_text("not an image")
    settings = make_settings(tmp_path)
    with pytest.raises(UploadRefused) as here:
        run_upload(settings, UploadRequest(tiny_dataset, mode="files"))
    with pytest.raises(UploadRefused) as there:
        run_upload_in_child(settings, UploadRequest(tiny_dataset, mode="files"))
    assert str(there.value) == str(here.value)
    assert there.value.report.problems == here.value.report.problems
    assert there.value.report.root == here.value.report.root
    assert list(LocalObjectStore(settings.home_dir / "store" / "arsl-ml").list("")) == []


def test_a_missing_folder_and_a_busy_job_raise_what_the_engine_raises(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(DatasetError, match="no such folder"):
        run_upload_in_child(settings, UploadRequest(tmp_path / "absent"))
    run_upload_in_child(settings, UploadRequest(tiny_dataset, mode="files"))
    (job_lock,) = (settings.home_dir / "locks").glob("upload-*.lock")
    held = JobLock.acquire(job_lock)  # this process holds the job, as a live run elsewhere would
    try:
        from arsl_tui.ops.upload import UploadBusy

        with pytest.raises(UploadBusy, match="already being uploaded"):
            run_upload_in_child(settings, UploadRequest(tiny_dataset, mode="files"))
    finally:
        held.release()


def test_a_cancel_before_the_start_ends_the_child_with_a_cancelled_run(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    control = UploadControl()
    control.cancel()
    outcome = run_upload_in_child(settings, UploadRequest(tiny_dataset, mode="files"), control=control)
    assert outcome.status == "cancelled"
    assert [run.status for run in list_upload_runs(settings)] == ["cancelled"]


def test_a_child_that_dies_is_a_failed_outcome_saying_how(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    # The store is built in the child before anything runs: this one ends the child there and then.
    outcome = run_upload_in_child(
        settings, UploadRequest(tiny_dataset, mode="files"), store_factory=functools.partial(os._exit, 3)
    )
    assert outcome.status == "failed" and outcome.run_id == ""
    assert "exited with status 3" in outcome.error and str(process_log(settings)) in outcome.error


def test_an_engine_bug_in_the_child_is_raised_here_in_words(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(UploadProcessFailed, match=r"ZeroDivisionError: .*division"):
        run_upload_in_child(
            settings, UploadRequest(tiny_dataset, mode="files"), store_factory=functools.partial(divmod, 1, 0)
        )
