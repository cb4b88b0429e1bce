"""The composition root: the one place that turns `settings.backend` into the adapters and the words of a
backend. `ops/`, `cli/` and `ui/` ask `backend_for(settings)` for what they need and never test the
backend's name themselves nor import `arsl_tui.providers`.

Adding a backend (or a serving mode) is one adapter under `providers/` and one entry here. Adapters are
imported inside the factory methods, so choosing a backend never loads another backend's SDK, and building
a `Backend` costs nothing (the console builds one on its first frame).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.domain.ports import ObjectStore, TrainingPlatform

PROJECT_ENV = "HUAWEICLOUD_SDK_PROJECT_ID"
CLOUD_MIN_REFRESH_S = 5.0
"""Slowest a cloud backend is polled: each tick of a reader is several ModelArts and OBS calls."""


@dataclass(frozen=True)
class Backend:
    """What one configured backend is and how to reach it: its name and words for screens and prompts,
    and factories for its adapters (each imports its provider when called)."""

    settings: Settings
    name: str
    """`local` or `huawei`, as `--backend` and `--json` output spell it."""
    runs_here: bool
    """Jobs, the gateway and the monitor are processes on this machine (and state files under the home)."""
    min_poll_s: float
    """Readers poll no faster than this (0: only `[console] refresh_s` applies)."""
    region: str
    """The cloud region, or `–` where there is none."""
    training_label: str
    """Where a job runs, for a confirmation line: `local torchrun`, `ModelArts af-north-1, flavor …`."""
    training_where: str
    """Where a job runs, for a sentence: `locally, as a detached torchrun process group`."""
    workers_label: str
    """What one node's workers are: `process(es)` or `GPU(s)`."""
    job_stop_how: str
    """How a stop request ends a job."""
    monitor_label: str
    """Who evaluates alarm rules: `the local monitor` or `Cloud Eye`."""

    @property
    def project(self) -> str:
        """The cloud project id (an identifier, not a secret); `–` where there is none."""
        if self.runs_here:
            return "–"
        return os.environ.get(PROJECT_ENV, "") or "not set"

    def default_nodes(self) -> int:
        return 1 if self.runs_here else self.settings.train.nodes

    def default_processes(self) -> int:
        train = self.settings.train
        return train.local_processes if self.runs_here else max(1, train.gpus)

    def dataset_destination(self, prefix: str) -> str:
        """Where an upload under `prefix` goes, in words."""
        storage = self.settings.storage
        if self.runs_here:
            return f"local store {self.settings.home_dir / 'store' / storage.bucket}, under {prefix}"
        return f"obs://{storage.bucket}/{prefix} ({self.region})"

    def unusable_reason(self) -> str | None:
        """Why this backend cannot be used on this machine (a missing extra, no credentials), or None."""
        if self.runs_here:
            return None
        from arsl_tui.providers.huawei.credentials import unusable_reason

        return unusable_reason()

    def object_store(self) -> ObjectStore:
        """The object store (the Huawei SDK is imported only when this backend is huawei)."""
        if self.runs_here:
            from arsl_tui.providers.local.store import LocalObjectStore

            return LocalObjectStore(self.settings.home_dir / "store" / self.settings.storage.bucket)
        from arsl_tui.providers.huawei.obs import ObsObjectStore

        return ObsObjectStore.from_settings(self.settings)

    def training_platform(self) -> TrainingPlatform:
        """The training platform (the ModelArts SDK is imported only when this backend is huawei)."""
        if self.runs_here:
            from arsl_tui.providers.local.jobs import LocalTrainingPlatform

            return LocalTrainingPlatform.from_settings(self.settings)
        from arsl_tui.providers.huawei.modelarts import ModelArtsTrainingPlatform

        return ModelArtsTrainingPlatform.from_settings(self.settings)


def _local(settings: Settings) -> Backend:
    return Backend(
        settings=settings, name="local", runs_here=True, min_poll_s=0.0, region="–",
        training_label="local torchrun", training_where="locally, as a detached torchrun process group",
        workers_label="process(es)",
        job_stop_how="SIGTERM to its process group, SIGKILL if it has not ended after the grace period",
        monitor_label="the local monitor")


def _huawei(settings: Settings) -> Backend:
    region, train = settings.huawei.region, settings.train
    return Backend(
        settings=settings, name="huawei", runs_here=False, min_poll_s=CLOUD_MIN_REFRESH_S, region=region,
        training_label=f"ModelArts {region}, flavor {train.flavor_id}",
        training_where=f"on ModelArts ({region}), {train.engine_name}, flavor {train.flavor_id}",
        workers_label="GPU(s)", job_stop_how="ModelArts terminates it (action_type=terminate)",
        monitor_label="Cloud Eye")


_BACKENDS = {"local": _local, "huawei": _huawei}


def backend_for(settings: Settings) -> Backend:
    """The configured backend (`settings.backend`; the config layer has refused any other name)."""
    return _BACKENDS[settings.backend](settings)


__all__ = ["CLOUD_MIN_REFRESH_S", "PROJECT_ENV", "Backend", "backend_for"]
