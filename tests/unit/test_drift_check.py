"""`arsl drift check FOLDER` on the local backend: a folder of captured images scored against the champion's
reference profile, with the champion's own answers computed here (a real package, random weights)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.cli import build_parser
from arsl_tui.cli.common import CommandContext, run_command
from arsl_tui.domain.drift import DriftThresholds
from arsl_tui.ops import drift
from tests.serving.drift_packages import export_profiled_package, jpegs
from tests.serving.packages import register_packages
from trainer.input_profile import read_profile
from trainer.predict import Predictor

SAMPLE = 240
"""Images per captured folder: above the default `[drift] min_images` (200), so the folder is scored."""


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1's package, profiled on 320 synthetic images (the "training data")."""
    return export_profiled_package(tmp_path_factory.mktemp("package"), 1, jpegs(9, 320))


@pytest.fixture
def home(tmp_path: Path, package: Path) -> Path:
    """A local home whose registry holds v1, the champion (the first version that passed its gate)."""
    home = tmp_path / "home"
    register_packages(home, {"v1": package})
    return home


def write_folder(folder: Path, images: list[bytes]) -> Path:
    """Captured images as an operator's collector leaves them: some in a subfolder, a broken file, a note."""
    (folder / "camera-2").mkdir(parents=True)
    for index, data in enumerate(images):
        where = folder / "camera-2" if index % 3 == 0 else folder
        (where / f"request-{index:04d}.jpg").write_bytes(data)
    (folder / "broken.JPG").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not an image file: ignored\n", encoding="utf-8")
    return folder


def run_cli(home: Path, monkeypatch: pytest.MonkeyPatch, *arguments: str) -> tuple[int, str, str]:
    monkeypatch.setenv("ARSL_HOME", str(home))
    monkeypatch.delenv("ARSL_CONFIG", raising=False)
    monkeypatch.chdir(home)
    namespace = build_parser().parse_args(list(arguments))
    out, err = io.StringIO(), io.StringIO()
    context = CommandContext(
        config_path=None, backend=None, json_output=bool(getattr(namespace, "json", False)), stdout=out, stderr=err
    )
    return run_command(namespace.handler, context, namespace), out.getvalue(), err.getvalue()


def json_of(out: str) -> Any:
    return json.loads(out.splitlines()[-1])


def test_a_folder_like_the_training_data_is_stable_with_the_champions_own_answers(
    home: Path, package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = jpegs(9, SAMPLE, start=320)
    folder = write_folder(tmp_path / "captured", images)
    code, out, _ = run_cli(home, monkeypatch, "--json", "drift", "check", str(folder))
    report = json_of(out)
    assert code == 0, report
    assert (report["version"], report["verdict"], report["images"]) == ("v1", "stable", SAMPLE)
    assert report["undecodable"] == ["broken.JPG"]
    assert report["score"] is not None and report["score"] <= 0.125
    assert report["pushed"] is None and "not pushed" in report["note"] and "the local gateway" in report["note"]
    # The answers are the champion's own: its model loaded on its own answers the same classes and confidences.
    answers = [(row[0].index, row[0].probability) for row in Predictor.load(package).predict(images, top_k=1)]
    expected = drift.report_of_images("v1", images, answers, read_profile(package), DriftThresholds()).to_json()
    assert report["features"] == expected["features"]  # the same pixels, binned with the reference's edges
    for key in ("score", "class_psi", "confidence_psi", "low_confidence_share"):
        assert report[key] == pytest.approx(expected[key]), key
    assert (home / "serving" / "models" / "v1" / "input_profile.json").is_file()  # fetched as the gateway fetches


def test_inverted_images_drift_and_the_report_is_printed_like_drift_status(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inverted = [drift.shift_image(data, "invert") for data in jpegs(9, SAMPLE, start=320)]
    folder = write_folder(tmp_path / "captured", inverted)
    code, out, _ = run_cli(home, monkeypatch, "drift", "check", str(folder), "--version", "v1")
    assert code == 1, out
    lines = out.splitlines()
    assert lines[0].startswith("v1 drifting · score ") and f"· {SAMPLE} image(s) · low confidence" in lines[0]
    assert any(line.split()[:1] == ["intensity_mean"] for line in lines)  # the per-feature table of drift status
    assert "1 file(s) did not decode and were left out: broken.JPG" in out
    assert "not pushed: the local gateway profiles live traffic itself" in out
    code, out, _ = run_cli(home, monkeypatch, "--json", "drift", "check", str(folder))
    report = json_of(out)
    assert code == 1 and report["verdict"] == "drifting" and report["score"] > 0.25
    assert report["moved_most"] in report["features"]


def test_a_missing_or_imageless_folder_is_a_usage_error_naming_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-folder"
    code, _, err = run_cli(home, monkeypatch, "drift", "check", str(missing))
    assert code == 2 and str(missing) in err and "no such folder" in err
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here\n", encoding="utf-8")
    code, out, err = run_cli(home, monkeypatch, "--json", "drift", "check", str(empty))
    assert code == 2 and str(empty) in err and "holds no image" in err
    assert json_of(out) == {"error": json_of(out)["error"], "exit_code": 2} and str(empty) in json_of(out)["error"]


def test_a_folder_of_undecodable_files_is_counted_not_scored(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "captured"
    folder.mkdir()
    for name in ("a.png", "b.jpeg", "c.jpg"):
        (folder / name).write_bytes(b"\x89PNG truncated")
    code, out, _ = run_cli(home, monkeypatch, "--json", "drift", "check", str(folder))
    report = json_of(out)
    assert code == 0 and report["images"] == 0 and report["verdict"] == "too few images"
    assert report["undecodable"] == ["a.png", "b.jpeg", "c.jpg"]


def test_the_version_must_exist_and_a_champion_is_needed_without_one(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_folder(tmp_path / "captured", jpegs(9, 4, start=320))
    code, _, err = run_cli(home, monkeypatch, "drift", "check", str(folder), "--version", "v7")
    assert code == 2 and "v7" in err
    bare = tmp_path / "bare-home"
    bare.mkdir()
    code, _, err = run_cli(bare, monkeypatch, "drift", "check", str(folder))
    assert code == 2 and "no version is champion yet" in err and "--version" in err


def test_an_exported_package_folder_can_stand_in_for_a_registry_version(
    package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "bare-home"
    bare.mkdir()
    folder = write_folder(tmp_path / "captured", jpegs(9, SAMPLE, start=320))
    code, out, _ = run_cli(bare, monkeypatch, "--json", "drift", "check", str(folder), "--package", str(package))
    report = json_of(out)
    assert code == 0 and report["version"] == package.name and report["verdict"] == "stable"
    code, _, err = run_cli(bare, monkeypatch, "drift", "check", str(folder), "--package", str(folder))
    assert code == 2 and "config.json" in err


def test_read_only_mode_scores_without_writing_under_the_home(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_folder(tmp_path / "captured", jpegs(9, SAMPLE, start=320))
    before = sorted(str(path.relative_to(home)) for path in home.rglob("*"))
    monkeypatch.setenv("ARSL_READ_ONLY", "true")
    code, out, _ = run_cli(home, monkeypatch, "--json", "drift", "check", str(folder))
    assert code == 0 and json_of(out)["verdict"] == "stable"
    assert sorted(str(path.relative_to(home)) for path in home.rglob("*")) == before  # the package went to a temp dir
