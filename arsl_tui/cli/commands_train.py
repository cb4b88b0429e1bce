"""`arsl train submit|status|watch|logs|stop`."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.table import Table

from arsl_tui.backends import Backend, backend_for
from arsl_tui.cli.common import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandContext,
    CommandFailed,
    Handler,
    confirm,
    number,
    setting_range,
    whole_number,
)
from arsl_tui.config import TrainSettings
from arsl_tui.domain.jobs import best_epoch

INTERVAL = number(0, 3600, above=True)
"""Poll intervals: positive, finite (`nan` or `inf` would never poll or never end), at most an hour."""


def _train_flag(key: str) -> Callable[[str], int]:
    """The argparse type of a flag that overrides `[train] key`: the same bounds as the config key."""
    return whole_number(*setting_range(TrainSettings, key))


if TYPE_CHECKING:
    from arsl_tui.domain.events import Event
    from arsl_tui.domain.jobs import JobSpec, JobStatus, MetricRecord, TrainingProgress


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    train = subcommands.add_parser("train", parents=[common], help="submit and follow training jobs")
    actions = train.add_subparsers(dest="train_command", metavar="ACTION")

    submit = actions.add_parser("submit", parents=[common], help="train on a data set (default: the last uploaded)")
    submit.add_argument(
        "dataset",
        nargs="?",
        metavar="DATASET",
        help="a folder, obs://bucket/prefix/, local:PATH, or an uploaded data set's id",
    )
    submit.add_argument("--epochs", type=_train_flag("epochs"), metavar="N")
    submit.add_argument("--nodes", type=_train_flag("nodes"), metavar="N", help="nodes (ModelArts; 1 locally)")
    submit.add_argument(
        "--gpus", type=_train_flag("gpus"), metavar="N", help="GPUs per node (ModelArts) / processes (local)"
    )
    submit.add_argument("--batch-size", type=_train_flag("batch_size"), metavar="N")
    submit.add_argument("--lr", type=number(0, 10, above=True), metavar="RATE", help="learning rate")
    submit.add_argument("--seed", type=whole_number(0, 2**32 - 1), metavar="S")
    submit.add_argument("--model", metavar="NAME")
    submit.add_argument("--name", default="", metavar="NAME", help="job name (default: generated)")
    submit.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="an extra trainer flag (repeatable)"
    )
    submit.add_argument("--wait", action="store_true", help="watch the job until it ends; exit with its outcome")
    submit.add_argument("--interval", type=INTERVAL, default=1.0, metavar="S", help="poll interval with --wait")
    submit.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    submit.set_defaults(handler=_backend_errors(submit_command))

    status = actions.add_parser("status", parents=[common], help="a job's phase and progress (no JOB: the list)")
    status.add_argument("job", nargs="?", metavar="JOB")
    status.add_argument(
        "--limit", type=whole_number(1, 10_000), default=20, metavar="N", help="jobs to list (default 20)"
    )
    status.set_defaults(handler=_backend_errors(status_command))

    watch = actions.add_parser("watch", parents=[common], help="one line per epoch until the job ends")
    watch.add_argument("job", metavar="JOB")
    watch.add_argument("--interval", type=INTERVAL, default=1.0, metavar="S", help="poll interval (default 1 s)")
    watch.set_defaults(handler=_backend_errors(watch_command))

    logs = actions.add_parser("logs", parents=[common], help="a job's log")
    logs.add_argument("job", metavar="JOB")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    logs.add_argument("--interval", type=INTERVAL, default=1.0, metavar="S")
    logs.set_defaults(handler=_backend_errors(logs_command))

    resume = actions.add_parser(
        "resume", parents=[common], help="continue an interrupted job from its last checkpoint (local backend)"
    )
    resume.add_argument("job", metavar="JOB")
    resume.add_argument("--wait", action="store_true", help="watch the job until it ends; exit with its outcome")
    resume.add_argument("--interval", type=INTERVAL, default=1.0, metavar="S", help="poll interval with --wait")
    resume.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    resume.set_defaults(handler=_backend_errors(resume_command))

    stop = actions.add_parser("stop", parents=[common], help="stop a job")
    stop.add_argument("job", metavar="JOB")
    stop.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    stop.set_defaults(handler=_backend_errors(stop_command))


def _backend_errors(handler: Handler) -> Handler:
    """Training errors → a one-line message and the contract's exit code."""

    @functools.wraps(handler)
    def run(context: CommandContext, namespace: argparse.Namespace) -> int:
        from arsl_tui.domain.jobs import JobNotFound, JobSpecError, PlatformUnavailable, TrainingError

        try:
            return handler(context, namespace)
        except JobSpecError as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None
        except (JobNotFound, PlatformUnavailable) as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None
        except TrainingError as error:
            raise CommandFailed(str(error), EXIT_BACKEND) from None

    return run


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _best_text(best: tuple[int | None, float | None]) -> str:
    epoch, accuracy = best
    shown = "—" if accuracy is None else f"{accuracy * 100:.2f}%"  # epochs near the top differ by hundredths
    return f"best val acc {shown}" + (f" (epoch {epoch})" if epoch is not None else "")


