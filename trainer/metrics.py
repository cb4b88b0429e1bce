"""metrics.jsonl: one JSON record per line, written by rank 0 and flushed per record.

Record types (trainer/README.md, "What it writes"): `step` (progress inside an epoch), `epoch` (train/val figures after
each epoch), `final` (test split, per-class accuracy, confusion matrix, train/val gap). Epochs count
from 1; accuracies are fractions in [0, 1]; losses are plain (unsmoothed) cross-entropy.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

METRICS_NAME = "metrics.jsonl"


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null so every reader can parse the line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a metrics file (a line cut short by a crash is ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def rewrite(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace the file atomically with exactly these records."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with temporary.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(_clean(record), ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def reconcile(path: Path, completed_epochs: int, history: list[dict[str, Any]]) -> None:
    """Make the file agree with a checkpoint after `completed_epochs` epochs.

    Keeps step records of completed epochs, takes the epoch records from the checkpoint's history
    (so an epoch written after the checkpoint, or lost before it, is counted exactly once) and drops
    everything later, including an earlier final record.
    """
    steps: dict[int, list[dict[str, Any]]] = {}
    for record in read_records(path):
        epoch = record.get("epoch")
        if record.get("type") == "step" and isinstance(epoch, int) and epoch <= completed_epochs:
            steps.setdefault(epoch, []).append(record)
    ordered: list[dict[str, Any]] = []
    for record in sorted(history, key=lambda item: int(item["epoch"])):
        ordered.extend(steps.get(int(record["epoch"]), []))
        ordered.append(record)
    rewrite(path, ordered)


class MetricsLog:
    """Appends records; a no-op on ranks other than 0."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self._handle: IO[str] | None = path.open("a", encoding="utf-8") if enabled else None

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            return
        self._handle.write(json.dumps(_clean(record), ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
