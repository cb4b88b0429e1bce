"""Every training sample exactly once per epoch across ranks; evaluation shards partition the split."""

from __future__ import annotations

import pytest
import torch

from trainer.sampler import ExactDistributedBatches, shard_for_rank


@pytest.mark.parametrize(
    ("size", "batch", "world"),
    [(320, 64, 2), (321, 64, 2), (257, 128, 2), (1000, 96, 3), (129, 128, 2), (64, 128, 2), (7, 4, 4)],
)
def test_each_sample_once_per_epoch_across_ranks(size: int, batch: int, world: int) -> None:
    ranks = [ExactDistributedBatches(size, batch, world, rank, seed=5) for rank in range(world)]
    assert len({len(sampler) for sampler in ranks}) == 1, "every rank must run the same number of steps"
    for epoch in (1, 2, 7):
        seen = torch.cat([indices for sampler in ranks for indices, _ in sampler.batches(epoch)])
        assert sorted(seen.tolist()) == list(range(size))
        for step in range(len(ranks[0])):
            parts = [sampler.batches(epoch)[step] for sampler in ranks]
            assert all(len(indices) >= 1 for indices, _ in parts), "a rank with nothing to do would stall DDP"
            assert {count for _, count in parts} == {sum(len(indices) for indices, _ in parts)}


def test_global_batches_do_not_depend_on_the_number_of_ranks() -> None:
    alone = ExactDistributedBatches(300, 64, 1, 0, seed=9)
    pair = [ExactDistributedBatches(300, 64, 2, rank, seed=9) for rank in range(2)]
    for (solo, _), first, second in zip(alone.batches(3), pair[0].batches(3), pair[1].batches(3), strict=True):
        assert torch.equal(solo, torch.cat([first[0], second[0]]))


def test_order_changes_with_epoch_and_repeats_with_seed() -> None:
    sampler = ExactDistributedBatches(200, 50, 2, 0, seed=1)
    assert not torch.equal(sampler.batches(1)[0][0], sampler.batches(2)[0][0])
    again = ExactDistributedBatches(200, 50, 2, 0, seed=1)
    assert torch.equal(sampler.batches(4)[1][0], again.batches(4)[1][0])


def test_too_few_samples_or_batch_smaller_than_world_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be shared between 4 ranks"):
        ExactDistributedBatches(3, 8, 4, 0, seed=0)
    with pytest.raises(ValueError, match="smaller than the 4 ranks"):
        ExactDistributedBatches(100, 2, 4, 0, seed=0)


def test_evaluation_shards_partition_the_split() -> None:
    for size in (0, 1, 5, 100):
        parts = [shard_for_rank(size, 3, rank) for rank in range(3)]
        assert torch.cat(parts).tolist() == list(range(size))
