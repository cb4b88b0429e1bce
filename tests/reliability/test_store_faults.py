"""The object store misbehaves; upload, the model registry and the trainer's reads end exact or fail loudly.

Faults come from two places, both real: `tests/fixtures/s3sink.py`, an S3-protocol server on 127.0.0.1
that the real `obs.ObsClient` talks to (latency, connection resets before and after storing, 500, 503,
429 with Retry-After, objects stored truncated, GET bodies cut short or sent short), and a real full
disk: a tiny tmpfs in a private mount namespace (`unshare -rm`) under the local store.

"Exact" is checked against the truth, never the client's word: the sink's own MD5 of the bytes it holds,
or the bytes in the store folder, compared with the source files. "Loudly" means the operation says it
failed, names the object and the cause, marks nothing done that is not stored whole, and a re-run
finishes exact. Seeded loops scale with `ARSL_RELIABILITY_RUNS`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from safetensors.numpy import save_file

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.domain.manifest import Manifest, SplitPolicy
from arsl_tui.domain.ports import StoreError
from arsl_tui.domain.registry import RegistryError
from arsl_tui.ops import registry as registry_module
from arsl_tui.ops.dataset import validate_dataset
from arsl_tui.ops.registry import ModelRegistry, RegistryCorrupt
from arsl_tui.ops.serving import fetch_package
from arsl_tui.ops.shards import parse_index
from arsl_tui.ops.upload import UploadRequest, dataset_prefix, list_upload_runs, run_upload
from arsl_tui.providers.huawei.obs import ObsObjectStore
from arsl_tui.providers.local.serving_control import models_dir
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.db import state_path
from tests.conftest import DatasetFactory, jpeg_bytes
from tests.fixtures.model_packages import gate_json, metrics_json, write_package
from tests.fixtures.s3sink import Faults, S3Sink
from tests.fixtures.upload_checks import assert_store_matches
from tests.providers.conftest import FAKE_CREDENTIALS
from tests.reliability.conftest import reliability_runs
from tests.reliability.store_fault_support import (
    PAGE,
    in_namespace,
    journal_rows,
    md5_hex,
    mixed_faults,
    namespace_unavailable,
    reserved_problems,
    store_files,
)

BUCKET = "arsl-store-faults"
CLIENT_TIMEOUT_S = 0.5
MULTIPART_THRESHOLD = 512 * 1024
Mode = Literal["files", "shards"]


@pytest.fixture
def sink() -> Iterator[S3Sink]:
    with S3Sink(buckets=[BUCKET]) as server:
        yield server


def injected(sink: S3Sink) -> dict[str, int]:
    return {
        name.removeprefix("fault_"): count for name, count in sorted(sink.stats().items()) if name.startswith("fault_")
    }


def settings_for(home: Path, **upload: Any) -> Settings:
    values = {
        "home": str(home),
        "upload.concurrency": 8,
        "upload.shard_size_mb": 1,
        "upload.backoff_base_s": 0.01,
        "upload.backoff_max_s": 0.1,
        **{f"upload.{name}": value for name, value in upload.items()},
    }
    return load_settings(environ={}, cwd=home.parent, cli_overrides=values)


def obs_store(sink: S3Sink, bucket: str, checkpoints: Path) -> ObsObjectStore:
    # No SDK retries (the callers' own policies are under test); the sink has no 5 MiB minimum part
    # size, so 1 MiB shards go multipart in 256 KiB parts and resume from checkpoints under faults.
    return ObsObjectStore(
        server=sink.endpoint,
        bucket=bucket,
        credentials=FAKE_CREDENTIALS,
        checkpoint_dir=checkpoints,
        timeout_s=CLIENT_TIMEOUT_S,
        max_retry_count=0,
        multipart_threshold=MULTIPART_THRESHOLD,
        part_size=256 * 1024,
    )


def manifest_of(settings: Settings, dataset: Path) -> Manifest:
    split = settings.dataset
    return validate_dataset(
        dataset, SplitPolicy(seed=split.split_seed, val=split.val_fraction, test=split.test_fraction)
    ).manifest


def expected_in_bucket(sink: S3Sink, bucket: str, settings: Settings, manifest: Manifest, mode: Mode) -> dict[str, str]:
    """key → MD5 a finished upload leaves: from the manifest, and for shards the `shards.json` stored."""
    prefix = dataset_prefix(settings, manifest.id)
    expected = {prefix + "manifest.json": md5_hex(manifest.to_json_bytes())}
    if mode == "files":
        expected.update({f"{prefix}files/{image.path}": image.md5 for image in manifest.images})
        return expected
    index = sink.read_object(bucket, prefix + "shards.json")
    manifest_id, _size, shards = parse_index(index)
    assert manifest_id == manifest.id
    expected[prefix + "shards.json"] = md5_hex(index)
    expected.update({prefix + shard.name: shard.md5 for shard in shards})
    return expected


def assert_failed_loudly(error: str, settings: Settings, sink: S3Sink, bucket: str, prefix: str) -> None:
    """A failed run names an object of this data set and the cause, stored no manifest, and its journal
    marks confirmed only what the bucket holds byte for byte."""
    named = re.search(r"(?:gave up on|e\.g\.) (\S+)", error)
    assert named is not None and named.group(1).startswith(prefix), error
    assert f"bucket '{bucket}'" in error or "e.g." in error, error
    causes = r"HTTP \d{3}|error code \w+|ETag|MD5|missing|timed out|Reset|Disconnected|Broken|did not reach the server"
    assert re.search(causes, error), error
    held = sink.objects(bucket)
    assert prefix + "manifest.json" not in held, "a failed upload must never look like a finished data set"
    rows = journal_rows(state_path(settings.home_dir))
    confirmed = {key: (size, md5) for key, (md5, size, state) in rows.items() if state == "confirmed"}
    assert all(held.get(key) == value for key, value in confirmed.items()), "confirmed but not stored whole"
    assert list_upload_runs(settings)[0].status == "failed"


@pytest.mark.parametrize("mode", ["files", "shards"])
def test_upload_through_a_misbehaving_store_ends_exact_or_fails_loudly_and_a_rerun_finishes(
    mode: Mode, sink: S3Sink, make_dataset: DatasetFactory, tmp_path: Path
) -> None:
    dataset = make_dataset(per_class=3 if mode == "files" else 12)
    runs = reliability_runs(2)
    failed_first = reruns = 0
    for run in range(runs):
        seed = 20261100 + run
        bucket = f"{BUCKET}-{mode}-{run}"
        sink.create_bucket(bucket)
        home = tmp_path / f"home-{run}"
        # Two attempts per object: the faults then beat the retries now and then, so the loud failure and
        # the re-run that follows it are exercised as well as the run that rides the faults out.
        settings = settings_for(home, max_attempts=2)
        manifest = manifest_of(settings, dataset)
        prefix = dataset_prefix(settings, manifest.id)
        store = obs_store(sink, bucket, home / "obs-checkpoints")
        sink.set_faults(mixed_faults(seed, stall=0.005))
        outcome = run_upload(settings, UploadRequest(dataset, mode=mode), store=store)
        failed_first += outcome.status == "failed"
        for rerun in range(1, 6):
            if outcome.status != "failed":
                break
            assert_failed_loudly(outcome.error, settings, sink, bucket, prefix)
            reruns += 1
            settings = settings_for(home)  # the user runs it again, with the default patience
            sink.set_faults(mixed_faults(seed + 7919 * rerun, stall=0.005))
            outcome = run_upload(settings, UploadRequest(dataset, mode=mode), store=store)
        sink.set_faults(Faults())
        assert outcome.status == "done", outcome.error

        held = {key: md5 for key, (_size, md5) in sink.objects(bucket).items()}
        assert held == expected_in_bucket(sink, bucket, settings, manifest, mode)
        assert_store_matches(store, settings, manifest, mode)  # and read back through the adapter
        assert sorted((home / "obs-checkpoints").glob("*")) == []
        store.close()
    # The figures for the README's reliability table (`pytest -s`).
    print(
        f"\nupload {mode}: {runs} runs, {failed_first} failed loudly first, {reruns} re-runs in all, every run "
        f"finished exact; faults injected: {injected(sink)}"
    )


# --- the model registry ----------------------------------------------------------------------------------


def register(registry: ModelRegistry, package: Path, job: str) -> str:
    return registry.register(
        package,
        job_id=job,
        manifest_id="m-faults",
        source=str(package),
        gate=gate_json(),
        metrics=metrics_json(),
        user="ann",
    ).version


def assert_registry_consistent(sink: S3Sink, bucket: str, clean: ModelRegistry) -> dict[str, str]:
    """Read with no faults: the log replays, every listed version has every file stored whole with the
    recorded digest, and every registered version and every alias is such a version. Returns job → version."""
    truth = sink.objects(bucket)
    clean.log()  # replays from entry 1: no gap, every move starts where its alias was
    state = clean.state()
    listed = {record.version: record for record in clean.list()}
    for record in listed.values():
        for item in record.package:
            assert truth.get(item.key) == (item.size, item.md5), f"{record.version}: {item.key} is not stored whole"
    assert state.registered <= set(listed), "the log registers a version without a readable record"
    assert set(state.aliases.values()) <= state.registered, "an alias points at a version the log never registered"
    return {record.lineage.job_id: version for version, record in listed.items()}


def test_registry_under_store_faults_never_half_registers_and_a_rerun_finishes(
    sink: S3Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two tries per store call (instead of six): registrations then fail part-way now and then, at random
    # points, and each failure is a chance to catch a half-registered version.
    patience = registry_module.STORE_ATTEMPTS
    monkeypatch.setattr(registry_module, "STORE_ATTEMPTS", 2)
    runs = reliability_runs(2)
    failures = unused = read_failures = 0
    for run in range(runs):
        bucket = f"{BUCKET}-registry-{run}"
        sink.create_bucket(bucket)
        registry = ModelRegistry(obs_store(sink, bucket, tmp_path / "cp"), "models/", backend="huawei")
        clean = ModelRegistry(obs_store(sink, bucket, tmp_path / "cp-clean"), "models/", backend="huawei")
        packages = {
            f"job-{n}": write_package(tmp_path / f"run-{run}" / f"package-{n}", 100 * run + n, job_id=f"job-{n}")
            for n in range(3)
        }
        for number, (job, package) in enumerate(packages.items()):
            for attempt in range(12):
                sink.set_faults(mixed_faults(20261200 + 1000 * run + 50 * number + attempt, reads=True))
                try:
                    register(registry, package, job)
                    break
                except (StoreError, RegistryError) as error:
                    failures += 1
                    assert bucket in str(error), f"the error does not name the bucket: {error}"
                finally:
                    sink.set_faults(Faults())
                assert_registry_consistent(sink, bucket, clean)
            else:
                pytest.fail(f"{job} was not registered after 12 runs")
        versions = assert_registry_consistent(sink, bucket, clean)
        assert sorted(versions) == sorted(packages), "every job registered exactly once"
        numbers = [int(versions[job][1:]) for job in packages]
        assert numbers == sorted(set(numbers)), "distinct numbers, in the order the jobs were registered"
        # A claim the store damaged and that could not be removed (its delete failed too) keeps its number.
        for gap in sorted(set(range(1, numbers[-1] + 1)) - set(numbers)):
            with pytest.raises(RegistryCorrupt, match=rf"models/versions/v{gap}.json: not valid JSON"):
                clean.get(f"v{gap}")
            unused += 1
        assert clean.aliases() == {"champion": versions["job-0"], "challenger": versions["job-2"]}
        sink.set_faults(mixed_faults(20261299 + run, reads=True))
        monkeypatch.setattr(registry_module, "STORE_ATTEMPTS", patience)
        home = tmp_path / f"serving-{run}"
        for job, version in versions.items():  # loaded back through the faults, with the default patience
            for _attempt in range(4):
                try:
                    fetched = fetch_package(registry, home, version)  # what the gateway loads a version with
                    break
                except StoreError as error:  # loud, and nothing half-fetched where versions are loaded from
                    read_failures += 1
                    assert bucket in str(error), error
                    assert not (models_dir(home) / version).exists()
            else:
                pytest.fail(f"{version} could not be read back in 4 tries")
            for source in sorted(path for path in packages[job].rglob("*") if path.is_file()):
                relative = source.relative_to(packages[job])
                assert (fetched / relative).read_bytes() == source.read_bytes(), f"{version}: {relative}"
        sink.set_faults(Faults())
        monkeypatch.setattr(registry_module, "STORE_ATTEMPTS", 2)
    print(
        f"\nregistry: {runs} runs × 3 jobs, {failures} registrations failed loudly part-way and were re-run, "
        f"{unused} version number(s) left unused by abandoned claims, {read_failures} package reads failed "
        f"loudly and were retried; faults injected: {injected(sink)}"
    )


@pytest.mark.parametrize("rot", ["bit rot, the store still claims the old MD5", "overwritten behind the registry"])
def test_a_package_whose_stored_bytes_are_damaged_is_refused_and_never_loaded(
    rot: str, sink: S3Sink, tmp_path: Path
) -> None:
    registry = ModelRegistry(obs_store(sink, BUCKET, tmp_path / "cp"), "models/", backend="huawei")
    version = register(registry, write_package(tmp_path / "package", 7, job_id="job-7"), "job-7")
    weights = next(item for item in registry.get(version).package if item.path == "model.safetensors")
    damaged = bytearray(sink.read_object(BUCKET, weights.key))
    damaged[len(damaged) // 2] ^= 0x40
    sink.corrupt_object(BUCKET, weights.key, bytes(damaged), keep_etag=rot.startswith("bit rot"))

    home = tmp_path / "home"
    with pytest.raises((StoreError, RegistryCorrupt)) as refused:
        fetch_package(registry, home, version)  # what the gateway loads a version with
    message = str(refused.value)
    assert weights.key in message and "MD5" in message, message
    assert not (models_dir(home) / version).exists(), "a damaged package must never be where it is loaded from"
    assert not list(models_dir(home).glob(f".{version}*")), "no staging copy is left behind"
    with pytest.raises((StoreError, RegistryCorrupt)):
        registry.fetch_package(version, tmp_path / "direct")
    assert not (tmp_path / "direct" / "model.safetensors").exists()


def test_a_damaged_file_in_the_local_store_is_refused_by_its_digest(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    registry = ModelRegistry(store, "models/")
    version = register(registry, write_package(tmp_path / "package", 8, job_id="job-8"), "job-8")
    weights = next(item for item in registry.get(version).package if item.path == "model.safetensors")
    path = store.root / weights.key
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime: only the bytes
    with pytest.raises(
        RegistryCorrupt,
        match=rf"{re.escape(weights.key)}: MD5 \w+ / \d+ bytes, but {version} "
        rf"records {weights.md5}",
    ):
        registry.fetch_package(version, tmp_path / "fetched")
    assert not (tmp_path / "fetched" / "model.safetensors").exists()


def test_an_unreadable_version_record_the_log_never_registered_is_an_abandoned_claim(tmp_path: Path) -> None:
    """A writer that died between a damaged conditional create and its repair leaves such a record:
    readers leave it out and its number stays used; a damaged record of a registered version stays loud."""
    registry = ModelRegistry(LocalObjectStore(tmp_path / "store"), "models/")
    assert register(registry, write_package(tmp_path / "p1", 1, job_id="job-1"), "job-1") == "v1"
    torn = b'{"format": "arsl-model-version/1", "version": "v2", "crea'
    registry.store.put_bytes("models/versions/v2.json", torn, md5_hex(torn))
    assert [record.version for record in registry.list()] == ["v1"]
    with pytest.raises(RegistryCorrupt, match=r"models/versions/v2.json: not valid JSON"):
        registry.get("v2")
    assert register(registry, write_package(tmp_path / "p3", 3, job_id="job-3"), "job-3") == "v3"
    assert [record.version for record in registry.list()] == ["v1", "v3"]
    registry.store.put_bytes("models/versions/v1.json", torn, md5_hex(torn))  # v1 is registered in the log
    with pytest.raises(RegistryCorrupt, match=r"models/versions/v1.json: not valid JSON"):
        registry.list()


# --- the trainer reading a stored data set -----------------------------------------------------------------


@pytest.fixture(scope="module")
def stored_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A data set uploaded to the local store in both modes: mode → the prefix folder the trainer reads."""
    base = tmp_path_factory.mktemp("stored")
    dataset = base / "dataset"
    for number, name in enumerate(ARSL_CLASSES):
        (dataset / name).mkdir(parents=True)
        for index in range(12):
            (dataset / name / f"{name}_{index:04d}.jpg").write_bytes(jpeg_bytes(number * 1_009 + index))
    settings = settings_for(base / "home")
    prefixes: dict[str, Path] = {}
    for mode in ("shards", "files"):
        # One store each: the two modes share the data set's prefix, and the trainer prefers shards.json.
        store = LocalObjectStore(base / f"store-{mode}")
        outcome = run_upload(settings, UploadRequest(dataset, mode=mode), store=store)  # type: ignore[arg-type]
        assert outcome.status == "done", outcome.error
        prefixes[mode] = store.root / dataset_prefix(settings, outcome.manifest_id)
    return prefixes


