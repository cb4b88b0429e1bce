"""Per-epoch checkpoints that survive a kill at any moment.

`checkpoints/last.pt` holds everything needed to continue exactly: model, optimizer, scheduler, the
number of completed epochs (which is the sampler state: its permutation depends only on the seed and
the epoch), the seed from which every rank's RNG streams are re-derived at each epoch start, the
early-stopping state and the epoch records written so far. It is written to a temporary file, synced
and renamed over the old one, so a reader sees the old or the new checkpoint, never half of one.
The weights with the lowest validation loss travel inside it too (so they can never disagree with
the early-stopping state); `checkpoints/best.safetensors` is a copy of them for tools.

Checkpoints are read with `torch.load(weights_only=True)`: tensors and plain containers only, no
arbitrary unpickling.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "arsl-trainer-checkpoint/1"
CHECKPOINT_DIR = "checkpoints"
LAST_NAME = "last.pt"
BEST_NAME = "best.safetensors"


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed from; the message says why."""


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with temporary.open("wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_folder(path.parent)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found") from None
    except Exception as error:  # a truncated or foreign file: say which one, do not guess
        raise CheckpointError(f"{path}: cannot be loaded ({error})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a trainer checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    return state
