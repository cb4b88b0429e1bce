"""Process-group set-up for torchrun and ModelArts, and the few collectives the trainer uses.

Locally: `torchrun --standalone --nproc_per_node=2 -m trainer.train …` (gloo on CPU).
On ModelArts the boot file is started once per node without torchrun; the platform injects
`MA_NUM_HOSTS` (nodes), `MA_NUM_GPUS` (accelerators per node), `VC_TASK_INDEX` (this node, from 0)
and `VC_WORKER_HOSTS` (comma-separated node host names; the first is the rendezvous master; no
`MASTER_ADDR` is injected). `modelarts_launch_command` turns those into the torchrun command that
re-executes the trainer with one process per accelerator (NCCL on GPU).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

DEFAULT_MASTER_PORT = 29500
# ModelArts rejects custom environment variables that start with MA_, so ours are ARSL_*.
MASTER_PORT_VARIABLE = "ARSL_MASTER_PORT"


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int_variable(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(*, cpu: bool = False, timeout_s: float = 1800.0) -> DistContext:
    """Join the process group torchrun describes in RANK/WORLD_SIZE/LOCAL_RANK (or run alone)."""
    env = os.environ
    world_size = _int_variable(env, "WORLD_SIZE", 1)
    rank = _int_variable(env, "RANK", 0)
    local_rank = _int_variable(env, "LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() and not cpu
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    backend: str | None = None
    if world_size > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(
                backend=backend, timeout=timedelta(seconds=timeout_s), device_id=device if use_cuda else None
            )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend)


def shutdown(context: DistContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Sum over ranks, in place; a no-op when alone."""
    if context.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(context: DistContext) -> None:
    if context.distributed:
        if context.device.type == "cuda":
            dist.barrier(device_ids=[context.device.index or 0])
        else:
            dist.barrier()


def count_true(flag: bool, context: DistContext) -> int:
    """On how many ranks the flag is true."""
    value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=context.device)
    all_reduce_sum(value, context)
    return int(value.item())


def agree(flag: bool, context: DistContext) -> bool:
    """True when the flag is true on every rank (e.g. 'this rank found the best weights')."""
    return count_true(flag, context) == context.world_size


def is_modelarts(env: Mapping[str, str]) -> bool:
    return bool(env.get("MA_NUM_GPUS") or env.get("VC_WORKER_HOSTS") or env.get("MA_NUM_HOSTS"))


def modelarts_launch_command(env: Mapping[str, str], script: str, argv: Sequence[str]) -> list[str] | None:
    """The torchrun command for a ModelArts job, or None when no launcher is needed.

    None when already under torchrun (RANK is set), outside ModelArts, or for one process on one node.
    """
    if "RANK" in env or not is_modelarts(env):
        return None
    nodes = max(1, _int_variable(env, "MA_NUM_HOSTS", _int_variable(env, "VC_WORKER_NUM", 1)))
    per_node = max(1, _int_variable(env, "MA_NUM_GPUS", 1))
    if nodes * per_node == 1:
        return None
    node_rank = _int_variable(env, "VC_TASK_INDEX", 0)
    hosts = [host.strip() for host in env.get("VC_WORKER_HOSTS", "").split(",") if host.strip()]
    if nodes > 1 and not hosts:
        raise ValueError(f"MA_NUM_HOSTS={nodes} but VC_WORKER_HOSTS is empty: cannot find the master node")
    master = hosts[0] if hosts else "127.0.0.1"
    port = _int_variable(env, MASTER_PORT_VARIABLE, DEFAULT_MASTER_PORT)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nodes}",
        f"--node_rank={node_rank}",
        f"--nproc_per_node={per_node}",
        f"--master_addr={master}",
        f"--master_port={port}",
        script,
        *argv,
    ]
