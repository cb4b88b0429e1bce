"""Training benchmark on this machine: the trainer against a plain-torch ceiling, and time to the gate.

    .venv/bin/python bench/train.py                    # synth --per-class 300 --seed 7, 2 ranks (torchrun, gloo)
    .venv/bin/python bench/train.py --skip-gate        # throughput only
    .venv/bin/python bench/train.py --one-rank         # also the gate run with 1 rank (same global batch)

Throughput: `torchrun --nproc_per_node=N -m trainer.train` (its own images/s per epoch: augmentation,
DDP, logging included; epoch 1 is left out because it includes the oneDNN warm-up) against the same
model, optimizer, global batch and DDP written as a bare loop over a uint8 tensor already in memory
(`--plain-worker`, run under the same torchrun), without and with the trainer's batched augmentation.
The two are interleaved (plain, trainer, plain) and the best of each is kept, because the machine is
shared: every figure carries the share of the machine's CPU that *other* processes used meanwhile
(/proc/stat busy time minus this benchmark's own children). Both are also given per CPU-second of the
ranks' training loops (process CPU time summed over ranks), a figure that other processes' load barely
moves: on an idle machine, images/s ≈ images per CPU-second × cores.

Time to the gate: the trainer started as `arsl train submit` starts it locally (torchrun, the hyperparameters of
the default settings, training seed 1 as the demo's champion) and, in the same run, a plain DDP loop over the
data already decoded into uint8 tensors (same model, optimizer, schedule, batches and augmentation; no
checkpoints, no metrics file). Each is judged by the production gate (`arsl gate --json`'s default thresholds)
and reported with its wall time from launch to exit, the CPU-seconds of all its processes and the load average.
`--gate-only` runs just these two. Results: printed, and written as JSON to `bench/results/train.json`.

`--tiny` runs every step above in seconds (10 images a class, a few plain steps and one plain run instead of
two, 2 throughput epochs, a 1-epoch gate run that need not reach the gate; any option given on the command
line wins) and writes its data and JSON to a fresh temporary folder unless `--out` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
TINY_DEFAULTS = {"per_class": 10, "batch_size": 64, "steps": 4, "warmup": 1, "throughput_epochs": 2, "gate_epochs": 1}


# -- measuring other processes' load ----------------------------------------------------------------------


class LoadWatch:
    """Share of the machine's CPU used by processes other than this one and its (waited) children."""

    def __enter__(self) -> LoadWatch:
        self._busy = self._machine_busy()
        self._own = self._own_cpu()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        wall = time.perf_counter() - self._wall
        busy = self._machine_busy() - self._busy
        own = self._own_cpu() - self._own
        capacity = (os.cpu_count() or 1) * wall
        self.others_share = max(0.0, (busy - own) / capacity) if capacity else 0.0
        self.wall_s = wall

    @staticmethod
    def _machine_busy() -> float:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# -- the plain loop (runs under torchrun) -------------------------------------------------------------------


