"""The operations the console calls, behind one seam so the UI never imports heavy code at start-up.

The defaults import `arsl_tui.ops` lazily, inside the worker threads that call them (`ops` asks the
composition root, `arsl_tui.backends`, for the backend's adapters). The tabs call the same `ops` use
cases as the CLI with what these open (a training platform, the registry, a monitor, the canary
controller); tests may pass their own openers (a recorded training job, a monitor on a fixed clock)
for deterministic snapshots.

The whole pipeline never runs in the console's process: `launch_pipeline` starts `arsl pipeline run`
as a detached process (its own session, output to a file), which goes on if the console quits, and
the console follows it through the files it writes (`ops.pipeline_log`). The upload engine never runs
in the console's process either: `run_upload` starts it as a child (`ops.upload_process`) and only
renders what the child reports.

With `settings.read_only`, every reader here first makes the home's state file read-only for this
process (`state.db.read_only_under`): it is opened with `mode=ro`, never created, and a
missing one reads as "no state here yet", also when the home disappears while the console runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Concatenate, ParamSpec, Protocol, TypeVar

from arsl_tui.backends import backend_for
from arsl_tui.domain.events import EventSink

if TYPE_CHECKING:
    from arsl_tui.config import Settings
    from arsl_tui.domain.ports import Monitor, TrainingPlatform
    from arsl_tui.ops.canary import CanaryController
    from arsl_tui.ops.dataset import ValidationReport
    from arsl_tui.ops.pipeline_log import PipelineLogReader
    from arsl_tui.ops.registry import ModelRegistry
    from arsl_tui.ops.status import StatusReport

_Arguments = ParamSpec("_Arguments")
_Result = TypeVar("_Result")


class UploadControlLike(Protocol):
    """What the console needs of `ops.upload.UploadControl`."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def cancel(self) -> None: ...

    @property
    def paused(self) -> bool: ...

    @property
    def cancelled(self) -> bool: ...


