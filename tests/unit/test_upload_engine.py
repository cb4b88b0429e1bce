"""The upload engine against the real local store (wrapped to count calls or inject faults)."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.events import Event, UploadFinished, UploadPhaseChanged, UploadProgressed, UploadRetried
from arsl_tui.domain.manifest import Manifest, manifest_text, parse_manifest
from arsl_tui.domain.ports import ObjectInfo, ObjectStore, PermanentStoreError, TransientStoreError
from arsl_tui.ops import shards as shards_module
from arsl_tui.ops.dataset import DatasetError
from arsl_tui.ops.upload import (
    UploadControl,
    UploadOutcome,
    UploadRefused,
    UploadRequest,
    dataset_prefix,
    last_uploaded_dataset,
    list_upload_runs,
    resumable_run,
    run_upload,
)
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.db import StateDB, state_path
from tests.conftest import DatasetFactory, jpeg_bytes
from tests.fixtures.store_wrappers import PassThroughStore
from tests.fixtures.upload_checks import assert_store_matches

Mode = Literal["files", "shards"]


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values = {"home": str(tmp_path / "home"), "upload.backoff_base_s": 0.001, "upload.backoff_max_s": 0.01, **overrides}
    return load_settings(environ={}, cwd=tmp_path, cli_overrides=values)


class Wrapper(PassThroughStore):
    """An ObjectStore that forwards to the local store, counting puts by key."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.puts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def before_put(self, key: str) -> None:
        """Hook: raise to fail a put before anything is stored."""

    def after_put(self, key: str) -> None:
        """Hook: raise to fail a put after the object is stored (the client never hears back)."""

    def put_bytes(self, key: str, data: bytes, md5_hex: str) -> ObjectInfo:
        self.before_put(key)
        with self.lock:
            self.puts[key] += 1
        info = self.inner.put_bytes(key, data, md5_hex)
        self.after_put(key)
        return info

    def put_file(self, key: str, path: Path, md5_hex: str) -> ObjectInfo:
        self.before_put(key)
        with self.lock:
            self.puts[key] += 1
        info = self.inner.put_file(key, path, md5_hex)
        self.after_put(key)
        return info


class Flaky(Wrapper):
    """Fails a seeded share of calls with transient errors: before storing, or after storing unanswered."""

    def __init__(self, inner: ObjectStore, share: float, seed: int) -> None:
        super().__init__(inner)
        self.share = share
        self.random = random.Random(seed)
        self.injected = 0
        self.after = threading.local()

    def draw(self) -> tuple[BaseException | None, bool]:
        """(fault or None, whether it strikes before the work is done)."""
        with self.lock:
            if self.random.random() >= self.share:
                return None, False
            self.injected += 1
            fault = self.random.choice(
                [
                    TransientStoreError("503 ServiceUnavailable", status=503),
                    ConnectionResetError("connection reset by peer"),
                    TimeoutError("read timed out"),
                ]
            )
            return fault, self.random.random() < 0.5

    def before_put(self, key: str) -> None:
        fault, before = self.draw()
        if fault is not None and before:
            raise fault
        self.after.fault = fault

    def after_put(self, key: str) -> None:
        fault, self.after.fault = self.after.fault, None
        if fault is not None:
            raise fault

    def head(self, key: str) -> ObjectInfo | None:
        fault, _ = self.draw()
        if fault is not None:
            raise fault
        return self.inner.head(key)

    def list(self, prefix: str, after: str = "") -> Iterator[ObjectInfo]:
        fault, _ = self.draw()
        if fault is not None:
            raise fault
        return self.inner.list(prefix, after)


def validated(settings: Settings, folder: Path) -> Manifest:
    from arsl_tui.domain.manifest import SplitPolicy
    from arsl_tui.ops.dataset import validate_dataset

    dataset = settings.dataset
    return validate_dataset(
        folder, SplitPolicy(dataset.split_seed, dataset.val_fraction, dataset.test_fraction)
    ).manifest


