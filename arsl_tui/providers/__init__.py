"""Backend adapters behind the ports of `arsl_tui.domain.ports`; `open_*` picks one from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.domain.ports import ObjectStore, TrainingPlatform


def open_store(settings: Settings) -> ObjectStore:
    """The object store of the configured backend (the Huawei SDK is imported only when chosen)."""
    if settings.backend == "huawei":
        from arsl_tui.providers.huawei.obs import ObsObjectStore

        return ObsObjectStore.from_settings(settings)
    from arsl_tui.providers.local.store import LocalObjectStore

    return LocalObjectStore(settings.home_dir / "store" / settings.storage.bucket)


def open_training_platform(settings: Settings) -> TrainingPlatform:
    """The training platform of the configured backend (the ModelArts SDK is imported only when chosen)."""
    if settings.backend == "huawei":
        from arsl_tui.providers.huawei.modelarts import ModelArtsTrainingPlatform

        return ModelArtsTrainingPlatform.from_settings(settings)
    from arsl_tui.providers.local.jobs import LocalTrainingPlatform

    return LocalTrainingPlatform.from_settings(settings)
