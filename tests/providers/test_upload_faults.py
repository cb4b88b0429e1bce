"""The upload engine through the real ObsClient against a loopback S3 sink that misbehaves.

The sink answers 503, resets connections mid-request, stores objects and then resets instead of
answering, and holds requests past the client's timeout. The upload must still finish, and the
bucket must then hold exactly the data set: checked against the sink's own record of the bytes it
stored (its MD5s, not the client's word), and by reading everything back through the adapter.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.events import Event, UploadRetried
from arsl_tui.domain.manifest import SplitPolicy, parse_manifest
from arsl_tui.ops.dataset import validate_dataset
from arsl_tui.ops.shards import parse_index
from arsl_tui.ops.upload import UploadOutcome, UploadRequest, dataset_prefix, run_upload
from arsl_tui.providers.huawei.obs import ObsObjectStore
from tests.conftest import DatasetFactory
from tests.fixtures.s3sink import Faults, S3Sink
from tests.fixtures.upload_checks import assert_store_matches
from tests.providers.conftest import FAKE_CREDENTIALS
from tests.unit.test_upload_senders import sender_children

BUCKET = "arsl-faults"
FAULTS = Faults(fail_503=0.10, drop=0.05, drop_after_store=0.03, stall=0.02, stall_s=1.0, seed=20261126)
CLIENT_TIMEOUT_S = 0.4
MULTIPART_THRESHOLD = 512 * 1024


class EventLog:
    """Collects events from the engine's worker threads."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def kinds(self) -> Counter[str]:
        return Counter(event.kind for event in self.events)


@pytest.fixture
def sink() -> Iterator[S3Sink]:
    with S3Sink(buckets=[BUCKET]) as server:
        yield server


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values = {
        "home": str(tmp_path / "home"),
        "storage.bucket": BUCKET,
        "upload.concurrency": 8,
        "upload.shard_size_mb": 1,
        "upload.backoff_base_s": 0.01,
        "upload.backoff_max_s": 0.1,
        **overrides,
    }
    return load_settings(environ={}, cwd=tmp_path, cli_overrides=values)


def make_store(sink: S3Sink, settings: Settings, bucket: str = BUCKET) -> ObsObjectStore:
    # The sink, unlike S3, has no 5 MiB minimum part size, so shards of 1 MiB of tar (~0.9 MB gzipped: these
    # noise JPEGs barely compress) go multipart in 256 KiB parts and the checkpoint/resume path meets the
    # faults too. No SDK retries: the engine's own.
    return ObsObjectStore(
        server=sink.endpoint,
        bucket=bucket,
        credentials=FAKE_CREDENTIALS,
        checkpoint_dir=settings.home_dir / "obs-checkpoints",
        timeout_s=CLIENT_TIMEOUT_S,
        max_retry_count=0,
        multipart_threshold=MULTIPART_THRESHOLD,
        part_size=256 * 1024,
    )


def expected_objects(sink: S3Sink, settings: Settings, dataset: Path, mode: str) -> dict[str, str]:
    """key → MD5 the bucket must hold, from the manifest (and, for shards, the shards.json stored)."""
    manifest = validate_dataset(
        dataset,
        SplitPolicy(
            seed=settings.dataset.split_seed, val=settings.dataset.val_fraction, test=settings.dataset.test_fraction
        ),
    ).manifest
    prefix = dataset_prefix(settings, manifest.id)
    manifest_bytes = manifest.to_json_bytes()
    expected = {prefix + "manifest.json": hashlib.md5(manifest_bytes).hexdigest()}
    if mode == "files":
        expected.update({f"{prefix}files/{image.path}": image.md5 for image in manifest.images})
        return expected
    index_bytes = sink.read_object(BUCKET, prefix + "shards.json")
    manifest_id, _shard_size, shards = parse_index(index_bytes)
    assert manifest_id == manifest.id
    expected[prefix + "shards.json"] = hashlib.md5(index_bytes).hexdigest()
    assert any(shard.bytes > MULTIPART_THRESHOLD for shard in shards), "no shard took the multipart path"
    # shards.json names the shards relative to its own folder, the data set prefix.
    expected.update({prefix + shard.name: shard.md5 for shard in shards})
    return expected


@pytest.mark.parametrize("mode", ["files", "shards"])
def test_upload_completes_exactly_through_drops_stalls_and_503s(
    mode: Literal["files", "shards"], sink: S3Sink, make_dataset: DatasetFactory, tmp_path: Path
) -> None:
    dataset = make_dataset(per_class=12)
    settings = make_settings(tmp_path)
    store = make_store(sink, settings)
    log = EventLog()
    sink.set_faults(FAULTS)

    outcome: UploadOutcome = run_upload(settings, UploadRequest(dataset, mode=mode), store=store, on_event=log)

    injected = {name: count for name, count in sink.stats().items() if name.startswith("fault_")}
    sink.set_faults(Faults())
    assert outcome.status == "done", outcome.error
    retries = [event for event in log.events if isinstance(event, UploadRetried)]
    assert retries and len(retries) <= sum(injected.values())
    if mode == "files":  # ~450 requests: every kind of fault is all but certain to have struck
        assert set(injected) == {"fault_fail_503", "fault_drop", "fault_drop_after_store", "fault_stall"}

    # What the sink really stored (its MD5s of the bytes received) is exactly the data set.
    expected = expected_objects(sink, settings, dataset, mode)
    stored = {key: md5 for key, (_size, md5) in sink.objects(BUCKET).items()}
    assert stored == expected
    assert (outcome.objects_sent, outcome.objects_skipped) == (len(expected), 0)  # the manifest included
    # And read back through the adapter: list + get of every object against the manifest.
    prefix = dataset_prefix(settings, outcome.manifest_id)
    manifest = parse_manifest(store.get_bytes(prefix + "manifest.json"))
    assert manifest.id == outcome.manifest_id
    assert_store_matches(store, settings, manifest, mode)
    leftovers = sorted((settings.home_dir / "obs-checkpoints").glob("*"))
    assert leftovers == [], "every multipart checkpoint is removed once its object is confirmed"


