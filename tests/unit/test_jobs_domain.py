"""Job records, metrics.jsonl parsing, progress/ETA and failure reasons (pure domain code)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arsl_tui.domain.jobs import (
    JobPhase,
    JobSpec,
    JobSpecError,
    JobStatus,
    MetricRecord,
    MetricsReader,
    derive_progress,
    failure_reason,
    format_duration,
    parse_metrics,
)

SPEC = JobSpec(dataset="obs://bucket/datasets/abc/", epochs=12, batch_size=128, learning_rate=0.003, seed=7)


def line(**record: object) -> bytes:
    return (json.dumps(record) + "\n").encode()


def epoch(number: int, time: float, val_acc: float | None = 0.5, **more: object) -> MetricRecord:
    return MetricRecord.from_json({"type": "epoch", "epoch": number, "time": time, "val_acc": val_acc, **more})


# --- phases and specs -----------------------------------------------------------------------------


def test_phases_use_modelarts_names_and_know_which_are_final() -> None:
    assert [phase.value for phase in JobPhase][:7] == [
        "Creating",
        "Pending",
        "Running",
        "Completed",
        "Failed",
        "Terminating",
        "Terminated",
    ]
    assert {phase for phase in JobPhase if phase.terminal} == {
        JobPhase.COMPLETED,
        JobPhase.FAILED,
        JobPhase.TERMINATED,
        JobPhase.ABNORMAL,
    }
    assert [phase for phase in JobPhase if phase.succeeded] == [JobPhase.COMPLETED]
    assert JobPhase.parse(" running ") is JobPhase.RUNNING
    with pytest.raises(ValueError, match=r"unknown job phase 'Queued' \(known: Creating, Pending"):
        JobPhase.parse("Queued")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dataset": " "}, "dataset: no data set given"),
        ({"epochs": 0}, "epochs = 0: expected an integer of at least 1"),
        ({"batch_size": True}, "batch_size = True"),
        ({"nodes": 0}, "nodes = 0"),
        ({"processes_per_node": 0}, "processes_per_node = 0"),
        ({"learning_rate": -0.1}, "learning_rate = -0.1: expected a positive number"),
        ({"learning_rate": math.nan}, "learning_rate = nan"),
        ({"model": "wide net"}, "model = 'wide net'"),
        ({"name": "has space"}, "name = 'has space'"),
        ({"parameters": {"epochs": "3"}}, "parameter 'epochs' is set by the job spec itself"),
        ({"parameters": {"--x": "3"}}, "parameter '--x': names are"),
        ({"parameters": {"note": "two\nlines"}}, "parameter 'note'"),
    ],
)
def test_a_bad_spec_names_the_field_and_value(change: dict[str, object], message: str) -> None:
    with pytest.raises(JobSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        replace(SPEC, **change).validate()  # type: ignore[arg-type]


def test_spec_round_trips_and_lists_the_trainer_flags() -> None:
    spec = replace(SPEC, parameters={"patience": "3", "label-smoothing": "0.1"}, name="run-1").validate()
    assert JobSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec.hyperparameters() == [
        ("epochs", "12"),
        ("batch-size", "128"),
        ("lr", "0.003"),
        ("seed", "7"),
        ("model", "compact"),
        ("label-smoothing", "0.1"),
        ("patience", "3"),
    ]
    with pytest.raises(JobSpecError, match="stored job spec is not readable"):
        JobSpec.from_json({"dataset": "x"})


def test_status_duration_runs_from_start_to_end_or_now() -> None:
    status = JobStatus(
        job_id="j", name="j", phase=JobPhase.RUNNING, backend="local", created_at=100.0, started_at=110.0
    )
    assert status.duration_s(now=150.0) == 40.0
    assert replace(status, ended_at=130.0).duration_s(now=999.0) == 20.0
    assert replace(status, started_at=None, created_at=None).duration_s(now=1.0) is None
    assert status.to_json()["phase"] == "Running" and not status.terminal


# --- metrics.jsonl --------------------------------------------------------------------------------


def test_parse_stops_before_a_half_written_line_and_resumes_from_the_cursor() -> None:
    data = line(type="step", epoch=1, step=5) + line(type="epoch", epoch=1, val_acc=0.4) + b'{"type": "ep'
    first = parse_metrics(data)
    assert [(r.type, r.epoch) for r in first.records] == [("step", 1), ("epoch", 1)]
    assert first.cursor == data.rindex(b"\n") + 1
    grown = data + b'och", "epoch": 2, "val_acc": 0.7}\n'
    second = parse_metrics(grown, first.cursor)
    assert [(r.epoch, r.val_acc) for r in second.records] == [(2, 0.7)] and second.cursor == len(grown)
    assert parse_metrics(grown, second.cursor).records == ()


def test_parse_skips_bad_lines_counts_them_and_reads_a_final_unterminated_line_when_told() -> None:
    data = b"not json\n" + line(type="epoch", epoch=1) + b"[1, 2]\n" + line(epoch=3) + b"\n" + b'{"type": "final"}'
    chunk = parse_metrics(data)
    assert [r.type for r in chunk.records] == ["epoch"] and chunk.skipped == 3
    assert [r.type for r in parse_metrics(data, final=True).records] == ["epoch", "final"]
    # A cursor past the end means the file was rewritten shorter: read it again from the top.
    assert len(parse_metrics(data, start=len(data) + 10).records) == 1


def test_record_fields_are_typed_and_nulls_or_strings_become_none() -> None:
    record = MetricRecord.from_json(
        {"type": "epoch", "epoch": 2.0, "val_loss": None, "val_acc": "high", "train_loss": 1, "lr": True, "extra": [1]}
    )
    assert (record.epoch, record.val_loss, record.val_acc, record.train_loss, record.lr) == (2, None, None, 1.0, None)
    assert record.data["extra"] == [1]


@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_feeding_bytes_in_any_pieces_gives_the_same_records(cuts: list[int]) -> None:
    data = b"".join(line(type="epoch", epoch=n, val_acc=n / 10, note="é" * n) for n in range(1, 6))
    whole = parse_metrics(data).records
    reader = MetricsReader()
    got: list[MetricRecord] = []
    previous = 0
    for cut in [*sorted(min(c, len(data)) for c in cuts), len(data)]:
        got += reader.feed(data[previous:cut])
        previous = cut
    assert got == list(whole) and reader.consumed == len(data)
    assert reader.finish() == []


# --- progress -------------------------------------------------------------------------------------


def test_progress_counts_epochs_best_validation_speed_and_eta() -> None:
    records = [
        MetricRecord.from_json({"type": "step", "epoch": 1, "images_per_s": 250.0}),
        epoch(1, 1000.0, 0.60),
        epoch(2, 1030.0, 0.85),
        MetricRecord.from_json({"type": "step", "epoch": 3, "images_per_s": 310.0}),
        epoch(3, 1060.0, 0.80),
    ]
    progress = derive_progress(records, epochs_total=10, now=1070.0)
    assert (progress.epochs_done, progress.best_val_acc, progress.best_epoch) == (3, 0.85, 2)
    assert progress.seconds_per_epoch == 30.0 and progress.images_per_s == 310.0
    assert progress.eta_s == 7 * 30.0 - 10.0
    assert progress.last_epoch is not None and progress.last_epoch.epoch == 3
    assert progress.fraction == pytest.approx(0.3)


def test_progress_edge_cases() -> None:
    assert derive_progress([], epochs_total=5).eta_s is None
    single = derive_progress([epoch(1, 1050.0)], epochs_total=5, started_at=1000.0)
    assert (single.seconds_per_epoch, single.eta_s) == (50.0, 200.0)
    # The trainer's own clock (start-up excluded) beats the job's start time.
    timed = derive_progress([epoch(1, 1050.0, elapsed_s=20.0)], epochs_total=5, started_at=1000.0)
    assert (timed.seconds_per_epoch, timed.eta_s) == (20.0, 80.0)
    # A resumed run repeats epoch 2: counted once, the later report wins; NaN-free val_acc of None is skipped.
    resumed = derive_progress([epoch(1, 10.0, 0.5), epoch(2, 20.0, None), epoch(2, 40.0, 0.9)], epochs_total=2)
    assert (resumed.epochs_done, resumed.best_val_acc, resumed.eta_s) == (2, 0.9, 0.0)
    final = MetricRecord.from_json({"type": "final", "test_acc": 0.97})
    finished = derive_progress([epoch(1, 10.0), final], epochs_total=9)
    assert finished.final is final and finished.eta_s == 0.0
    assert derive_progress([epoch(1, 10.0)], epochs_total=None).fraction is None


def test_durations_read_like_a_clock() -> None:
    assert [format_duration(s) for s in (None, math.inf, 0.4, 42, 185, 3725)] == [
        "—",
        "—",
        "0s",
        "42s",
        "3m05s",
        "1h02m",
    ]


# --- failure reasons ------------------------------------------------------------------------------

TORCHRUN_CRASH = """\
W1126 08:55:40.123000 31005 torch/distributed/run.py:793] Setting OMP_NUM_THREADS environment variable
[trainer] data /tmp/x (folder): train 0
[trainer] error (rank 0): class 'ain' has no images (/tmp/x/ain)
E1126 08:55:45.000000 31005 torch/distributed/elastic/multiprocessing/api.py:869] failed (exitcode: 2)
Traceback (most recent call last):
  File "/venv/bin/torchrun", line 8, in <module>
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
trainer.train FAILED
------------------------------------------------------------
"""


def test_the_reason_of_a_crash_is_the_trainers_error_not_torchruns_banner() -> None:
    assert failure_reason(TORCHRUN_CRASH) == "[trainer] error (rank 0): class 'ain' has no images (/tmp/x/ain)"
    python_crash = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad shape\n'
    assert failure_reason(python_crash) == "ValueError: bad shape"
    plain = "starting\nloading\n======\nkilled\n"
    assert failure_reason(plain, max_lines=2) == "loading\nkilled"
    assert failure_reason("") == ""


def test_a_rank_killed_by_a_signal_is_named_with_the_signal() -> None:
    log = "\n".join(
        [
            "E1126 12:00:00.000 api.py:882] failed (exitcode: -9) local_rank: 1 (pid: 123) of binary: python",
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
            "=" * 60,
            "Root Cause (first observed failure):",
            "[0]:",
            "  time      : 2026-11-26_12:00:00",
            "  host      : localhost",
            "  rank      : 1 (local_rank: 1)",
            "  exitcode  : -9 (pid: 123)",
            "  error_file: <N/A>",
            "  traceback : Signal 9 (SIGKILL) received by PID 123",
            "=" * 60,
        ]
    )
    assert failure_reason(log) == "rank 1 was killed by signal 9 (SIGKILL)"
    assert failure_reason(log.replace("-9 (pid", "1 (pid")) != "rank 1 was killed by signal 1 (SIGHUP)"


def torchrun_summary(failures: list[tuple[int, int, int]], root: tuple[int, int, int], closed: list[int]) -> str:
    """torchrun's log after a worker died: its closing signals, then 'Failures:' and 'Root Cause' entries
    (rank, exit code, pid), as torchrun 2.x prints them."""

    def entry(index: int, rank: int, code: int, pid: int) -> list[str]:
        return [
            f"[{index}]:",
            "  time      : 2026-12-05_09:07:46",
            "  host      : localhost",
            f"  rank      : {rank} (local_rank: {rank})",
            f"  exitcode  : {code} (pid: {pid})",
            "  error_file: <N/A>",
        ]

    lines = [f"W1205 09:07:46.929 api.py:1028] Sending process {pid} closing signal SIGTERM" for pid in closed]
    lines += [
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
        "=" * 55,
        "trainer.train FAILED",
        "-" * 55,
        "Failures:",
    ]
    for index, failure in enumerate(failures, start=1):
        lines += entry(index, *failure)
    lines += ["-" * 55, "Root Cause (first observed failure):", *entry(0, *root), "=" * 55]
    return "\n".join(lines)


def test_the_reason_names_the_rank_that_died_first_not_one_torchrun_ended() -> None:
    # Rank 1 aborted; torchrun then sent rank 0 SIGTERM and listed it first under 'Failures:'.
    aborted = torchrun_summary([(0, -15, 12848)], root=(1, -6, 12849), closed=[12848])
    assert failure_reason(aborted) == "rank 1 was killed by signal 6 (SIGABRT)"
    # Both failures carry the same whole-second timestamp, so torchrun's 'Root Cause' can be the rank it ended.
    tie = torchrun_summary([(1, -6, 12849)], root=(0, -15, 12848), closed=[12848])
    assert failure_reason(tie) == "rank 1 was killed by signal 6 (SIGABRT)"
    # A rank that exited with an error code, without an error line in the log.
    exited = torchrun_summary([(1, 3, 12849)], root=(0, -15, 12848), closed=[12848])
    assert failure_reason(exited) == "rank 1 exited with code 3"
    # torchrun itself stopped (no closing signal of its own): its root cause stands.
    stopped = torchrun_summary([(1, -15, 12849)], root=(0, -15, 12848), closed=[])
    assert failure_reason(stopped) == "rank 0 was killed by signal 15 (SIGTERM)"
