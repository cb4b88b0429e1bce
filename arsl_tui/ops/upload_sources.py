"""What an upload sends, and where the engine (`ops.upload`) takes it from as it becomes ready.

A source hands out items to put: `ListSource` for work known in full up front (files mode, objects a
verification found wrong), `ShardSource` for the staged manifest, then shards as packing finishes them
and then `shards.json`, each planned in the upload journal on arrival. The engine sends, counts (in an
`UploadTally` it shares with the source) and verifies; the sources decide what is ready.
"""

from __future__ import annotations

import itertools
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from arsl_tui.ops.dataset import ValidationReport
from arsl_tui.ops.shards import SHARDS_INDEX_NAME, ShardInfo, ShardPacking
from arsl_tui.ops.upload_journal import PlannedObject, UploadJournal


@dataclass(frozen=True, slots=True)
class UploadItem:
    """One object to put: its key, content hash and where the bytes come from."""

    key: str
    md5: str
    size: int
    files: int
    """Images carried (1 per file, a shard's sample count, 0 for indexes)."""
    source: str | None = None
    """The file to send (a str: a Path per image would cost ~40 MB for 100k images)."""
    data: bytes | None = None


@dataclass
class UploadTally:
    """A run's counts: totals as planned, and what is done, sent and skipped."""

    objects_total: int = 0
    bytes_total: int = 0
    files_total: int = 0
    objects_done: int = 0
    bytes_done: int = 0
    files_done: int = 0
    objects_sent: int = 0
    objects_skipped: int = 0
    bytes_sent: int = 0
    retries: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def file_items(report: ValidationReport, prefix: str) -> list[UploadItem]:
    root = str(report.root)
    return [
        UploadItem(
            key=f"{prefix}files/{image.path}", md5=image.md5, size=image.bytes, files=1, source=f"{root}/{image.path}"
        )
        for image in report.manifest.images
    ]


class WorkSource(Protocol):
    """Work for the engine's sending loop, handed out as it becomes ready."""

    def take(self, limit: int) -> tuple[list[tuple[UploadItem, bool]], list[UploadItem]]:
        """(up to `limit` items to send, each with whether to head it first; items found already
        confirmed). Never blocks."""

    def exhausted(self) -> bool:
        """Nothing more will come."""

    def waitables(self) -> list[Future[Any]]:
        """Futures whose completion may make more work ready."""


class ListSource:
    """Work known in full up front."""

    def __init__(self, work: Iterable[tuple[UploadItem, bool]]) -> None:
        self._work = iter(work)
        self._exhausted = False

    def take(self, limit: int) -> tuple[list[tuple[UploadItem, bool]], list[UploadItem]]:
        batch = list(itertools.islice(self._work, limit))
        if len(batch) < limit:
            self._exhausted = True
        return batch, []

    def exhausted(self) -> bool:
        return self._exhausted

    def waitables(self) -> list[Future[Any]]:
        return []