def _progress_json(progress: TrainingProgress, best: tuple[int | None, float | None]) -> dict[str, Any]:
    """The progress, with the best epoch the trainer picked (the one the gate and the package use)."""
    return {**progress.to_json(), "best_epoch": best[0], "best_val_acc": best[1]}


def _spec_table(spec: JobSpec, backend: Backend) -> Table:
    table = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a data set's path is read whole before it is trained on
    rows = [
        ("backend", backend.name),
        ("data set", spec.dataset),
        ("epochs", str(spec.epochs)),
        ("batch size", str(spec.batch_size)),
        ("learning rate", f"{spec.learning_rate:g}"),
        ("seed", str(spec.seed)),
        ("model", spec.model),
        ("nodes", str(spec.nodes)),
        (backend.workers_per_node, str(spec.processes_per_node)),
    ]
    rows += [(f"--{name}", value) for name, value in sorted(spec.parameters.items())]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _parse_params(pairs: list[str]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise CommandFailed(f"--param {pair!r}: expected NAME=VALUE", EXIT_USAGE)
        parameters[name.lstrip("-")] = value
    return parameters


def _check_dataset_argument(argument: str | None) -> None:
    """Refuse an empty DATASET (it would mean the current folder) and a folder that holds no data set,
    before a job is submitted that could only fail once it runs."""
    from pathlib import Path

    from arsl_tui.ops.dataset import DatasetError, holds_dataset

    if argument is None:
        return
    text = argument.strip()
    if not text:
        raise CommandFailed(
            "DATASET is empty: give a folder, obs://…, local:… or an uploaded data set's id, or "
            "leave it out for the data set uploaded last",
            EXIT_USAGE,
        )
    if text.startswith(("obs://", "local:")):
        return
    folder = Path(text).expanduser()
    if folder.is_dir():
        try:
            if not holds_dataset(folder):
                raise CommandFailed(
                    f"{text}: holds no data set (no class folders such as ain/ or al/, and no manifest.json)",
                    EXIT_USAGE,
                )
        except DatasetError as error:
            raise CommandFailed(str(error), EXIT_USAGE) from None


def submit_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.training import build_spec, open_platform, resolve_dataset, submit_job

    settings = context.settings
    context.require_writable("submit a training job")
    _check_dataset_argument(namespace.dataset)
    dataset = resolve_dataset(settings, namespace.dataset)
    spec = build_spec(
        settings,
        dataset,
        epochs=namespace.epochs,
        nodes=namespace.nodes,
        gpus=namespace.gpus,
        batch_size=namespace.batch_size,
        learning_rate=namespace.lr,
        seed=namespace.seed,
        model=namespace.model,
        name=namespace.name,
        parameters=_parse_params(namespace.param),
    )
    if not namespace.yes and sys.stdin.isatty():
        context.err_console.print(_spec_table(spec, backend_for(settings)))
    confirm(context, "Submit this training job?", namespace.yes)
    platform = open_platform(settings)
    status = submit_job(platform, spec)
    if context.json_output:
        context.emit_json({**status.to_json(), "spec": spec.to_json()})
    else:
        context.console.print(
            f"submitted job {status.job_id} ({status.phase.value}) on the {backend_for(settings).name} backend",
            markup=False,
        )
    if not namespace.wait:
        return EXIT_OK
    return _watch(context, platform, status.job_id, namespace.interval)


def _status_row(status: JobStatus, progress: TrainingProgress | None, now: float) -> dict[str, Any]:
    from arsl_tui.domain.jobs import format_duration

    return {
        "job": status.job_id,
        "phase": status.phase.value,
        "duration": format_duration(status.duration_s(now)),
        "epochs": f"{progress.epochs_done}/{status.epochs or '?'}" if progress else f"?/{status.epochs or '?'}",
    }


def status_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.domain.jobs import format_duration
    from arsl_tui.ops.training import JobWatcher, open_platform

    platform = open_platform(context.settings)
    now = time.time()
    if namespace.job is None:
        jobs = platform.list(limit=max(1, namespace.limit))
        if context.json_output:
            context.emit_json({"jobs": [status.to_json() for status in jobs]})
            return EXIT_OK
        if not jobs:
            context.console.print("no training jobs yet (`arsl train submit` starts one)")
            return EXIT_OK
        table = Table(show_edge=False, pad_edge=False)
        for column in ("job", "phase", "created", "duration"):
            table.add_column(column)
        for status in jobs:
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(status.created_at)) if status.created_at else "—"
            table.add_row(status.job_id, status.phase.value, created, format_duration(status.duration_s(now)))
        context.console.print(table)
        return EXIT_OK
    watcher = JobWatcher(platform, namespace.job)
    update = watcher.poll()
    status, progress, best = update.status, update.progress, best_epoch(watcher.records)
    if context.json_output:
        context.emit_json({**status.to_json(), "progress": _progress_json(progress, best)})
        return EXIT_OK
    row = _status_row(status, progress, now)
    context.console.print(
        f"job {status.job_id}  {row['phase']}  {row['duration']}  epochs {row['epochs']}  "
        f"{_best_text(best)}  ETA {format_duration(progress.eta_s)}",
        markup=False,
        soft_wrap=True,
    )
    if status.reason:
        context.console.print(f"reason: {status.reason}", markup=False, soft_wrap=True)
    return EXIT_OK


