"""Train an ArSL sign classifier: `python -m trainer.train` / `trainer/train.py` (the ModelArts boot file).

Locally (gloo on CPU; one process per core works best on small CPUs):

    torchrun --standalone --nproc_per_node=2 -m trainer.train --data DATA --output OUT --epochs 20

On ModelArts (training job, boot file `trainer/train.py` in the uploaded code directory, input
`data_url` → the data set, output `train_url` with Predownload on, so checkpoints come back on restart):

    python trainer/train.py --data_url=/home/ma-user/modelarts/inputs/data_url_0 \
        --train_url=/home/ma-user/modelarts/outputs/train_url_0 --epochs 20 --model wide --resume

Started once per node, it reads MA_NUM_HOSTS, MA_NUM_GPUS, VC_TASK_INDEX and VC_WORKER_HOSTS and
re-executes itself under `torch.distributed.run` with one process per GPU (NCCL), the first worker
host as master and port $ARSL_MASTER_PORT (default 29500). `data_url`/`train_url` may also come from
the environment. Unknown arguments the platform adds are reported and ignored.

Outputs in OUT: `metrics.jsonl` (step/epoch/final records, flushed per record), `checkpoints/last.pt`
(every epoch, atomic), `checkpoints/best.safetensors` (lowest validation loss) and `model/` (the
exported package with the best weights). `--batch-size` is the global batch, split between ranks.
Exit codes: 0 done, 2 bad input (data, arguments, output folder, memory), 1 anything else (traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # started as a file (the ModelArts boot file): make `trainer` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from trainer.augment import AugmentConfig
from trainer.checkpoint import (
    BEST_NAME,
    CHECKPOINT_DIR,
    LAST_NAME,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from trainer.data import DataCache, DataError, SplitPolicy, load_cache
from trainer.distributed import (
    DistContext,
    agree,
    barrier,
    count_true,
    init_distributed,
    modelarts_launch_command,
    shutdown,
)
from trainer.engine import EpochResult, EvalResult, Normalisation, StepCallback, evaluate, train_epoch
from trainer.export import PACKAGE_DIR, export_package
from trainer.metrics import METRICS_NAME, MetricsLog, read_records, reconcile
from trainer.model import build_model, parameter_count
from trainer.sampler import ExactDistributedBatches
from trainer.weights import save_weights

EXIT_BAD_INPUT = 2


class TrainerError(Exception):
    """A run that cannot go on; the message says what to change."""


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    output: Path
    epochs: int = 20
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    model: str = "compact"
    resume: bool = False
    warmup_epochs: float = 0.5
    patience: int = 5
    label_smoothing: float = 0.0
    amp: str = "auto"
    cpu: bool = False
    eval_batch_size: int = 512
    log_every: int = 20
    split_seed: int = 1337
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    job_id: str = ""
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class RunResult:
    model: nn.Module
    cache: DataCache
    final: dict[str, Any]
    package: Path | None
    normalisation: Normalisation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        "--data_url",
        "--data-url",
        dest="data",
        type=Path,
        default=os.environ.get("data_url") or None,  # noqa: SIM112 (ModelArts' lower-case name)
        help="data set folder: class folders, manifest.json or shards.json (env data_url)",
    )
    parser.add_argument(
        "--output",
        "--train_url",
        "--train-url",
        dest="output",
        type=Path,
        default=os.environ.get("train_url") or None,  # noqa: SIM112
        help="output folder, created if missing (env train_url)",
    )
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs (default 20)")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch size over all ranks (default 128)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of AdamW (default 3e-3)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, order and augmentation")
    parser.add_argument("--model", default="compact", help="small (fastest on a CPU), compact or wide (GPU)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from OUT/checkpoints/last.pt when it exists (else start fresh)"
    )
    parser.add_argument("--warmup-epochs", type=float, default=0.5, help="linear warm-up before cosine decay")
    parser.add_argument(
        "--patience", type=int, default=5, help="stop after this many epochs without a lower validation loss (0: never)"
    )
    parser.add_argument(
        "--label-smoothing",
        type=float,
        default=0.0,
        help="training loss only; reported losses are always plain cross-entropy",
    )
    parser.add_argument(
        "--amp", choices=("auto", "on", "off"), default="auto", help="bfloat16 autocast: auto = on GPU only"
    )
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument("--log-every", type=int, default=20, help="a step record every N steps (0: none)")
    parser.add_argument("--split-seed", type=int, default=1337, help="split of class folders without a manifest")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--job-id", default=os.environ.get("ARSL_JOB_ID", ""), help="recorded in the package")
    return parser


def config_from_args(namespace: argparse.Namespace) -> TrainConfig:
    if namespace.data is None:
        raise TrainerError("--data (or --data_url / $data_url) is required")
    if namespace.output is None:
        raise TrainerError("--output (or --train_url / $train_url) is required")
    checks = [
        (namespace.epochs >= 1, f"--epochs must be at least 1, got {namespace.epochs}"),
        (namespace.batch_size >= 1, f"--batch-size must be at least 1, got {namespace.batch_size}"),
        (namespace.lr > 0, f"--lr must be positive, got {namespace.lr}"),
        (namespace.patience >= 0, f"--patience must be 0 or more, got {namespace.patience}"),
        (0 <= namespace.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {namespace.label_smoothing}"),
        (namespace.warmup_epochs >= 0, f"--warmup-epochs must be 0 or more, got {namespace.warmup_epochs}"),
        (
            0 <= namespace.val_fraction < 1
            and 0 <= namespace.test_fraction < 1
            and namespace.val_fraction + namespace.test_fraction < 1,
            "--val-fraction and --test-fraction must be in [0, 1) and sum below 1",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise TrainerError(message)
    return TrainConfig(
        data=namespace.data,
        output=namespace.output,
        epochs=namespace.epochs,
        batch_size=namespace.batch_size,
        lr=namespace.lr,
        weight_decay=namespace.weight_decay,
        seed=namespace.seed,
        model=namespace.model,
        resume=namespace.resume,
        warmup_epochs=namespace.warmup_epochs,
        patience=namespace.patience,
        label_smoothing=namespace.label_smoothing,
        amp=namespace.amp,
        cpu=namespace.cpu,
        eval_batch_size=namespace.eval_batch_size,
        log_every=namespace.log_every,
        split_seed=namespace.split_seed,
        val_fraction=namespace.val_fraction,
        test_fraction=namespace.test_fraction,
        job_id=namespace.job_id,
    )


def _log(context: DistContext, message: str) -> None:
    if context.is_main:
        print(f"[trainer] {message}", file=sys.stderr, flush=True)


def _prepare_output(output: Path, resume: bool, context: DistContext) -> None:
    """Create the output folder (rank 0) and refuse to overwrite an earlier run unless resuming."""
    problem = ""
    if context.is_main:
        last = output / CHECKPOINT_DIR / LAST_NAME
        problem = _make_output(output)
        if not problem and not resume and (last.is_file() or read_records(output / METRICS_NAME)):
            problem = (
                f"{output} already holds a run ({'checkpoint' if last.is_file() else METRICS_NAME}); "
                "pass --resume to continue it or choose an empty output folder"
            )
        if not problem and resume:
            _remove_leftovers(output)
    if not agree(not problem, context):
        raise TrainerError(problem or f"output folder {output} is not usable (see rank 0)")


# What a killed run leaves half-written (each named after the pid that wrote it, so a later run never
# reuses the name): the staged or replaced package, the checkpoint and metrics being written.
_LEFTOVERS = (
    ("", f".{PACKAGE_DIR}.tmp-*"),
    ("", f".{PACKAGE_DIR}.old-*"),
    ("", f".{METRICS_NAME}.tmp-*"),
    ("", ".write-test-*"),
    (CHECKPOINT_DIR, f".{LAST_NAME}.tmp-*"),
    (CHECKPOINT_DIR, f".{BEST_NAME}.tmp-*"),
)


def _remove_leftovers(output: Path) -> None:
    """Delete the temporaries of an earlier, killed run on this folder (resuming means no other run writes it)."""
    import shutil

    for folder, pattern in _LEFTOVERS:
        for path in (output / folder).glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _make_output(output: Path) -> str:
    """Why the output folder cannot be used, or "" when it can."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        (output / CHECKPOINT_DIR).mkdir(exist_ok=True)
        probe = output / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return f"output folder {output} cannot be created or written ({error.strerror or error})"
    return ""


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay = [parameter for parameter in model.parameters() if parameter.ndim > 1]
    no_decay = [parameter for parameter in model.parameters() if parameter.ndim <= 1]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )


