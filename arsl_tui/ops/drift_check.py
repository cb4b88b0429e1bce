"""`arsl drift check FOLDER`: the input drift of a folder of captured production images, against the reference
profile of the version that answers them.

Where no gateway here sees live traffic (the huawei backend: ModelArts does not expose request bodies), the
operator collects a sample of production inputs into a folder. This use case decodes each image once (as the
model's input, 64×64 pixels), gets the version's answer for it from that version's own package run here on
the CPU (fetched from the registry as the local gateway fetches it; weights from safetensors, nothing is
unpickled), scores the sample against the package's `input_profile.json` (`ops.drift.report_of_pixels`) and,
on a backend whose monitor is not here, pushes the score to the custom metric `input_drift`
(`ops.monitoring.publish_input_drift`), where the `arsl-input-drift` rule judges it. The local gateway
profiles live traffic itself, so nothing is pushed there.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arsl_tui.backends import backend_for
from arsl_tui.domain.alarms import INPUT_DRIFT_METRIC
from arsl_tui.domain.drift import DriftReport, Verdict

if TYPE_CHECKING:
    from arsl_tui.config import Settings

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
"""The files of a sample folder that count as images (case-insensitive); every other file is ignored."""


class CheckInputError(ValueError):
    """What the operator gave cannot be checked (a folder without images, an unknown version, a folder that is
    no package); the message names it."""


@dataclass(frozen=True)
class Sample:
    """A folder's images decoded to the model's input: `pixels` is an (N, 64, 64) uint8 array."""

    folder: Path
    pixels: Any
    undecodable: tuple[str, ...]
    """The image files that did not decode, relative to the folder."""

    @property
    def images(self) -> int:
        return len(self.pixels)


@dataclass(frozen=True)
class PushedMetric:
    monitor: str
    namespace: str
    metric: str
    dimensions: dict[str, str]
    value: float

    def to_json(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "namespace": self.namespace,
            "metric": self.metric,
            "dimensions": dict(self.dimensions),
            "value": self.value,
        }

    def describe(self) -> str:
        """`pushed input_drift=0.412 to Cloud Eye ARSL.Serving, service_id=svc-1`."""
        dims = ", ".join(f"{name}={value}" for name, value in sorted(self.dimensions.items()))
        return f"pushed {self.metric}={self.value:.3f} to {self.monitor} {self.namespace}, {dims}"


@dataclass(frozen=True)
class DriftCheck:
    version: str
    report: DriftReport
    undecodable: tuple[str, ...]
    pushed: PushedMetric | None
    note: str | None
    """Why nothing was pushed (None when something was)."""

    @property
    def drifting(self) -> bool:
        return self.report.verdict is Verdict.DRIFTING

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report.to_json(),
            "version": self.version,
            "images": self.report.images,
            "undecodable": list(self.undecodable),
            "pushed": None if self.pushed is None else self.pushed.to_json(),
            "note": self.note,
        }


def image_files(folder: Path) -> list[Path]:
    """The JPEG and PNG files under `folder`, recursively, in name order; CheckInputError when there is none."""
    if not folder.is_dir():
        raise CheckInputError(f"{folder}: no such folder (expected a folder of captured JPEG/PNG images)")
    found = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    if not found:
        raise CheckInputError(f"{folder}: holds no image (.jpg, .jpeg or .png files, searched recursively)")
    return found


def read_sample(folder: Path) -> Sample:
    """Every image of `folder` decoded once; a file that cannot be read or decoded is named, never fatal."""
    import numpy as np

    from trainer.preprocess import IMAGE_SIZE, ImageDecodeError, decode_image

    decoded, undecodable = [], []
    for path in image_files(folder):
        try:
            decoded.append(decode_image(path.read_bytes()))
        except (ImageDecodeError, OSError):
            undecodable.append(path.relative_to(folder).as_posix())
    pixels = np.stack(decoded) if decoded else np.empty((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    return Sample(folder, pixels, tuple(undecodable))


def answers_of(package: Path, pixels: Any) -> list[tuple[int, float]]:
    """The package's model on the CPU: (class index, top-1 confidence) per image of `pixels`."""
    import torch

    from trainer.predict import PackageError, Predictor
    from trainer.preprocess import normalise

    try:
        predictor = Predictor.load(package, device="cpu")
    except PackageError as error:
        raise CheckInputError(str(error)) from None
    if not len(pixels):
        return []
    batch = normalise(torch.from_numpy(pixels), predictor.mean, predictor.std).unsqueeze(1)
    confidence, index = predictor.probabilities(batch).max(dim=1)
    return [(int(item), float(value)) for item, value in zip(index.tolist(), confidence.tolist(), strict=True)]


