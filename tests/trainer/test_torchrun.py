"""The real `torchrun --nproc_per_node=2` (gloo): metrics and package, and SIGKILL of a rank then resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.conftest import ROOT, SMALL_SPLIT, read_metrics, run_torchrun, subprocess_env, torchrun_command
from trainer.data import SplitPolicy, list_dataset
from trainer.metrics import read_records
from trainer.predict import Predictor

EPOCHS = 6
SETTINGS = ("--epochs", str(EPOCHS), "--patience", "0", "--log-every", "1", "--seed", "4")
CORRUPT = "jeem/jeem_00004.jpg"


@pytest.fixture(scope="module")
def data(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small set with one JPEG cut short (decoded by one rank, reported by rank 0)."""
    target = tmp_path_factory.mktemp("torchrun-data") / "data"
    shutil.copytree(small_data, target)
    (target / CORRUPT).write_bytes((target / CORRUPT).read_bytes()[:300])
    return target


def split_sizes(data: Path) -> dict[str, int]:
    policy = SplitPolicy(seed=1337, val=SMALL_SPLIT["val_fraction"], test=SMALL_SPLIT["test_fraction"])
    listing = list_dataset(data, policy, lambda _: False)
    usable = [sample for sample in listing.samples if sample.source != CORRUPT]
    return {split: sum(sample.split == split for sample in usable) for split in ("train", "val", "test")}


def epochs_of(records: list[dict[str, Any]]) -> list[int]:
    return [record["epoch"] for record in records if record["type"] == "epoch"]


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("torchrun") / "reference"
    completed = run_torchrun(torchrun_command(data, output, *SETTINGS))
    assert completed.returncode == 0, completed.stderr[-3000:]
    return output


def test_two_ranks_write_metrics_and_a_package(reference: Path, data: Path) -> None:
    sizes = split_sizes(data)
    records = read_metrics(reference)
    epochs = [record for record in records if record["type"] == "epoch"]
    assert epochs_of(records) == list(range(1, EPOCHS + 1))
    for record in epochs:
        assert record["world_size"] == 2
        assert record["train_samples"] == sizes["train"], "each training sample exactly once per epoch"
        assert record["val_samples"] == sizes["val"], "validation covers the whole split, all-reduced"
        assert 0 <= record["val_acc"] <= 1 and record["val_loss"] > 0 and record["images_per_s"] > 0
    steps = [record for record in records if record["type"] == "step"]
    assert {record["epoch"] for record in steps} == set(range(1, EPOCHS + 1))
    final = records[-1]
    assert final["type"] == "final" and [r["type"] for r in records].count("final") == 1
    assert final["test_samples"] == sizes["test"]
    assert final["skipped_count"] == 1 and final["skipped"][0]["source"] == CORRUPT
    assert sum(map(sum, final["confusion"])) == sizes["test"]
    assert len(final["confusion"]) == 32 and set(final["per_class_acc"]) <= set(final["classes"])
    correct = sum(final["confusion"][index][index] for index in range(32))
    assert final["test_acc"] == pytest.approx(correct / sizes["test"])
    assert Predictor.load(reference / "model").classes == tuple(final["classes"])


def child_pids(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return sorted(children)


def rank_of(pid: int) -> int:
    variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(item for item in variables if item.startswith(b"RANK=")).split(b"=", 1)[1])


def wait_for_step_of_epoch(metrics: Path, epoch: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Poll metrics.jsonl until a step record of `epoch` exists: the run is then inside that epoch."""
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        if metrics.is_file():
            for line in metrics.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("type") == "step" and record.get("epoch") == epoch:
                    return
        time.sleep(0.01)
    raise AssertionError(f"no step of epoch {epoch} within the deadline")


@pytest.mark.slow
def test_sigkill_of_a_rank_mid_epoch_then_resume(data: Path, tmp_path: Path, reference: Path) -> None:
    output = tmp_path / "killed"
    boot_file = ("trainer/train.py",)  # as ModelArts starts it: a file path, not -m
    command = torchrun_command(data, output, *SETTINGS, entry=boot_file)
    with (tmp_path / "first.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(), cwd=ROOT)
        try:
            wait_for_step_of_epoch(output / "metrics.jsonl", 3, process, time.monotonic() + 180)
            ranks = {rank_of(pid): pid for pid in child_pids(process.pid)}
            assert set(ranks) == {0, 1}, ranks
            os.kill(ranks[1], signal.SIGKILL)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode != 0
    interrupted = read_records(output / "metrics.jsonl")  # the kill may have cut a line short
    assert "final" not in [record["type"] for record in interrupted]
    assert epochs_of(interrupted) == [1, 2]

    resumed = run_torchrun([*command, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 2" in resumed.stderr
    records = read_metrics(output)
    assert epochs_of(records) == list(range(1, EPOCHS + 1)), "no epoch counted twice, none missing"
    assert [record["type"] for record in records].count("final") == 1
    assert all(
        record["epoch"] >= 3
        for record in records
        if record["type"] == "step" and record["time"] > max(r["time"] for r in interrupted)
    )
    # Same seed, same global batches, RNG streams re-derived per epoch: the resumed run retraces the reference.
    expected = {record["epoch"]: record for record in read_metrics(reference) if record["type"] == "epoch"}
    for record in records:
        if record["type"] == "epoch":
            assert record["val_loss"] == pytest.approx(expected[record["epoch"]]["val_loss"], rel=1e-4)
            assert record["val_acc"] == pytest.approx(expected[record["epoch"]]["val_acc"], abs=1e-9)
    assert records[-1]["test_acc"] == pytest.approx(read_metrics(reference)[-1]["test_acc"], abs=1e-9)