class ShardSource:
    """Shards as they come out of packing, then `shards.json`, each planned in the journal on arrival.

    A shard's MD5 is known only once it is packed, so the journal learns the plan in parts; a shard it
    already holds as confirmed with that MD5 is skipped, one it holds as `sent` is headed first. Until
    every shard is packed, the byte total counts each unpacked shard at its uncompressed size (an
    upper bound); each packed one then counts at its real size.
    """

    def __init__(
        self,
        packing: ShardPacking,
        prefix: str,
        *,
        journal: UploadJournal,
        job_id: str,
        run_id: str,
        tally: UploadTally,
        on_phase: Callable[[str, str], None],
        first: Iterable[UploadItem] = (),
    ) -> None:
        """`first`: objects known before any shard (the staged manifest), sent ahead of the shards."""
        self._journal = journal
        self._job_id = job_id
        self._run_id = run_id
        self._tally = tally
        self._on_phase = on_phase
        self._packing = packing
        self._prefix = prefix
        self._ready: deque[tuple[UploadItem, bool]] = deque()
        self._announced = False
        self._indexed = False
        self.items: list[UploadItem] = []
        estimates = packing.planned_bytes()
        tally.bytes_total += sum(estimates.values())
        self._estimates = estimates
        self._admit(list(first), initial=True)
        if packing.reused is not None:
            self._admit(self._shard_items(packing.reused.shards), initial=True)
            self._admit_index()

    def take(self, limit: int) -> tuple[list[tuple[UploadItem, bool]], list[UploadItem]]:
        skipped: list[UploadItem] = []
        all_packed = False
        if not self._indexed:
            packed = self._packing.poll()
            if packed:
                skipped += self._admit(self._shard_items(packed))
            if self._packing.complete:
                skipped += self._admit_index()
                all_packed = True
        batch = [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]
        total = self._packing.shards_total
        if (batch or skipped) and not self._announced:
            self._announced = True
            self._on_phase(
                "sending", f"{self._packing.shards_done} of {total} shard(s) packed; sending each as it is ready"
            )
        if all_packed:
            self._on_phase("sending", f"all {total} shard(s) packed")
        return batch, skipped

    def exhausted(self) -> bool:
        return self._indexed and not self._ready

    def waitables(self) -> list[Future[Any]]:
        return self._packing.waitables()

    def _shard_items(self, shards: Iterable[ShardInfo]) -> list[UploadItem]:
        return [
            UploadItem(
                key=self._prefix + shard.name,
                md5=shard.md5,
                size=shard.bytes,
                files=shard.samples,
                source=str(self._packing.path(shard.name)),
            )
            for shard in shards
        ]

    def _admit_index(self) -> list[UploadItem]:
        shard_set = self._packing.shard_set()
        self._indexed = True
        index = UploadItem(
            key=self._prefix + SHARDS_INDEX_NAME,
            md5=shard_set.index_md5,
            size=len(shard_set.index_bytes),
            files=0,
            data=shard_set.index_bytes,
        )
        skipped = self._admit([index], initial=self._packing.reused is not None)
        # The whole plan is known now: forget what an earlier run planned and this one does not need.
        self._journal.plan(self._job_id, (PlannedObject(item.key, item.md5, item.size) for item in self.items))
        return skipped

    def _admit(self, items: list[UploadItem], *, initial: bool = False) -> list[UploadItem]:
        """Plan `items` in the journal and queue what must be sent; returns those already confirmed.

        `initial`: before UploadStarted, where confirmed items are counted as already done (no events).
        """
        states = self._journal.plan(
            self._job_id, (PlannedObject(item.key, item.md5, item.size) for item in items), forget_others=False
        )
        tally = self._tally
        skipped: list[UploadItem] = []
        for item in items:
            self.items.append(item)
            tally.bytes_total += item.size - self._estimates.get(item.key.removeprefix(self._prefix), 0)
            state = states[item.key]
            if state != "confirmed":
                self._ready.append((item, state == "sent"))
            elif initial:
                tally.objects_done += 1
                tally.objects_skipped += 1
                tally.bytes_done += item.size
                tally.files_done += item.files
            else:
                skipped.append(item)
        self._journal.update_run(self._run_id, bytes_total=tally.bytes_total)
        return skipped


def settle_packing(packing: ShardPacking, *, uploaded: bool) -> None:
    """After a run: the shards are no longer needed once uploaded; otherwise a complete build is kept
    for the next run to reuse, and a partial one (or one with images that did not decode) removed."""
    if uploaded:
        if packing.reused is not None:
            shutil.rmtree(packing.reused.folder, ignore_errors=True)
        packing.close()
    elif packing.complete and not packing.mismatched:
        packing.keep()
    else:
        packing.close()


__all__ = ["ListSource", "ShardSource", "UploadItem", "UploadTally", "WorkSource", "file_items", "settle_packing"]
