"""Input drift use cases: the gateway's drift reports, `arsl drift status`, and shifted images for the demo.

The local gateway keeps each version's recent inputs binned with the edges of that version's reference
profile (`GET /admin/drift`); this module turns its answer into `domain.drift.DriftReport`s, which the
local monitor's sampler turns into `input_drift` points (`domain.alarms.drift_samples`), and which
`arsl drift status` shows with the state of the `arsl-input-drift` rule. On the huawei backend there is
no gateway here: `arsl drift check` (ops/drift_check.py) scores a folder of captured inputs with
`report_of_pixels` and pushes the score to Cloud Eye as a custom metric
(`ops.monitoring.publish_input_drift`); `status` shows the rule only.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arsl_tui.backends import backend_for
from arsl_tui.domain.alarms import INPUT_DRIFT, AlarmState, MonitorError, RuleView
from arsl_tui.domain.drift import (
    DriftError,
    DriftReport,
    DriftThresholds,
    LiveProfile,
    ReferenceProfile,
    Verdict,
    compare,
)
from arsl_tui.domain.serving import ServingError, WrongBackend

if TYPE_CHECKING:
    from arsl_tui.config import Settings

DRIFT_TIMEOUT_S = 5.0
SHIFTS = ("invert", "blur")
"""How `arsl api-test --drift` moves its images away from the training distribution."""
BLUR_RADIUS = 4.0


def thresholds(settings: Settings) -> DriftThresholds:
    drift = settings.drift
    return DriftThresholds(
        threshold=drift.threshold,
        periods=drift.periods,
        window_s=drift.window_s,
        low_confidence=drift.low_confidence,
        min_images=drift.min_images,
    )


def reports_from_json(body: Any, limits: DriftThresholds) -> list[DriftReport]:
    """`GET /admin/drift`'s answer → one report per version (a version's malformed reference counts as none)."""
    if not isinstance(body, dict) or not isinstance(body.get("versions"), dict):
        raise ServingError("the gateway's drift report is not the expected JSON ({'versions': {...}})")
    reports = []
    for version, item in sorted(body["versions"].items()):
        where = f"the gateway's drift report of {version}"
        try:
            live = LiveProfile.from_json(item.get("live") if isinstance(item, dict) else None, where)
        except DriftError as error:
            raise ServingError(str(error)) from None
        document = item.get("reference")
        try:
            reference = ReferenceProfile.from_json(document, f"{version}'s input_profile.json") if document else None
        except DriftError:
            reference = None  # a profile this console cannot read is no reference: reported as such
        reports.append(compare(reference, live, limits))
    return reports


def gateway_reports(
    settings: Settings, *, window_s: float | None = None, timeout_s: float = DRIFT_TIMEOUT_S
) -> list[DriftReport]:
    """Every version's drift over the last `window_s` (default `[drift] window_s`) from the local gateway.

    ServingError when the gateway is not running or does not answer; WrongBackend where models are served
    elsewhere.
    """
    limits = thresholds(settings)
    control = backend_for(settings).gateway_control()
    try:
        body = control.admin(
            "GET",
            "/admin/drift",
            params={"window_s": window_s or limits.window_s, "low_confidence": limits.low_confidence},
            timeout_s=timeout_s,
        )
    finally:
        control.close()
    return reports_from_json(body, limits)


@dataclass(frozen=True)
class DriftStatus:
    backend: str
    thresholds: DriftThresholds
    reports: tuple[DriftReport, ...]
    rule: RuleView | None
    """The `arsl-input-drift` rule with its state (None before `arsl alarms setup`, or unreadable)."""
    notes: tuple[str, ...] = ()

    @property
    def drifting_since(self) -> float | None:
        """When the rule entered alarm (None while it is not in alarm)."""
        if self.rule is None or self.rule.state is not AlarmState.ALARM:
            return None
        return self.rule.since

    @property
    def drifting(self) -> bool:
        return any(report.verdict is Verdict.DRIFTING for report in self.reports) or self.drifting_since is not None

    def to_json(self) -> dict[str, Any]:
        limits = self.thresholds
        rule = self.rule
        return {
            "backend": self.backend,
            "window_s": limits.window_s,
            "threshold": limits.threshold,
            "periods": limits.periods,
            "low_confidence": limits.low_confidence,
            "min_images": limits.min_images,
            "drifting": self.drifting,
            "drifting_since": self.drifting_since,
            "rule": None
            if rule is None
            else {
                "name": rule.rule.name,
                "state": rule.state.value,
                "since": rule.since,
                "value": rule.value,
                "condition": rule.rule.condition,
            },
            "versions": {report.version: report.to_json() for report in self.reports},
            "notes": list(self.notes),
        }


def _drift_rule(settings: Settings) -> tuple[RuleView | None, str | None]:
    from arsl_tui.ops import monitoring

    try:
        views = monitoring.list_rules(settings)
    except MonitorError as error:
        return None, f"the alarm rules cannot be read: {error}"
    found = next((view for view in views if view.rule.name == INPUT_DRIFT), None)
    return found, None if found else f"no {INPUT_DRIFT} rule yet: `arsl alarms setup` creates it"


def status(settings: Settings) -> DriftStatus:
    """Each served version's drift over the window, and the drift rule's state."""
    backend = backend_for(settings)
    notes: list[str] = []
    reports: list[DriftReport] = []
    try:
        reports = gateway_reports(settings)
    except WrongBackend:
        notes.append(
            f"{backend.serving_through} serve the models: live per-feature profiles exist only in the local "
            f"gateway; {backend.monitor_label} judges the input_drift metric `arsl drift check FOLDER` pushes"
        )
    except ServingError as error:
        notes.append(f"no live profile: {error}")
    rule, problem = _drift_rule(settings)
    if problem:
        notes.append(problem)
    if any(report.verdict is Verdict.NO_REFERENCE for report in reports):
        notes.append("a version without input_profile.json was exported before profiles existed: retrain to get one")
    return DriftStatus(backend.name, thresholds(settings), tuple(reports), rule, tuple(notes))


def report_of_images(
    version: str,
    images: Sequence[bytes],
    answers: Sequence[tuple[int, float]],
    reference: dict[str, Any] | None,
    limits: DriftThresholds,
    *,
    window_s: float = 0.0,
) -> DriftReport:
    """The drift of `images` (and the (class index, top-1 confidence) answered for each) against a reference
    profile document: what a caller that sees the inputs itself computes where no gateway here profiles them.
    Images that do not decode are left out."""
    import numpy as np

    from trainer.preprocess import IMAGE_SIZE, ImageDecodeError, decode_image

    decoded, kept = [], []
    for data, answer in zip(images, answers, strict=True):
        try:
            decoded.append(decode_image(data))
        except ImageDecodeError:
            continue
        kept.append(answer)
    pixels = np.stack(decoded) if decoded else np.empty((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    return report_of_pixels(version, pixels, kept, reference, limits, window_s=window_s)


def report_of_pixels(
    version: str,
    pixels: Any,
    answers: Sequence[tuple[int, float]],
    reference: dict[str, Any] | None,
    limits: DriftThresholds,
    *,
    window_s: float = 0.0,
) -> DriftReport:
    """`report_of_images` on images already decoded: `pixels` is their (N, 64, 64) uint8 array (what
    `trainer.preprocess.decode_image` gives, and what the model was fed), one answer per image."""
    import numpy as np

    from trainer.input_profile import FEATURES as PROFILE_FEATURES
    from trainer.input_profile import bin_counts, image_features

    if len(pixels) != len(answers):
        raise ValueError(f"{len(pixels)} image(s) but {len(answers)} answer(s)")
    try:
        profile = ReferenceProfile.from_json(reference) if reference is not None else None
    except DriftError:
        profile = None
    values = image_features(pixels) if len(pixels) else {name: np.empty(0) for name in PROFILE_FEATURES}
    confidence = np.asarray([answer[1] for answer in answers], dtype=np.float64)
    classes = len(profile.class_counts) if profile is not None else 0
    counts = [0] * classes
    for index, _ in answers:
        if 0 <= index < classes:
            counts[index] += 1

    def binned(name: str, column: Any) -> dict[str, Any]:
        edges = list(profile.features[name].edges) if profile is not None else []
        return {"edges": edges, "counts": bin_counts(column, edges)}

    live = LiveProfile.from_json(
        {
            "version": version,
            "window_s": window_s,
            "images": len(answers),
            "features": {name: binned(name, values[name]) for name in PROFILE_FEATURES},
            "confidence": {
                "edges": list(profile.confidence.edges) if profile is not None else [],
                "counts": bin_counts(confidence, list(profile.confidence.edges) if profile is not None else []),
            },
            "class_counts": counts,
            "low_confidence": int(np.count_nonzero(confidence < limits.low_confidence)),
        },
        f"the inputs sent to {version}",
    )
    return compare(profile, live, limits)


# --- the demo: images from a shifted distribution ---------------------------------------------------


def shift_image(data: bytes, how: str) -> bytes:
    """The image inverted (negative) or heavily blurred, re-encoded as JPEG: what a new camera or lighting
    could do to production inputs, for `arsl api-test --drift`."""
    from PIL import Image, ImageFilter, ImageOps

    if how not in SHIFTS:
        raise ValueError(f"shift {how!r}: expected one of {', '.join(SHIFTS)}")
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("L")
    shifted = ImageOps.invert(image) if how == "invert" else image.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    out = io.BytesIO()
    shifted.save(out, format="JPEG", quality=92)
    return out.getvalue()


def shifted_samples(samples: Sequence[tuple[bytes, str | None]], how: str) -> list[tuple[bytes, str | None]]:
    """Labelled samples with every image shifted (labels kept: accuracy on them shows what drift costs)."""
    return [(shift_image(data, how), label) for data, label in samples]


def since_text(since: float | None, now: float | None = None) -> str:
    """`for 12 min (since 14:03:10)`, or `—`."""
    if since is None:
        return "—"
    elapsed = max(0.0, (time.time() if now is None else now) - since)
    span = (
        f"{elapsed:.0f} s"
        if elapsed < 120
        else f"{elapsed / 60:.0f} min"
        if elapsed < 7200
        else f"{elapsed / 3600:.1f} h"
    )
    return f"for {span} (since {time.strftime('%H:%M:%S', time.localtime(since))})"


__all__ = [
    "SHIFTS",
    "DriftStatus",
    "gateway_reports",
    "report_of_images",
    "report_of_pixels",
    "reports_from_json",
    "shift_image",
    "shifted_samples",
    "since_text",
    "status",
    "thresholds",
]
