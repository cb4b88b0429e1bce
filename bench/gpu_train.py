"""GPU training benchmark: AMP + DDP (NCCL) to the gate on a 54,049-image ArSL-shaped synthetic set.

    python bench/gpu_train.py                                          # one GPU
    torchrun --standalone --nproc_per_node=8 bench/gpu_train.py        # every GPU of one node (DDP, NCCL)
    python bench/gpu_train.py --device cpu --images 2000 --epochs 2 --model compact   # check the script on a CPU
    python bench/gpu_train.py --tiny        # seconds on a CPU (tests/e2e/test_benches.py runs it in CI)

The anchor is airbench (CIFAR-10 to 94 % in 2.6 s on one A100): the data lives on the device as uint8,
augmentation runs on the device in batches, no per-sample Python in the loop. The goal here: the gate
(validation accuracy > 0.95 and loss < 0.1) in under 15 s on one H100.

Data: `--images` samples rendered by `arsl_tui.ops.synth.render_image` (the generator behind `arsl data
synth`; class = index mod 32), each rank rendering its share on a process pool, then all-gathered onto
every device; split by index (10 % val, 10 % test). Training runs the trainer's own code: `trainer.model`,
`trainer.sampler.ExactDistributedBatches`, `trainer.engine.train_epoch`/`evaluate` (batched augmentation
on the device, bfloat16 autocast, loss scaled for an exact global mean under DDP). Reported: data
preparation time, images/s per epoch (steady state = median after epoch 1), time to the gate from the
start of training and from the start of the script. Written to `bench/results/gpu_train.json`.

`--tiny`: the same code on the CPU with 320 images, the compact model, a global batch of 64 and one epoch
(with any other option given, that option wins); the JSON goes to a fresh temporary folder unless
`--output` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from trainer.augment import AugmentConfig  # noqa: E402
from trainer.data import DataCache, SplitData  # noqa: E402
from trainer.distributed import DistContext, all_reduce_sum  # noqa: E402
from trainer.engine import Normalisation, evaluate, train_epoch  # noqa: E402
from trainer.model import build_model, parameter_count  # noqa: E402
from trainer.sampler import ExactDistributedBatches  # noqa: E402

NUM_CLASSES = 32
TINY_DEFAULTS = {"device": "cpu", "images": 320, "model": "compact", "batch_size": 64, "epochs": 1, "amp": "off"}


def _render(job: tuple[int, list[int]]) -> np.ndarray:
    from arsl_tui.ops.synth import render_image

    seed, indices = job
    return np.stack([render_image(seed, index % NUM_CLASSES, index // NUM_CLASSES) for index in indices])


def render_share(total: int, seed: int, rank: int, world: int, workers: int) -> np.ndarray:
    mine = list(range(rank, total, world))
    chunks = [mine[start : start + 512] for start in range(0, len(mine), 512)]
    if workers <= 1 or len(chunks) <= 1:
        parts = [_render((seed, chunk)) for chunk in chunks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_render, [(seed, chunk) for chunk in chunks]))
    return np.concatenate(parts) if parts else np.zeros((0, 64, 64), dtype=np.uint8)


def build_cache(total: int, seed: int, context: DistContext, workers: int) -> DataCache:
    share = torch.from_numpy(render_share(total, seed, context.rank, context.world_size, workers))
    per_rank = -(-total // context.world_size)
    padded = torch.zeros((per_rank, 64, 64), dtype=torch.uint8)
    padded[: share.shape[0]] = share
    padded = padded.to(context.device)
    parts = [torch.empty_like(padded) for _ in range(context.world_size)]
    if context.distributed:
        dist.all_gather(parts, padded)
    else:
        parts = [padded]
    images = torch.empty((total, 64, 64), dtype=torch.uint8, device=context.device)
    for rank, part in enumerate(parts):
        count = len(range(rank, total, context.world_size))
        images[rank :: context.world_size] = part[:count]
    index = torch.arange(total, device=context.device)
    labels = index % NUM_CLASSES
    bucket = (index // NUM_CLASSES) % 10  # by sample number within its class: 10 % val, 10 % test
    splits = {}
    for name, chosen in (("train", bucket >= 2), ("val", bucket == 1), ("test", bucket == 0)):
        picked = torch.nonzero(chosen).flatten()
        splits[name] = SplitData(images=images[picked].unsqueeze(1).contiguous(), labels=labels[picked].contiguous())
    classes = tuple(f"class{number:02d}" for number in range(NUM_CLASSES))
    return DataCache(
        kind="synthetic",
        root=Path("."),
        classes=classes,
        dataset_id=f"synth-{total}-{seed}",
        splits=splits,
        skipped=[],
        warnings=[],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=54_049)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default="wide")
    parser.add_argument("--batch-size", type=int, default=512, help="global batch")
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--amp", choices=("on", "off"), default="on", help="bfloat16 autocast (CUDA only)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--keep-going", action="store_true", help="run all epochs instead of stopping at the gate")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON results (default bench/results/gpu_train.json; with --tiny a new temporary folder)",
    )
    parser.add_argument("--tiny", action="store_true", help="seconds on a CPU: 320 images, compact model, one epoch")
    arguments = parser.parse_args()
    if arguments.tiny:  # a second pass, so that an option given on the command line still wins
        parser.set_defaults(**TINY_DEFAULTS)
        arguments = parser.parse_args()
    if arguments.output is None:
        arguments.output = (
            Path(tempfile.mkdtemp(prefix="arsl-bench-tiny-")) / "gpu_train.json"
            if arguments.tiny
            else REPO / "bench" / "results" / "gpu_train.json"
        )
    script_started = time.perf_counter()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if arguments.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda but no GPU is visible; use --device cpu to check the script")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if world > 1:
        dist.init_process_group(backend, timeout=timedelta(minutes=10))
    context = DistContext(
        rank=rank, world_size=world, local_rank=local_rank, device=device, backend=backend if world > 1 else None
    )
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    workers = max(1, (os.cpu_count() or 1) // local_world)

    data_started = time.perf_counter()
    cache = build_cache(arguments.images, arguments.seed, context, workers)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    data_s = time.perf_counter() - data_started
    train, val = cache.splits["train"], cache.splits["val"]
    mean, std = cache.pixel_mean_std()
    normalisation = Normalisation(mean, std)

    torch.manual_seed(arguments.seed)
    model = build_model(arguments.model, NUM_CLASSES).to(device=device).to(memory_format=torch.channels_last)
    wrapped: torch.nn.Module = model
    if world > 1:
        wrapped = DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None, gradient_as_bucket_view=True
        )
    if arguments.compile:
        wrapped = torch.compile(wrapped)  # type: ignore[assignment]
    sampler = ExactDistributedBatches(len(train), arguments.batch_size, world, rank, arguments.seed)
    decay = [parameter for parameter in model.parameters() if parameter.ndim > 1]
    rest = [parameter for parameter in model.parameters() if parameter.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}],
        lr=arguments.lr,
        fused=device.type == "cuda",
    )
    total_steps = len(sampler) * arguments.epochs
    warmup = round(arguments.warmup_epochs * len(sampler))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    amp_dtype = torch.bfloat16 if arguments.amp == "on" and device.type == "cuda" else None
    if rank == 0:
        print(
            f"data: {arguments.images} images rendered and on {device} in {data_s:.1f} s "
            f"(train {len(train)}, val {len(val)}); model {arguments.model} {parameter_count(model):,} params; "
            f"world {world} ({backend}); global batch {arguments.batch_size}; amp {amp_dtype}",
            flush=True,
        )

    epochs: list[dict[str, Any]] = []
    gate: dict[str, Any] | None = None
    train_started = time.perf_counter()
    for epoch in range(1, arguments.epochs + 1):
        result = train_epoch(
            model=wrapped,
            data=train,
            sampler=sampler,
            epoch=epoch,
            optimizer=optimizer,
            scheduler=scheduler,
            context=context,
            normalisation=normalisation,
            augment_config=AugmentConfig(),
            seed=arguments.seed,
            amp_dtype=amp_dtype,
            label_smoothing=0.0,
            log_every=0,
            on_step=None,
        )
        if world > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        scored = evaluate(
            model=model,
            data=val,
            context=context,
            normalisation=normalisation,
            num_classes=NUM_CLASSES,
            batch_size=2048,
            amp_dtype=amp_dtype,
        )
        since_train = time.perf_counter() - train_started
        record = {
            "epoch": epoch,
            "train_loss": result.loss,
            "train_acc": result.accuracy,
            "val_loss": scored.loss,
            "val_acc": scored.accuracy,
            "images_per_s": result.samples / result.seconds,
            "epoch_train_s": result.seconds,
            "since_train_start_s": since_train,
        }
        if device.type == "cuda":
            record["gpu_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        epochs.append(record)
        if rank == 0:
            print(
                f"epoch {epoch}: train {result.loss:.4f}/{result.accuracy:.4f} val {scored.loss:.4f}/"
                f"{scored.accuracy:.4f} {record['images_per_s']:.0f} img/s, {since_train:.1f} s",
                flush=True,
            )
        if gate is None and scored.accuracy > 0.95 and scored.loss < 0.1:
            gate = {
                "epoch": epoch,
                "since_train_start_s": since_train,
                "since_script_start_s": time.perf_counter() - script_started,
            }
            if not arguments.keep_going:
                break
    flag = torch.tensor([1.0], device=device)
    all_reduce_sum(flag, context)  # every rank got here
    rates = [record["images_per_s"] for record in epochs[1:]] or [epochs[0]["images_per_s"]]
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": world,
        "backend": backend,
        "images": arguments.images,
        "model": arguments.model,
        "global_batch": arguments.batch_size,
        "lr": arguments.lr,
        "amp": str(amp_dtype),
        "compile": arguments.compile,
        "data_prep_s": round(data_s, 2),
        "steady_images_per_s": round(statistics.median(rates), 1),
        "gate": gate,
        "epochs": epochs,
        "torch": torch.__version__,
        "tiny": arguments.tiny,
    }
    if rank == 0:
        print(f"steady state {summary['steady_images_per_s']} img/s; gate: {gate}", flush=True)
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        arguments.output.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"written {arguments.output}")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
