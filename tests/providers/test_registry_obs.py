"""The model registry through ObsObjectStore and the real `obs.ObsClient`: on moto, and on the S3 sink.

moto honours `If-None-Match: *` on PUT (412); the sink honours OBS's `x-obs-forbid-overwrite: true`
(409 ObjectAlreadyExists) and decides under one lock, and can be told to ignore both, as a server
without conditional creates does — which the adapter must refuse rather than trust.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arsl_tui.config import load_settings
from arsl_tui.domain.jobs import JobPhase, JobStatus, MetricsChunk, parse_metrics
from arsl_tui.domain.ports import PermanentStoreError
from arsl_tui.ops.gating import gate
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.huawei.obs import PROBE_NAME, ObsObjectStore
from tests.fixtures import registry_checks
from tests.fixtures.model_packages import metrics_records, write_package
from tests.fixtures.s3sink import S3Sink
from tests.providers.conftest import FAKE_CREDENTIALS

SINK_BUCKET = "arsl-sink"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def obs_store(endpoint: str, bucket: str, tmp_path: Path) -> ObsObjectStore:
    return ObsObjectStore(
        server=endpoint,
        bucket=bucket,
        credentials=FAKE_CREDENTIALS,
        checkpoint_dir=tmp_path / "cp",
        timeout_s=10.0,
        max_retry_count=0,
    )


@pytest.fixture
def on_moto(moto_endpoint: str, moto_bucket: str, tmp_path: Path) -> Callable[[], ModelRegistry]:
    return lambda: ModelRegistry(obs_store(moto_endpoint, moto_bucket, tmp_path), "models/", backend="huawei")


@pytest.fixture
def sink() -> Iterator[S3Sink]:
    with S3Sink(buckets=[SINK_BUCKET]) as server:
        yield server


def test_numbering_aliases_and_the_promotion_log_on_moto(on_moto: Callable[[], ModelRegistry], tmp_path: Path) -> None:
    registry_checks.check_numbering_aliases_and_log(on_moto, tmp_path)


def test_registering_a_job_again_returns_its_version_on_moto(
    on_moto: Callable[[], ModelRegistry], tmp_path: Path
) -> None:
    registry_checks.check_registering_a_job_again_returns_its_version(on_moto, tmp_path)


def test_corrupt_and_missing_records_name_the_key_on_moto(on_moto: Callable[[], ModelRegistry], tmp_path: Path) -> None:
    registry_checks.check_corrupt_and_missing_records_are_named(on_moto, tmp_path)


def test_concurrent_writers_get_distinct_versions_on_moto(on_moto: Callable[[], ModelRegistry], tmp_path: Path) -> None:
    registry_checks.check_concurrent_writers_get_distinct_versions(on_moto, tmp_path, writers=4)


def test_concurrent_writers_get_distinct_versions_on_the_sink(sink: S3Sink, tmp_path: Path) -> None:
    def open_registry() -> ModelRegistry:
        return ModelRegistry(obs_store(sink.endpoint, SINK_BUCKET, tmp_path), "models/", backend="huawei")

    registry_checks.check_concurrent_writers_get_distinct_versions(open_registry, tmp_path, writers=8)
    assert sink.stats()["put_refused_exists"] > 0  # the writers really collided, and the server refused


def test_conditional_create_on_moto_uses_if_none_match(moto_endpoint: str, moto_bucket: str, tmp_path: Path) -> None:
    store = obs_store(moto_endpoint, moto_bucket, tmp_path)
    assert store.put_if_absent("models/versions/v1.json", b"first", md5_hex(b"first"))
    assert not store.put_if_absent("models/versions/v1.json", b"second", md5_hex(b"second"))
    assert store.get_bytes("models/versions/v1.json") == b"first"
    assert [info.key for info in store.list("")] == ["models/versions/v1.json"]  # the probe cleaned up
    assert PROBE_NAME.startswith(".")  # and its name can never look like a version or a log entry


def test_racing_conditional_creates_on_the_sink_have_exactly_one_winner(sink: S3Sink, tmp_path: Path) -> None:
    stores = [obs_store(sink.endpoint, SINK_BUCKET, tmp_path) for _ in range(8)]
    start = threading.Barrier(len(stores))
    wins: list[bool] = []

    def race(store: ObsObjectStore, number: int) -> None:
        body = f"writer {number}".encode()
        start.wait()
        wins.append(store.put_if_absent("race/key.json", body, md5_hex(body)))

    threads = [threading.Thread(target=race, args=(store, number)) for number, store in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]
    assert sink.read_object(SINK_BUCKET, "race/key.json").startswith(b"writer ")


def test_an_endpoint_that_ignores_conditional_creates_is_refused_not_trusted(tmp_path: Path) -> None:
    with S3Sink(buckets=[SINK_BUCKET], honour_conditions=False) as careless:
        store = obs_store(careless.endpoint, SINK_BUCKET, tmp_path)
        with pytest.raises(PermanentStoreError, match=r"does not honour conditional creates") as refused:
            store.put_if_absent("models/versions/v1.json", b"x", md5_hex(b"x"))
        assert refused.value.code == "ConditionalCreateUnsupported"
        assert store.head("models/versions/v1.json") is None
        registry = ModelRegistry(store, "models/", backend="huawei")
        with pytest.raises(PermanentStoreError, match=r"does not honour conditional creates"):
            registry_checks.register(registry, tmp_path, 1)
        assert registry.list() == [] and registry.log() == []


class FinishedModelArtsJob:
    """Stands in for the ModelArts platform (not the subject here): a finished job whose output is an OBS
    prefix, its metrics read from there through the real store, as ModelArtsTrainingPlatform.metrics does."""

    backend = "huawei"

    def __init__(self, store: ObsObjectStore, bucket: str, job_id: str, name: str, prefix: str) -> None:
        self.store, self.bucket, self.job_id, self.name, self.prefix = store, bucket, job_id, name, prefix

    def status(self, job_id: str) -> JobStatus:
        assert job_id == self.job_id
        return JobStatus(
            job_id=job_id,
            name=self.name,
            phase=JobPhase.COMPLETED,
            backend="huawei",
            output=f"obs://{self.bucket}/{self.prefix}",
        )

    def metrics(self, job_id: str, since: int = 0) -> MetricsChunk:
        return parse_metrics(self.store.get_bytes(f"{self.prefix}metrics.jsonl"), since, final=True)


def test_gate_copies_a_package_from_the_jobs_obs_output_into_the_registry(
    moto_endpoint: str, moto_bucket: str, tmp_path: Path
) -> None:
    store = obs_store(moto_endpoint, moto_bucket, tmp_path)
    job_id, name, prefix = "5f0c7e3a-modelarts-job", "arsl-20260101-abcd", "output/arsl-20260101-abcd/"
    package = write_package(tmp_path / "exported", 7, job_id=name)  # ModelArts passes the job *name* to the trainer
    for path in sorted(package.rglob("*")):
        if path.is_file():
            store.put_file(f"{prefix}model/{path.relative_to(package).as_posix()}", path, md5_hex(path.read_bytes()))
    lines = "".join(json.dumps(record) + "\n" for record in metrics_records(test_acc=0.975)).encode()
    store.put_bytes(f"{prefix}metrics.jsonl", lines, md5_hex(lines))
    settings = load_settings(
        environ={},
        cwd=tmp_path,
        cli_overrides={"backend": "huawei", "home": str(tmp_path / "home"), "storage.bucket": moto_bucket},
    )
    registry = ModelRegistry(store, settings.storage.models_prefix, backend="huawei")
    platform = FinishedModelArtsJob(store, moto_bucket, job_id, name, prefix)

    outcome = gate(settings, job_id, user="ann", platform=platform, registry=registry)  # type: ignore[arg-type]

    assert outcome.evaluation.passed and outcome.version is not None
    assert (outcome.version.version, outcome.aliases) == ("v1", ("champion", "challenger"))
    lineage = outcome.version.lineage
    assert (lineage.job_id, lineage.backend, lineage.manifest_id) == (job_id, "huawei", "m-e2e")
    assert lineage.source == f"obs://{moto_bucket}/{prefix}model/"
    fetched = registry.fetch_package("v1", tmp_path / "fetched")
    assert (fetched / "model.safetensors").read_bytes() == (package / "model.safetensors").read_bytes()
    assert [key.key for key in store.list(f"models/gate-records/{job_id}/")] == [outcome.record_key]
