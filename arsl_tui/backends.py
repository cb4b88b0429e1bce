"""The composition root: the one place that turns `settings.backend` into the adapters and the words of a
backend. `ops/`, `cli/` and `ui/` ask `backend_for(settings)` for what they need and never test the
backend's name themselves nor import `arsl_tui.providers`.

Adding a backend (or a serving mode) is one adapter under `providers/` and one entry here. Adapters are
imported inside the factory methods, so choosing a backend never loads another backend's SDK, and building
a `Backend` costs nothing (the console builds one on its first frame).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arsl_tui.domain.serving import WrongBackend

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.domain.alarms import AlarmRule, AlarmThresholds, Sampler, SkippedRule
    from arsl_tui.domain.ports import (
        CanaryStateStore,
        GatewayControl,
        ModelImporter,
        Monitor,
        ObjectStore,
        ServingPlatform,
        TrainingPlatform,
    )
    from arsl_tui.ops.doctor import Check
    from arsl_tui.ops.gateway_versions import PublishedVersions
    from arsl_tui.ops.registry import ModelRegistry
    from arsl_tui.providers.local.monitor import LocalMonitor, OperatorLog

PROJECT_ENV = "HUAWEICLOUD_SDK_PROJECT_ID"


class ApiGatewayError(Exception):
    """API Gateway refused or failed a setup call; the message names the call and the answer."""


@dataclass(frozen=True)
class Backend:
    """What one configured backend is and how to reach it: its name and words for screens and prompts,
    and factories for its adapters (each imports its provider when called)."""

    settings: Settings
    name: str
    """`local` or `huawei`, as `--backend` and `--json` output spell it."""
    runs_here: bool
    """Jobs, the gateway and the monitor are processes on this machine (and state files under the home)."""
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
    workers_per_node: str
    """What `processes_per_node` counts, for a table row: `processes per node` or `GPUs per node`."""
    data_scheme: str
    """How the locations of data sets uploaded to this backend begin: `local:` or `obs://`."""
    serving_through: str
    """What serves models, for a sentence: `the local gateway`, `ModelArts and APIG`."""
    service_platform: str
    """Whose service status is read, for a status line: `gateway`, `ModelArts`."""

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
        folder = self.store_folder()
        if folder is not None:
            return f"local store {folder}, under {prefix}"
        return f"obs://{self.settings.storage.bucket}/{prefix} ({self.region})"

    def store_folder(self) -> Path | None:
        """The object store's folder where the store is on this machine (opening the store creates it);
        None for a cloud store."""
        if self.runs_here:
            return self.settings.home_dir / "store" / self.settings.storage.bucket
        return None

    def unusable_reason(self) -> str | None:
        """Why this backend cannot be used on this machine (a missing extra, no credentials), or None."""
        if self.runs_here:
            return None
        from arsl_tui.providers.huawei.credentials import unusable_reason

        return unusable_reason()

    def object_store(self) -> ObjectStore:
        """The object store (the Huawei SDK is imported only when this backend is huawei)."""
        folder = self.store_folder()
        if folder is not None:
            from arsl_tui.providers.local.store import LocalObjectStore

            return LocalObjectStore(folder)
        from arsl_tui.providers.huawei.obs import ObsObjectStore

        return ObsObjectStore.from_settings(self.settings)

    def training_platform(self) -> TrainingPlatform:
        """The training platform (the ModelArts SDK is imported only when this backend is huawei)."""
        if self.runs_here:
            from arsl_tui.providers.local.jobs import LocalTrainingPlatform

            return LocalTrainingPlatform.from_settings(self.settings)
        from arsl_tui.providers.huawei.modelarts import ModelArtsTrainingPlatform

        return ModelArtsTrainingPlatform.from_settings(self.settings)

    def check_gateway_here(self) -> None:
        """`WrongBackend` where models are served elsewhere than by the gateway on this machine."""
        if not self.runs_here:
            raise WrongBackend(
                f"the {self.name} backend serves through {self.serving_through}; this command drives "
                "the local gateway (use --backend local)"
            )

    def gateway_control(self) -> GatewayControl:
        """The control of the gateway process on this machine (process, stored deployment, admin API);
        `WrongBackend` where models are served elsewhere."""
        self.check_gateway_here()
        from arsl_tui.providers.local.serving_control import LocalServingControl

        return LocalServingControl.from_settings(self.settings)

    def service_name(self) -> str:
        """The name of the service the canary controller drives."""
        if self.runs_here:
            from arsl_tui.providers.local.serving_platform import SERVICE

            return SERVICE
        return self.settings.huawei.service_name

    def serving_platform(self, registry: Callable[[], ModelRegistry]) -> ServingPlatform:
        """The serving platform (the Huawei SDKs are imported only when this backend is huawei): the local
        gateway; on Huawei by `[huawei] serving`, `realtime` (v1 real-time services over imported AI
        applications, public or dedicated pool) or `deployments` (new-version services on the dedicated pool
        `pool_id`). `registry` makes the model registry, asked only when a version's package is needed."""
        settings = self.settings
        if self.runs_here:
            from arsl_tui.ops.serving import fetch_package
            from arsl_tui.providers.local.serving_control import LocalServingControl
            from arsl_tui.providers.local.serving_platform import LocalServingPlatform

            return LocalServingPlatform(
                lambda: LocalServingControl.from_settings(settings),
                lambda version: fetch_package(registry(), settings.home_dir, version),
            )
        if settings.huawei.serving == "realtime":
            from arsl_tui.ops.model_import import model_id_function
            from arsl_tui.providers.huawei.realtime_services import RealtimeServingPlatform

            # wait_s=0: a canary tick holds the canary lock, so a version whose AI application is still
            # publishing fails the tick (transiently) instead of waiting; `arsl models import` is what waits.
            return RealtimeServingPlatform.from_settings(
                settings, model_id=model_id_function(registry, self._model_importer, wait_s=0.0)
            )
        from arsl_tui.providers.huawei.deployment_services import ModelArtsDeploymentServing

        def package_address(version: str) -> str:
            found = registry()
            record = found.get(version)
            return f"obs://{settings.storage.bucket}/{found.prefix}packages/{record.lineage.package_id}/"

        return ModelArtsDeploymentServing.from_settings(settings, package_address=package_address)

    def publish_service(self, url: str, gateway: Any = None) -> Any:
        """Publish the service answering at `url` through API Gateway (`gateway`, else the configured
        instance's client); returns the setup report. `ApiGatewayError` carries the gateway's refusal."""
        from arsl_tui.providers.huawei.apig import ApigError, ApigGateway, spec_from_settings

        try:
            gateway = gateway or ApigGateway.from_settings(self.settings)
            return gateway.setup(spec_from_settings(self.settings, url))
        except ApigError as error:
            raise ApiGatewayError(str(error)) from None

    def api_gateway(self) -> PublishedVersions:
        """The configured dedicated API Gateway instance: the published versions of the prediction API and the
        switch back to one. Its refusals are `BackendCallError`s (`ApigError`)."""
        from arsl_tui.providers.huawei.apig import ApigGateway

        return ApigGateway.from_settings(self.settings)

    # --- alarms ---------------------------------------------------------------------------------

    def alarm_rules(self, thresholds: AlarmThresholds) -> tuple[list[AlarmRule], list[SkippedRule]]:
        """The default alarm rules on this backend's metrics, and those skipped for a missing resource."""
        if self.runs_here:
            from arsl_tui.domain.alarms import local_rules

            return local_rules(thresholds), []
        from arsl_tui.providers.huawei.alarm_rules import CloudTargets, cloud_eye_rules

        alarms = self.settings.alarms
        targets = CloudTargets(
            service_id=alarms.service_id.strip(),
            apig_instance_id=self.settings.huawei.apig_instance_id.strip(),
            api_id=alarms.api_id.strip(),
        )
        return cloud_eye_rules(thresholds, targets)

    def custom_metric_series(self) -> tuple[str, dict[str, str]] | None:
        """The namespace and dimensions of the metrics arsl pushes itself (canary rollbacks, online
        accuracy); None where the service they describe is not configured (`alarms.service_id`)."""
        from arsl_tui.domain.alarms import LOCAL_NAMESPACE, LOCAL_SERVICE, SERVICE_DIMENSION

        if self.runs_here:
            return LOCAL_NAMESPACE, {SERVICE_DIMENSION: LOCAL_SERVICE}
        service_id = self.settings.alarms.service_id.strip()
        if not service_id:
            return None
        return self.settings.alarms.custom_namespace, {SERVICE_DIMENSION: service_id}

    def sampling_monitor(self, sampler: Sampler, *, clock: Callable[[], float] = time.time) -> LocalMonitor:
        """A monitor over the state file that measures with `sampler` and judges its rules itself, each
        round (the monitor of a backend that runs here)."""
        from arsl_tui.providers.local.monitor import LocalMonitor
        from arsl_tui.state.db import open_state

        return LocalMonitor(
            open_state(self.settings.home_dir),
            sampler=sampler,
            clock=clock,
            retention_s=self.settings.alarms.retention_days * 86400.0,
        )

    def monitor(self, sampler: Sampler) -> Monitor:
        """The alarm monitor: where the backend runs here, `sampling_monitor(sampler)`; elsewhere the
        cloud's (the CES SDK is imported only then), which measures by itself and ignores `sampler`."""
        if self.runs_here:
            return self.sampling_monitor(sampler)
        from arsl_tui.providers.huawei.ces import CloudEyeMonitor

        return CloudEyeMonitor.from_settings(self.settings)

    def operator_log(self) -> OperatorLog:
        """Acknowledgements and silences, kept in the state file on every backend (Cloud Eye has none)."""
        from arsl_tui.providers.local.monitor import OperatorLog
        from arsl_tui.state.db import open_state

        return OperatorLog(open_state(self.settings.home_dir))

    def model_importer(self) -> ModelImporter | None:
        """What turns a registered version into a model the serving platform deploys (ModelArts AI
        applications; the SDK is imported only then); None where packages are served as registered."""
        if self.runs_here:
            return None
        from arsl_tui.providers.huawei.models import ModelArtsModelImporter

        return ModelArtsModelImporter.from_settings(self.settings)

    def imports_before_serving(self) -> bool:
        """Whether a version must be imported (`model_importer`) before the serving platform can deploy it:
        v1 real-time services deploy AI applications by `model_id`; new-version deployments and the local
        gateway load the registered package itself."""
        return not self.runs_here and self.settings.huawei.serving == "realtime"

    def _model_importer(self) -> ModelImporter:
        importer = self.model_importer()
        if importer is None:
            raise WrongBackend(f"the {self.name} backend serves registered packages as they are: nothing to import")
        return importer

    def preflight(self) -> list[Check]:
        """`arsl doctor`'s read-only checks of this backend, in the order a pipeline run needs them."""
        if self.runs_here:
            from arsl_tui.providers.local.preflight import local_checks

            return local_checks(self.settings)
        from arsl_tui.providers.huawei.preflight import huawei_checks

        return huawei_checks(self.settings)

    def canary_state(self) -> CanaryStateStore:
        """Where the canary's run, decisions and controller lock live: where the backend runs here, the home's
        state file (one controller per home, a file lock); elsewhere the object store, so operators on several
        hosts pointed at one bucket share the release and its controller lease (the store is reached on the
        first read, so opening needs no credentials)."""
        from arsl_tui.state.canary_store import CanaryStore

        if self.runs_here:
            return CanaryStore.open(self.settings.home_dir)
        from arsl_tui.state.object_canary_store import ObjectCanaryStore

        return ObjectCanaryStore.from_settings(self.settings, self.object_store, self.service_name())