def _epoch_line(progress: TrainingProgress) -> str:
    from arsl_tui.domain.jobs import format_duration

    record = progress.last_epoch
    assert record is not None
    total = progress.epochs_total or "?"
    speed = f"{progress.images_per_s:.0f} img/s" if progress.images_per_s is not None else "— img/s"
    return (
        f"epoch {record.epoch if record.epoch is not None else progress.epochs_done}/{total}  "
        f"train loss {_number(record.train_loss)} acc {_percent(record.train_acc)}  "
        f"val loss {_number(record.val_loss)} acc {_percent(record.val_acc)}  {speed}  "
        f"ETA {format_duration(progress.eta_s)}"
    )


def _watch(context: CommandContext, platform: Any, job_id: str, interval_s: float) -> int:
    from arsl_tui.domain.jobs import JobEnded, JobEpochReported, JobPhase, JobPhaseChanged, format_duration
    from arsl_tui.ops.training import watch_job

    if interval_s <= 0:
        raise CommandFailed(f"--interval must be positive, got {interval_s}", EXIT_USAGE)

    phase = [JobPhase.CREATING.value]
    records: list[MetricRecord] = []

    def report(event: Event) -> None:
        if isinstance(event, JobPhaseChanged):
            phase[0] = event.phase
            if context.json_output:
                context.emit_json({"job_id": event.job_id, "phase": event.phase, "event": "phase"})
            else:
                context.console.print(f"job {event.job_id}: {event.phase}", markup=False)
        elif isinstance(event, JobEpochReported):
            records.append(event.record)
            if context.json_output:
                context.emit_json(
                    {
                        "job_id": event.job_id,
                        "phase": phase[0],
                        "event": "epoch",
                        **_progress_json(event.progress, best_epoch(records)),
                    }
                )
            else:
                context.console.print(_epoch_line(event.progress), markup=False, soft_wrap=True)
        elif isinstance(event, JobEnded):
            final = dict(event.final.data) if event.final else None
            best = best_epoch([*records, event.final] if event.final is not None else records)
            if context.json_output:
                context.emit_json(
                    {
                        "job_id": event.job_id,
                        "phase": event.phase,
                        "event": "ended",
                        "reason": event.reason,
                        **_progress_json(event.progress, best),
                        "final": final,
                    }
                )
            else:
                summary = f"job {event.job_id} {event.phase}; {_best_text(best)}"
                if event.reason:
                    summary += f"\nreason: {event.reason}"
                context.console.print(summary, markup=False, soft_wrap=True)

    status = watch_job(platform, job_id, report, interval_s=interval_s)
    if not context.json_output and status.duration_s(time.time()) is not None:
        context.console.print(f"ran for {format_duration(status.duration_s(time.time()))}", markup=False)
    return EXIT_OK if status.phase.succeeded else EXIT_FAILED


