"""The live input profile measures images in batches, and records exactly what measuring each one would.

`LiveInputs.observe` keeps a request's pixels until FEATURE_BATCH images have come (or a report is asked for)
and measures them together; every image still becomes one event with its own arrival time and answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from arsl_tui.serving.drift import DEFAULT_EDGES, FEATURE_BATCH, LiveInputs
from arsl_tui.serving.rings import EventRing
from tests.serving.drift_packages import jpegs
from trainer.input_profile import FEATURES, bin_counts, image_features
from trainer.preprocess import decode_image


@dataclass(frozen=True)
class Model:
    version: str
    model_dir: Path
    classes: tuple[str, ...] = tuple(f"c{index}" for index in range(32))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_batched_measuring_records_each_image_with_its_own_time_and_answer(tmp_path: Path) -> None:
    clock = Clock()
    inputs = LiveInputs(clock=clock)
    model = Model("v1", tmp_path)  # no input_profile.json: binned on the default edges
    pixels = [decode_image(data) for data in jpegs(5, 2 * FEATURE_BATCH + 5)]
    answers = [[(index % 32, (index % 10) / 10 + 0.05)] for index in range(len(pixels))]
    # Single-image requests, one second apart, and one request of five images at the end.
    for index in range(len(pixels) - 5):
        inputs.observe(model, [pixels[index]], [answers[index]])
        clock.now += 1.0
    inputs.observe(model, pixels[-5:], answers[-5:])
    assert len(inputs.rings["v1"].since(0.0)[0]) == 2 * FEATURE_BATCH, "two full batches measured, five waiting"

    report = inputs.report(window_s=1000, low_confidence=0.5)["versions"]["v1"]["live"]
    expected = image_features(np.stack(pixels))
    assert report["images"] == len(pixels)
    for name in FEATURES:
        assert report["features"][name]["counts"] == bin_counts(expected[name].astype(np.float32), DEFAULT_EDGES)
    assert report["class_counts"] == list(np.bincount([answer[0][0] for answer in answers], minlength=32))
    assert report["low_confidence"] == sum(1 for answer in answers if answer[0][1] < 0.5)

    # Each image kept the time it was answered, not the time its batch was measured: the last 10 s hold the
    # five-image request (at t+32) and the nine single images before it (t+23 … t+31).
    recent = inputs.report(window_s=9.5, low_confidence=0.5)["versions"]["v1"]["live"]
    assert recent["images"] == 5 + 9
    tail = image_features(np.stack(pixels[-14:]))
    for name in FEATURES:
        assert recent["features"][name]["counts"] == bin_counts(tail[name].astype(np.float32), DEFAULT_EDGES)


def test_a_retired_version_leaves_no_waiting_images(tmp_path: Path) -> None:
    inputs = LiveInputs(clock=Clock())
    pixels = [decode_image(data) for data in jpegs(6, 3)]
    for version in ("v1", "v2"):
        inputs.observe(Model(version, tmp_path), pixels, [[(0, 0.9)]] * 3)
    inputs.forget_other_than(["v1"])
    versions = inputs.report(window_s=60, low_confidence=0.5)["versions"]
    assert set(versions) == {"v1"} and versions["v1"]["live"]["images"] == 3


@pytest.mark.parametrize("capacity", [5, 16, 2048])
def test_extend_keeps_the_same_events_as_appending_one_by_one(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    one_by_one = EventRing(capacity, ("f8", "f4", "u1"))
    in_chunks = EventRing(capacity, ("f8", "f4", "u1"))
    at = 0.0
    for chunk in [0, 1, 3, 7, 1, 12, 2, 4, 30, 5, 1, 2500, 9]:
        times = list(at + np.arange(chunk, dtype=np.float64))
        values = rng.random(chunk).astype(np.float32)
        labels = rng.integers(0, 255, chunk).astype(np.uint8)
        at += chunk
        for row in zip(times, values, labels, strict=True):
            one_by_one.append(*row)
        in_chunks.extend(times, values, labels)
        assert in_chunks.size == one_by_one.size and in_chunks.newest == one_by_one.newest
        for got, want in zip(in_chunks.since(-1.0), one_by_one.since(-1.0), strict=True):
            np.testing.assert_array_equal(got, want)
    assert one_by_one.size == capacity
