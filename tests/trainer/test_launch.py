"""ModelArts' injected environment → the torchrun command; checkpoint/metrics bookkeeping on resume."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.trainer.conftest import TrainRunner, read_metrics
from trainer.distributed import modelarts_launch_command
from trainer.metrics import MetricsLog, reconcile

MODELARTS = {
    "MA_NUM_HOSTS": "2",
    "MA_NUM_GPUS": "8",
    "VC_TASK_INDEX": "1",
    "VC_WORKER_HOSTS": "job-worker-0.job,job-worker-1.job",
    "MA_TASK_NAME": "worker",
}


def test_modelarts_environment_becomes_a_torchrun_command() -> None:
    command = modelarts_launch_command(MODELARTS, "/code/trainer/train.py", ["--data_url=/in", "--epochs", "3"])
    assert command == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--node_rank=1",
        "--nproc_per_node=8",
        "--master_addr=job-worker-0.job",
        "--master_port=29500",
        "/code/trainer/train.py",
        "--data_url=/in",
        "--epochs",
        "3",
    ]
    port = modelarts_launch_command({**MODELARTS, "ARSL_MASTER_PORT": "6060"}, "t.py", [])
    assert port is not None and "--master_port=6060" in port


def test_no_launcher_when_already_launched_alone_or_outside_modelarts() -> None:
    assert modelarts_launch_command({**MODELARTS, "RANK": "3"}, "t.py", []) is None
    assert modelarts_launch_command({"MA_NUM_GPUS": "1", "MA_NUM_HOSTS": "1"}, "t.py", []) is None
    assert modelarts_launch_command({"HOME": "/root"}, "t.py", []) is None
    single_node = modelarts_launch_command({"MA_NUM_GPUS": "4", "MA_NUM_HOSTS": "1"}, "t.py", [])
    assert single_node is not None and "--master_addr=127.0.0.1" in single_node


def test_bad_modelarts_environment_is_named() -> None:
    with pytest.raises(ValueError, match="VC_WORKER_HOSTS is empty"):
        modelarts_launch_command({"MA_NUM_HOSTS": "2", "MA_NUM_GPUS": "8"}, "t.py", [])
    with pytest.raises(ValueError, match="MA_NUM_GPUS='eight'"):
        modelarts_launch_command({"MA_NUM_GPUS": "eight"}, "t.py", [])


def test_reconcile_counts_every_completed_epoch_once(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, enabled=True)
    for record in (
        {"type": "step", "epoch": 1, "step": 1},
        {"type": "epoch", "epoch": 1, "val_loss": 1.0},
        {"type": "step", "epoch": 2, "step": 2},
        {"type": "step", "epoch": 3, "step": 3},
        {"type": "epoch", "epoch": 3, "val_loss": 9.0},
        {"type": "final", "epoch": 3},
    ):
        log.write(record)
    log.close()
    with path.open("a") as handle:
        handle.write('{"type": "step", "epo')  # a line cut short by the kill
    # The checkpoint knows epochs 1 and 2; epoch 2's record never reached the file, epoch 3's is not in the checkpoint.
    history = [{"type": "epoch", "epoch": 1, "val_loss": 1.0}, {"type": "epoch", "epoch": 2, "val_loss": 0.5}]
    reconcile(path, 2, history)
    assert read_metrics(tmp_path) == [
        {"type": "step", "epoch": 1, "step": 1},
        history[0],
        {"type": "step", "epoch": 2, "step": 2},
        history[1],
    ]


def test_resume_of_a_finished_run_only_redoes_the_final_record(
    small_data: Path, tmp_path: Path, train_in_process: TrainRunner
) -> None:
    output = tmp_path / "out"
    first = train_in_process(small_data, output, epochs=2)
    again = train_in_process(small_data, output, epochs=2, resume=True)
    records = read_metrics(output)
    assert [record["epoch"] for record in records if record["type"] == "epoch"] == [1, 2]
    assert [record["type"] for record in records].count("final") == 1
    assert again.final["test_acc"] == first.final["test_acc"]


def test_resume_with_other_settings_is_refused(small_data: Path, tmp_path: Path, train_in_process: TrainRunner) -> None:
    from trainer.train import TrainerError

    output = tmp_path / "out"
    train_in_process(small_data, output, epochs=2)
    with pytest.raises(TrainerError, match="checkpoint's batch_size is 64 but this run's is 32"):
        train_in_process(small_data, output, epochs=2, batch_size=32, resume=True)