def copy_of(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target


def shard_paths(folder: Path) -> list[Path]:
    return [folder / entry["name"] for entry in json.loads((folder / "shards.json").read_bytes())["shards"]]


def load(folder: Path) -> Any:
    """`trainer.data.load_cache` on one CPU rank (torch is imported by the trainer cases only)."""
    from tests.trainer.conftest import solo_context
    from trainer.data import SplitPolicy, load_cache

    return load_cache(folder, SplitPolicy(), solo_context())


def test_the_trainer_refuses_a_stored_shard_cut_short_or_missing_naming_it(
    stored_datasets: dict[str, Path], tmp_path: Path
) -> None:
    from trainer.data import DataError

    intact = load(stored_datasets["shards"])
    assert not intact.skipped and sum(len(split) for split in intact.splits.values()) == 384
    folder = copy_of(stored_datasets["shards"], tmp_path / "cut")
    victim = shard_paths(folder)[-1]
    assert len(shard_paths(folder)) >= 2
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        DataError,
        match=rf"^{re.escape(str(victim))}: {len(data) // 2} bytes, shards.json lists "
        rf"{len(data)}; .*nothing was trained",
    ):
        load(folder)
    victim.unlink()
    with pytest.raises(DataError, match=rf"^{re.escape(str(victim))}: file not found"):
        load(folder)


