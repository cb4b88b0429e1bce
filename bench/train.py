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

Time to the gate: a full trainer run (default 12 epochs, early stopping on); the first epoch with
validation accuracy > 0.95 and validation loss < 0.1, its wall time from launch (start-up, decoding
and evaluation included) and the trainer's own elapsed time. Results: printed, and written as JSON to
`bench/results/train.json`.

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
    model = build_model("compact", len(classes)).to(memory_format=torch.channels_last)
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


def gate_run(data: Path, output: Path, nproc: int, batch: int, epochs: int) -> dict[str, Any]:
    records, launched, wall, others = run_trainer(
        data, output, nproc, "--epochs", str(epochs), "--batch-size", str(batch)
    )
    epochs_seen = [record for record in records if record["type"] == "epoch"]
    final = next(record for record in records if record["type"] == "final")
    gate = next((record for record in epochs_seen if record["val_acc"] > 0.95 and record["val_loss"] < 0.1), None)
    return {
        "ranks": nproc,
        "gate_epoch": gate["epoch"] if gate else None,
        "gate_wall_s": round(gate["time"] - launched, 1) if gate else None,
        "gate_trainer_elapsed_s": gate["elapsed_s"] if gate else None,
        "gate_val_acc": gate["val_acc"] if gate else None,
        "gate_val_loss": gate["val_loss"] if gate else None,
        "epochs_run": len(epochs_seen),
        "final_val_acc": epochs_seen[-1]["val_acc"],
        "final_val_loss": epochs_seen[-1]["val_loss"],
        "best_epoch": final["best_epoch"],
        "test_acc": final["test_acc"],
        "test_loss": final["test_loss"],
        "wall_s": round(wall, 1),
        "others_cpu_share": round(others, 3),
        "epochs": [
            {key: record[key] for key in ("epoch", "val_acc", "val_loss", "train_acc", "images_per_s", "elapsed_s")}
            for record in epochs_seen
        ],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a data set folder (default: synth --per-class 300 --seed 7)")
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--steps", type=int, default=40, help="timed steps of the plain loop")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--throughput-epochs", type=int, default=3)
    parser.add_argument("--gate-epochs", type=int, default=12)
    parser.add_argument("--skip-gate", action="store_true")
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
    arguments = parser.parse_args()
    if arguments.tiny:  # a second pass, so that an option given on the command line still wins
        parser.set_defaults(**TINY_DEFAULTS)
        arguments = parser.parse_args()
    if arguments.plain_worker:
        from trainer.train import exit_after_teardown

        plain_worker(arguments)
        exit_after_teardown(0)  # its DDP leaves gloo threads that would race the interpreter's teardown
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
        plain_runs = [run_plain(data, arguments.nproc, arguments.batch_size, arguments.steps)]
        print(f"plain loop: {plain_runs[-1]}")
        trainer_runs = [
            trainer_throughput(data, scratch, arguments.nproc, arguments.batch_size, arguments.throughput_epochs, "a")
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
            ranks = [arguments.nproc] + ([1] if arguments.one_rank and arguments.nproc != 1 else [])
            result["gate"] = []
            for nproc in ranks:
                gate = gate_run(data, scratch / f"gate-{nproc}", nproc, arguments.batch_size, arguments.gate_epochs)
                result["gate"].append(gate)
                print(
                    f"gate ({nproc} rank(s)): epoch {gate['gate_epoch']}, {gate['gate_wall_s']} s from launch "
                    f"(trainer elapsed {gate['gate_trainer_elapsed_s']} s); val acc {gate['gate_val_acc']}, "
                    f"loss {gate['gate_val_loss']}; final test acc {gate['test_acc']:.4f} loss "
                    f"{gate['test_loss']:.4f}; others used {gate['others_cpu_share']:.0%} of the CPU"
                )
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