def local_store(settings: Settings) -> LocalObjectStore:
    return LocalObjectStore(settings.home_dir / "store" / settings.storage.bucket)


def journal_states(settings: Settings) -> Counter[str]:
    with sqlite3.connect(state_path(settings.home_dir)) as connection:
        return Counter(dict(connection.execute("SELECT state, COUNT(*) FROM upload_objects GROUP BY state")))


@pytest.mark.parametrize("mode", ["files", "shards"])
def test_upload_matches_the_manifest_exactly(tiny_dataset: Path, tmp_path: Path, mode: Mode) -> None:
    settings = make_settings(tmp_path)
    events: list[Event] = []
    outcome = run_upload(settings, UploadRequest(tiny_dataset, mode=mode, concurrency=4), on_event=events.append)
    manifest = validated(settings, tiny_dataset)
    assert outcome.status == "done", outcome.error
    assert outcome.manifest_id == manifest.id
    assert outcome.destination == f"local:{settings.home_dir / 'store' / 'arsl-ml'}/datasets/{manifest.id}/"
    expected_objects = len(manifest.images) + 1 if mode == "files" else 3  # one shard + shards.json + manifest
    assert (outcome.objects_sent, outcome.objects_skipped) == (expected_objects, 0)
    assert_store_matches(local_store(settings), settings, manifest, mode)

    progress = [event for event in events if isinstance(event, UploadProgressed)]
    assert len(progress) == expected_objects, "one progress event per confirmed object"
    assert [event.objects_done for event in progress] == list(range(1, expected_objects + 1))
    assert progress[-1].files_done == progress[-1].files_total == len(manifest.images)
    assert progress[-1].bytes_done == progress[-1].bytes_total
    phases = [event.phase for event in events if isinstance(event, UploadPhaseChanged)]
    expected_phases = ["validating", "sending", "verifying", "finishing"]
    if mode == "shards":
        expected_phases.insert(1, "packing")
    assert [phase for index, phase in enumerate(phases) if index == 0 or phases[index - 1] != phase] == expected_phases
    assert isinstance(events[-1], UploadFinished) and events[-1].status == "done"
    assert not (settings.home_dir / "staging").exists() or not any((settings.home_dir / "staging").iterdir())

    again = run_upload(settings, UploadRequest(tiny_dataset, mode=mode))
    assert (again.status, again.objects_sent, again.objects_skipped) == ("done", 0, expected_objects)
    records = list_upload_runs(settings)
    assert [record.run_id for record in records] == [again.run_id, outcome.run_id]
    assert records[0].status == "done" and records[0].objects_confirmed == records[0].objects_total
    last = last_uploaded_dataset(settings)
    assert last is not None and last.run_id == again.run_id
    assert resumable_run(settings) is None


