"""Bad input gives a clear error naming the problem, or a skip that is counted and reported."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.trainer.conftest import ROOT, TrainRunner, read_metrics, subprocess_env
from trainer.data import DataError
from trainer.train import TrainerError


def copy_of(data: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(data, target)
    return target


def test_empty_split_is_refused(small_data: Path, tmp_path: Path, train_in_process: TrainRunner) -> None:
    with pytest.raises(DataError, match="'val' split has no usable images"):
        train_in_process(small_data, tmp_path / "out", val_fraction=0.0)


def test_class_with_no_images_is_named(small_data: Path, tmp_path: Path, train_in_process: TrainRunner) -> None:
    data = copy_of(small_data, tmp_path)
    for image in (data / "bb").iterdir():
        image.unlink()
    with pytest.raises(DataError, match="class 'bb' has no images"):
        train_in_process(data, tmp_path / "out")


def test_corrupt_image_is_skipped_counted_and_reported(
    small_data: Path, tmp_path: Path, train_in_process: TrainRunner
) -> None:
    data = copy_of(small_data, tmp_path)
    victim = data / "jeem" / "jeem_00004.jpg"
    victim.write_bytes(victim.read_bytes()[:200])  # a JPEG cut short
    (data / "jeem" / "notes.txt").write_text("not an image")
    result = train_in_process(data, tmp_path / "out")
    final = read_metrics(tmp_path / "out")[-1]
    assert final["type"] == "final" and final["skipped_count"] == 2
    problems = {item["source"]: item["problem"] for item in final["skipped"]}
    assert "corrupt image data" in problems["jeem/jeem_00004.jpg"]
    assert "not a .jpg" in problems["jeem/notes.txt"]
    assert sum(len(split) for split in result.cache.splits.values()) == 319


def test_missing_output_folder_is_created(small_data: Path, tmp_path: Path, train_in_process: TrainRunner) -> None:
    output = tmp_path / "not" / "yet" / "there"
    train_in_process(small_data, output, epochs=1)
    assert (output / "model" / "config.json").is_file()
    assert (output / "checkpoints" / "last.pt").is_file()


def test_output_that_cannot_be_created_is_a_clear_error(
    small_data: Path, tmp_path: Path, train_in_process: TrainRunner
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(TrainerError, match="cannot be created or written"):
        train_in_process(small_data, blocker / "out")


def test_an_earlier_run_is_not_overwritten_without_resume(
    small_data: Path, tmp_path: Path, train_in_process: TrainRunner
) -> None:
    output = tmp_path / "out"
    train_in_process(small_data, output)
    before = (output / "metrics.jsonl").read_bytes()
    with pytest.raises(TrainerError, match="already holds a run"):
        train_in_process(small_data, output)
    assert (output / "metrics.jsonl").read_bytes() == before


def test_out_of_memory_batch_size_is_a_clear_error(small_data: Path, tmp_path: Path) -> None:
    """A real allocation failure: the address space is capped 1.5 GB above what the process has mapped."""
    script = textwrap.dedent(f"""
        import resource, sys
        import torch  # noqa: F401  (mapped before the cap)
        from trainer.train import main
        with open("/proc/self/status") as status:
            mapped = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
        limit = mapped + 1536 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        sys.exit(main(["--data", {str(small_data)!r}, "--output", {str(tmp_path / "out")!r}, "--model", "wide",
                       "--batch-size", "512", "--epochs", "1", "--cpu", "--val-fraction", "0.2",
                       "--test-fraction", "0.2"]))
    """)
    env = subprocess_env() | {"OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, check=False
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "out of memory on cpu with --batch-size 512" in completed.stderr
    assert "lower --batch-size" in completed.stderr


def test_bad_arguments_exit_2_with_the_flag_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer.train import main

    monkeypatch.delenv("data_url", raising=False)
    assert main(["--data", str(tmp_path), "--output", str(tmp_path / "o"), "--epochs", "0"]) == 2
    assert "--epochs must be at least 1, got 0" in capsys.readouterr().err
    assert main(["--output", str(tmp_path / "o")]) == 2
    assert "--data (or --data_url / $data_url) is required" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "nothing"), "--output", str(tmp_path / "o")]) == 2
    assert "nothing: no such folder" in capsys.readouterr().err
