"""What a user reads from the CLI: image names in `arsl predict`, the `[y/N]` of every question, and the best
epoch of `arsl train status|watch` as the trainer picks it.

`predict` runs against a real gateway process (`arsl deploy`); the questions are asked on a real
pseudo-terminal; `train status|watch` read a job whose metrics are in the trainer's own format.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from arsl_tui.cli import main
from arsl_tui.domain.jobs import JobPhase
from arsl_tui.ops import serving
from tests.conftest import jpeg_bytes
from tests.fixtures.cli import arsl
from tests.serving.conftest import gateway_settings
from tests.serving.packages import export_random_package, register_packages
from tests.ui.fakes import T0, RecordedJob, RecordedPlatform, job_status
from tests.ui.test_training_tab import demo_like_records

pytestmark = pytest.mark.e2e


def environment(home: Path, **extra: str) -> dict[str, str]:
    variables = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    variables.update({"ARSL_HOME": str(home), "ARSL_GATEWAY_PORT": "0", "COLUMNS": "80", **extra})
    return variables


def answered(env: dict[str, str], cwd: Path, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`arsl ARGS` with a terminal on stdin (so it asks), given `answer` and Enter as the reply."""
    terminal, command_side = pty.openpty()
    try:
        # The terminal keeps the typed line until the command reads it.
        os.write(terminal, f"{answer}\n".encode())
        process = subprocess.run(
            [sys.executable, "-m", "arsl_tui", *args],
            env=env,
            cwd=cwd,
            stdin=command_side,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        os.close(command_side)
        os.close(terminal)
    return process


# ----- predict ------------------------------------------------------------------------------------


@pytest.fixture
def deployed_home(tmp_path: Path) -> Iterator[Path]:
    """A home whose registry holds v1 (a real package, random weights) and whose gateway serves it."""
    home = tmp_path / "home"
    register_packages(home, {"v1": export_random_package(tmp_path / "packages" / "v1", seed=1)})
    try:
        deployed = arsl(environment(home), tmp_path, "deploy", "v1", "--yes")
        assert deployed.returncode == 0, deployed.stderr
        yield home
    finally:
        serving.stop(gateway_settings(home))


def test_predict_names_each_image_by_its_path_below_the_folder_they_share(deployed_home: Path, tmp_path: Path) -> None:
    data = tmp_path / "users" / "someone" / "datasets" / "arsl-demo"
    images = [
        data / "ain" / "ain_0001.jpg",
        data / "ain" / "ain_0002.jpg",
        data / "al" / "al_0001.jpg",
        data / "al" / "deeper" / ("x" * 60) / "al_0002.jpg",
    ]
    for seed, image in enumerate(images):
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(jpeg_bytes(seed))
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    result = arsl(environment(deployed_home), elsewhere, "predict", *(str(image) for image in images))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"images in {data}"
    rows = [line for line in lines if " │ v1 " in line]
    assert [row.split(" │ ")[0].strip() for row in rows[:3]] == [
        "ain/ain_0001.jpg",
        "ain/ain_0002.jpg",
        "al/al_0001.jpg",
    ]
    long_name = rows[3].split(" │ ")[0].strip()  # over 40 characters: the middle of its folders goes, not its name
    assert long_name.startswith("al/deeper/") and "…" in long_name and long_name.endswith("x/al_0002.jpg")
    assert all(len(line) <= 80 for line in lines[1:])
    assert lines[-1] == "(request ids, for /v1/feedback: run it with --json)"  # 32 characters more do not fit
    wide = arsl(environment(deployed_home, COLUMNS="140"), elsewhere, "predict", *(str(image) for image in images))
    assert wide.returncode == 0, wide.stderr
    assert "request id" in wide.stdout.splitlines()[1] and "--json" not in wide.stdout


def test_predict_help_says_when_a_temporary_key_is_used_and_that_it_is(deployed_home: Path, tmp_path: Path) -> None:
    env = environment(deployed_home)
    shown = arsl(env, tmp_path, "predict", "--help")
    assert shown.returncode == 0
    assert "a temporary key is made for this call and deleted after it" in " ".join(shown.stdout.split())
    image = tmp_path / "sign.jpg"
    image.write_bytes(jpeg_bytes(7))
    keyless = arsl(env, tmp_path, "predict", str(image), "--json")  # no --key, no $ARSL_APP_CODE
    assert keyless.returncode == 0, keyless.stderr
    assert json.loads(keyless.stdout)["results"][0]["status"] == 200
    listed = json.loads(arsl(env, tmp_path, "gateway", "keys", "list", "--json").stdout)
    assert listed == {"keys": []}  # the key made for the call is gone


# ----- questions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "question"),
    [
        (("train", "submit", "{data}"), "Submit this training job? [y/N] "),
        (("service", "stop"), "Stop the gateway? [y/N] "),
        (
            ("canary", "start"),
            "Release ? beside champion ? at 10% (10%, 25%, 50%, 100%), after a shadow step (copies only, no "
            "client traffic)? [y/N] ",
        ),
        (("alarms", "setup"), "Create or update the [alarms] rules in the local monitor? [y/N] "),
        (("upload", "{data}"), "Upload {data} to local:{home}/store/arsl-ml (shards mode)? [y/N] "),
    ],
    ids=["train", "serve", "canary", "alarms", "upload"],
)
def test_every_question_shows_its_default_and_answering_no_changes_nothing(
    args: tuple[str, ...], question: str, tiny_dataset: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = environment(home)
    filled = {"data": str(tiny_dataset), "home": str(home)}
    result = answered(env, tmp_path, "n", *(arg.format(**filled) for arg in args))
    # The reply is not echoed (the terminal's echo goes to it, not to stderr): the refusal follows the question,
    # which is folded at 80 columns.
    assert f"{question.format(**filled)}error: cancelled; nothing" in result.stderr.replace("\n", ""), result.stderr
    assert result.returncode == 1
    jobs = json.loads(arsl(env, tmp_path, "train", "status", "--json").stdout)
    uploads = json.loads(arsl(env, tmp_path, "upload", "status", "--json").stdout)
    assert jobs == {"jobs": []} and uploads["runs"] == []


# ----- train status and watch ---------------------------------------------------------------------


@pytest.fixture
def finished_job(monkeypatch: pytest.MonkeyPatch, arsl_home: Path) -> str:
    records = demo_like_records()
    job = RecordedJob(
        job_status("job-20260101-100400-77aa", JobPhase.COMPLETED, started=T0, ended=T0 + 210), records, len(records)
    )
    platform = RecordedPlatform([job])
    monkeypatch.setattr("arsl_tui.ops.training.open_platform", lambda settings: platform)
    return job.status.job_id


def test_train_status_and_watch_name_the_best_epoch_the_trainer_kept(
    finished_job: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "status", finished_job]) == 0
    status_line = capsys.readouterr().out
    assert "best val acc 99.05% (epoch 9)" in " ".join(status_line.split())  # not epoch 8's higher 99.11%
    assert main(["train", "watch", finished_job, "--interval", "0.01"]) == 0
    watched = capsys.readouterr().out
    assert f"job {finished_job} Completed; best val acc 99.05% (epoch 9)" in watched
    assert main(["train", "status", finished_job, "--json"]) == 0
    progress = json.loads(capsys.readouterr().out)["progress"]
    assert (progress["best_epoch"], progress["best_val_acc"]) == (9, 0.9905)
