"""`validate_dataset` on clean and hostile class folders, and `arsl data validate` exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arsl_tui.domain.manifest import SplitPolicy, parse_manifest
from arsl_tui.ops import dataset as dataset_module
from arsl_tui.ops.dataset import DatasetError, validate_dataset, write_manifest
from tests.conftest import DatasetFactory, jpeg_bytes

POLICY = SplitPolicy(seed=11, val=0.2, test=0.2)


def kinds(report: object) -> dict[str, str]:
    return {finding.path: finding.kind for finding in report.problems}  # type: ignore[attr-defined]


def test_clean_dataset_gives_a_complete_manifest(tiny_dataset: Path) -> None:
    report = validate_dataset(tiny_dataset, POLICY)
    assert report.ok, report.problems
    assert report.files_scanned == 96
    assert set(report.class_counts().values()) == {3}
    assert report.notes == []
    path = write_manifest(report)
    manifest = parse_manifest(path.read_bytes())
    assert manifest.id == report.manifest.id
    assert [image.path for image in manifest.images] == sorted(image.path for image in manifest.images)
    again = validate_dataset(tiny_dataset, POLICY)
    assert again.manifest.id == report.manifest.id, "manifest.json beside the classes is not part of the data"


def test_arsl2018_download_layout_one_folder_down(make_dataset: DatasetFactory, tmp_path: Path) -> None:
    inner = make_dataset(per_class=1, name="download/ArASL_Database_54K_Final")
    (inner / "ain" / "ain_0000.jpg").rename(inner / "ain" / "AIN (1).JPG")
    report = validate_dataset(tmp_path / "download", POLICY)
    assert report.ok, report.problems
    assert report.root == inner
    assert "ain/AIN (1).JPG" in {image.path for image in report.manifest.images}


def hostile_dataset(make_dataset: DatasetFactory, tmp_path: Path) -> Path:
    """Two images per class, and one of every kind of problem."""
    root = make_dataset(per_class=2)
    good = (root / "bb" / "bb_0000.jpg").read_bytes()
    (root / "ain" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "ain" / "notes.txt").write_text("not an image")
    (root / "ain" / "empty.jpg").write_bytes(b"")
    (root / "ain" / "copy_of_bb.jpg").write_bytes(good)
    (root / "alif").mkdir()
    (root / "alif" / "x.jpg").write_bytes(jpeg_bytes(99))
    (root / "README.md").write_text("stray")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(jpeg_bytes(100))
    (root / "dal" / "link.jpg").symlink_to(outside)
    os.mkdir(root / "dal" / "nested")
    for image in (root / "zay").iterdir():
        image.unlink()
    (root / "ha" / os.fsdecode(b"bad\xffname.jpg")).write_bytes(jpeg_bytes(101))
    return root


def test_every_kind_of_problem_is_named(make_dataset: DatasetFactory, tmp_path: Path) -> None:
    root = hostile_dataset(make_dataset, tmp_path)
    report = validate_dataset(root, POLICY)
    found = kinds(report)
    assert not report.ok
    assert found["ain/truncated.jpg"] == "corrupt"
    assert found["ain/notes.txt"] == "not_an_image"
    assert found["ain/empty.jpg"] == "empty_file"
    assert found["bb/bb_0000.jpg"] == "duplicate", "the first copy in path order is kept"
    assert found["alif/"] == "unknown_class"
    assert found["README.md"] == "stray_file"
    assert found["dal/link.jpg"] == "symlink"
    assert found["dal/nested/"] == "nested_folder"
    assert found["zay/"] == "empty_class"
    assert found["ha/bad\ufffdname.jpg"] == "unsafe_name"
    manifest_paths = {image.path for image in report.manifest.images}
    assert manifest_paths.isdisjoint(found), "no problem file may enter the manifest"
    assert len(manifest_paths) == 31 * 2, "31 classes × 2, plus ain/copy_of_bb.jpg, less bb/bb_0000.jpg"
    assert "ain/copy_of_bb.jpg" in manifest_paths


def test_worker_processes_report_exactly_what_one_process_does(
    make_dataset: DatasetFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = hostile_dataset(make_dataset, tmp_path)
    (root / "ain" / "big.jpg").write_bytes(jpeg_bytes(7, size=(128, 96), mode="RGB"))
    inline = validate_dataset(root, POLICY, workers=1)
    # One entry per task: many more tasks than the two per worker allowed in flight, taken back in order.
    monkeypatch.setattr(dataset_module, "_CHUNK", 1)
    pooled = validate_dataset(root, POLICY, workers=2)
    assert pooled.problems == inline.problems and len(inline.problems) == 10
    assert pooled.notes == inline.notes and len(inline.notes) == 1
    assert pooled.manifest == inline.manifest
    assert pooled.files_scanned == inline.files_scanned


def test_workers_that_cannot_start_give_a_clear_error(tiny_dataset: Path, tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"  # top-level code that spawned workers would run again on import
    script.write_text(
        "from pathlib import Path\n"
        "from arsl_tui.domain.manifest import SplitPolicy\n"
        "from arsl_tui.ops.dataset import validate_dataset\n"
        f"validate_dataset(Path({str(tiny_dataset)!r}), SplitPolicy(), workers=2)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert result.returncode == 1
    # The interpreter may add resource-tracker warnings after the traceback, so look for the error line.
    error_lines = [
        line for line in result.stderr.splitlines() if line.startswith("arsl_tui.ops.processes.WorkerProcessFailed: ")
    ]
    assert len(error_lines) == 1, result.stderr
    assert "a worker process stopped abruptly" in error_lines[0]
    assert 'if __name__ == "__main__":' in error_lines[0]


def test_quarantine_lists_problem_files_in_the_manifest(make_dataset: DatasetFactory) -> None:
    root = make_dataset(per_class=2)
    (root / "ain" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    report = validate_dataset(root, POLICY, quarantine=True)
    assert [item["path"] for item in report.manifest.quarantined] == ["ain/broken.jpg"]
    assert "corrupt" in report.manifest.quarantined[0]["problem"]


def test_odd_sizes_and_colour_are_notes_not_problems(make_dataset: DatasetFactory) -> None:
    root = make_dataset(per_class=1)
    (root / "ain" / "big.jpg").write_bytes(jpeg_bytes(7, size=(128, 96), mode="RGB"))
    report = validate_dataset(root, POLICY)
    assert report.ok
    assert [(note.path, note.kind) for note in report.notes] == [("ain/big.jpg", "normalised")]
    assert "128×96 RGB" in report.notes[0].detail


def test_unusable_folders_raise_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        validate_dataset(tmp_path / "missing", POLICY)
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="is a file"):
        validate_dataset(tmp_path / "file.jpg", POLICY)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class folders with images"):
        validate_dataset(tmp_path / "empty", POLICY)


def run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ARSL_")}
    return subprocess.run(
        [sys.executable, "-m", "arsl_tui", *arguments], capture_output=True, text=True, cwd=cwd, env=env, check=False
    )


def test_cli_exit_codes_and_json(make_dataset: DatasetFactory, tmp_path: Path) -> None:
    root = make_dataset(per_class=1)
    clean = run_cli("data", "validate", str(root), "--json", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    payload = json.loads(clean.stdout)
    assert payload["ok"] is True and payload["images"] == 32
    assert Path(payload["manifest"]).is_file()

    (root / "ain" / "bad.jpg").write_bytes(b"nope")
    failed = run_cli("data", "validate", str(root), cwd=tmp_path)
    assert failed.returncode == 1
    assert "ain/bad.jpg" in failed.stdout and "corrupt" in failed.stdout

    missing = run_cli("data", "validate", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "no such folder" in missing.stderr and "Traceback" not in missing.stderr

    usage = run_cli("data", "validate", cwd=tmp_path)
    assert usage.returncode == 2 and "DIR" in usage.stderr