@contextlib.contextmanager
def version_package(settings: Settings, version: str | None) -> Iterator[tuple[str, Path]]:
    """`version` (default: the champion, the version the service answers with) and its package folder,
    fetched from the registry into the local serving cache as the local gateway fetches it. In read-only
    mode nothing may be written under $ARSL_HOME: a package not cached yet is fetched into a temporary
    folder, removed when the block ends."""
    from arsl_tui.domain.registry import CHAMPION, VersionFormatError
    from arsl_tui.ops.registry import ModelRegistry, VersionNotFound
    from arsl_tui.ops.serving import ServingError, fetch_package, resolve_version
    from arsl_tui.state.gateway_files import models_dir

    registry = ModelRegistry.from_settings(settings)
    try:
        name = resolve_version(registry, version or CHAMPION)
    except (VersionFormatError, VersionNotFound) as error:
        raise CheckInputError(str(error)) from None
    except ServingError as error:  # no champion yet
        raise CheckInputError(f"{error}; name the version with --version V") from None
    cached = models_dir(settings.home_dir) / name
    if not settings.read_only or (cached / "config.json").is_file():
        yield name, fetch_package(registry, settings.home_dir, name)
        return
    with tempfile.TemporaryDirectory(prefix="arsl-drift-check-") as scratch:
        yield name, fetch_package(registry, Path(scratch), name)


def pushes(settings: Settings, push: bool) -> bool:
    """Whether a check with `push` sends its score somewhere (only where the monitor is not here)."""
    return push and not backend_for(settings).runs_here


def push_score(settings: Settings, score: float, *, monitor: Any = None) -> PushedMetric:
    """Push `score` as `input_drift` where the `arsl-input-drift` rule reads it (MonitorUnavailable where
    `alarms.service_id` is not set; MonitorError when the monitor refuses)."""
    from arsl_tui.ops.monitoring import publish_input_drift

    backend = backend_for(settings)
    publish_input_drift(settings, score, monitor=monitor)  # refuses (MonitorUnavailable) without a series
    namespace, dims = backend.custom_metric_series() or ("", {})
    return PushedMetric(backend.monitor_label, namespace, INPUT_DRIFT_METRIC, dict(dims), score)


def check(
    settings: Settings,
    folder: Path,
    *,
    version: str | None = None,
    package: Path | None = None,
    push: bool = True,
    monitor: Any = None,
) -> DriftCheck:
    """Score `folder` against `version`'s reference profile (or a local exported `package` folder, named
    `version` or after the folder), and push the score unless `push` is False or the monitor is local."""
    from arsl_tui.ops.drift import report_of_pixels, thresholds
    from trainer.input_profile import read_profile

    sample = read_sample(folder)  # first: a wrong folder is named before any registry or model work
    with contextlib.ExitStack() as stack:
        if package is not None:
            if not package.is_dir():
                raise CheckInputError(f"{package}: no such folder (expected an exported model package)")
            name = version or package.name
        else:
            name, package = stack.enter_context(version_package(settings, version))
        answers = answers_of(package, sample.pixels)
        reference = read_profile(package)
    report = report_of_pixels(name, sample.pixels, answers, reference, thresholds(settings))
    backend = backend_for(settings)
    pushed, note = None, None
    if backend.runs_here:
        note = (
            f"not pushed: {backend.serving_through} profiles live traffic itself and {backend.monitor_label} judges it"
        )
    elif not push:
        note = "not pushed (--no-push)"
    elif report.score is None:
        note = f"not pushed: no score ({report.verdict.value}); {backend.monitor_label} sees no data point this time"
    else:
        pushed = push_score(settings, report.score, monitor=monitor)
    return DriftCheck(name, report, sample.undecodable, pushed, note)


def shown_names(names: Sequence[str], limit: int = 5) -> str:
    """`a.jpg, b/c.png and 12 more`."""
    head = ", ".join(names[:limit])
    return head if len(names) <= limit else f"{head} and {len(names) - limit} more"


__all__ = [
    "IMAGE_SUFFIXES",
    "CheckInputError",
    "DriftCheck",
    "PushedMetric",
    "Sample",
    "answers_of",
    "check",
    "image_files",
    "push_score",
    "pushes",
    "read_sample",
    "shown_names",
    "version_package",
]
