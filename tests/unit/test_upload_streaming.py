"""Streaming validation: the upload starts from a prediction of the manifest (headers, not decoding) while
every image is decoded beside it; what the user sees — problems, messages, the manifest — is what a full
validation first would give."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from arsl_tui.domain.manifest import SplitPolicy
from arsl_tui.domain.ports import ObjectInfo
from arsl_tui.ops import dataset as dataset_module
from arsl_tui.ops import shards as shards_module
from arsl_tui.ops.dataset import predict_dataset, validate_dataset
from arsl_tui.ops.upload import UploadRefused, UploadRequest, list_upload_runs, run_upload
from arsl_tui.providers.local.store import LocalObjectStore
from tests.conftest import DatasetFactory, jpeg_bytes
from tests.fixtures.upload_checks import assert_store_matches
from tests.unit.test_upload_engine import make_settings

SPLIT = SplitPolicy()


def image_bytes(seed: int, size: tuple[int, int], mode: str, kind: str) -> bytes:
    if kind == "JPEG":
        return jpeg_bytes(seed, size, mode)
    buffer = io.BytesIO()
    Image.frombytes("L", size, bytes((seed + n) % 256 for n in range(size[0] * size[1]))).convert(mode).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


@pytest.fixture
def mixed_dataset(make_dataset: DatasetFactory) -> Path:
    """A clean set with images the trainer normalises: other sizes, colour, PNGs of several modes."""
    root = make_dataset(per_class=2, name="mixed")
    odd = [
        ((80, 48), "RGB", "JPEG", "jpg"),
        ((64, 64), "CMYK", "JPEG", "jpeg"),
        ((32, 32), "L", "PNG", "png"),
        ((64, 64), "RGBA", "PNG", "png"),
        ((64, 64), "P", "PNG", "png"),
        ((64, 64), "LA", "PNG", "PNG"),
        ((16, 16), "1", "PNG", "png"),
    ]
    for number, (size, mode, kind, extension) in enumerate(odd):
        (root / "ain" / f"odd_{number}.{extension}").write_bytes(image_bytes(500 + number, size, mode, kind))
    return root


def test_a_prediction_of_a_clean_set_is_exactly_its_full_validation(mixed_dataset: Path) -> None:
    predicted = predict_dataset(mixed_dataset, SPLIT)
    full = validate_dataset(mixed_dataset, SPLIT)
    assert predicted is not None and full.ok
    assert predicted.manifest == full.manifest and predicted.manifest.id == full.manifest.id
    assert predicted.notes == full.notes and len(full.notes) == 7
    assert predicted.files_scanned == full.files_scanned


def test_no_prediction_where_the_listing_or_the_headers_show_a_problem(tiny_dataset: Path) -> None:
    (tiny_dataset / "ain" / "notes.txt").write_text("not an image")
    assert predict_dataset(tiny_dataset, SPLIT) is None
    (tiny_dataset / "ain" / "notes.txt").unlink()
    (tiny_dataset / "bb" / "garbage.jpg").write_bytes(b"\xff\xd8 not really")
    assert predict_dataset(tiny_dataset, SPLIT) is None


@pytest.mark.parametrize("mode", ["shards", "files"])
def test_a_file_only_decoding_catches_is_refused_as_a_full_validation_refuses_it(
    tiny_dataset: Path, tmp_path: Path, mode: str
) -> None:
    (tiny_dataset / "bb" / "cut.jpg").write_bytes(jpeg_bytes(99)[:300])  # a sound header, truncated data
    (tiny_dataset / "dal" / "cut.jpg").write_bytes(jpeg_bytes(98)[:400])
    assert predict_dataset(tiny_dataset, SPLIT) is not None  # so the upload starts before it knows
    settings = make_settings(tmp_path)
    store = LocalObjectStore(settings.home_dir / "store" / "arsl-ml")
    full = validate_dataset(tiny_dataset, SPLIT)
    with pytest.raises(UploadRefused) as caught:
        run_upload(settings, UploadRequest(tiny_dataset, mode=mode), store=store)
    assert str(caught.value) == str(UploadRefused(full))
    assert caught.value.report.problems == full.problems
    assert {finding.path for finding in full.problems} == {"bb/cut.jpg", "dal/cut.jpg"}
    # Whatever went up before the decoding caught them is gone, and the journal holds no run.
    assert list(store.list("")) == [] and list_upload_runs(settings) == []
    assert not any((settings.home_dir / "staging").iterdir())

    outcome = run_upload(settings, UploadRequest(tiny_dataset, mode=mode, allow_problems=True), store=store)
    quarantined = validate_dataset(tiny_dataset, SPLIT, quarantine=True).manifest
    assert outcome.status == "done" and outcome.manifest_id == quarantined.id
    assert_store_matches(store, settings, quarantined, mode)
    assert [run.status for run in list_upload_runs(settings)] == ["done"]
    assert {info.key.split("/")[1] for info in store.list("datasets/")} == {quarantined.id}


class FirstPutSignals(LocalObjectStore):
    def __init__(self, root: Path, first_put: threading.Event) -> None:
        super().__init__(root)
        self.first_put = first_put

    def put_file(self, key: str, path: Path, md5_hex: str) -> ObjectInfo:
        self.first_put.set()
        return super().put_file(key, path, md5_hex)


def test_files_are_sent_while_the_images_are_still_being_decoded(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mode = "files"
    first_put = threading.Event()
    decoded_after_a_put: list[bool] = []
    decode_chunk = dataset_module._check_chunk

    def decode_once_a_put_happened(root: str, cls: str, names: list[str], split: SplitPolicy) -> list:  # type: ignore[type-arg]
        # Without streaming no put comes before decoding ends: the wait would run out and record False.
        decoded_after_a_put.append(first_put.wait(30))
        return decode_chunk(root, cls, names, split)

    monkeypatch.setattr(dataset_module, "_check_chunk", decode_once_a_put_happened)
    settings = make_settings(tmp_path)
    store = FirstPutSignals(settings.home_dir / "store" / "arsl-ml", first_put)
    outcome = run_upload(settings, UploadRequest(tiny_dataset, mode=mode), store=store)
    assert outcome.status == "done"
    assert decoded_after_a_put and all(decoded_after_a_put)
    assert_store_matches(store, settings, validate_dataset(tiny_dataset, SPLIT).manifest, mode)


def test_shards_mode_decodes_each_image_once_while_packing_it(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[tuple[int, int, str] | None] = []
    shape_of = shards_module.decoded_shape

    def counting(data: bytes) -> tuple[int, int, str] | None:
        decoded.append(shape_of(data))
        return decoded[-1]

    def no_separate_validation(*args: object) -> list:  # type: ignore[type-arg]
        raise AssertionError("a correct prediction needs no separate validation pass in shards mode")

    monkeypatch.setattr(shards_module, "decoded_shape", counting)
    monkeypatch.setattr(dataset_module, "_check_chunk", no_separate_validation)
    settings = make_settings(tmp_path)
    store = LocalObjectStore(settings.home_dir / "store" / "arsl-ml")
    outcome = run_upload(settings, UploadRequest(tiny_dataset, mode="shards"), store=store)
    assert outcome.status == "done"
    assert decoded == [(64, 64, "L")] * 96
    monkeypatch.undo()
    assert_store_matches(store, settings, validate_dataset(tiny_dataset, SPLIT).manifest, "shards")