def plain_worker(arguments: argparse.Namespace) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from PIL import Image
    from torch.nn.parallel import DistributedDataParallel

    from trainer.augment import augment
    from trainer.model import build_model

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
    files = sorted(Path(arguments.data).glob("*/*.jpg"))
    classes = sorted({path.parent.name for path in files})
    pixels = np.stack([np.asarray(Image.open(path).convert("L")) for path in files])
    images = torch.from_numpy(pixels).unsqueeze(1)
    labels = torch.tensor([classes.index(path.parent.name) for path in files])
    torch.manual_seed(0)
    from arsl_tui.config import TrainSettings

    model = build_model(TrainSettings().model, len(classes)).to(memory_format=torch.channels_last)
    wrapped = DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    per_rank = arguments.batch_size // world
    generator = torch.Generator().manual_seed(rank)
    variants = ("plain", "plain+augment")
    seconds = dict.fromkeys(variants, 0.0)
    cpu_seconds = dict.fromkeys(variants, 0.0)

    def steps(variant: str, count: int) -> tuple[float, float]:
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(count):
            index = torch.randint(0, len(labels), (per_rank,), generator=generator)
            batch = augment(images[index], generator) if variant.endswith("augment") else images[index].float() / 255
            inputs = ((batch - 0.3) / 0.25).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(wrapped(inputs), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - started, time.process_time() - cpu_started

    model.train()
    steps("plain+augment", arguments.warmup)
    blocks = 4  # the variants alternate in blocks, so a change in machine load hits both alike
    for _ in range(blocks):
        for variant in variants:
            wall, cpu = steps(variant, max(1, arguments.steps // blocks))
            seconds[variant] += wall
            cpu_seconds[variant] += cpu
    timed = blocks * max(1, arguments.steps // blocks)
    cpu_total = torch.tensor([cpu_seconds[variant] for variant in variants], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(cpu_total)
    results = {variant: timed * per_rank * world / seconds[variant] for variant in variants}
    results |= {
        f"{variant} per_cpu_s": timed * per_rank * world / float(cpu_total[index])
        for index, variant in enumerate(variants)
    }
    if world > 1:
        dist.destroy_process_group()
    if rank == 0:
        print("PLAIN " + json.dumps(results), flush=True)


# -- driving runs -------------------------------------------------------------------------------------------


def torchrun(nproc: int, *command: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *command]


def run_plain(data: Path, nproc: int, batch: int, steps: int) -> dict[str, Any]:
    command = torchrun(
        nproc,
        str(Path(__file__).resolve()),
        "--plain-worker",
        "--data",
        str(data),
        "--batch-size",
        str(batch),
        "--steps",
        str(steps),
    )
    with LoadWatch() as watch:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if done.returncode != 0:
        raise SystemExit(f"plain loop failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("PLAIN "))
    figures = json.loads(line.removeprefix("PLAIN "))
    return {**figures, "others_cpu_share": round(watch.others_share, 3), "wall_s": round(watch.wall_s, 1)}


def run_trainer(data: Path, output: Path, nproc: int, *extra: str) -> tuple[list[dict[str, Any]], float, float, float]:
    """(metrics records, launch time, wall seconds, others' CPU share)."""
    command = torchrun(nproc, "-m", "trainer.train", "--data", str(data), "--output", str(output), *extra)
    launched = time.time()
    with LoadWatch() as watch:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if done.returncode != 0:
        raise SystemExit(f"trainer failed:\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return records, launched, watch.wall_s, watch.others_share


def trainer_throughput(data: Path, scratch: Path, nproc: int, batch: int, epochs: int, tag: str) -> dict[str, Any]:
    records, _, wall, others = run_trainer(
        data,
        scratch / f"throughput-{tag}",
        nproc,
        "--epochs",
        str(epochs),
        "--patience",
        "0",
        "--batch-size",
        str(batch),
    )
    timed = [record for record in records if record["type"] == "epoch" and record["epoch"] > 1]
    rates = [record["images_per_s"] for record in timed]
    per_cpu = [record["train_samples"] / record["epoch_cpu_s"] for record in timed]
    return {
        "images_per_s": max(rates),
        "per_epoch": [round(rate, 1) for rate in rates],
        "per_cpu_s": round(max(per_cpu), 1),
        "others_cpu_share": round(others, 3),
        "wall_s": round(wall, 1),
    }


def _gate_verdict(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The production gate (default thresholds, as `arsl gate --json` shows them) on one run's metrics records."""
    from arsl_tui.domain.gate import GateThresholds, evaluate_gate, summarise_metrics

    record = evaluate_gate(summarise_metrics(records), GateThresholds())
    return {
        "verdict": record.verdict,
        "failed_rules": {rule.rule: rule.measured for rule in record.failed_rules},
        "measured": {rule.rule: rule.measured for rule in record.rules},
    }


class ChildCpu:
    """CPU-seconds (user + system) of the children waited for while inside the block: the ranks and torchrun."""

    def __enter__(self) -> ChildCpu:
        self._start = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = self._now() - self._start

    @staticmethod
    def _now() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


def gate_run(data: Path, output: Path, nproc: int, hyper: dict[str, str]) -> dict[str, Any]:
    """The trainer as `arsl train submit` starts it locally (torchrun, the settings' hyperparameters), to its gate."""
    flags = [item for name, value in hyper.items() for item in (f"--{name}", value)]
    load_before = os.getloadavg()
    with ChildCpu() as cpu:
        records, launched, wall, others = run_trainer(data, output, nproc, *flags)
    epochs_seen = [record for record in records if record["type"] == "epoch"]
    final = next(record for record in records if record["type"] == "final")
    return {
        "loop": "trainer",
        "ranks": nproc,
        "gate": _gate_verdict(records),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu.seconds, 1),
        "trainer_elapsed_s": final["elapsed_s"],
        "start_and_finish_s": round(wall - final["elapsed_s"], 1),
        "epochs_run": len(epochs_seen),
        "test_acc": final["test_acc"],
        "test_loss": final["test_loss"],
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "others_cpu_share": round(others, 3),
        "epochs": [
            {key: record[key] for key in ("epoch", "val_acc", "val_loss", "train_acc", "epoch_s", "epoch_cpu_s")}
            for record in epochs_seen
        ],
        "launched": launched,
    }


# -- the plain loop to the gate (runs under torchrun) -------------------------------------------------------


def write_tensor_cache(data: Path, path: Path) -> float:
    """Decode the data set once (the trainer's split rule) into a uint8 tensor file; returns the seconds it took."""
    import torch

    from trainer.data import SplitPolicy, load_cache
    from trainer.distributed import DistContext

    started = time.perf_counter()
    solo = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)
    cache = load_cache(data, SplitPolicy(), solo)
    tensors = {
        f"{split}_{part}": getattr(cache.splits[split], part) for split in cache.splits for part in ("images", "labels")
    }
    torch.save({**tensors, "classes": list(cache.classes)}, path)
    return time.perf_counter() - started


def plain_gate_worker(arguments: argparse.Namespace) -> None:
    """A bare DDP loop over the uint8 tensors in memory with the trainer's model, optimizer, schedule, batches and
    augmentation; no checkpoints, no metrics file, the last weights (not the best) scored. Prints its metric records."""
    started = time.perf_counter()
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from trainer.augment import AugmentConfig, augment
    from trainer.data import SplitData
    from trainer.distributed import DistContext, all_reduce_sum
    from trainer.engine import Normalisation, evaluate
    from trainer.model import build_model
    from trainer.sampler import ExactDistributedBatches
    from trainer.train import TrainConfig, build_optimizer, build_schedule

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
    context = DistContext(rank, world, rank, torch.device("cpu"), "gloo" if world > 1 else None)
    blob = torch.load(arguments.tensor_cache, weights_only=True)
    splits = {name: SplitData(blob[f"{name}_images"], blob[f"{name}_labels"]) for name in ("train", "val", "test")}
    classes = list(blob["classes"])
    loaded = time.perf_counter()
    config = TrainConfig(
        data=Path(arguments.tensor_cache),
        output=Path(arguments.tensor_cache),
        epochs=arguments.epochs,
        batch_size=arguments.batch_size,
        lr=arguments.lr,
        model=arguments.model,
        seed=arguments.train_seed,
    )
    train = splits["train"]
    counts = torch.bincount(train.images.flatten(), minlength=256).double()
    levels = torch.arange(256, dtype=torch.float64) / 255
    mean = float((counts * levels).sum() / counts.sum())
    std = float((counts * levels * levels).sum() / counts.sum() - mean * mean) ** 0.5
    normalisation = Normalisation(mean, std)
    torch.manual_seed(config.seed)
    model = build_model(config.model, len(classes)).to(memory_format=torch.channels_last)
    wrapped = DistributedDataParallel(model) if world > 1 else model
    sampler = ExactDistributedBatches(len(train), config.batch_size, world, rank, config.seed)
    optimizer = build_optimizer(model, config)
    scheduler = build_schedule(optimizer, len(sampler), config)
    generator = torch.Generator().manual_seed(rank)
    records: list[dict[str, Any]] = []

    def score(split: str) -> Any:
        return evaluate(
            model=model,
            data=splits[split],
            context=context,
            normalisation=normalisation,
            num_classes=len(classes),
            batch_size=512,
            amp_dtype=None,
        )

    for epoch in range(1, config.epochs + 1):
        model.train()
        totals = torch.zeros(3, dtype=torch.float64)
        for indices, global_count in sampler.batches(epoch):
            labels = train.labels[indices]
            inputs = normalisation.apply(augment(train.images[indices], generator, AugmentConfig()))
            logits = wrapped(inputs)
            losses = F.cross_entropy(logits, labels, reduction="none")
            optimizer.zero_grad(set_to_none=True)
            (losses.sum() * (world / global_count)).backward()
            optimizer.step()
            scheduler.step()
            totals += torch.tensor([losses.sum().item(), (logits.argmax(1) == labels).sum().item(), len(labels)])
        if world > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        loss_sum, correct, samples = all_reduce_sum(totals, context).tolist()
        val = score("val")
        records.append(
            {
                "type": "epoch",
                "epoch": epoch,
                "train_loss": loss_sum / samples,
                "train_acc": correct / samples,
                "val_loss": val.loss,
                "val_acc": val.accuracy,
            }
        )
    test, val, train_scored = score("test"), score("val"), score("train")
    per_class = test.per_class_accuracy()
    records.append(
        {
            "type": "final",
            "test_acc": test.accuracy,
            "test_loss": test.loss,
            "train_val_gap": train_scored.accuracy - val.accuracy,
            "per_class_acc": {name: value for name, value in zip(classes, per_class, strict=True) if value is not None},
        }
    )
    finished = time.perf_counter()
    if world > 1:
        dist.destroy_process_group()
    if rank == 0:
        timing = {"in_memory_s": round(finished - loaded, 3), "worker_s": round(finished - started, 3)}
        print("PLAINGATE " + json.dumps({"records": records, **timing}), flush=True)


def plain_gate_run(tensor_cache: Path, nproc: int, hyper: dict[str, str]) -> dict[str, Any]:
    command = torchrun(
        nproc,
        str(Path(__file__).resolve()),
        "--plain-gate-worker",
        "--tensor-cache",
        str(tensor_cache),
        "--batch-size",
        hyper["batch-size"],
        "--epochs",
        hyper["epochs"],
        "--lr",
        hyper["lr"],
        "--model",
        hyper["model"],
        "--train-seed",
        hyper["seed"],
    )
    load_before = os.getloadavg()
    with ChildCpu() as cpu, LoadWatch() as watch:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if done.returncode != 0:
        raise SystemExit(f"plain loop (gate) failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("PLAINGATE "))
    figures = json.loads(line.removeprefix("PLAINGATE "))
    records = figures["records"]
    final = records[-1]
    return {
        "loop": "plain (data in memory)",
        "ranks": nproc,
        "gate": _gate_verdict(records),
        "wall_s": round(watch.wall_s, 1),
        "cpu_s": round(cpu.seconds, 1),
        "in_memory_s": figures["in_memory_s"],
        "epochs_run": len(records) - 1,
        "test_acc": final["test_acc"],
        "test_loss": final["test_loss"],
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "others_cpu_share": round(watch.others_share, 3),
    }


def settings_hyperparameters(arguments: argparse.Namespace) -> dict[str, str]:
    """What `arsl train submit` passes to the trainer with the default settings, unless the command line says else."""
    from arsl_tui.config import TrainSettings

    defaults = TrainSettings()
    return {
        "epochs": str(arguments.gate_epochs or defaults.epochs),
        "batch-size": str(arguments.gate_batch_size or defaults.batch_size),
        "lr": repr(float(arguments.gate_lr or defaults.learning_rate)),
        "seed": str(arguments.train_seed),
        "model": arguments.model or defaults.model,
    }


def ensure_data(folder: Path, per_class: int, seed: int) -> Path:
    from arsl_tui.ops.synth import synthesize

    marker = folder / ".bench-complete"
    if marker.is_file() and marker.read_text() == f"{per_class} {seed}":
        return folder
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    started = time.perf_counter()
    summary = synthesize(folder, per_class=per_class, seed=seed)
    print(f"synth: {summary.images} images in {time.perf_counter() - started:.1f} s → {folder}")
    marker.write_text(f"{per_class} {seed}")
    return folder


def time_to_gate(arguments: argparse.Namespace, data: Path, scratch: Path) -> list[dict[str, Any]]:
    """The trainer and the plain in-memory loop to the production gate, alternated in the same run."""
    hyper = settings_hyperparameters(arguments)
    tensor_cache = scratch / "tensors.pt"
    decode_s = write_tensor_cache(data, tensor_cache)
    print(f"gate runs with {hyper}; the plain loop's tensors decoded in {decode_s:.1f} s (not counted)")
    ranks = [arguments.nproc] + ([1] if arguments.one_rank and arguments.nproc != 1 else [])
    runs = []
    for nproc in ranks:
        for run in (
            gate_run(data, scratch / f"gate-{nproc}", nproc, hyper),
            plain_gate_run(tensor_cache, nproc, hyper),
        ):
            runs.append({**run, "hyperparameters": hyper})
            print(
                f"time to gate, {run['loop']}, {nproc} rank(s): {run['wall_s']} s wall, {run['cpu_s']} CPU-s, "
                f"gate {run['gate']['verdict']} {run['gate']['failed_rules'] or ''}; test acc {run['test_acc']:.4f} "
                f"loss {run['test_loss']:.4f}; load average {run['load_avg_before'][0]:.2f} → "
                f"{run['load_avg_after'][0]:.2f}, others used {run['others_cpu_share']:.0%} of the CPU"
            )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a data set folder (default: synth --per-class 300 --seed 11)")
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11, help="synth seed (11: the demo's data set)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--steps", type=int, default=40, help="timed steps of the plain loop")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--throughput-epochs", type=int, default=3)
    parser.add_argument("--gate-epochs", type=int, default=0, help="epochs of the gate runs (default: the settings')")
    parser.add_argument("--gate-batch-size", type=int, default=0, help="global batch of the gate runs (settings')")
    parser.add_argument("--gate-lr", type=float, default=0.0, help="peak learning rate of the gate runs (settings')")
    parser.add_argument("--model", default="", help="model of the gate runs (default: the settings')")
    parser.add_argument("--train-seed", type=int, default=1, help="training seed of the gate runs (the demo's: 1)")
    parser.add_argument("--skip-gate", action="store_true")
    parser.add_argument("--gate-only", action="store_true", help="only the time-to-gate runs, no throughput runs")
    parser.add_argument("--one-rank", action="store_true", help="also run the gate with one rank")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default bench/results/train.json; with --tiny a new temporary folder)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="every step in seconds: 10 images a class, 4 plain steps, 2 + 1 trainer epochs",
    )
    parser.add_argument("--plain-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plain-gate-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tensor-cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--lr", type=float, default=0.0, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.tiny:  # a second pass, so that an option given on the command line still wins
        parser.set_defaults(**TINY_DEFAULTS)
        arguments = parser.parse_args()
    if arguments.plain_worker:
        from trainer.train import exit_after_teardown

        plain_worker(arguments)
        exit_after_teardown(0)  # its DDP leaves gloo threads that would race the interpreter's teardown
    if arguments.plain_gate_worker:
        from trainer.train import exit_after_teardown

        plain_gate_worker(arguments)
        exit_after_teardown(0)
    out = arguments.out or (
        Path(tempfile.mkdtemp(prefix="arsl-bench-tiny-")) / "train.json" if arguments.tiny else RESULTS / "train.json"
    )
    with tempfile.TemporaryDirectory(prefix="arsl-bench-train-") as scratch_name:
        scratch = Path(scratch_name)
        # The full-size set is kept in bench/results for the next run; a tiny one lives as long as the run.
        data = arguments.data or ensure_data(
            (scratch if arguments.tiny else RESULTS) / f"synth-{arguments.per_class}-{arguments.seed}",
            arguments.per_class,
            arguments.seed,
        )
        result: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
            "data": str(data),
            "nproc": arguments.nproc,
            "global_batch": arguments.batch_size,
            "tiny": arguments.tiny,
        }
        if not arguments.gate_only:
            plain_runs = [run_plain(data, arguments.nproc, arguments.batch_size, arguments.steps)]
            print(f"plain loop: {plain_runs[-1]}")
            trainer_runs = [
                trainer_throughput(
                    data, scratch, arguments.nproc, arguments.batch_size, arguments.throughput_epochs, "a"
                )
            ]
            print(f"trainer:    {trainer_runs[-1]}")
            if not arguments.tiny:  # the second plain run only brackets the trainer's: one launch fewer in seconds
                plain_runs.append(run_plain(data, arguments.nproc, arguments.batch_size, arguments.steps))
                print(f"plain loop: {plain_runs[-1]}")
            ceiling = max(run["plain"] for run in plain_runs)
            ceiling_augmented = max(run["plain+augment"] for run in plain_runs)
            trainer_best = max(run["images_per_s"] for run in trainer_runs)
            cpu_ceiling = max(run["plain per_cpu_s"] for run in plain_runs)
            cpu_ceiling_augmented = max(run["plain+augment per_cpu_s"] for run in plain_runs)
            cpu_trainer = max(run["per_cpu_s"] for run in trainer_runs)
            result["throughput"] = {
                "plain_images_per_s": round(ceiling, 1),
                "plain_with_augment_images_per_s": round(ceiling_augmented, 1),
                "trainer_images_per_s": round(trainer_best, 1),
                "trainer_vs_plain": round(trainer_best / ceiling, 3),
                "trainer_vs_plain_with_augment": round(trainer_best / ceiling_augmented, 3),
                "plain_images_per_cpu_s": round(cpu_ceiling, 1),
                "plain_with_augment_images_per_cpu_s": round(cpu_ceiling_augmented, 1),
                "trainer_images_per_cpu_s": cpu_trainer,
                "trainer_vs_plain_per_cpu_s": round(cpu_trainer / cpu_ceiling, 3),
                "plain_runs": plain_runs,
                "trainer_runs": trainer_runs,
            }
            print(
                f"throughput (wall): trainer {trainer_best:.0f} img/s = {trainer_best / ceiling:.1%} of the plain loop "
                f"({ceiling:.0f} img/s; {ceiling_augmented:.0f} img/s with the same augmentation)"
            )
            print(
                f"throughput (per CPU-second, insensitive to other load): trainer {cpu_trainer:.0f} = "
                f"{cpu_trainer / cpu_ceiling:.1%} of the plain loop ({cpu_ceiling:.0f}; "
                f"{cpu_ceiling_augmented:.0f} with the same augmentation)"
            )
        if not arguments.skip_gate:
            result["gate"] = time_to_gate(arguments, data, scratch)
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
