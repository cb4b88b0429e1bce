"""Pure domain records: the manifest (split, id, parsing) and safe store keys."""

from __future__ import annotations

import hashlib
import json

import pytest

from arsl_tui.domain.classes import ARSL_CLASSES, NUM_CLASSES, class_index
from arsl_tui.domain.keys import UnsafeKeyError, check_relative_path, join_key
from arsl_tui.domain.manifest import ImageRecord, ManifestError, SplitPolicy, build_manifest, parse_manifest


def record(path: str, cls: str, content: bytes, split: SplitPolicy) -> ImageRecord:
    md5 = hashlib.md5(content).hexdigest()
    return ImageRecord(
        path=path, cls=cls, bytes=len(content), md5=md5, split=split.assign(md5), width=64, height=64, mode="L"
    )


def test_classes_are_the_32_sorted_arsl2018_folders() -> None:
    assert NUM_CLASSES == 32
    assert class_index("ain") == 0 and class_index("zay") == 31
    with pytest.raises(KeyError, match="'alif'"):
        class_index("alif")


def test_split_is_stable_and_close_to_the_fractions() -> None:
    policy = SplitPolicy(seed=3, val=0.1, test=0.2)
    splits = [policy.assign(hashlib.md5(str(i).encode()).hexdigest()) for i in range(20_000)]
    assert splits == [policy.assign(hashlib.md5(str(i).encode()).hexdigest()) for i in range(20_000)]
    assert splits.count("test") / len(splits) == pytest.approx(0.2, abs=0.015)
    assert splits.count("val") / len(splits) == pytest.approx(0.1, abs=0.015)
    other_seed = [
        SplitPolicy(seed=4, val=0.1, test=0.2).assign(hashlib.md5(str(i).encode()).hexdigest()) for i in range(2_000)
    ]
    assert other_seed != splits[:2_000]


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.6, 0.5), (1.0, 0.0)])
def test_split_policy_rejects_impossible_fractions(val: float, test: float) -> None:
    with pytest.raises(ManifestError, match="split fractions"):
        SplitPolicy(val=val, test=test)


def test_manifest_id_is_content_addressed_and_order_independent() -> None:
    policy = SplitPolicy()
    images = [record(f"{cls}/{i}.jpg", cls, f"{cls}{i}".encode(), policy) for cls in ARSL_CLASSES[:3] for i in range(4)]
    first = build_manifest(images, policy)
    second = build_manifest(list(reversed(images)), policy)
    assert first.id == second.id
    changed = build_manifest([*images[:-1], record(images[-1].path, images[-1].cls, b"other", policy)], policy)
    assert changed.id != first.id
    assert sum(sum(counts.values()) for counts in first.counts().values()) == 12


def test_manifest_round_trip_and_tamper_detection() -> None:
    policy = SplitPolicy()
    manifest = build_manifest(
        [record("ain/a.jpg", "ain", b"a", policy)], policy, quarantined=[{"path": "ain/b.jpg", "problem": "corrupt"}]
    )
    data = manifest.to_json_bytes()
    parsed = parse_manifest(data)
    assert parsed.id == manifest.id and parsed.images == manifest.images
    tampered = json.loads(data)
    tampered["images"][0]["split"] = "test" if tampered["images"][0]["split"] != "test" else "train"
    with pytest.raises(ManifestError, match="does not match its content"):
        parse_manifest(json.dumps(tampered).encode(), "x/manifest.json")
    with pytest.raises(ManifestError, match=r"x/manifest\.json: not valid JSON"):
        parse_manifest(b"{", "x/manifest.json")
    with pytest.raises(ManifestError, match="format"):
        parse_manifest(b'{"format": "other"}')


@pytest.mark.parametrize(
    "path",
    ["", "/etc/passwd", "a/../b", "..", "a//b", "./a", "a\\b", "a/\x00b", "ok/\udcff.jpg", "x" * 1100],
)
def test_unsafe_relative_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafeKeyError):
        check_relative_path(path)


def test_safe_paths_and_join() -> None:
    assert check_relative_path("ain/photo 1 (copy)..jpg") == "ain/photo 1 (copy)..jpg"
    assert join_key("datasets", "ain/x.jpg") == "datasets/ain/x.jpg"
    assert join_key("", "ain/x.jpg") == "ain/x.jpg"
    with pytest.raises(UnsafeKeyError):
        join_key("datasets/", "../x")