def watch_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.training import open_platform

    return _watch(context, open_platform(context.settings), namespace.job, namespace.interval)


def logs_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.training import follow_logs, open_platform, read_logs

    platform = open_platform(context.settings)
    if namespace.follow and not context.json_output:

        def write(text: str) -> None:
            context.stdout.write(text)
            context.stdout.flush()

        follow_logs(platform, namespace.job, write, interval_s=namespace.interval)
        return EXIT_OK
    status = platform.status(namespace.job)
    chunks = []
    cursor = 0
    truncated = False
    while True:
        chunk = read_logs(platform, namespace.job, cursor)
        truncated = truncated or chunk.truncated
        chunks.append(chunk.text)
        if not chunk.text or chunk.cursor == cursor:
            break
        cursor = chunk.cursor
    text = "".join(chunks)
    if context.json_output:
        context.emit_json(
            {
                "job_id": status.job_id,
                "phase": status.phase.value,
                "log": text,
                "cursor": cursor,
                "truncated": truncated,
            }
        )
    else:
        if truncated:
            context.err_console.print("(the platform keeps only the end of long logs; earlier lines are not shown)")
        context.stdout.write(text)
        context.stdout.flush()
    return EXIT_OK


def resume_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.training import open_platform, resume_job

    context.require_writable(f"resume training job {namespace.job}")
    platform = open_platform(context.settings)
    confirm(context, f"Resume job {namespace.job} from its last checkpoint?", namespace.yes)
    status = resume_job(platform, namespace.job)
    if context.json_output:
        context.emit_json({**status.to_json(), "resumes": namespace.job})
    else:
        context.console.print(f"job {status.job_id} resumes {namespace.job} ({status.phase.value})", markup=False)
    if not namespace.wait:
        return EXIT_OK
    return _watch(context, platform, status.job_id, namespace.interval)


def stop_command(context: CommandContext, namespace: argparse.Namespace) -> int:
    from arsl_tui.ops.training import open_platform, stop_job

    context.require_writable(f"stop training job {namespace.job}")
    platform = open_platform(context.settings)
    current = platform.status(namespace.job)
    if current.terminal:
        status = current
    else:
        confirm(context, f"Stop job {current.job_id} ({current.phase.value})?", namespace.yes)
        status = stop_job(platform, namespace.job)
    if context.json_output:
        context.emit_json(status.to_json())
    else:
        context.console.print(
            f"job {status.job_id}: {status.phase.value}" + (f" ({status.reason})" if status.reason else ""),
            markup=False,
        )
    return EXIT_OK
