"""Real model packages for the gateway tests: trainer.export with randomly initialised weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.local.store import LocalObjectStore
from tests.fixtures.model_packages import gate_json, metrics_json
from trainer.export import export_package
from trainer.model import build_model


def export_random_package(output: Path, seed: int, *, mean: float = 0.5, std: float = 0.25) -> Path:
    """`output/model/`, a real compact-CNN package whose weights depend only on `seed`."""
    torch.manual_seed(seed)
    model = build_model("compact", len(ARSL_CLASSES))
    with torch.no_grad():  # random BatchNorm statistics, so the versions' answers differ visibly
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return export_package(
        output,
        model,
        architecture="compact",
        classes=ARSL_CLASSES,
        mean=mean,
        std=std,
        manifest_id="m-serving",
        metrics={"test_acc": 0.97},
        job_id=f"job-seed-{seed}",
    )


def register_packages(home: Path, packages: dict[str, Path], bucket: str = "arsl-ml") -> ModelRegistry:
    """Register the packages in order (v1, v2, …) in the local registry of `home`."""
    registry = ModelRegistry(LocalObjectStore(home / "store" / bucket), "models/")
    for version, package in packages.items():
        record = registry.register(
            package,
            job_id=f"job-{version}",
            manifest_id="m-serving",
            source=str(package),
            gate=gate_json(),
            metrics=metrics_json(),
            user="tests",
        )
        assert record.version == version, (record.version, version)
    return registry


def install_packages(models_dir: Path, packages: dict[str, Path]) -> None:
    """Put packages where the gateway loads them from (what `arsl deploy` fetches from the registry)."""
    for version, package in packages.items():
        shutil.copytree(package, models_dir / version)
