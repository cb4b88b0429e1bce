"""The feed between the engine's threads and the console: ordered events, coalesced progress."""

from __future__ import annotations

import threading

from arsl_tui.domain.events import UploadFinished, UploadProgressed, UploadRetried
from arsl_tui.ui import formatting as fmt
from arsl_tui.ui.upload_feed import UploadFeed


def progress(done: int) -> UploadProgressed:
    return UploadProgressed(
        run_id="r",
        files_done=done,
        files_total=108_098,
        bytes_done=done * 10,
        bytes_total=1_080_980,
        objects_done=done,
        objects_total=108_098,
        bytes_per_s=1.0,
        eta_s=None,
        retries=0,
        errors=0,
    )


def test_many_threads_of_progress_wake_the_console_once_and_keep_the_latest() -> None:
    wakes: list[int] = []
    feed = UploadFeed(lambda: wakes.append(1))
    per_thread = 27_025

    def emit(offset: int) -> None:
        for index in range(per_thread):
            feed(progress(offset + index))

    threads = [threading.Thread(target=emit, args=(n * per_thread,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wakes) == 1
    batch = feed.drain()
    assert batch.progress_events_seen == 4 * per_thread and batch.events == ()
    assert batch.progress is not None
    feed(progress(1))
    assert len(wakes) == 2  # drained, so the next event wakes the console again


def test_other_events_keep_their_order_and_are_never_dropped() -> None:
    feed = UploadFeed(lambda: None)
    retries = [UploadRetried(run_id="r", key=f"k{n}", attempt=1, error="timeout", delay_s=0.1) for n in range(3)]
    feed(retries[0])
    feed(progress(5))
    feed(retries[1])
    feed(retries[2])
    finished = UploadFinished(
        run_id="r",
        status="done",
        manifest_id="m",
        destination="d",
        objects_sent=5,
        objects_skipped=0,
        bytes_sent=50,
        elapsed_s=1.0,
    )
    feed(finished)
    assert not feed.only_progress_pending
    batch = feed.drain()
    assert batch.events == (*retries, finished)
    assert batch.progress == progress(5)
    assert feed.drain().events == () and feed.only_progress_pending


def test_human_forms_carry_words_not_only_colour() -> None:
    assert fmt.status_text("paused") == "‖ paused" and fmt.status_text("failed") == "✗ failed"
    assert fmt.size(999) == "999 B" and fmt.size(38_200_000) == "38.2 MB"
    assert fmt.duration(185) == "3 min 05 s" and fmt.duration(None) == "–"
    assert fmt.bar(1, 4, 8) == "██░░░░░░"
    assert fmt.shorten_ids("datasets/" + "a" * 64 + "/") == "datasets/aaaaaaaaaaaa…/"


def test_progress_coalesced_elsewhere_keeps_its_count_and_wakes_once() -> None:
    wakes: list[int] = []
    feed = UploadFeed(lambda: wakes.append(1))
    feed.add_progress(progress(500), 500)
    feed(progress(501))
    feed.add_progress(progress(900), 399)
    assert len(wakes) == 1
    batch = feed.drain()
    assert batch.progress == progress(900) and batch.progress_events_seen == 900 and batch.events == ()