def test_the_trainer_refuses_a_stored_shard_with_a_flipped_bit_naming_it(
    stored_datasets: dict[str, Path], tmp_path: Path
) -> None:
    """One bit flipped anywhere in a gzip shard, the size unchanged: the tar stream may still decode
    (the gzip CRC is not checked on the way), so only the shard's MD5 can catch it; it must."""
    from trainer.data import DataError

    runs = reliability_runs(4)
    detected: Counter[str] = Counter()
    folder = copy_of(stored_datasets["shards"], tmp_path / "flipped")
    for run in range(runs):
        draw = random.Random(20261300 + run)
        victim = draw.choice(shard_paths(folder))
        original = victim.read_bytes()
        damaged = bytearray(original)
        damaged[draw.randrange(len(damaged))] ^= 1 << draw.randrange(8)
        victim.write_bytes(bytes(damaged))
        try:
            with pytest.raises(DataError, match=rf"^{re.escape(str(victim))}: .*nothing was trained") as refused:
                load(folder)
        finally:
            victim.write_bytes(original)
        detected["by its MD5" if "MD5" in str(refused.value) else "unreadable"] += 1
    print(f"\ntrainer: {runs} single-bit flips in stored shards, all refused: {dict(detected)}")


def test_the_trainer_refuses_a_stored_image_cut_short_in_files_mode(
    stored_datasets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.train import main

    folder = copy_of(stored_datasets["files"], tmp_path / "files")
    assert sum(len(split) for split in load(folder).splits.values()) == 384
    victim = sorted((folder / "files").rglob("*.jpg"))[5]
    victim.write_bytes(victim.read_bytes()[:300])
    relative = victim.relative_to(folder / "files").as_posix()
    output = tmp_path / "run"
    # The trainer's own entry point: exit 2 and one line naming the file, and no model written.
    assert main(["--data", str(folder), "--output", str(output), "--cpu", "--epochs", "1"]) == 2
    error = capsys.readouterr().err
    assert re.search(
        rf"1 image\(s\) do not match manifest.json: {re.escape(relative)}: content differs from the "
        rf"manifest \(300 bytes, .*nothing was trained",
        error,
    ), error
    assert not (output / "model").exists() and not (output / "metrics.jsonl").exists()


# --- a full disk under the local store ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def namespace() -> None:
    reason = namespace_unavailable()
    if reason is not None:
        pytest.skip(f"no private tmpfs for the full-disk cases: {reason}")


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("mode", "full"), [("shards", "store"), ("files", "store"), ("shards", "home"), ("files", "home")]
)
def test_arsl_upload_onto_a_full_disk_fails_loudly_and_a_rerun_after_freeing_space_is_exact(
    mode: Mode, full: str, namespace: None, make_dataset: DatasetFactory, tmp_path: Path
) -> None:
    """`full`: the disk under the store only, or under all of `$ARSL_HOME` (the journal, the shards being
    packed and the store fill up together)."""
    dataset = make_dataset(per_class=20)  # 640 images, ~2.7 MB: three 1 MB shards, or 641 objects
    manifest = manifest_of(settings_for(tmp_path / "probe"), dataset)
    total = sum(image.bytes for image in manifest.images)
    runs = reliability_runs(1)
    filled: Counter[str] = Counter()
    for run in range(runs):
        # The disk fills somewhere between a fifth and four fifths of the way, a different place each run.
        free = int(total * random.Random(20261400 + run).uniform(0.2, 0.8))
        home, out = tmp_path / f"home-{run}", tmp_path / f"out-{run}"
        done = in_namespace(
            [
                "upload",
                "--dataset",
                str(dataset),
                "--mode",
                mode,
                "--full",
                full,
                "--home",
                str(home),
                "--out",
                str(out),
                "--disk-bytes",
                str(8 * total),
                "--free-bytes",
                str(free),
                "--env",
                "ARSL_UPLOAD_SHARD_SIZE_MB=1",
                "--env",
                "ARSL_UPLOAD_CONCURRENCY=8",
            ],
            timeout=240,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads((out / "report.json").read_text())
        first, second = report["first"], report["second"]

        # Loud: exit 3, one line saying the disk is full and naming the path (and the object, when the
        # store is what filled up), no traceback.
        assert first["rc"] == 3, first
        message = one_line(first["stderr"])
        root = re.escape(f"{home}/store/arsl-ml")
        store_full = (
            rf"error: upload failed: (\S+): cannot write '\1' in local:{root}: the disk holding {root} is "
            r"full \(No space left on device\)"
        )
        home_full = (
            rf"error: upload (?:failed: cannot write under {re.escape(str(home))}: the disk is full|journal: "
            rf"{re.escape(str(home))}/arsl.db: cannot write the upload journal \(database or disk is full\))"
        )
        assert re.search(store_full if full == "store" else f"{store_full}|{home_full}", message), message
        where = "store" if re.search(store_full, message) else "journal" if "journal" in message else "staging"
        assert "Traceback" not in first["stderr"]
        # Nothing partial is visible: every object file is whole (its planned size and MD5), no temporary
        # or sidecar describes a partial object, the manifest is absent, and the journal confirms only
        # objects stored whole.
        failed_store = out / "after-first" / "store"
        rows = journal_rows(out / "after-first" / "arsl.db") if (out / "after-first" / "arsl.db").exists() else {}
        held = store_files(failed_store)
        prefix = dataset_prefix(settings_for(home), manifest.id)
        assert all(key in rows and rows[key][:2] == (md5, size) for key, (size, md5) in held.items()), (
            "an object is visible that is not one planned, whole"
        )
        assert prefix + "manifest.json" not in held
        assert reserved_problems(failed_store) == []
        assert all(held.get(key) == (size, md5) for key, (md5, size, state) in rows.items() if state == "confirmed")

        # The re-run with the space back finishes, and the store is exactly the data set.
        assert second["rc"] == 0, second
        final = out / "after-second" / "store"
        assert reserved_problems(final) == []
        assert_store_matches(LocalObjectStore(final), settings_for(home), manifest, mode)
        filled[where] += 1
        filled["objects confirmed before the disk was full"] += sum(
            1 for _md5, _size, state in rows.values() if state == "confirmed"
        )
    print(f"\nfull disk under the {full}, {mode}: {runs} runs, {dict(filled)}")


def test_registering_into_a_full_local_store_fails_loudly_and_a_rerun_after_freeing_space_finishes(
    namespace: None, tmp_path: Path
) -> None:
    """The disk fills at every page of a registration in turn: in the package's files, at the version
    record, at each promotion-log entry, at the cache. Each time: a clear NoSpace error or a finished
    registration, never a half-registered version; and with the space back, a finished one."""
    package = write_package(tmp_path / "package", 5, job_id="job-full")
    weights = package / "model.safetensors"  # a bigger weights file: the disk fills inside it too
    save_file({"head.weight": np.random.default_rng(5).standard_normal((64, 256)).astype(np.float32)}, str(weights))
    config = json.loads((package / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (package / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    sources = {path.relative_to(package).as_posix(): path.read_bytes() for path in package.rglob("*") if path.is_file()}
    pages = sum(-(-len(data) // PAGE) for data in sources.values())
    # From no room at all to room for everything (the files, their sidecars, the records): one trial a page
    # apart in CI, every page with ARSL_RELIABILITY_RUNS.
    step = max(1, (2 * pages + 16) // reliability_runs(12))
    free_pages = list(range(0, 2 * pages + 16, step))
    out = tmp_path / "out"
    done = in_namespace(
        [
            "register",
            "--package",
            str(package),
            "--home",
            str(tmp_path / "home"),
            "--out",
            str(out),
            "--disk-bytes",
            str(64 * PAGE * pages),
            "--free-pages",
            *map(str, free_pages),
        ],
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    trials = json.loads((out / "report.json").read_text())["trials"]
    outcomes: Counter[str] = Counter()
    for number, trial in enumerate(trials):
        first, second = trial["first"], trial["second"]
        if "error" in first:
            outcomes["failed loudly"] += 1
            assert (first["kind"], first["code"]) == ("PermanentStoreError", "NoSpace"), first
            assert re.search(
                r"cannot (?:write|create) 'models/\S+' in local:\S+: the disk holding \S+ is full "
                r"\(No space left on device\)",
                first["error"],
            ), first
        else:
            outcomes["registered"] += 1
            assert first["version"] == "v1"
        assert second == {"version": "v1"}, second
        for stage in ("after-first", "after-second"):
            root = out / f"trial-{number}" / stage
            assert reserved_problems(root) == [], (trial, stage)
            registry = ModelRegistry(LocalObjectStore(root), "models/")
            state = registry.state()  # the log replays
            listed = {record.version: record for record in registry.list()}
            held = store_files(root)
            for record in listed.values():  # a listed version has every file, whole
                for item in record.package:
                    assert held.get(item.key) == (item.size, item.md5), (trial, stage, item.key)
            assert state.registered <= set(listed) and set(state.aliases.values()) <= state.registered
            packaged = {
                key.split("/", 3)[3]: value for key, value in held.items() if key.startswith("models/packages/")
            }
            assert all(value == (len(sources[path]), md5_hex(sources[path])) for path, value in packaged.items()), (
                "a package file is visible that is not whole"
            )
        fetched = ModelRegistry(LocalObjectStore(out / f"trial-{number}" / "after-second"), "models/").fetch_package(
            "v1", tmp_path / f"fetched-{number}"
        )
        assert {path: (fetched / path).read_bytes() for path in sources} == sources
    assert outcomes["failed loudly"] >= 1 and outcomes["registered"] >= 1, outcomes
    print(f"\nfull-disk register: {len(trials)} trials (free space 0..{free_pages[-1]} pages), {dict(outcomes)}")
