"""Which samples each rank processes: every training sample exactly once per epoch across all ranks.

`torch.utils.data.DistributedSampler` pads the index list with repeats so ranks get equal shares (or
drops the tail), so some samples are seen twice or never in an epoch. Here one permutation per epoch
(from the seed and the epoch, identical on every rank) is cut into global batches of `global_batch`
samples, and each global batch is split between the ranks in near-equal contiguous parts. A last batch
smaller than the number of ranks is merged into the one before it, so every rank takes part in every
step (DDP needs the same number of steps on every rank) and no sample is repeated or dropped.
Because the global batches do not depend on the number of ranks, one rank and two ranks follow the
same sequence of global batches, and a run resumed with another world size continues the same way.
"""

from __future__ import annotations

import torch


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return generator


class ExactDistributedBatches:
    def __init__(self, size: int, global_batch: int, world_size: int, rank: int, seed: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        if global_batch < world_size:
            raise ValueError(f"global batch {global_batch} is smaller than the {world_size} ranks")
        if size < world_size:
            raise ValueError(f"{size} training samples cannot be shared between {world_size} ranks")
        self.size, self.global_batch = size, global_batch
        self.world_size, self.rank, self.seed = world_size, rank, seed
        bounds = [*range(0, size, global_batch), size]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] < world_size:
            del bounds[-2]  # merge a last batch too small to give every rank a sample
        self.bounds = bounds

    def __len__(self) -> int:
        """Steps per epoch (the same on every rank)."""
        return len(self.bounds) - 1

    def global_batches(self, epoch: int) -> list[torch.Tensor]:
        order = torch.randperm(self.size, generator=_epoch_generator(self.seed, epoch))
        return [order[start:end] for start, end in zip(self.bounds, self.bounds[1:], strict=False)]

    def batches(self, epoch: int) -> list[tuple[torch.Tensor, int]]:
        """This rank's (indices, size of the global batch they belong to) for each step of `epoch`."""
        return [
            (torch.tensor_split(batch, self.world_size)[self.rank], len(batch)) for batch in self.global_batches(epoch)
        ]


def shard_for_rank(size: int, world_size: int, rank: int) -> torch.Tensor:
    """Evaluation indices of this rank: a contiguous, near-equal part, every index exactly once."""
    return torch.tensor_split(torch.arange(size), world_size)[rank]