def build_schedule(
    optimizer: torch.optim.Optimizer, steps_per_epoch: int, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(1, steps_per_epoch * config.epochs)
    warmup = min(total - 1, round(config.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _amp_dtype(config: TrainConfig, context: DistContext) -> torch.dtype | None:
    if config.amp == "off" or (config.amp == "auto" and context.device.type != "cuda"):
        return None
    return torch.bfloat16


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _sync_buffers(model: nn.Module, context: DistContext) -> None:
    """BatchNorm statistics from rank 0 everywhere, so evaluation and checkpoints agree across ranks."""
    if context.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


@dataclass
class EarlyStop:
    """Early stopping on validation loss; as a dict (same keys), the checkpoint's `early_stop` entry."""

    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0

    def observe(self, epoch: int, val_loss: float) -> bool:
        """Count one epoch's validation loss; True when it is the lowest so far."""
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def should_stop(self, patience: int) -> bool:
        """True after `patience` epochs in a row without a lower validation loss (patience 0: never)."""
        return patience > 0 and self.bad_epochs >= patience


@dataclass
class Progress:
    """What the epochs so far have left behind; a resumed run takes it over from the checkpoint."""

    last_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # the epoch records
    early_stop: EarlyStop = field(default_factory=EarlyStop)
    elapsed_s: float = 0.0  # training time of the epochs so far, over every start of the run
    finished: bool = False  # the last epoch is done or early stopping ended the run
    best_state: dict[str, torch.Tensor] | None = None  # the weights with the lowest validation loss


def _run_identity(config: TrainConfig, cache: DataCache, steps_per_epoch: int) -> dict[str, Any]:
    """What a checkpoint records of its run and a resumed run must match."""
    return {
        "dataset_id": cache.dataset_id,
        "model_name": config.model,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "classes": list(cache.classes),
        "steps_per_epoch": steps_per_epoch,
    }


def _save_run_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: Progress,
    identity: dict[str, Any],
    config: TrainConfig,
    world_size: int,
) -> None:
    """Write `checkpoints/last.pt` after `progress.last_epoch`; `_load_run_checkpoint` reads it back."""
    epoch = progress.last_epoch
    save_checkpoint(
        path,
        {
            "epoch": epoch,
            "model": _cpu_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "sampler": {"seed": config.seed, "next_epoch": epoch + 1},
            "rng": {"seed": config.seed, "streams": "derived from (seed, epoch, rank) at each epoch start"},
            "early_stop": asdict(progress.early_stop),
            "best_model": progress.best_state,
            "history": progress.history,
            "elapsed_s": progress.elapsed_s,
            "finished": progress.finished,
            **identity,
            "world_size": world_size,
            "config": {key: str(value) for key, value in asdict(config).items()},
        },
    )


def _load_run_checkpoint(config: TrainConfig, context: DistContext, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to resume from: None when not resuming or when there is none yet (on every rank alike)."""
    last = config.output / CHECKPOINT_DIR / LAST_NAME
    found = last.is_file()
    holders = count_true(found, context)
    if 0 < holders < context.world_size:
        raise TrainerError(
            f"{last} exists on {holders} of {context.world_size} ranks only; every node needs "
            "the output folder's checkpoints (ModelArts: set Predownload on the output)"
        )
    if not config.resume or not found:
        return None
    try:
        state = load_checkpoint(last)
    except CheckpointError as error:
        raise TrainerError(str(error)) from None
    for key, value in identity.items():
        if state.get(key) != value:
            raise TrainerError(
                f"{last}: the checkpoint's {key} is {state.get(key)!r} but this run's is {value!r}; "
                "resume with the same data and settings or use another output folder"
            )
    return state


def _resume(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> Progress:
    """Load a checkpoint's weights, optimizer and schedule; its progress is where the run goes on from."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return Progress(
        last_epoch=int(state["epoch"]),
        history=list(state["history"]),
        early_stop=EarlyStop(**state["early_stop"]),
        elapsed_s=float(state["elapsed_s"]),
        finished=bool(state["finished"]),
        best_state=state["best_model"],
    )


def _load_data(config: TrainConfig, context: DistContext) -> DataCache:
    """Decode the data set and report what was found and skipped."""
    started = time.perf_counter()
    policy = SplitPolicy(seed=config.split_seed, val=config.val_fraction, test=config.test_fraction)
    cache = load_cache(config.data, policy, context)
    decoded_s = time.perf_counter() - started
    _log(
        context,
        f"data {cache.root} ({cache.kind}): train {len(cache.splits['train'])}, "
        f"val {len(cache.splits['val'])}, test {len(cache.splits['test'])}, {len(cache.classes)} classes, "
        f"decoded in {decoded_s:.1f} s on {context.world_size} rank(s), device {context.device}",
    )
    for warning in cache.warnings:
        _log(context, f"warning: {warning}")
    if cache.skipped:
        _log(context, f"skipped {len(cache.skipped)} unusable sample(s):")
        for item in cache.skipped[:20]:
            _log(context, f"  {item.source}: {item.problem}")
    return cache


def _build_model(config: TrainConfig, context: DistContext, num_classes: int) -> nn.Module:
    torch.manual_seed(config.seed)
    try:
        model = build_model(config.model, num_classes)
    except ValueError as error:
        raise TrainerError(str(error)) from None
    return model.to(device=context.device).to(memory_format=torch.channels_last)


def _distributed(model: nn.Module, context: DistContext) -> nn.Module:
    """The module to train: DDP around `model` when there are several ranks."""
    if not context.distributed:
        return model
    return DistributedDataParallel(model, device_ids=[context.device.index] if context.device.type == "cuda" else None)


def _step_logger(log: MetricsLog, optimizer: torch.optim.Optimizer, epoch: int) -> StepCallback:
    def on_step(step: int, steps: int, loss: float, accuracy: float, samples: int) -> None:
        log.write(
            {
                "type": "step",
                "epoch": epoch,
                "step": (epoch - 1) * steps + step,
                "time": time.time(),
                "train_loss": loss,
                "train_acc": accuracy,
                "lr": optimizer.param_groups[0]["lr"],
                "samples": samples,
            }
        )

    return on_step


def _epoch_record(
    epoch: int,
    steps_per_epoch: int,
    result: EpochResult,
    val: EvalResult,
    improved: bool,
    elapsed: float,
    lr: float,
    context: DistContext,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "epoch",
        "epoch": epoch,
        "step": epoch * steps_per_epoch,
        "time": time.time(),
        "elapsed_s": round(elapsed, 3),
        "train_loss": result.loss,
        "train_acc": result.accuracy,
        "val_loss": val.loss,
        "val_acc": val.accuracy,
        "lr": lr,
        "images_per_s": result.samples / result.seconds,
        "epoch_s": round(result.seconds, 3),
        "epoch_cpu_s": round(result.cpu_seconds, 3),
        "train_samples": result.samples,
        "val_samples": val.samples,
        "best": improved,
        "world_size": context.world_size,
    }
    if context.device.type == "cuda":
        record["gpu_mem_mb"] = torch.cuda.max_memory_allocated(context.device) / 2**20
    return record


def run(config: TrainConfig, context: DistContext) -> RunResult:
    _prepare_output(config.output, config.resume, context)
    cache = _load_data(config, context)
    train_data, val_data = cache.splits["train"], cache.splits["val"]
    if config.batch_size < context.world_size:
        raise TrainerError(f"--batch-size {config.batch_size} is smaller than the {context.world_size} ranks")
    mean, std = cache.pixel_mean_std()
    normalisation = Normalisation(mean, std)
    sampler = ExactDistributedBatches(
        len(train_data), min(config.batch_size, len(train_data)), context.world_size, context.rank, config.seed
    )
    identity = _run_identity(config, cache, len(sampler))
    saved = _load_run_checkpoint(config, context, identity)
    model = _build_model(config, context, len(cache.classes))
    optimizer = build_optimizer(model, config)
    scheduler = build_schedule(optimizer, len(sampler), config)
    progress = Progress()
    last_path = config.output / CHECKPOINT_DIR / LAST_NAME
    if saved is not None:
        progress = _resume(saved, model, optimizer, scheduler)
        _log(context, f"resuming after epoch {progress.last_epoch} from {last_path}")
    if context.is_main:
        reconcile(config.output / METRICS_NAME, progress.last_epoch, progress.history)
    barrier(context)
    wrapped = _distributed(model, context)
    amp_dtype = _amp_dtype(config, context)
    log = MetricsLog(config.output / METRICS_NAME, enabled=context.is_main)
    _log(
        context,
        f"model {config.model} ({parameter_count(model):,} parameters), global batch "
        f"{sampler.global_batch} ({len(sampler)} steps/epoch), lr {config.lr}, amp {amp_dtype}, "
        f"epochs {progress.last_epoch + 1}..{config.epochs}",
    )
    epochs = range(0) if progress.finished else range(progress.last_epoch + 1, config.epochs + 1)
    elapsed_before, run_started = progress.elapsed_s, time.perf_counter()
    try:
        for epoch in epochs:
            result = train_epoch(
                model=wrapped,
                data=train_data,
                sampler=sampler,
                epoch=epoch,
                optimizer=optimizer,
                scheduler=scheduler,
                context=context,
                normalisation=normalisation,
                augment_config=config.augment,
                seed=config.seed,
                amp_dtype=amp_dtype,
                label_smoothing=config.label_smoothing,
                log_every=config.log_every,
                on_step=_step_logger(log, optimizer, epoch),
            )
            _sync_buffers(model, context)
            val = evaluate(
                model=model,
                data=val_data,
                context=context,
                normalisation=normalisation,
                num_classes=len(cache.classes),
                batch_size=config.eval_batch_size,
                amp_dtype=amp_dtype,
            )
            improved = progress.early_stop.observe(epoch, val.loss)
            if improved:
                progress.best_state = _cpu_state(model)
            stop = progress.early_stop.should_stop(config.patience)
            progress.last_epoch, progress.finished = epoch, stop or epoch == config.epochs
            progress.elapsed_s = elapsed_before + time.perf_counter() - run_started
            record = _epoch_record(
                epoch, len(sampler), result, val, improved, progress.elapsed_s, optimizer.param_groups[0]["lr"], context
            )
            progress.history.append(record)
            if context.is_main:
                _save_run_checkpoint(
                    last_path,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    progress=progress,
                    identity=identity,
                    config=config,
                    world_size=context.world_size,
                )
                if improved:  # a copy for tools; the checkpoint above is what resuming trusts
                    save_weights(
                        progress.best_state or {},
                        config.output / CHECKPOINT_DIR / BEST_NAME,
                        metadata={"epoch": str(epoch)},
                    )
            log.write(record)
            _log(
                context,
                f"epoch {epoch}/{config.epochs}  train loss {result.loss:.4f} acc {result.accuracy:.4f}  "
                f"val loss {val.loss:.4f} acc {val.accuracy:.4f}  {record['images_per_s']:.0f} img/s  "
                f"{result.seconds:.1f} s{'  *' if improved else ''}",
            )
            if stop:
                _log(context, f"early stop: no lower validation loss for {config.patience} epochs")
                break
        if progress.best_state is not None:
            model.load_state_dict(progress.best_state)
        final, package = _finish(
            config,
            context,
            model,
            cache,
            normalisation,
            progress.history,
            progress.early_stop.best_epoch,
            amp_dtype,
            elapsed_before + time.perf_counter() - run_started,
            log,
        )
    except RuntimeError as error:
        if _is_out_of_memory(error):
            per_rank = -(-config.batch_size // context.world_size)
            raise TrainerError(
                f"out of memory on {context.device} with --batch-size {config.batch_size} "
                f"(~{per_rank} per rank, model {config.model}); lower --batch-size"
            ) from None
        raise
    finally:
        log.close()
    return RunResult(model=model, cache=cache, final=final, package=package, normalisation=normalisation)


def _finish(
    config: TrainConfig,
    context: DistContext,
    model: nn.Module,
    cache: DataCache,
    normalisation: Normalisation,
    history: list[dict[str, Any]],
    best_epoch: int,
    amp_dtype: torch.dtype | None,
    elapsed: float,
    log: MetricsLog,
) -> tuple[dict[str, Any], Path | None]:
    """Evaluate the (best) weights in `model` on every split, write the final record and the package."""
    classes = cache.classes

    def score(split: str) -> EvalResult:
        return evaluate(
            model=model,
            data=cache.splits[split],
            context=context,
            normalisation=normalisation,
            num_classes=len(classes),
            batch_size=config.eval_batch_size,
            amp_dtype=amp_dtype,
        )

    test, val, train = score("test"), score("val"), score("train")
    per_class = test.per_class_accuracy()
    last = history[-1] if history else {}
    final: dict[str, Any] = {
        "type": "final",
        "epoch": last.get("epoch", 0),
        "step": last.get("step", 0),
        "time": time.time(),
        "elapsed_s": round(elapsed, 3),
        "best_epoch": best_epoch,
        "stopped_early": bool(history) and last.get("epoch", 0) < config.epochs,
        "test_loss": test.loss,
        "test_acc": test.accuracy,
        "test_samples": test.samples,
        "val_loss": val.loss,
        "val_acc": val.accuracy,
        "train_eval_loss": train.loss,
        "train_eval_acc": train.accuracy,
        "train_val_gap": train.accuracy - val.accuracy,
        "last_epoch_train_val_gap": (last.get("train_acc", 0.0) - last.get("val_acc", 0.0)) if last else None,
        "per_class_acc": {
            name: accuracy for name, accuracy in zip(classes, per_class, strict=True) if accuracy is not None
        },
        "classes": list(classes),
        "confusion": test.confusion.tolist(),
        "manifest_id": cache.dataset_id,
        "data_kind": cache.kind,
        "skipped_count": len(cache.skipped),
        "skipped": [item.to_json() for item in cache.skipped[:100]],
        "warnings": cache.warnings,
        "model": config.model,
        "world_size": context.world_size,
        "package": "model",
    }
    package = None
    if context.is_main:
        metrics = {
            key: final[key] for key in ("test_acc", "test_loss", "val_acc", "val_loss", "best_epoch", "train_val_gap")
        }
        package = export_package(
            config.output,
            model,
            architecture=config.model,
            classes=classes,
            mean=normalisation.mean,
            std=normalisation.std,
            manifest_id=cache.dataset_id,
            metrics=metrics,
            job_id=config.job_id,
            reference_images=cache.splits["val"].images,
        )
        log.write(final)
    barrier(context)
    _log(
        context,
        f"test loss {test.loss:.4f} acc {test.accuracy:.4f} (best epoch {best_epoch}); "
        f"package {config.output / 'model'}",
    )
    return final, package


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    launch = modelarts_launch_command(os.environ, str(Path(__file__).resolve()), arguments)
    if launch is not None:
        print(f"[trainer] ModelArts: {' '.join(launch)}", file=sys.stderr, flush=True)
        os.execv(launch[0], launch)  # noqa: S606 (replace this process with the launcher, no shell)
    namespace, unknown = build_parser().parse_known_args(arguments)
    if unknown:
        print(f"[trainer] ignoring unknown arguments: {' '.join(unknown)}", file=sys.stderr, flush=True)
    try:
        config = config_from_args(namespace)
        context = init_distributed(cpu=namespace.cpu)
    except (TrainerError, ValueError) as error:
        print(f"[trainer] error: {error}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    try:
        run(config, context)
    except (TrainerError, DataError) as error:
        print(f"[trainer] error (rank {context.rank}): {error}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    finally:
        shutdown(context)
    return 0


def exit_after_teardown(code: int) -> NoReturn:
    """Leave without interpreter teardown once a distributed run has shut down.

    DistributedDataParallel keeps the gloo process group, and its worker threads, alive after
    destroy_process_group; those threads racing the interpreter's teardown abort a rank that has already
    finished ("terminate called without an active exception", SIGABRT). Everything the run writes is
    closed by now, so only the standard streams need flushing.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_after_teardown(main())