@pytest.mark.parametrize(
    ("case", "code", "status"), [("denied", "AccessDenied", 403), ("missing bucket", "NoSuchBucket", 404)]
)
def test_a_permanent_error_stops_the_run_at_once_with_a_clear_message(
    case: str, code: str, status: int, sink: S3Sink, make_dataset: DatasetFactory, tmp_path: Path
) -> None:
    dataset = make_dataset(per_class=2)
    settings = make_settings(tmp_path)
    bucket = BUCKET
    if case == "denied":
        sink.set_faults(Faults(deny=True))
    else:
        bucket = "arsl-no-such-bucket"
    log = EventLog()

    outcome = run_upload(
        settings, UploadRequest(dataset, mode="files"), store=make_store(sink, settings, bucket), on_event=log
    )

    assert outcome.status == "failed"
    assert code in outcome.error and f"HTTP {status}" in outcome.error and f"'{bucket}'" in outcome.error
    assert "request id" in outcome.error
    assert FAKE_CREDENTIALS.secret_key not in outcome.error
    assert log.kinds()["UploadRetried"] == 0, "a permanent error is never retried"
    # At once: no more requests than the workers had in flight when the first answer came back.
    refused = sink.stats()["fault_deny"] if case == "denied" else sink.stats()["put_no_such_bucket"]
    assert 1 <= refused <= settings.upload.concurrency
    assert sink.objects(BUCKET) == {}


@pytest.fixture
def sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake credentials where the sending processes find them: the SDK's environment variables."""
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", FAKE_CREDENTIALS.access_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", FAKE_CREDENTIALS.secret_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", "project-under-test")


def sending_settings(tmp_path: Path, sink: S3Sink) -> Settings:
    """The Huawei backend's own store, opened from the settings in two sending processes."""
    return make_settings(
        tmp_path,
        backend="huawei",
        **{"huawei.obs_endpoint": sink.endpoint, "huawei.timeout_s": CLIENT_TIMEOUT_S, "upload.sender_processes": 2},
    )


@pytest.mark.usefixtures("sdk_environment")
def test_sending_processes_complete_exactly_through_drops_stalls_and_503s(
    sink: S3Sink, make_dataset: DatasetFactory, tmp_path: Path
) -> None:
    dataset = make_dataset(per_class=12)
    settings = sending_settings(tmp_path, sink)
    log = EventLog()
    sink.set_faults(FAULTS)

    outcome = run_upload(settings, UploadRequest(dataset, mode="files"), on_event=log)

    injected = {name: count for name, count in sink.stats().items() if name.startswith("fault_")}
    sink.set_faults(Faults())
    assert outcome.status == "done", outcome.error
    assert set(injected) == {"fault_fail_503", "fault_drop", "fault_drop_after_store", "fault_stall"}
    # The children's retries reach the engine's listeners as they happen.
    retries = [event for event in log.events if isinstance(event, UploadRetried)]
    assert retries and len(retries) <= sum(injected.values())
    expected = expected_objects(sink, settings, dataset, "files")
    assert {key: md5 for key, (_size, md5) in sink.objects(BUCKET).items()} == expected
    assert (outcome.objects_sent, outcome.objects_skipped) == (len(expected), 0)
    assert not sender_children()


@pytest.mark.usefixtures("sdk_environment")
def test_sending_processes_stop_at_once_on_a_permanent_error(
    sink: S3Sink, make_dataset: DatasetFactory, tmp_path: Path
) -> None:
    dataset = make_dataset(per_class=4)
    settings = sending_settings(tmp_path, sink)
    sink.set_faults(Faults(deny=True))
    log = EventLog()

    outcome = run_upload(settings, UploadRequest(dataset, mode="files"), on_event=log)

    assert outcome.status == "failed"
    assert "AccessDenied" in outcome.error and "HTTP 403" in outcome.error and f"'{BUCKET}'" in outcome.error
    assert FAKE_CREDENTIALS.secret_key not in outcome.error
    assert log.kinds()["UploadRetried"] == 0, "a permanent error is never retried"
    # At once: no more requests than the engine had handed to the children (twice the concurrency) when the
    # first answer came back.
    assert 1 <= sink.stats()["fault_deny"] <= 2 * settings.upload.concurrency
    assert sink.objects(BUCKET) == {}
    assert not sender_children()