def test_a_run_stopped_by_a_permanent_error_resumes_with_only_the_remainder(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    inner = local_store(settings)
    allowed = 30

    class Denying(Wrapper):
        def before_put(self, key: str) -> None:
            with self.lock:
                if sum(self.puts.values()) >= allowed:
                    raise PermanentStoreError(
                        f"403 AccessDenied on {key}: the bucket policy forbids PutObject",
                        status=403,
                        code="AccessDenied",
                    )

    first_store = Denying(inner)
    first = run_upload(settings, UploadRequest(tiny_dataset, mode="files", concurrency=3), store=first_store)
    assert first.status == "failed"
    assert "AccessDenied" in first.error and "forbids PutObject" in first.error
    assert first.objects_sent == allowed
    manifest = validated(settings, tiny_dataset)
    assert inner.head(dataset_prefix(settings, manifest.id) + "manifest.json") is None, "no manifest before the end"
    states = journal_states(settings)
    assert states["confirmed"] == allowed
    unfinished = resumable_run(settings)
    assert unfinished is not None and unfinished.status == "failed" and "AccessDenied" in unfinished.error
    assert unfinished.objects_confirmed == allowed

    second_store = Wrapper(inner)
    second = run_upload(settings, UploadRequest(tiny_dataset, mode="files", concurrency=3), store=second_store)
    assert second.status == "done", second.error
    total = len(manifest.images) + 1
    assert (second.objects_sent, second.objects_skipped) == (total - allowed, allowed)
    assert not first_store.puts.keys() & second_store.puts.keys(), "nothing confirmed is sent twice"
    assert sum(second_store.puts.values()) == total - allowed
    assert_store_matches(inner, settings, manifest, "files")
    assert resumable_run(settings) is None


def test_the_uncertain_tail_is_rechecked_not_resent(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    inner = local_store(settings)

    class StoredThenDenied(Wrapper):
        """The 10th put lands in the store but the answer is an error: the journal can only say 'sent'."""

        def after_put(self, key: str) -> None:
            with self.lock:
                if sum(self.puts.values()) == 10:
                    self.victim = key
                    raise PermanentStoreError("403 AccessDenied", status=403)

    first_store = StoredThenDenied(inner)
    first = run_upload(settings, UploadRequest(tiny_dataset, mode="files", concurrency=1), store=first_store)
    assert first.status == "failed" and first.objects_sent == 9
    assert journal_states(settings)["sent"] >= 1
    second_store = Wrapper(inner)
    second = run_upload(settings, UploadRequest(tiny_dataset, mode="files", concurrency=1), store=second_store)
    assert second.status == "done"
    assert first_store.victim not in second_store.puts, "found by a head, not sent again"
    assert second.objects_skipped == 10
    assert_store_matches(inner, settings, validated(settings, tiny_dataset), "files")


@pytest.mark.parametrize("mode", ["files", "shards"])
def test_transient_faults_are_retried_and_the_result_is_exact(tiny_dataset: Path, tmp_path: Path, mode: Mode) -> None:
    settings = make_settings(tmp_path, **{"upload.max_attempts": 14})
    flaky = Flaky(local_store(settings), share=0.25, seed=7)
    events: list[Event] = []
    lock = threading.Lock()

    def record(event: Event) -> None:
        with lock:
            events.append(event)

    outcome = run_upload(settings, UploadRequest(tiny_dataset, mode=mode, concurrency=6), store=flaky, on_event=record)
    assert outcome.status == "done", outcome.error
    retried = [event for event in events if isinstance(event, UploadRetried)]
    assert flaky.injected > 0
    assert len(retried) == flaky.injected, "every injected fault was retried exactly once"
    assert all(0 <= event.delay_s <= settings.upload.backoff_max_s for event in retried)
    assert {event.error.split(":")[0] for event in retried} <= {
        "TransientStoreError",
        "ConnectionResetError",
        "TimeoutError",
    }
    assert_store_matches(flaky.inner, settings, validated(settings, tiny_dataset), mode)


def test_transient_errors_give_up_after_max_attempts(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, **{"upload.max_attempts": 3})

    class AlwaysBusy(Wrapper):
        def before_put(self, key: str) -> None:
            if key.endswith("files/bb/bb_0001.jpg"):
                raise TransientStoreError("503 SlowDown", status=503)

    events: list[Event] = []
    outcome = run_upload(
        settings,
        UploadRequest(tiny_dataset, mode="files", concurrency=2),
        store=AlwaysBusy(local_store(settings)),
        on_event=events.append,
    )
    assert outcome.status == "failed"
    assert "gave up on" in outcome.error and "bb_0001.jpg after 3 attempt(s)" in outcome.error
    assert "503 SlowDown" in outcome.error
    assert len([event for event in events if isinstance(event, UploadRetried)]) == 2


def test_a_permanent_error_stops_at_once(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    class Forbidden(Wrapper):
        def before_put(self, key: str) -> None:
            with self.lock:
                self.puts["attempts"] += 1
            raise PermanentStoreError("403 AccessDenied: no write permission on bucket arsl-ml", status=403)

    store = Forbidden(local_store(settings))
    events: list[Event] = []
    outcome = run_upload(
        settings, UploadRequest(tiny_dataset, mode="files", concurrency=4), store=store, on_event=events.append
    )
    assert outcome.status == "failed"
    assert "no write permission on bucket arsl-ml" in outcome.error
    assert store.puts["attempts"] <= 8, "no new requests once a permanent error is seen"
    assert not any(isinstance(event, UploadRetried) for event in events), "permanent errors are never retried"
    assert list(store.inner.list("")) == []
    finished = events[-1]
    assert isinstance(finished, UploadFinished) and finished.status == "failed"
    assert list_upload_runs(settings)[0].status == "failed"


def test_verification_removes_extras_and_repairs_damage(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = local_store(settings)
    assert run_upload(settings, UploadRequest(tiny_dataset, mode="shards")).status == "done"
    assert run_upload(settings, UploadRequest(tiny_dataset, mode="files")).status == "done"
    manifest = validated(settings, tiny_dataset)
    prefix = dataset_prefix(settings, manifest.id)
    damaged = f"{prefix}files/{manifest.images[3].path}"
    store.put_bytes(damaged, b"not the image", hashlib.md5(b"not the image").hexdigest())
    store.delete(f"{prefix}files/{manifest.images[4].path}")
    store.put_bytes(f"{prefix}files/ain/stray.jpg", b"stray", hashlib.md5(b"stray").hexdigest())
    events: list[Event] = []
    outcome = run_upload(settings, UploadRequest(tiny_dataset, mode="files"), store=store, on_event=events.append)
    assert outcome.status == "done"
    assert outcome.objects_sent == 2, "the missing and the damaged object, nothing else"
    details = [event.detail for event in events if isinstance(event, UploadPhaseChanged)]
    assert any("removed 1 unexpected object(s)" in detail and "stray.jpg" in detail for detail in details)
    assert any("2 object(s) missing or wrong" in detail for detail in details)
    assert_store_matches(store, settings, manifest, "files")
    # The other mode's objects under the same prefix are left alone.
    assert_store_matches(store, settings, manifest, "shards")


def test_pause_holds_dispatch_until_resumed(make_dataset: DatasetFactory, tmp_path: Path) -> None:
    dataset = make_dataset(per_class=4)
    settings = make_settings(tmp_path)
    control = UploadControl()
    store = Wrapper(local_store(settings))
    events: list[Event] = []
    paused = threading.Event()

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, UploadProgressed) and event.objects_done == 5:
            control.pause()
        if isinstance(event, UploadPhaseChanged) and event.detail == "paused":
            paused.set()

    outcomes: list[UploadOutcome] = []
    worker = threading.Thread(
        target=lambda: outcomes.append(
            run_upload(
                settings,
                UploadRequest(dataset, mode="files", concurrency=2),
                store=store,
                on_event=on_event,
                control=control,
            )
        )
    )
    worker.start()
    assert paused.wait(timeout=60), "the run never reported itself paused"
    assert control.paused and worker.is_alive()
    puts_while_paused = sum(store.puts.values())
    unfinished = resumable_run(settings)
    assert unfinished is not None and unfinished.status == "paused", "a paused live run is not 'interrupted'"
    control.resume()
    worker.join(timeout=60)
    assert outcomes and outcomes[0].status == "done"
    assert puts_while_paused < outcomes[0].objects_sent
    kinds = [(type(event).__name__, getattr(event, "detail", "")) for event in events]
    paused_at = kinds.index(("UploadPhaseChanged", "paused"))
    resumed_at = kinds.index(("UploadPhaseChanged", "resumed"))
    assert paused_at < resumed_at
    assert not any(kind == "UploadProgressed" for kind, _ in kinds[paused_at:resumed_at])
    assert max(store.puts.values()) == 1
    assert_store_matches(store.inner, settings, validated(settings, dataset), "files")


def test_cancel_stops_and_a_later_run_finishes_the_rest(tiny_dataset: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    control = UploadControl()
    first_store = Wrapper(local_store(settings))

    def on_event(event: Event) -> None:
        if isinstance(event, UploadProgressed) and event.objects_done == 7:
            control.cancel()

    first = run_upload(
        settings,
        UploadRequest(tiny_dataset, mode="files", concurrency=2),
        store=first_store,
        on_event=on_event,
        control=control,
    )
    assert first.status == "cancelled"
    manifest = validated(settings, tiny_dataset)
    total = len(manifest.images) + 1
    assert 7 <= first.objects_sent < total
    assert first_store.inner.head(dataset_prefix(settings, manifest.id) + "manifest.json") is None
    unfinished = resumable_run(settings)
    assert unfinished is not None and unfinished.status == "cancelled" and unfinished.run_id == first.run_id
    second_store = Wrapper(first_store.inner)
    second = run_upload(settings, UploadRequest(tiny_dataset, mode="files", concurrency=2), store=second_store)
    assert second.status == "done"
    assert second.objects_skipped == first.objects_sent
    assert not first_store.puts.keys() & second_store.puts.keys()
    assert_store_matches(second_store.inner, settings, manifest, "files")
    assert resumable_run(settings) is None


def _bad_input(root: Path, case: str) -> str:
    """Spoil a good data set in one way; returns the relative path of the bad file or folder."""
    if case == "non_image":
        (root / "ain" / "notes.txt").write_text("not an image")
        return "ain/notes.txt"
    if case == "truncated_jpeg":
        (root / "bb" / "cut.jpg").write_bytes(jpeg_bytes(99)[:300])
        return "bb/cut.jpg"
    if case == "unknown_class":
        (root / "zzz").mkdir()
        (root / "zzz" / "x.jpg").write_bytes(jpeg_bytes(98))
        return "zzz/"
    if case == "odd_name":
        (root / "dal" / "bad\nname.jpg").write_bytes(jpeg_bytes(97))
        return "dal/bad\nname.jpg"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["non_image", "truncated_jpeg", "unknown_class", "odd_name"])
def test_bad_input_is_refused_with_a_clear_message_and_nothing_uploaded(
    tiny_dataset: Path, tmp_path: Path, case: str
) -> None:
    settings = make_settings(tmp_path)
    bad = _bad_input(tiny_dataset, case)
    store = local_store(settings)
    with pytest.raises(UploadRefused) as caught:
        run_upload(settings, UploadRequest(tiny_dataset, mode="files"), store=store)
    assert bad in {finding.path for finding in caught.value.report.problems}
    assert "nothing uploaded" in str(caught.value) and "--allow-problems" in str(caught.value)
    assert list(store.list("")) == []
    assert list_upload_runs(settings) == []

    outcome = run_upload(settings, UploadRequest(tiny_dataset, mode="files", allow_problems=True), store=store)
    assert outcome.status == "done"
    prefix = dataset_prefix(settings, outcome.manifest_id)
    keys = {info.key for info in store.list("")}
    assert not any(key.startswith(f"{prefix}files/{bad}") or key == f"{prefix}files/{bad}" for key in keys)
    stored_manifest = parse_manifest(store.get_bytes(prefix + "manifest.json"))
    assert bad in {item["path"] for item in stored_manifest.quarantined}
    assert len(keys) == len(stored_manifest.images) + 1 == 97


def test_missing_and_empty_folders_are_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(DatasetError, match="no such folder"):
        run_upload(settings, UploadRequest(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class folders with images"):
        run_upload(settings, UploadRequest(tmp_path / "empty"))
    assert list(local_store(settings).list("")) == []


def test_the_staged_manifest_is_byte_identical_to_the_manifests_own_json(tiny_dataset: Path, tmp_path: Path) -> None:
    manifest = validated(make_settings(tmp_path), tiny_dataset)
    assert "".join(manifest_text(manifest.body(), manifest.id)).encode() == manifest.to_json_bytes()
    lines = manifest.to_json_bytes().decode().splitlines()
    start = lines.index(' "images": [')
    assert [json.loads(line.rstrip(",")) for line in lines[start + 1 : start + 1 + len(manifest.images)]] == [
        image.to_json() for image in manifest.images
    ], "one image record per line"


_HOSTILE = 'ain/q"uote\\back\nline\t\u2028é\x01},\n{"a",\n"b.jpg'
"""A string with everything the fast manifest writer must leave to json: escapes, a line break, the texts
that separate two records and two members, non-ASCII and a control character."""


def _manifest_text_reference(body: dict[str, Any], identifier: str) -> str:
    """manifest.json as its format says, written slowly: indented JSON with one line per image record."""
    members = []
    for key, value in {"id": identifier, **body}.items():
        if key == "images" and isinstance(value, list) and value:
            text = "[\n" + ",\n".join("  " + json.dumps(record, ensure_ascii=False) for record in value) + "\n ]"
        else:
            text = json.dumps(value, indent=1, ensure_ascii=False).replace("\n", "\n ")
        members.append(f" {json.dumps(key, ensure_ascii=False)}: {text}")
    return "{\n" + ",\n".join(members) + "\n}\n"


@pytest.mark.parametrize(
    "body",
    [
        {
            "format": "x",
            "split": {"seed": 3, "val": 0.1},
            "images": [
                {"path": _HOSTILE, "bytes": 12, "md5": "ab", "class": "ain"},
                {"path": "b", "bytes": -3, "md5": _HOSTILE},
            ],
            "counts": {"ain": 1},
            "quarantined": [{"path": _HOSTILE, "problem": "corrupt"}],
        },
        {"format": "x", "images": [{"path": f"p{index}", "bytes": index} for index in range(1300)]},
        {"images": [{"a": "b"}], "note": '"images": ', "nested": {"images": []}},
        {"format": "x", "images": [], "quarantined": []},
        {"format": "x", "images": [{"path": "x", "ratio": 1.5}]},
        {"format": "x", "images": [{"path": "x", "ok": True}]},
        {"format": "x", "images": [{"path": "x", "size": {"w": 1}}]},
    ],
    ids=["hostile-strings", "many-pieces", "lookalike-keys", "no-images", "float", "bool", "nested"],
)
def test_the_manifest_text_is_its_formats_for_any_body(body: dict[str, Any]) -> None:
    text = "".join(manifest_text(body, "abc"))
    assert text == _manifest_text_reference(body, "abc")
    assert json.loads(text) == {"id": "abc", **body}


def test_completions_are_journaled_in_batches_while_every_sender_is_busy(
    make_dataset: DatasetFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One journal transaction per completed object would cost a third of the engine's CPU in files mode;
    while every sender has work queued, completions are gathered and recorded together."""
    dataset = make_dataset(per_class=20)
    settings = make_settings(tmp_path)
    transactions = Counter[str]()
    real_transaction = StateDB.transaction

    def counted(db: StateDB) -> Any:
        transactions["all"] += 1
        return real_transaction(db)

    monkeypatch.setattr(StateDB, "transaction", counted)

    class Slow(Wrapper):
        def before_put(self, key: str) -> None:
            threading.Event().wait(0.005)  # a store 5 ms away: what keeps every sender busy

    store = Slow(local_store(settings))
    outcome = run_upload(settings, UploadRequest(dataset, mode="files", concurrency=16), store=store)
    assert outcome.status == "done" and outcome.objects_sent == 32 * 20 + 1
    assert transactions["all"] < outcome.objects_sent / 4, transactions
    assert journal_states(settings) == Counter({"confirmed": 32 * 20 + 1}), "every image and the staged manifest"
    assert_store_matches(store.inner, settings, validated(settings, dataset), "files")


def shard_keys(store: ObjectStore, prefix: str) -> list[str]:
    return sorted(info.key for info in store.list(prefix + "shards/"))


def test_a_shards_run_resumes_with_only_the_shards_not_yet_confirmed(
    make_dataset: DatasetFactory, tmp_path: Path
) -> None:
    dataset = make_dataset(per_class=12)  # ~2.3 MB of tar: three shards of at most 1 MiB
    settings = make_settings(tmp_path, **{"upload.shard_size_mb": 1})
    inner = local_store(settings)

    class DeniedAfterOneShard(Wrapper):
        def before_put(self, key: str) -> None:
            with self.lock:
                if key.endswith(".tar.gz") and any(put.endswith(".tar.gz") for put in self.puts):
                    raise PermanentStoreError("403 AccessDenied", status=403, code="AccessDenied")

    first_store = DeniedAfterOneShard(inner)
    first = run_upload(settings, UploadRequest(dataset, mode="shards", concurrency=1), store=first_store)
    assert first.status == "failed" and "AccessDenied" in first.error
    assert first.objects_sent == 2, "the staged manifest, then one shard"
    assert journal_states(settings)["confirmed"] == 2, "the journal learns each shard's MD5 as it is packed"

    second_store = Wrapper(inner)
    events: list[Event] = []
    second = run_upload(
        settings, UploadRequest(dataset, mode="shards", concurrency=2), store=second_store, on_event=events.append
    )
    assert second.status == "done", second.error
    manifest = validated(settings, dataset)
    prefix = dataset_prefix(settings, manifest.id)
    shards = shard_keys(inner, prefix)
    assert len(shards) == 3
    # The shards left and shards.json are sent; the confirmed shard and the staged manifest are not.
    assert (second.objects_sent, second.objects_skipped) == (len(shards) - 1 + 1, 2)
    assert not first_store.puts.keys() & second_store.puts.keys(), "the confirmed shard is not sent again"
    progress = [event for event in events if isinstance(event, UploadProgressed)]
    assert [event.objects_done for event in progress] == list(range(2, len(shards) + 3))
    assert progress[-1].bytes_total == sum(info.size for info in inner.list(prefix)), "the byte total ends exact"
    assert_store_matches(inner, settings, manifest, "shards")

    # Other shard sizes make other shards under the same keys: what changed is sent, what is gone is removed.
    resized = make_settings(tmp_path, **{"upload.shard_size_mb": 32})  # 2 MiB, then the rest
    third = run_upload(resized, UploadRequest(dataset, mode="shards"), store=inner)
    assert third.status == "done", third.error
    assert len(shard_keys(inner, prefix)) == 2
    assert journal_states(resized) == Counter({"confirmed": 2 + 2}), "the third shard is forgotten, not kept"
    assert_store_matches(inner, resized, manifest, "shards")


def test_each_shard_is_sent_while_the_next_is_still_being_packed(
    make_dataset: DatasetFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = make_dataset(per_class=12)
    settings = make_settings(tmp_path, **{"upload.shard_size_mb": 1})
    first_shard_stored = threading.Event()
    pack = shards_module.pack_shard

    def pack_after_the_first_shard_is_stored(root: str, target: str, samples: Any, *shapes: Any) -> Any:
        # An engine that packed everything before sending would never get here past the first shard.
        if not target.endswith("shard-000000.tar.gz"):
            assert first_shard_stored.wait(timeout=60), "no shard was sent before the others were packed"
        return pack(root, target, samples, *shapes)

    monkeypatch.setattr(shards_module, "pack_shard", pack_after_the_first_shard_is_stored)

    class Signalling(Wrapper):
        def after_put(self, key: str) -> None:
            if key.endswith("shards/shard-000000.tar.gz"):
                first_shard_stored.set()

    store = Signalling(local_store(settings))
    outcome = run_upload(settings, UploadRequest(dataset, mode="shards", concurrency=2), store=store)
    assert outcome.status == "done", outcome.error
    assert first_shard_stored.is_set()
    assert_store_matches(store.inner, settings, validated(settings, dataset), "shards")
