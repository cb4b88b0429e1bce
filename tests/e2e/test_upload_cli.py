"""`arsl upload` as a user runs it: a real process, real SQLite journal, real local store — and kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.domain.manifest import Manifest, SplitPolicy
from arsl_tui.ops.dataset import validate_dataset
from arsl_tui.ops.upload import dataset_prefix
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.db import state_path
from tests.conftest import DatasetFactory, jpeg_bytes
from tests.fixtures.cli import arsl
from tests.fixtures.s3sink import S3Sink
from tests.fixtures.upload_checks import assert_store_matches

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    env["ARSL_HOME"] = str(tmp_path / "home")
    return env


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def settings_for(tmp_path: Path) -> Settings:
    return load_settings(environ={}, cwd=tmp_path, cli_overrides={"home": str(tmp_path / "home")})


def manifest_of(folder: Path) -> Manifest:
    return validate_dataset(folder, SplitPolicy()).manifest


def store_of(settings: Settings) -> LocalObjectStore:
    return LocalObjectStore(settings.home_dir / "store" / settings.storage.bucket)


def test_kill_9_mid_upload_then_rerun_sends_only_the_remainder(
    make_dataset: DatasetFactory, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    dataset = make_dataset(per_class=20)  # 640 images: far more than the events a full pipe can hold
    settings = settings_for(tmp_path)
    manifest = manifest_of(dataset)
    total = len(manifest.images) + 1
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "arsl_tui",
                "upload",
                str(dataset),
                "--mode",
                "files",
                "--concurrency",
                "1",
                "--json",
                "--yes",
            ],
            env=cli_env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        # Each confirmed object is one JSON line, written after the journal records it; once we stop
        # reading, the pipe fills and the upload blocks, so the kill lands mid-way without any timing.
        for line in process.stdout:
            event = json.loads(line)
            if event["event"] == "UploadProgressed" and event["objects_done"] >= 5:
                break
        else:
            pytest.fail(f"the upload ended before 5 objects were confirmed: {(tmp_path / 'stderr.txt').read_text()}")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL

    with sqlite3.connect(state_path(settings.home_dir)) as connection:
        states = dict(connection.execute("SELECT state, COUNT(*) FROM upload_objects GROUP BY state").fetchall())
        confirmed_keys = [
            key for (key,) in connection.execute("SELECT key FROM upload_objects WHERE state = 'confirmed'")
        ]
    confirmed, uncertain = states.get("confirmed", 0), states.get("sent", 0)
    assert 5 <= confirmed < total - 1, "killed mid-way"
    store = store_of(settings)
    prefix = dataset_prefix(settings, manifest.id)
    assert store.head(prefix + "manifest.json") is None, "a half upload is never mistaken for a data set"
    identity = {key: (store.root / key).stat() for key in confirmed_keys}

    status = arsl(cli_env, tmp_path, "upload", "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["runs"][0]["status"] == "interrupted"
    assert report["resumable"]["run_id"] == report["runs"][0]["run_id"]

    rerun = arsl(cli_env, tmp_path, "upload", str(dataset), "--mode", "files", "--concurrency", "4", "--json", "--yes")
    assert rerun.returncode == 0, rerun.stderr
    events = json_lines(rerun.stdout)
    outcome = events[-1]
    assert outcome["event"] == "outcome" and outcome["status"] == "done"
    started = next(event for event in events if event["event"] == "UploadStarted")
    assert started["objects_already_confirmed"] == confirmed
    # Only the remainder went out: confirmed objects were skipped, the uncertain tail was headed first.
    assert confirmed <= outcome["objects_skipped"] <= confirmed + uncertain
    assert outcome["objects_sent"] == total - outcome["objects_skipped"]
    staged = prefix + ".manifest.json.staged"
    assert store.head(staged) is None, "the staged manifest is removed once copied into place"
    for key, before in identity.items():
        if key == staged:
            continue
        after = (store.root / key).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), f"{key} was rewritten"
    assert_store_matches(store, settings, manifest, "files")

    report = json.loads(arsl(cli_env, tmp_path, "upload", "status", "--json").stdout)
    assert report["runs"][0]["status"] == "done" and report["resumable"] is None


def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(
    make_dataset: DatasetFactory, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    dataset = make_dataset(per_class=20)
    settings = settings_for(tmp_path)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arsl_tui",
            "upload",
            str(dataset),
            "--mode",
            "files",
            "--concurrency",
            "2",
            "--json",
            "--yes",
        ],
        env=cli_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if json.loads(line)["event"] == "UploadProgressed":
            break
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=60)
    assert process.returncode == 130, errors
    assert "run the same command again to resume" in errors
    last = json_lines(rest)[-1]
    assert last["exit_code"] == 130
    runs = json.loads(arsl(cli_env, tmp_path, "upload", "status", "--json").stdout)["runs"]
    assert (runs[0]["status"], runs[0]["error"]) == ("cancelled", "interrupted")
    assert runs[0]["objects_confirmed"] < runs[0]["objects_total"]

    rerun = arsl(cli_env, tmp_path, "upload", str(dataset), "--mode", "files", "--json", "--yes")
    assert rerun.returncode == 0, rerun.stderr
    assert json_lines(rerun.stdout)[-1]["objects_skipped"] >= runs[0]["objects_confirmed"]
    assert_store_matches(store_of(settings), settings, manifest_of(dataset), "files")


def test_upload_shows_progress_and_status_lists_the_run(
    tiny_dataset: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    result = arsl(cli_env, tmp_path, "upload", str(tiny_dataset), "--yes")
    assert result.returncode == 0, result.stderr
    manifest = manifest_of(tiny_dataset)
    assert "done" in result.stdout and manifest.id[:12] in result.stdout
    assert "100%" in result.stdout
    settings = settings_for(tmp_path)
    assert_store_matches(store_of(settings), settings, manifest, "shards")

    status = arsl(cli_env, tmp_path, "upload", "status")
    assert status.returncode == 0 and "done" in status.stdout and "shards" in status.stdout
    runs = json.loads(arsl(cli_env, tmp_path, "upload", "status", "--json").stdout)["runs"]
    assert len(runs) == 1 and runs[0]["manifest_id"] == manifest.id and runs[0]["mode"] == "shards"


def test_validation_problems_refuse_with_exit_1_and_upload_nothing(
    tiny_dataset: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    (tiny_dataset / "bb" / "cut.jpg").write_bytes(jpeg_bytes(5)[:200])
    (tiny_dataset / "ain" / "notes.txt").write_text("hello")
    result = arsl(cli_env, tmp_path, "upload", str(tiny_dataset), "--yes")
    assert result.returncode == 1
    assert "PROBLEM  bb/cut.jpg: corrupt" in result.stderr and "ain/notes.txt: not_an_image" in result.stderr
    assert "--allow-problems" in result.stderr
    settings = settings_for(tmp_path)
    assert list(store_of(settings).list("")) == []

    refused = json_lines(arsl(cli_env, tmp_path, "upload", str(tiny_dataset), "--json", "--yes").stdout)[-1]
    assert refused["event"] == "refused" and refused["exit_code"] == 1
    assert {item["path"] for item in refused["problems"]} == {"bb/cut.jpg", "ain/notes.txt"}

    allowed = arsl(
        cli_env, tmp_path, "upload", str(tiny_dataset), "--mode", "files", "--allow-problems", "--yes", "--json"
    )
    assert allowed.returncode == 0, allowed.stderr
    outcome = json_lines(allowed.stdout)[-1]
    keys = {info.key for info in store_of(settings).list("")}
    prefix = dataset_prefix(settings, outcome["manifest_id"])
    assert f"{prefix}files/bb/cut.jpg" not in keys and f"{prefix}files/ain/notes.txt" not in keys
    assert len(keys) == 96 + 1


def test_usage_errors_exit_2(tmp_path: Path, tiny_dataset: Path, cli_env: dict[str, str]) -> None:
    missing = arsl(cli_env, tmp_path, "upload", str(tmp_path / "nope"), "--yes")
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = arsl(cli_env, tmp_path, "upload", str(tmp_path / "empty"), "--yes")
    assert empty.returncode == 2 and "no class folders with images" in empty.stderr
    read_only = arsl({**cli_env, "ARSL_READ_ONLY": "true"}, tmp_path, "upload", str(tiny_dataset), "--yes")
    assert read_only.returncode == 2 and "read-only" in read_only.stderr
    store_root = tmp_path / "home" / "store" / "arsl-ml"
    assert not store_root.exists() or list(LocalObjectStore(store_root).list("")) == []


def test_an_unusable_store_exits_3(tiny_dataset: Path, tmp_path: Path, cli_env: dict[str, str]) -> None:
    store_parent = tmp_path / "home" / "store"
    store_parent.mkdir(parents=True)
    (store_parent / "arsl-ml").write_text("a file where the bucket folder belongs")
    result = arsl(cli_env, tmp_path, "upload", str(tiny_dataset), "--yes", "--json")
    assert result.returncode == 3
    error = json_lines(result.stdout)[-1]
    assert error["exit_code"] == 3 and "arsl-ml" in error["error"] and "store folder" in error["error"]


@pytest.mark.parametrize("mode", ["shards", "files"])
def test_the_stored_prefix_is_a_data_set_the_trainer_reads(
    make_dataset: DatasetFactory, tmp_path: Path, cli_env: dict[str, str], mode: str
) -> None:
    """Upload to the local store (which keeps objects at their keys), then hand the trainer the prefix folder."""
    from tests.trainer.conftest import solo_context
    from trainer.data import SplitPolicy as TrainerSplitPolicy
    from trainer.data import list_dataset, load_cache

    dataset = make_dataset(per_class=6)
    uploaded = arsl(cli_env, tmp_path, "upload", str(dataset), "--mode", mode, "--yes", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    settings = settings_for(tmp_path)
    manifest = manifest_of(dataset)
    folder = store_of(settings).root / dataset_prefix(settings, manifest.id)
    assert (folder / "manifest.json").is_file()

    # A split rule unlike the manifest's: every split must come from what was stored, not be recomputed.
    other_rule = TrainerSplitPolicy(seed=99, val=0.5, test=0.25)
    listing = list_dataset(folder, other_rule, lambda _: True)
    assert listing.kind == ("shards" if mode == "shards" else "manifest")
    assert listing.dataset_id == manifest.id and not listing.skipped
    assert list(listing.classes) == list(ARSL_CLASSES)
    read = {sample.source: (listing.classes[sample.label], sample.split) for sample in listing.samples}
    assert read == {image.path: (image.cls, image.split) for image in manifest.images}
    md5_of = {image.path: image.md5 for image in manifest.images}
    assert all(
        hashlib.md5(listing.payloads[index]).hexdigest() == md5_of[sample.source]
        for index, sample in enumerate(listing.samples)
    ), "every sample's image bytes are intact"

    cache = load_cache(folder, other_rule, solo_context())
    assert not cache.skipped
    counts = manifest.counts()
    for split in ("train", "val", "test"):
        assert len(cache.splits[split]) == sum(per_class[split] for per_class in counts.values())

    if mode == "shards":  # and the trainer itself, one epoch on the stored prefix
        output = tmp_path / "run"
        trained = subprocess.run(
            [
                sys.executable,
                "-m",
                "trainer.train",
                "--data",
                str(folder),
                "--output",
                str(output),
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--cpu",
                "--log-every",
                "0",
            ],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert trained.returncode == 0, trained.stderr[-2000:]
        final = json_lines((output / "metrics.jsonl").read_text())[-1]
        assert final["type"] == "final" and final["manifest_id"] == manifest.id and final["data_kind"] == "shards"
        assert final["test_samples"] == len(cache.splits["test"]) and final["skipped_count"] == 0


def test_files_mode_on_the_huawei_backend_sends_from_sending_processes(
    make_dataset: DatasetFactory, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """`arsl upload` lets the engine open the store from the settings, so that its sending processes can too."""
    dataset = make_dataset(per_class=3)
    with S3Sink(buckets=["arsl-ml"]) as sink:
        env = {
            **cli_env,
            "ARSL_BACKEND": "huawei",
            "ARSL_HUAWEI_OBS_ENDPOINT": sink.endpoint,
            "ARSL_UPLOAD_SENDER_PROCESSES": "2",
            "HUAWEICLOUD_SDK_AK": "AKCLITEST000",
            "HUAWEICLOUD_SDK_SK": "sk-cli-test-never-real",
            "HUAWEICLOUD_SDK_PROJECT_ID": "project-under-test",
        }
        run = arsl(env, tmp_path, "upload", str(dataset), "--mode", "files", "--json", "--yes")
        assert run.returncode == 0, run.stderr
        events = json_lines(run.stdout)
        phases = [(event["phase"], event["detail"]) for event in events if event["event"] == "UploadPhaseChanged"]
        assert ("sending", "from 2 sending processes") in phases, phases
        finished = events[-1]
        assert finished["status"] == "done", finished
        manifest = manifest_of(dataset)
        prefix = dataset_prefix(settings_for(tmp_path), manifest.id)
        stored = {key: md5 for key, (_size, md5) in sink.objects("arsl-ml").items()}
        assert stored == {f"{prefix}files/{image.path}": image.md5 for image in manifest.images} | {
            prefix + "manifest.json": hashlib.md5(manifest.to_json_bytes()).hexdigest()
        }
