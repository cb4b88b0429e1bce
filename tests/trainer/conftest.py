"""Shared data and helpers of the trainer tests: a small synthetic data set, in-process and torchrun runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from arsl_tui.ops.synth import synthesize
from trainer.distributed import DistContext
from trainer.train import RunResult, TrainConfig, run

ROOT = Path(__file__).resolve().parents[2]
SMALL_SPLIT = {"val_fraction": 0.2, "test_fraction": 0.2}


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 synthetic images per class (320), the ArSL2018 class-folder layout, no manifest."""
    return synthesize(tmp_path_factory.mktemp("synth") / "data", per_class=10, seed=3).out


def solo_context() -> DistContext:
    return DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)


TrainRunner = Callable[..., RunResult]


@pytest.fixture
def train_in_process() -> TrainRunner:
    """Run the trainer in this process (one rank, CPU) with small settings."""

    def train(data: Path, output: Path, **overrides: Any) -> RunResult:
        settings: dict[str, Any] = {"epochs": 1, "batch_size": 64, "log_every": 2, **SMALL_SPLIT, **overrides}
        return run(TrainConfig(data=data, output=output, **settings), solo_context())

    return train


def read_metrics(output: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def torchrun_command(
    data: Path, output: Path, *extra: str, entry: tuple[str, ...] = ("-m", "trainer.train"), nproc: int = 2
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *entry,
        "--data",
        str(data),
        "--output",
        str(output),
        "--val-fraction",
        "0.2",
        "--test-fraction",
        "0.2",
        "--batch-size",
        "64",
        *extra,
    ]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def run_torchrun(command: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=subprocess_env(), cwd=ROOT, check=False
    )
