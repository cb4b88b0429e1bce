"""The exported package predicts what the in-memory model predicts, standalone, and serves over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import SMALL_SPLIT
from trainer.data import SplitPolicy, list_dataset
from trainer.predict import InvalidImage, PackageError, Predictor
from trainer.train import RunResult
from trainer.weights import _decode, _encode, load_weights, save_weights


@pytest.fixture(scope="module")
def trained(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    from tests.trainer.conftest import solo_context
    from trainer.train import TrainConfig, run

    output = tmp_path_factory.mktemp("export") / "out"
    config = TrainConfig(
        data=small_data,
        output=output,
        epochs=2,
        batch_size=64,
        val_fraction=SMALL_SPLIT["val_fraction"],
        test_fraction=SMALL_SPLIT["test_fraction"],
    )
    return run(config, solo_context())


def split_bytes(small_data: Path) -> list[bytes]:
    policy = SplitPolicy(seed=1337, val=SMALL_SPLIT["val_fraction"], test=SMALL_SPLIT["test_fraction"])
    listing = list_dataset(small_data, policy, lambda _: False)
    return [(small_data / sample.source).read_bytes() for sample in listing.samples if sample.split == "test"]


def test_package_predicts_the_same_labels_as_the_in_memory_model(trained: RunResult, small_data: Path) -> None:
    test = trained.cache.splits["test"]
    model = trained.model.eval()
    with torch.no_grad():
        in_memory = model(trained.normalisation.apply(test.images.float() / 255)).argmax(dim=1).tolist()
    assert trained.package is not None
    predictor = Predictor.load(trained.package)
    predictions = predictor.predict(split_bytes(small_data), top_k=3)
    assert [row[0].index for row in predictions] == in_memory
    assert len(predictions) == len(test) and all(len(row) == 3 for row in predictions)
    assert all(row[0].probability >= row[1].probability >= row[2].probability for row in predictions)
    assert [row[0].label for row in predictions] == [trained.cache.classes[index] for index in in_memory]


def test_config_describes_the_package(trained: RunResult) -> None:
    assert trained.package is not None
    config = json.loads((trained.package / "config.json").read_text())
    assert config["architecture"] == {"name": "compact", "num_classes": 32}
    assert config["classes"] == list(trained.cache.classes)
    assert config["input"]["size"] == [64, 64] and config["input"]["mode"] == "L"
    assert config["normalisation"]["mean"] == pytest.approx(trained.normalisation.mean)
    assert config["manifest_id"] == trained.cache.dataset_id
    assert config["metrics"]["test_acc"] == pytest.approx(trained.final["test_acc"])
    assert (trained.package / "model.safetensors").read_bytes()[:8] != b"PK\x03\x04", "not a zip/pickle file"


@pytest.fixture
def package_copy(trained: RunResult, tmp_path: Path) -> Path:
    """The package alone, away from the repository, as it is uploaded."""
    assert trained.package is not None
    return Path(shutil.copytree(trained.package, tmp_path / "model"))


def standalone_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}


def test_package_runs_without_the_repository(package_copy: Path, small_data: Path, trained: RunResult) -> None:
    images = split_bytes(small_data)[:8]
    (package_copy.parent / "inputs").mkdir()
    for index, data in enumerate(images):
        (package_copy.parent / "inputs" / f"{index}.jpg").write_bytes(data)
    script = (
        "import json, pathlib, sys\n"
        "sys.path.insert(0, '.')\n"
        "import trainer.predict as p\n"
        "assert pathlib.Path(p.__file__).resolve().is_relative_to(pathlib.Path('.').resolve()), p.__file__\n"
        "predictor = p.Predictor.load('.')\n"
        "files = sorted(pathlib.Path('../inputs').iterdir(), key=lambda f: int(f.stem))\n"
        "print(json.dumps([row[0].label for row in predictor.predict([f.read_bytes() for f in files])]))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=package_copy,
        env=standalone_env(),
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    expected = [row[0].label for row in Predictor.load(package_copy).predict(images)]
    assert json.loads(completed.stdout.splitlines()[-1]) == expected


@pytest.fixture
def server(package_copy: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer.modelarts.serve", "--model-dir", ".", "--port", "0"],
        cwd=package_copy,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=standalone_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the server is listening (or has died)
        assert " on http://127.0.0.1:" in line, process.stderr.read() if process.stderr else line
        yield line.rsplit(" on ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serving_entry_answers_like_the_predictor(server: str, package_copy: Path, small_data: Path) -> None:
    images = split_bytes(small_data)[:3]
    expected = [row[0].label for row in Predictor.load(package_copy).predict(images)]
    with urllib.request.urlopen(f"{server}/health", timeout=30) as response:
        assert json.loads(response.read())["status"] == "ok"
    status, single = post(f"{server}/predict?top_k=2", images[0], "image/jpeg")
    assert status == 200 and single["predicted_label"] == expected[0]
    assert isinstance(single["scores"], list) and len(single["scores"]) == 2
    boundary = "xYzBoundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{i}.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(images)
    )
    body += f"--{boundary}--\r\n".encode()
    status, batch = post(f"{server}/", body, f"multipart/form-data; boundary={boundary}")
    assert status == 200
    results = batch["results"]
    assert isinstance(results, list)
    assert [item["predicted_label"] for item in results] == expected
    status, error = post(f"{server}/predict", b"not an image", "image/jpeg")
    assert status == 400 and "image 0" in str(error["error"])
    status, error = post(f"{server}/predict", b"{}", "text/plain")
    assert status == 415


def test_bad_images_and_bad_packages_are_named(trained: RunResult, tmp_path: Path) -> None:
    assert trained.package is not None
    predictor = Predictor.load(trained.package)
    with pytest.raises(InvalidImage, match=r"image 1: "):
        predictor.predict([png_bytes(), b"\xff\xd8 broken"])
    with pytest.raises(PackageError, match=r"config\.json: not found"):
        Predictor.load(tmp_path)
    broken = Path(shutil.copytree(trained.package, tmp_path / "broken"))
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(PackageError, match=r"model\.safetensors"):
        Predictor.load(broken)


def png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def test_weights_format_matches_the_safetensors_library(tmp_path: Path) -> None:
    tensors = {
        "conv.weight": torch.randn(4, 1, 3, 3),
        "bn.num_batches_tracked": torch.tensor(7),
        "mask": torch.tensor([True, False]),
        "half": torch.randn(3).half(),
    }
    save_weights(tensors, tmp_path / "library.safetensors")
    ours = _decode((tmp_path / "library.safetensors").read_bytes(), "library")
    (tmp_path / "ours.safetensors").write_bytes(_encode(tensors, {"k": "v"}))
    theirs = load_weights(tmp_path / "ours.safetensors")
    for loaded in (ours, theirs):
        assert loaded.keys() == tensors.keys()
        for name, tensor in tensors.items():
            assert torch.equal(loaded[name], tensor), name
