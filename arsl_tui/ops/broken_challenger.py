"""`arsl pipeline run --broken-challenger`: a challenger with random weights, registered by an override
with its reason logged, in place of the trained one, so the canary's automatic rollback can be seen.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arsl_tui.config import Settings


def register_broken_challenger(settings: Settings, job_id: str, manifest_id: str) -> str:
    """Register a package with random weights as the challenger (by override, with the reason logged)."""
    import torch

    from arsl_tui.domain.classes import ARSL_CLASSES
    from arsl_tui.ops.gating import current_user
    from arsl_tui.ops.registry import open_registry
    from trainer.export import export_package
    from trainer.model import build_model

    broken_job = f"{job_id}-random-weights"
    torch.manual_seed(int(hashlib.sha256(broken_job.encode()).hexdigest()[:8], 16))
    model = build_model(settings.train.model, len(ARSL_CLASSES))
    reason = f"--broken-challenger: random weights in place of job {job_id}'s model, to show an automatic rollback"
    registry = open_registry(settings)
    with tempfile.TemporaryDirectory(prefix="arsl-broken-") as workspace:
        package = export_package(
            Path(workspace),
            model,
            architecture=settings.train.model,
            classes=ARSL_CLASSES,
            mean=0.5,
            std=0.25,
            manifest_id=manifest_id,
            metrics={},
            job_id=broken_job,
        )
        record = registry.register(
            package,
            job_id=broken_job,
            manifest_id=manifest_id,
            source="random weights",
            gate={"verdict": "fail", "rules": [], "detail": reason},
            metrics={},
            user=current_user(),
            override_reason=reason,
        )
    return record.version


__all__ = ["register_broken_challenger"]