class UploadOutcomeLike(Protocol):
    @property
    def run_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def manifest_id(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def objects_sent(self) -> int: ...
    @property
    def objects_skipped(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def elapsed_s(self) -> float: ...
    @property
    def error(self) -> str: ...


class UploadRunLike(Protocol):
    """What the console shows of a journal record (`ops.upload.UploadRunRecord`)."""

    @property
    def run_id(self) -> str: ...
    @property
    def dataset_dir(self) -> str: ...
    @property
    def manifest_id(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def objects_total(self) -> int: ...
    @property
    def objects_confirmed(self) -> int: ...
    @property
    def bytes_total(self) -> int: ...
    @property
    def bytes_confirmed(self) -> int: ...
    @property
    def started_at(self) -> float: ...
    @property
    def updated_at(self) -> float: ...
    @property
    def error(self) -> str: ...


class EngineUnavailable(Exception):
    """The upload engine module is not installed in this build."""


class UploadNotRun(Exception):
    """The engine refused before sending anything (no such folder, busy elsewhere, store unreachable)."""


class UploadRefusedError(Exception):
    """Validation found problems and quarantining was not asked for; `report` lists them."""

    def __init__(self, message: str, report: ValidationReport | None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class UploadOrder:
    """What the user asked to upload."""

    dataset_dir: Path
    mode: str
    allow_problems: bool


class LaunchedProcess(Protocol):
    """What the console keeps of a process it started (`subprocess.Popen`)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


@dataclass(frozen=True)
class PipelineLaunch:
    """Exactly what the console runs to start a pipeline."""

    command: tuple[str, ...]
    environment: Mapping[str, str]
    """Set on top of the console's own environment."""
    log_path: Path
    """The detached process's output (stdout and stderr)."""
    dataset: Path | None
    """The data set folder; None for the demo."""

    @property
    def demo(self) -> bool:
        return self.dataset is None


def pipeline_launch(settings: Settings, dataset: Path | None, now: float) -> PipelineLaunch:
    """`python -m arsl_tui pipeline run DIR|--demo --yes` on the console's backend, config and home."""
    command = [sys.executable, "-m", "arsl_tui", "pipeline", "run"]
    command += ["--demo"] if dataset is None else [str(dataset)]
    command += ["--yes", "--backend", backend_for(settings).name]
    if settings.source != "defaults":
        command += ["--config", str(Path(settings.source).expanduser().absolute())]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    log_path = settings.home_dir / "pipeline" / f"console-{stamp}.log"
    return PipelineLaunch(
        tuple(command), {"ARSL_HOME": str(settings.home_dir), "PYTHONUNBUFFERED": "1"}, log_path, dataset
    )


def _launch_pipeline(launch: PipelineLaunch) -> LaunchedProcess:
    launch.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(launch.log_path, "ab") as output:
        # Its own session: no terminal hang-up or Ctrl-C meant for the console reaches it.
        return subprocess.Popen(
            list(launch.command),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **launch.environment},
            start_new_session=True,
        )


def _signal_pipeline(pid: int, pgid: int, signum: int) -> str:
    from arsl_tui.ops.pipeline_control import signal_run

    return signal_run(pid, pgid, signum)


def _open_pipeline_log(settings: Settings) -> PipelineLogReader:
    from arsl_tui.ops.pipeline_log import PipelineLogReader

    return PipelineLogReader(settings.home_dir)


def _open_training_platform(settings: Settings) -> TrainingPlatform:
    from arsl_tui.ops.training import open_platform

    return open_platform(settings)


def _open_registry(settings: Settings) -> ModelRegistry:
    from arsl_tui.ops.registry import open_registry

    store_root = backend_for(settings).store_folder()
    if settings.read_only and store_root is not None and not store_root.is_dir():
        from arsl_tui.state.db import StateMissing

        raise StateMissing(store_root)  # opening the local store would create its folders
    return open_registry(settings)


def _open_monitor(settings: Settings) -> Monitor:
    from arsl_tui.ops.monitoring import open_monitor

    return open_monitor(settings)


def _collect_status(settings: Settings) -> StatusReport:
    from arsl_tui.ops.status import collect

    return collect(settings)


def _open_canary(settings: Settings) -> CanaryController:
    from arsl_tui.ops.canary_wiring import open_controller

    return open_controller(settings)


def no_state_yet(error: BaseException) -> bool:
    """The error says a read-only console found no state file (never written, or its home was removed)."""
    from arsl_tui.state.db import NO_STATE_YET, StateMissing

    # Some providers re-raise the state layer's errors as their own, keeping the text.
    return isinstance(error, StateMissing) or str(error).startswith(NO_STATE_YET)


def no_state_line(settings: Settings, what: str) -> str:
    """What a tab says in place of an error when a read-only console has nothing to read."""
    from arsl_tui.state.db import NO_STATE_YET

    return f"{NO_STATE_YET}: {settings.home_dir} holds no {what} (read-only mode creates nothing)"


def _read_only_home(settings: Settings) -> None:
    """Read-only settings: this process opens the home's state file read-only from now on."""
    from arsl_tui.state.db import read_only_under

    read_only_under(settings.home_dir)


def _honouring_read_only(
    reader: Callable[Concatenate[Settings, _Arguments], _Result],
) -> Callable[Concatenate[Settings, _Arguments], _Result]:
    def read(settings: Settings, *args: _Arguments.args, **kwargs: _Arguments.kwargs) -> _Result:
        if settings.read_only:
            _read_only_home(settings)
        return reader(settings, *args, **kwargs)

    read.honours_read_only = True  # type: ignore[attr-defined]
    read.__doc__ = reader.__doc__
    return read


def close_quietly(resource: object) -> None:
    """Call `close()` on a platform, monitor or controller that has one; a failure to close is not news."""
    close = getattr(resource, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


@dataclass(frozen=True)
class ConsoleServices:
    validate: Callable[[Settings, Path, Callable[[int], None]], ValidationReport]
    """(settings, folder, on_progress(files decoded so far)) → the report."""
    new_control: Callable[[], UploadControlLike]
    run_upload: Callable[[Settings, UploadOrder, EventSink, UploadControlLike], UploadOutcomeLike]
    resumable_run: Callable[[Settings], UploadRunLike | None]
    list_upload_runs: Callable[[Settings, int], Sequence[UploadRunLike]]
    open_training_platform: Callable[[Settings], TrainingPlatform] = field(default=_open_training_platform)
    """The configured backend's training platform (`ops.training.open_platform`)."""
    open_registry: Callable[[Settings], ModelRegistry] = field(default=_open_registry)
    open_monitor: Callable[[Settings], Monitor] = field(default=_open_monitor)
    collect_status: Callable[[Settings], StatusReport] = field(default=_collect_status)
    """`ops.status.collect`: every phase of the workflow, for the Overview."""
    open_canary: Callable[[Settings], CanaryController] = field(default=_open_canary)
    clock: Callable[[], float] = field(default=time.time)
    """Wall-clock seconds: durations, sparkline windows and silences are measured against it."""
    open_pipeline_log: Callable[[Settings], PipelineLogReader] = field(default=_open_pipeline_log)
    """A reader of `$ARSL_HOME/pipeline/` (incremental: keep it and call `read()` again)."""
    launch_pipeline: Callable[[PipelineLaunch], LaunchedProcess] = field(default=_launch_pipeline)
    signal_pipeline: Callable[[int, int, int], str] = field(default=_signal_pipeline)
    """(pid, process group, signal) → what was signalled, in words."""

    def __post_init__(self) -> None:
        # Given or default, every reader of the home honours read-only settings the same way.
        for name in _HOME_READERS:
            reader = getattr(self, name)
            if not getattr(reader, "honours_read_only", False):
                object.__setattr__(self, name, _honouring_read_only(reader))


_HOME_READERS = (
    "resumable_run",
    "list_upload_runs",
    "open_training_platform",
    "open_registry",
    "open_monitor",
    "collect_status",
    "open_canary",
    "open_pipeline_log",
)


def _upload_module() -> ModuleType:
    try:
        from arsl_tui.ops import upload
    except ImportError as error:
        raise EngineUnavailable(f"the upload engine (arsl_tui.ops.upload) is not available: {error}") from None
    return upload


def _validate(settings: Settings, folder: Path, on_progress: Callable[[int], None]) -> ValidationReport:
    from arsl_tui.domain.manifest import SplitPolicy
    from arsl_tui.ops.dataset import validate_dataset

    dataset = settings.dataset
    split = SplitPolicy(seed=dataset.split_seed, val=dataset.val_fraction, test=dataset.test_fraction)
    return validate_dataset(folder, split, on_progress=on_progress)


def _new_control() -> UploadControlLike:
    control: UploadControlLike = _upload_module().UploadControl()
    return control


def _run_upload(
    settings: Settings, order: UploadOrder, on_event: EventSink, control: UploadControlLike
) -> UploadOutcomeLike:
    from arsl_tui.domain.ports import StoreError
    from arsl_tui.ops.dataset import DatasetError
    from arsl_tui.ops.upload_process import UploadProcessFailed, run_upload_in_child
    from arsl_tui.state.db import StateError

    upload = _upload_module()
    request = upload.UploadRequest(dataset_dir=order.dataset_dir, mode=order.mode, allow_problems=order.allow_problems)
    try:
        # In a process of its own: the engine's threads never compete with the UI thread for the GIL.
        outcome: UploadOutcomeLike = run_upload_in_child(settings, request, on_event=on_event, control=control)
    except upload.UploadRefused as refused:
        report = getattr(refused, "report", None)
        raise UploadRefusedError(str(refused) or "validation found problems", report) from None
    except (DatasetError, upload.UploadBusy, StateError, UploadProcessFailed) as error:
        raise UploadNotRun(str(error)) from None
    except StoreError as error:
        raise UploadNotRun(f"storage error: {error}") from None
    return outcome


def _resumable_run(settings: Settings) -> UploadRunLike | None:
    record: UploadRunLike | None = _upload_module().resumable_run(settings)
    return record


def _list_upload_runs(settings: Settings, limit: int) -> Sequence[UploadRunLike]:
    return list(_upload_module().list_upload_runs(settings, limit=limit))


def default_services() -> ConsoleServices:
    return ConsoleServices(
        validate=_validate,
        new_control=_new_control,
        run_upload=_run_upload,
        resumable_run=_resumable_run,
        list_upload_runs=_list_upload_runs,
    )