def _local(settings: Settings) -> Backend:
    return Backend(
        settings=settings,
        name="local",
        runs_here=True,
        region="–",
        training_label="local torchrun",
        training_where="locally, as a detached torchrun process group",
        workers_label="process(es)",
        job_stop_how="SIGTERM to its process group, SIGKILL if it has not ended after the grace period",
        monitor_label="the local monitor",
        workers_per_node="processes per node",
        data_scheme="local:",
        serving_through="the local gateway",
        service_platform="gateway",
    )


def _huawei(settings: Settings) -> Backend:
    region, train = settings.huawei.region, settings.train
    return Backend(
        settings=settings,
        name="huawei",
        runs_here=False,
        region=region,
        training_label=f"ModelArts {region}, flavor {train.flavor_id}",
        training_where=f"on ModelArts ({region}), {train.engine_name}, flavor {train.flavor_id}",
        workers_label="GPU(s)",
        job_stop_how="ModelArts terminates it (action_type=terminate)",
        monitor_label="Cloud Eye",
        workers_per_node="GPUs per node",
        data_scheme="obs://",
        serving_through="ModelArts and APIG",
        service_platform="ModelArts",
    )


_BACKENDS = {"local": _local, "huawei": _huawei}


def backend_for(settings: Settings) -> Backend:
    """The configured backend (`settings.backend`; the config layer has refused any other name)."""
    return _BACKENDS[settings.backend](settings)


__all__ = ["PROJECT_ENV", "Backend", "backend_for"]
