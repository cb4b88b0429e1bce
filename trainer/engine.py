"""One training epoch and one evaluation pass, distributed-correct.

Training: each rank takes its part of every global batch (sampler.ExactDistributedBatches), augments
it on the device, and scales its summed loss by world_size / global_batch so that DDP's gradient
average is exactly the mean over the global batch, even when the parts differ in size by one.
Evaluation: each rank evaluates a disjoint part of the split; loss sums, correct counts and the
confusion matrix are all-reduced, so every rank holds the metrics of the whole split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.augment import AugmentConfig, augment
from trainer.data import SplitData
from trainer.distributed import DistContext, all_reduce_sum
from trainer.sampler import ExactDistributedBatches, shard_for_rank

StepCallback = Callable[[int, int, float, float, int], None]  # (step in epoch, steps, loss, acc, samples)


@dataclass(frozen=True)
class Normalisation:
    mean: float
    std: float

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] → normalised, channels-last."""
        return ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class EpochResult:
    loss: float
    accuracy: float
    samples: int
    seconds: float
    cpu_seconds: float  # process CPU time of all ranks together (contention shows as cpu < ranks × wall)


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    samples: int
    confusion: torch.Tensor  # (classes, classes) int64, rows = true class, columns = predicted

    def per_class_accuracy(self) -> list[float | None]:
        totals = self.confusion.sum(dim=1)
        return [
            None if int(total) == 0 else float(self.confusion[index, index]) / float(total)
            for index, total in enumerate(totals)
        ]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, the same on every machine."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (part + 0x632BE59BD9B4E019 + (value << 6) + (value >> 2))) & (2**64 - 1)
    return value & (2**63 - 1)


def train_epoch(
    *,
    model: nn.Module,
    data: SplitData,
    sampler: ExactDistributedBatches,
    epoch: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    context: DistContext,
    normalisation: Normalisation,
    augment_config: AugmentConfig,
    seed: int,
    amp_dtype: torch.dtype | None,
    label_smoothing: float,
    log_every: int,
    on_step: StepCallback | None,
) -> EpochResult:
    """Train one epoch (`epoch` counts from 1). Returns all-reduced plain cross-entropy and accuracy."""
    model.train()
    device = context.device
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, epoch, context.rank, 1))
    torch.manual_seed(derive_seed(seed, epoch, context.rank, 2))  # dropout
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, samples
    batches = sampler.batches(epoch)
    started, cpu_started = time.perf_counter(), time.process_time()
    for step, (indices, global_count) in enumerate(batches, start=1):
        indices = indices.to(device, non_blocking=True)
        labels = data.labels[indices]
        inputs = normalisation.apply(augment(data.images[indices], generator, augment_config))
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(inputs)
        logits = logits.float()
        losses = F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        (losses.sum() * (context.world_size / global_count)).backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            plain = losses.sum() if label_smoothing == 0 else F.cross_entropy(logits, labels, reduction="sum")
            correct = (logits.argmax(dim=1) == labels).sum()
            totals += torch.stack(
                [
                    plain.double(),
                    correct.double(),
                    torch.tensor(float(labels.numel()), dtype=torch.float64, device=device),
                ]
            )
        if on_step is not None and log_every > 0 and step % log_every == 0 and step < len(batches):
            snapshot = all_reduce_sum(totals.clone(), context).tolist()
            on_step(step, len(batches), snapshot[0] / snapshot[2], snapshot[1] / snapshot[2], int(snapshot[2]))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    cpu = torch.tensor([time.process_time() - cpu_started], dtype=torch.float64, device=device)
    all_reduce_sum(totals, context)
    all_reduce_sum(cpu, context)
    loss_sum, correct, samples = totals.tolist()
    return EpochResult(
        loss=loss_sum / samples,
        accuracy=correct / samples,
        samples=int(samples),
        seconds=seconds,
        cpu_seconds=float(cpu.item()),
    )


@torch.no_grad()
def evaluate(
    *,
    model: nn.Module,
    data: SplitData,
    context: DistContext,
    normalisation: Normalisation,
    num_classes: int,
    batch_size: int,
    amp_dtype: torch.dtype | None,
) -> EvalResult:
    """Plain cross-entropy, accuracy and confusion matrix over the whole split (all ranks together)."""
    model.eval()
    device = context.device
    indices = shard_for_rank(len(data), context.world_size, context.rank).to(device)
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for chunk in indices.split(batch_size):
        labels = data.labels[chunk]
        inputs = normalisation.apply(data.images[chunk].to(torch.float32) / 255.0)
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(inputs)
        logits = logits.float()
        predicted = logits.argmax(dim=1)
        totals += torch.stack(
            [
                F.cross_entropy(logits, labels, reduction="sum").double(),
                (predicted == labels).sum().double(),
                torch.tensor(float(labels.numel()), dtype=torch.float64, device=device),
            ]
        )
        confusion += torch.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    all_reduce_sum(totals, context)
    all_reduce_sum(confusion, context)
    loss_sum, correct, samples = totals.tolist()
    return EvalResult(
        loss=loss_sum / samples,
        accuracy=correct / samples,
        samples=int(samples),
        confusion=confusion.view(num_classes, num_classes).cpu(),
    )
