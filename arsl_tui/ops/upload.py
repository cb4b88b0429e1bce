"""The upload engine: predict → pack (shards mode) and send, decoding beside → verify → manifest in place.

`arsl upload` drives `run_upload`, and so does the console's Upload tab, in a process of its own
(`ops.upload_process`). The store layout of a data set:

    {datasets_prefix}{manifest_id}/files/<class>/<name>              (files mode)
    {datasets_prefix}{manifest_id}/shards.json                       (shards mode)
    {datasets_prefix}{manifest_id}/shards/shard-000000.tar.gz …      (shards mode)
    {datasets_prefix}{manifest_id}/.manifest.json.staged             sent with the rest, removed at the end
    {datasets_prefix}{manifest_id}/manifest.json                     copied from it once a listing proves the rest exact

One rule places every shard: `shards.json` names each shard by its path relative to the folder that
holds `shards.json`, and a shard named `n` is stored at `{prefix}n`. So the prefix, copied down as it
is, is a data set folder the trainer reads directly (`trainer/README.md`); in files mode the trainer
finds the images under `files/` beside `manifest.json`.

How it stays correct: every object is sent with its MD5 and counts as done only when the store
reports that MD5 and size back (the put's answer, else a head). The journal (SQLite) marks an
object `sent` *before* its request goes out and `confirmed` after, so a run killed at any instant
leaves at most the in-flight tail uncertain; the next run heads those, skips what is confirmed and
sends the rest. While every sending thread has work queued, completions gather for up to 20 ms and are
confirmed in one transaction (one per completion cost a fifth of the engine's CPU in files mode); a kill
in that window only leaves a few more objects `sent`, to be headed. Transient errors retry with
exponential backoff and full jitter; a permanent one stops the run at once. Before `manifest.json`
appears, a listing of the prefix must match the plan exactly: missing or wrong objects are sent again,
unexpected ones under this content-addressed prefix are deleted and reported. Its arrival is what marks
a data set complete, so the manifest travels with the rest under a staging key and one server-side copy
puts it in place at the end: a 15 MB manifest sent alone after the last shard kept the link busy for
two more seconds.

How it stays fast: the link is busy from the first seconds. A first pass (`predict_dataset`) reads and
hashes every file and takes each image's size and mode from its header, which gives the manifest — and
so the content-addressed prefix — in a fraction of a full validation's time whenever every image
decodes. Sending starts from that prediction while every image is decoded beside it: in shards mode by
the packing workers (each image is read there anyway), in files mode by `validate_dataset` in a thread
of its own. Before the manifest goes up the decoding must agree with the prediction exactly; where it
does not (a file whose header is sound and whose data is not), what was sent under the predicted
prefix is removed, the journal forgets that job, and the run starts again from the full validation —
refusing, or quarantining, with exactly the report and messages a validation first would give. A set
whose listing or headers already show a problem is validated in full first, as before. Decoding and
packing run in worker processes, one per CPU; each shard is sent as soon as it is packed, while the
next ones are being packed.
A shard's MD5 exists only once it is packed, so the journal learns the plan shard by shard — which
changes none of the above: a shard a killed run confirmed is packed again (byte-identical), found
confirmed with the same MD5 and skipped. What is ready to send comes from the sources of
`ops.upload_sources` (a list known up front, or shards as they are packed). In files mode on a remote
store, one request per image costs the SDK's CPU more than the link's time: sending processes
(`ops.upload_senders`) each run whole transfers (`ops.upload_transfer`, the same policy as this process's
threads) with their own client, and the engine only hands out items and records the answers.

How it stays small: files are streamed by the store, a packing worker holds one image at a time,
decoding and packing keep at most a couple of tasks per worker queued, and no more than twice the
concurrency of objects is in flight at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import itertools
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

from arsl_tui.config import Settings
from arsl_tui.domain.events import (
    EventSink,
    UploadFinished,
    UploadPhaseChanged,
    UploadProgressed,
    UploadRetried,
    UploadStarted,
    ignore_events,
)
from arsl_tui.domain.manifest import SplitPolicy, manifest_id, manifest_text
from arsl_tui.domain.ports import ObjectInfo, ObjectStore
from arsl_tui.ops.dataset import (
    MANIFEST_NAME,
    STAGED_MANIFEST_NAME,
    ValidationReport,
    ValidationStopped,
    predict_dataset,
    validate_dataset,
)
from arsl_tui.ops.listing import list_prefix
from arsl_tui.ops.shards import (
    GZIP_LEVEL,
    SHARDS_FORMAT,
    SHARDS_INDEX_NAME,
    PackingCancelled,
    ShardCheckFailed,
    ShardError,
    ShardPacking,
)
from arsl_tui.ops.upload_journal import (
    JobLock,
    PlannedObject,
    UploadBusy,
    UploadJournal,
    UploadRunRecord,
)
from arsl_tui.ops.upload_senders import SendingProcesses, sending_process_count
from arsl_tui.ops.upload_sources import (
    ListSource,
    ShardSource,
    UploadItem,
    UploadTally,
    WorkSource,
    file_items,
    settle_packing,
)
from arsl_tui.ops.upload_transfer import Failure, Stop, Transfer
from arsl_tui.state.db import StateDB, StateError, StateWriteError, state_path

__all__ = [
    "UploadBusy",
    "UploadControl",
    "UploadOutcome",
    "UploadRefused",
    "UploadRequest",
    "UploadRunRecord",
    "dataset_prefix",
    "last_uploaded_dataset",
    "list_upload_runs",
    "resumable_run",
    "run_upload",
]

_RATE_WINDOW_S = 5.0
_VERIFY_ROUNDS = 3
_POLL_S = 0.25
_LINGER_S = 0.02
"""How long the sending loop lets completions gather while every sender has work queued (see `_send`)."""
_T = TypeVar("_T")


@dataclass(frozen=True)
class UploadRequest:
    dataset_dir: Path
    mode: Literal["shards", "files"] = "shards"
    concurrency: int | None = None
    """None → settings.upload.concurrency."""
    allow_problems: bool = False
    """Quarantine problem files (leave them out of the manifest and the store) instead of refusing."""


@dataclass(frozen=True)
class UploadOutcome:
    run_id: str
    status: Literal["done", "cancelled", "failed"]
    manifest_id: str
    destination: str
    objects_sent: int
    objects_skipped: int
    bytes_sent: int
    elapsed_s: float
    error: str = ""


class UploadRefused(Exception):
    """Validation found problems and allow_problems was False; `.report` is the ValidationReport."""

    def __init__(self, report: ValidationReport, message: str = "") -> None:
        problems = report.problems
        shown = "; ".join(f"{item.path}: {item.kind}: {item.detail}" for item in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(
            message
            or f"{report.root}: {len(problems)} problem(s) found, nothing uploaded — "
            f"{shown}{more}; fix them or pass --allow-problems to quarantine them"
        )
        self.report = report


class UploadControl:
    """Thread-safe controls shared by a UI and a running upload."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._paused = False
        self._cancelled = threading.Event()

    def pause(self) -> None:
        """Stop dispatching new objects; in-flight ones finish; run_upload blocks until resume or cancel."""
        with self._condition:
            self._paused = True
            self._condition.notify_all()

    def resume(self) -> None:
        with self._condition:
            self._paused = False
            self._condition.notify_all()

    def cancel(self) -> None:
        """In-flight objects finish (retries stop); run_upload returns "cancelled"."""
        self._cancelled.set()
        with self._condition:
            self._condition.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def wait_while_paused(self) -> None:
        with self._condition:
            self._condition.wait_for(lambda: not self._paused or self._cancelled.is_set())


def dataset_prefix(settings: Settings, manifest_id: str) -> str:
    base = settings.storage.datasets_prefix
    if base and not base.endswith("/"):
        base += "/"
    return f"{base}{manifest_id}/"


# -- run records ---------------------------------------------------------------------------------------


def _open_journal(settings: Settings) -> tuple[StateDB, UploadJournal]:
    db = StateDB(state_path(settings.home_dir))
    return db, UploadJournal(db, settings.home_dir / "locks")


def _read_journal(settings: Settings, read: Callable[[UploadJournal], _T], empty: _T) -> _T:
    if not state_path(settings.home_dir).exists():
        return empty
    db, journal = _open_journal(settings)
    try:
        return read(journal)
    finally:
        db.close()


def list_upload_runs(settings: Settings, limit: int = 20) -> list[UploadRunRecord]:
    """Upload runs, newest first."""
    empty: list[UploadRunRecord] = []
    return _read_journal(settings, lambda journal: journal.runs(limit), empty)


def resumable_run(settings: Settings) -> UploadRunRecord | None:
    """The newest run that did not finish (interrupted, paused, cancelled or failed) and was not superseded."""
    empty: list[UploadRunRecord] = []
    attempts = _read_journal(settings, lambda journal: journal.latest_attempts(), empty)
    return next((run for run in attempts if run.status != "done"), None)


def last_uploaded_dataset(settings: Settings) -> UploadRunRecord | None:
    """The newest run that finished: its data set is complete in the store."""
    return _read_journal(settings, lambda journal: journal.newest_done(), None)


# -- the engine ----------------------------------------------------------------------------------------


class _Mispredicted(Exception):
    """The full validation found what the prediction did not; `report` is the full one."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__("the full validation differs from the prediction")
        self.report = report


class _FullValidation:
    """`validate_dataset` in a thread of its own (and its decoding processes), while the upload goes on."""

    def __init__(self, request: UploadRequest, split: SplitPolicy) -> None:
        self.report: ValidationReport | None = None
        self.error: Exception | None = None
        self._stopped = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(request, split), name="arsl-upload-validate", daemon=True
        )
        self._thread.start()

    def _run(self, request: UploadRequest, split: SplitPolicy) -> None:
        try:
            self.report = validate_dataset(
                request.dataset_dir, split, quarantine=request.allow_problems, stopped=self._stopped.is_set
            )
        except ValidationStopped:
            pass
        except Exception as error:  # handed to the engine, which fails the run with it
            self.error = error
        finally:
            self._done.set()

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(timeout_s)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


class _RateMeter:
    """Bytes per second over a sliding window of recent samples."""

    def __init__(self, window_s: float = _RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, total_bytes: int) -> None:
        self._samples.append((now, total_bytes))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (start, first), (end, last) = self._samples[0], self._samples[-1]
        return (last - first) / (end - start) if end - start > 1e-6 else 0.0


class _Engine:
    def __init__(
        self,
        settings: Settings,
        request: UploadRequest,
        store: ObjectStore,
        on_event: EventSink,
        control: UploadControl,
        *,
        store_from_settings: bool = False,
    ) -> None:
        self.settings = settings
        self.request = request
        self.store = store
        self.store_from_settings = store_from_settings
        """`store` is the backend's, built from `settings`: a sending process can build its own."""
        self.halt = threading.Event()
        self.transfer = Transfer(store, settings.upload, self.halt, self._retried)
        self.senders: SendingProcesses | None = None
        """Files mode's sending processes while they run (see `_sending_processes`)."""
        self.emit = on_event
        self.control = control
        self.run_id = uuid.uuid4().hex[:12]
        self.concurrency = request.concurrency or settings.upload.concurrency
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        self.tally = UploadTally()
        self.meter = _RateMeter()
        self.started = time.monotonic()
        self.manifest_id = ""
        self.destination = ""
        self.job_id = ""
        self.journal: UploadJournal | None = None
        self._phase_emitted = 0.0
        self._discarded = False
        """This run's job was discarded: its prediction was wrong (see `_confirm`)."""

    # -- the whole run -------------------------------------------------------------------------------

    def run(self) -> UploadOutcome:
        predicted = self._predict()
        if predicted is None:
            return self._run_with(self._validate())
        # Shards mode checks the prediction while packing (each image is read there anyway); files mode
        # decodes everything beside the sending.
        check = _FullValidation(self.request, self._split()) if self.request.mode == "files" else None
        try:
            return self._run_with(predicted, predicted=True, check=check)
        except _Mispredicted as mispredicted:
            report = self._accepted(mispredicted.report)
            self._restart()
            return self._run_with(report)
        finally:
            if check is not None:
                check.stop()

    def _run_with(
        self, report: ValidationReport, *, predicted: bool = False, check: _FullValidation | None = None
    ) -> UploadOutcome:
        """Upload the data set `report` describes. `predicted`: `report` is a prediction, to be confirmed by
        decoding every image (by `check` in files mode, by packing in shards mode) before the manifest goes
        up; where it is wrong, `_Mispredicted` says what a full validation found."""
        # The manifest's body and id cost seconds and ~100 MB for 100k images: build them once.
        body = report.manifest.body()
        self.manifest_id = manifest_id(body)
        prefix = dataset_prefix(self.settings, self.manifest_id)
        self.destination = f"{self.store.location.rstrip('/')}/{prefix}"
        self.job_id = hashlib.sha256(f"{self.store.location}\n{prefix}\n{self.request.mode}".encode()).hexdigest()[:20]
        try:
            db, journal = _open_journal(self.settings)
        except (sqlite3.Error, OSError) as error:
            raise self._journal_failure(error) from None
        self.journal = journal
        lock: JobLock | None = None
        try:
            try:
                lock = journal.acquire(self.job_id)
                journal.start_run(
                    self.run_id, self.job_id, str(report.root), self.manifest_id, self.request.mode, self.destination
                )
            except (sqlite3.Error, OSError) as error:
                raise self._journal_failure(error) from None
            try:
                # Handed over, not kept here: the engine drops it (~100 MB for 100k images) once staged.
                manifest_body = [body]
                del body
                return self._upload(report, prefix, manifest_body, predicted, check)
            except _Mispredicted:
                raise  # what was sent is removed and the journal forgot it: the run never happened
            except KeyboardInterrupt:
                self.halt.set()
                self._finish("cancelled", "interrupted")
                raise
            except sqlite3.Error as error:
                # The journal itself cannot be written (a full disk under the home folder): stop before
                # anything more is sent, since nothing more could be recorded.
                self.halt.set()
                raise self._journal_failure(error) from None
            except OSError as error:
                # Staging trouble under the home folder (disk full, permissions): the journal is intact.
                return self._finish("failed", f"cannot write under {self.settings.home_dir}: {_os_problem(error)}")
            except BaseException as error:
                with contextlib.suppress(StateError):
                    self._finish("failed", f"internal error: {error!r}")
                raise
        finally:
            if lock is not None:
                lock.release()
            db.close()

    def _journal_failure(self, error: BaseException, *, while_recording: str = "") -> StateError:
        """The error a run ends with when its journal cannot be written: the file, the cause, what to do."""
        cause = (
            error.detail
            if isinstance(error, StateWriteError)
            else _os_problem(error)
            if isinstance(error, OSError)
            else str(error)
        )
        during = f" while recording: {while_recording}" if while_recording else ""
        full = (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) or "full" in str(error)
        remedy = f"free space under {self.settings.home_dir}" if full else "fix that"
        return StateError(
            f"{state_path(self.settings.home_dir)}: cannot write the upload journal ({cause}){during}; "
            f"nothing is marked done that is not stored whole: {remedy} and run the same command "
            "again to resume"
        )

    def _stage_manifest(self, body: dict[str, Any], prefix: str) -> UploadItem:
        """Write manifest.json to the staging folder, streaming, to upload it last from there."""
        staging = self.settings.home_dir / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        path = staging / f"{self.manifest_id}-{MANIFEST_NAME}"
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        digest = hashlib.md5(usedforsecurity=False)
        pieces: list[str] = []
        pending = 0
        with temporary.open("wb") as handle:
            for chunk in itertools.chain(manifest_text(body, self.manifest_id), [None]):
                if chunk is not None:
                    pieces.append(chunk)
                    pending += len(chunk)
                if pending >= 1 << 20 or (chunk is None and pieces):
                    data = "".join(pieces).encode()
                    pieces.clear()
                    pending = 0
                    digest.update(data)
                    handle.write(data)
            size = handle.tell()
        temporary.replace(path)
        return UploadItem(key=prefix + MANIFEST_NAME, md5=digest.hexdigest(), size=size, files=0, source=str(path))

    def _upload(
        self,
        report: ValidationReport,
        prefix: str,
        manifest_body: list[dict[str, Any]],
        predicted: bool,
        check: _FullValidation | None,
    ) -> UploadOutcome:
        packing: ShardPacking | None = None
        uploaded = False
        try:
            if self.request.mode == "shards":
                packing = self._start_packing(report, check_decoding=predicted)
                # Staged while the workers pack the first shards: writing it takes a second.
                manifest_item = self._stage_manifest(manifest_body.pop(), prefix)
                try:
                    items = self._send_shards(packing, prefix, _staged(manifest_item), len(report.manifest.images))
                except ShardCheckFailed as failed:
                    self._phase("verifying", f"{failed}; validating every image in full")
                    self._discard_prediction(self._full_report(), prefix, manifest_item)
            else:
                with self._sending_processes(len(report.manifest.images) + 1):
                    manifest_item = self._stage_manifest(manifest_body.pop(), prefix)
                    items = self._send_files(report, prefix, _staged(manifest_item))
                if check is not None:
                    self._confirm(check, report, prefix, manifest_item)
            in_place = self._verify(items, prefix)
            self._place_manifest(_staged(manifest_item), manifest_item, in_place)
            uploaded = True
        except (Stop, PackingCancelled):
            return self._finish("cancelled", "")
        except (Failure, ShardError) as failure:
            return self._finish("failed", str(failure))
        finally:
            # Also on Ctrl-C: stop the packing workers; keep a complete build for the next run, unless the
            # build packed a prediction that turned out wrong.
            if packing is not None:
                settle_packing(packing, uploaded=uploaded or self._discarded)
        if manifest_item.source is not None:
            Path(manifest_item.source).unlink(missing_ok=True)
        return self._finish("done", "")

    @contextlib.contextmanager
    def _sending_processes(self, objects: int) -> Iterator[None]:
        """Files mode: the requests go out from sending processes while the block runs, if any are due.
        Started before the manifest is staged, so that their start-up overlaps it."""
        processes = sending_process_count(self.settings, objects, store_from_settings=self.store_from_settings)
        if processes <= 1:
            yield
            return
        threads = -(-self.concurrency // processes)
        try:
            senders = SendingProcesses(
                self.settings, self.transfer, processes=processes, threads=threads, on_retry=self._retried
            )
        except OSError:  # no process to be had (a process limit, no memory): this process's threads send, as
            yield  # they do for small uploads, at the cost of speed only
            return
        with senders:
            self.senders = senders
            try:
                yield
            finally:
                self.senders = None

    def _send_files(self, report: ValidationReport, prefix: str, staged: UploadItem) -> list[UploadItem]:
        assert self.journal is not None
        items = [staged, *file_items(report, prefix)]
        states = self.journal.plan(self.job_id, (PlannedObject(item.key, item.md5, item.size) for item in items))
        self._count_totals(items, states, len(report.manifest.images))
        self._started()
        self._phase("sending", f"from {len(self.senders.processes)} sending processes" if self.senders else "")
        work = [(item, states[item.key] == "sent") for item in items if states[item.key] != "confirmed"]
        # The uncertain tail of an earlier run first: those are mostly heads, not puts.
        work.sort(key=lambda pair: not pair[1])
        self._send(ListSource(work))
        return items

    def _send_shards(self, packing: ShardPacking, prefix: str, staged: UploadItem, images: int) -> list[UploadItem]:
        """Send the staged manifest and each shard as soon as it is packed, then `shards.json`; returns every
        object sent or skipped."""
        assert self.journal is not None
        tally = self.tally
        tally.files_total = images
        tally.objects_total = packing.shards_total + 2  # the shards, shards.json and the manifest
        source = ShardSource(
            packing,
            prefix,
            first=[staged],
            journal=self.journal,
            job_id=self.job_id,
            run_id=self.run_id,
            tally=tally,
            on_phase=self._phase,
        )
        self.journal.update_run(
            self.run_id,
            objects_total=tally.objects_total,
            bytes_total=tally.bytes_total,
            objects_confirmed=tally.objects_done,
            bytes_confirmed=tally.bytes_done,
        )
        self.meter.add(time.monotonic(), 0)
        self._started()
        self._send(source)
        return source.items

    def _started(self) -> None:
        tally = self.tally
        self.emit(
            UploadStarted(
                run_id=self.run_id,
                manifest_id=self.manifest_id,
                mode=self.request.mode,
                destination=self.destination,
                files_total=tally.files_total,
                bytes_total=tally.bytes_total,
                objects_total=tally.objects_total,
                objects_already_confirmed=tally.objects_done,
            )
        )

    def _finish(self, status: Literal["done", "cancelled", "failed"], error: str) -> UploadOutcome:
        assert self.journal is not None
        try:
            self.journal.update_run(
                self.run_id,
                status=status,
                error=error,
                objects_confirmed=self.tally.objects_done,
                bytes_confirmed=self.tally.bytes_done,
            )
        except sqlite3.Error as journal_error:
            raise self._journal_failure(journal_error, while_recording=f"{status} {error}".strip()) from None
        outcome = UploadOutcome(
            run_id=self.run_id,
            status=status,
            manifest_id=self.manifest_id,
            destination=self.destination,
            objects_sent=self.tally.objects_sent,
            objects_skipped=self.tally.objects_skipped,
            bytes_sent=self.tally.bytes_sent,
            elapsed_s=time.monotonic() - self.started,
            error=error,
        )
        self.emit(
            UploadFinished(
                run_id=self.run_id,
                status=status,
                manifest_id=self.manifest_id,
                destination=self.destination,
                objects_sent=outcome.objects_sent,
                objects_skipped=outcome.objects_skipped,
                bytes_sent=outcome.bytes_sent,
                elapsed_s=outcome.elapsed_s,
                error=error,
            )
        )
        return outcome

    # -- phases --------------------------------------------------------------------------------------

    def _split(self) -> SplitPolicy:
        dataset = self.settings.dataset
        return SplitPolicy(seed=dataset.split_seed, val=dataset.val_fraction, test=dataset.test_fraction)

    def _predict(self) -> ValidationReport | None:
        """The data set's report as `predict_dataset` expects it, when it expects no problem; else None."""
        self._phase("validating", str(self.request.dataset_dir))
        report = predict_dataset(
            self.request.dataset_dir,
            self._split(),
            on_progress=lambda scanned: self._phase_throttled("validating", f"{scanned} files read"),
        )
        return report if report is not None and report.manifest.images else None

    def _confirm(
        self, check: _FullValidation, predicted: ValidationReport, prefix: str, manifest_item: UploadItem
    ) -> None:
        """Wait for the full validation; where it finds what the prediction did not, discard the prediction."""
        while not check.wait(_POLL_S):
            if self.control.cancelled:
                raise Stop
            self._phase_throttled("verifying", "waiting for every image to be decoded before the manifest goes up")
        if check.error is not None:
            raise Failure(f"validating {self.request.dataset_dir}: {check.error}")
        report = check.report
        assert report is not None
        if not (report.ok and report.manifest == predicted.manifest and report.notes == predicted.notes):
            self._discard_prediction(report, prefix, manifest_item)

    def _full_report(self) -> ValidationReport:
        """`validate_dataset` as the request asks for it, refusing nothing (the caller decides)."""
        return validate_dataset(
            self.request.dataset_dir,
            self._split(),
            quarantine=self.request.allow_problems,
            on_progress=lambda scanned: self._phase_throttled("verifying", f"{scanned} files decoded"),
        )

    def _discard_prediction(self, report: ValidationReport, prefix: str, manifest_item: UploadItem) -> NoReturn:
        """Remove from the store what this job put under the predicted prefix, forget the job and raise
        `_Mispredicted` with the full validation's `report`."""
        assert self.journal is not None
        self.halt.clear()
        self._phase(
            "verifying",
            f"decoding found {len(report.problems)} problem(s) the headers did not show; removing what was "
            f"sent under {prefix} and starting again from the full validation",
        )
        planned = self.journal.planned_keys(self.job_id)
        present = [info.key for info in self.transfer.retrying(prefix, lambda: list(self.store.list(prefix)))]
        doomed = [key for key in present if key in planned]
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="arsl-upload-undo") as pool:
            for _ in pool.map(lambda key: self.transfer.retrying(key, lambda: self.store.delete(key)), doomed):
                pass
        self.journal.discard_job(self.job_id)
        self._discarded = True
        if manifest_item.source is not None:
            Path(manifest_item.source).unlink(missing_ok=True)
        raise _Mispredicted(report)

    def _accepted(self, report: ValidationReport) -> ValidationReport:
        """`report` if it may be uploaded as the request says; `UploadRefused` otherwise."""
        if not report.ok and not self.request.allow_problems:
            raise UploadRefused(report)
        if not report.manifest.images:
            raise UploadRefused(
                report,
                f"{report.root}: no usable images left after quarantining "
                f"{len(report.problems)} problem(s); nothing uploaded",
            )
        return report

    def _restart(self) -> None:
        """A fresh run after a discarded one: new id, zero counts."""
        self.run_id = uuid.uuid4().hex[:12]
        self.tally = UploadTally()
        self.meter = _RateMeter()
        self.halt.clear()
        self._discarded = False

    def _validate(self) -> ValidationReport:
        self._phase("validating", str(self.request.dataset_dir))
        report = validate_dataset(
            self.request.dataset_dir,
            self._split(),
            quarantine=self.request.allow_problems,
            on_progress=lambda scanned: self._phase_throttled("validating", f"{scanned} files decoded"),
        )
        if not report.ok and not self.request.allow_problems:
            raise UploadRefused(report)
        if not report.manifest.images:
            raise UploadRefused(
                report,
                f"{report.root}: no usable images left after quarantining "
                f"{len(report.problems)} problem(s); nothing uploaded",
            )
        return report

    def _start_packing(self, report: ValidationReport, *, check_decoding: bool = False) -> ShardPacking:
        shard_bytes = self.settings.upload.shard_size_mb * 1024 * 1024
        # The folder names what decides the shards' bytes, so a build is only ever reused for the same ones.
        folder = (
            self.settings.home_dir
            / "staging"
            / f"{self.manifest_id}-{shard_bytes}-{SHARDS_FORMAT.replace('/', '-')}-z{GZIP_LEVEL}"
        )
        self._phase(
            "packing",
            f"{len(report.manifest.images)} images into shards of up to "
            f"{self.settings.upload.shard_size_mb} MB of tar, gzip-compressed",
        )
        packing = ShardPacking(
            report.manifest,
            report.root,
            folder,
            shard_bytes,
            manifest_id=self.manifest_id,
            check_decoding=check_decoding,
        )
        if packing.reused is not None:
            self._phase("packing", f"reusing the {packing.shards_total} shards packed by an earlier run")
        packing.start()
        return packing

    def _count_totals(self, items: list[UploadItem], states: dict[str, str], images: int) -> None:
        tally = self.tally
        tally.files_total = images
        tally.objects_total = len(items)
        tally.bytes_total = sum(item.size for item in items)
        for item in items:
            if states[item.key] == "confirmed":
                tally.objects_done += 1
                tally.objects_skipped += 1
                tally.bytes_done += item.size
                tally.files_done += item.files
        assert self.journal is not None
        self.journal.update_run(
            self.run_id,
            objects_total=tally.objects_total,
            bytes_total=tally.bytes_total,
            objects_confirmed=tally.objects_done,
            bytes_confirmed=tally.bytes_done,
        )
        self.meter.add(time.monotonic(), 0)

    def _verify(self, items: list[UploadItem], prefix: str) -> bool:
        """List the prefix until it holds exactly the planned objects (re-sending what is missing or wrong);
        True when `manifest.json` is there already, as the staged manifest (an earlier run got that far)."""
        assert self.journal is not None
        expected = {item.key: item for item in items}
        for round_number in range(1, _VERIFY_ROUNDS + 1):
            self._phase("verifying", f"listing {prefix}")
            wrong, extras, reasons, in_place = self.transfer.retrying(prefix, lambda: self._scan(prefix, expected))
            for key in extras:
                self.transfer.retrying(key, lambda key=key: self.store.delete(key))  # type: ignore[misc]
            if extras:
                shown = ", ".join(extras[:5]) + (f" and {len(extras) - 5} more" if len(extras) > 5 else "")
                self._phase("verifying", f"removed {len(extras)} unexpected object(s): {shown}")
            if not wrong:
                return in_place
            if round_number == _VERIFY_ROUNDS:
                raise Failure(
                    f"the store still lacks or holds wrong copies of {len(wrong)} object(s) after "
                    f"{_VERIFY_ROUNDS} rounds, e.g. {wrong[0]} ({reasons[wrong[0]]})"
                )
            self._phase("verifying", f"{len(wrong)} object(s) missing or wrong in the store; sending them again")
            with self.journal.db.transaction() as connection:
                self.journal.set_states(connection, self.job_id, wrong, "pending")
            tally = self.tally
            for key in wrong:
                item = expected[key]
                tally.objects_done -= 1
                tally.bytes_done -= item.size
                tally.files_done -= item.files
            self._phase("sending", f"re-sending {len(wrong)} object(s)")
            self._send(ListSource([(expected[key], False) for key in wrong]))
        raise AssertionError("unreachable: the last round returns or raises")

    def _scan(self, prefix: str, expected: dict[str, UploadItem]) -> tuple[list[str], list[str], dict[str, str], bool]:
        """(planned keys missing or wrong, unexpected keys, what is wrong with each planned key, whether
        `manifest.json` holds the staged manifest already) under the prefix."""
        other_mode = (
            (f"{prefix}shards/", prefix + SHARDS_INDEX_NAME) if self.request.mode == "files" else (f"{prefix}files/",)
        )
        unseen = set(expected)
        wrong: list[str] = []
        extras: list[str] = []
        reasons: dict[str, str] = {}
        manifest: ObjectInfo | None = None
        for info in list_prefix(self.store, prefix, expected):
            item = expected.get(info.key)
            if item is not None:
                unseen.discard(info.key)
                if not self.transfer.matches(info, item):
                    wrong.append(info.key)
                    reasons[info.key] = (
                        f"the store holds {info.size} bytes, MD5 {info.md5 or 'unknown'}; expected "
                        f"{item.size} bytes, MD5 {item.md5}"
                    )
            elif info.key == prefix + MANIFEST_NAME:
                manifest = info  # checked against the staged manifest below, and written only from it
            elif info.key.startswith(other_mode):
                continue  # the other mode's objects are not ours to judge
            else:
                extras.append(info.key)
        staged = expected.get(prefix + STAGED_MANIFEST_NAME)
        in_place = staged is not None and manifest is not None and self.transfer.matches(manifest, staged)
        if in_place and staged is not None:
            unseen.discard(staged.key)  # copied into place and removed by an earlier run: nothing left to do
        reasons.update((key, "missing") for key in unseen)
        return sorted(unseen) + wrong, extras, reasons, in_place

    def _place_manifest(self, staged: UploadItem, manifest_item: UploadItem, in_place: bool) -> None:
        """Make the data set complete: copy the staged manifest to `manifest.json` in the store (one request,
        no bytes over the link), then remove the staged copy."""
        if not in_place:
            self._phase("finishing", f"copying {STAGED_MANIFEST_NAME} to {MANIFEST_NAME}")
            self.transfer.retrying(
                manifest_item.key, lambda: self.store.copy(staged.key, manifest_item.key, manifest_item.md5)
            )
        self.transfer.retrying(staged.key, lambda: self.store.delete(staged.key))

    # -- sending -------------------------------------------------------------------------------------

    def _send(self, source: WorkSource, *, journaled: bool = True) -> None:
        """Put every item `source` yields with `concurrency` requests in flight (`True` beside an item:
        head it first); items the source reports as already confirmed are counted, not sent."""
        assert self.journal is not None
        window = max(2 * self.concurrency, 4)
        backlogged = self.concurrency + max(self.concurrency // 2, 1)
        in_flight: dict[Future[bool], UploadItem] = {}
        failure: str | None = None
        senders_halted = False
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="arsl-upload")
        try:
            while True:
                if self.control.cancelled or failure is not None:
                    self.halt.set()
                    if self.senders is not None and not senders_halted:
                        self.senders.halt()
                        senders_halted = True
                    for future in in_flight:
                        future.cancel()
                elif self.control.paused and not in_flight:
                    self._hold()
                    continue
                elif len(in_flight) > backlogged:
                    # Every sending thread has work queued behind it: let completions gather for a moment, so
                    # that one journal transaction records many. One per completion (≈ 1.5 objects each) cost
                    # this thread, in a GIL shared with 64 senders, a fifth of the engine's CPU in files mode.
                    wait(list(in_flight), timeout=_LINGER_S, return_when=ALL_COMPLETED)
                batch: list[tuple[UploadItem, bool]] = []
                done: list[tuple[UploadItem, bool]] = []
                if not self.halt.is_set() and not self.control.paused and not source.exhausted():
                    batch, skipped = source.take(window - len(in_flight))
                    done.extend((item, False) for item in skipped)
                waiting_on: list[Future[Any]] = list(in_flight)
                if not self.halt.is_set():
                    waiting_on += source.waitables()
                if waiting_on:
                    finished, _ = wait(
                        waiting_on, timeout=_POLL_S if not batch and not done else 0, return_when=FIRST_COMPLETED
                    )
                    for future in finished:
                        item = in_flight.pop(future, None)
                        if item is None:
                            continue  # a shard finished packing: the next `take` hands it out
                        try:
                            done.append((item, future.result()))
                        except (CancelledError, Stop):
                            continue
                        except Failure as error:
                            failure = failure or str(error)
                        except Exception as error:  # a bug must still stop the run cleanly, with a message
                            failure = failure or f"unexpected error uploading {item.key}: {error!r}"
                self._record(done, batch, journaled)
                for item, recheck in batch:
                    future = (
                        self.senders.submit(item, recheck)
                        if self.senders is not None
                        else pool.submit(self.transfer, item, recheck)
                    )
                    in_flight[future] = item
                if not in_flight and (source.exhausted() or self.halt.is_set()):
                    break
        finally:
            self.halt.set()
            if self.senders is not None:
                self.senders.halt()
                wait(list(in_flight))  # every child answers, a halted transfer at once
            pool.shutdown(wait=True, cancel_futures=True)
            self.halt.clear()
            if self.senders is not None:
                self.senders.resume()
        if failure is not None:
            self.tally.errors += 1
            raise Failure(failure)
        if self.control.cancelled:
            raise Stop

    def _hold(self) -> None:
        """Paused with nothing in flight: record it, block until resumed or cancelled."""
        assert self.journal is not None
        self.journal.update_run(self.run_id, status="paused")
        self._phase("sending", "paused")
        self.control.wait_while_paused()
        if not self.control.cancelled:
            self.journal.update_run(self.run_id, status="running")
            self._phase("sending", "resumed")

    def _record(
        self, done: list[tuple[UploadItem, bool]], dispatching: list[tuple[UploadItem, bool]], journaled: bool
    ) -> None:
        """One transaction: confirm what finished, mark what is about to go as sent; then tell listeners."""
        assert self.journal is not None
        tally = self.tally
        for item, sent in done:
            tally.objects_done += 1
            tally.bytes_done += item.size
            tally.files_done += item.files
            if sent:
                tally.objects_sent += 1
                tally.bytes_sent += item.size
            else:
                tally.objects_skipped += 1
        if journaled and (done or dispatching):
            with self.journal.db.transaction() as connection:
                self.journal.set_states(connection, self.job_id, (item.key for item, _ in done), "confirmed")
                self.journal.set_states(connection, self.job_id, (item.key for item, _ in dispatching), "sent")
                if done:
                    self.journal.update_run(
                        self.run_id,
                        objects_confirmed=tally.objects_done,
                        bytes_confirmed=tally.bytes_done,
                        connection=connection,
                    )
        if not done:
            return
        now = time.monotonic()
        self.meter.add(now, tally.bytes_sent)
        rate = self.meter.rate()
        remaining = tally.bytes_total - tally.bytes_done
        eta = remaining / rate if rate > 0 else None
        # One event per confirmed object, as the contract says; the counts step through each of them.
        objects_done = tally.objects_done - len(done)
        files_done = tally.files_done - sum(item.files for item, _ in done)
        bytes_done = tally.bytes_done - sum(item.size for item, _ in done)
        for item, _ in done:
            objects_done += 1
            files_done += item.files
            bytes_done += item.size
            self.emit(
                UploadProgressed(
                    run_id=self.run_id,
                    files_done=files_done,
                    files_total=tally.files_total,
                    bytes_done=bytes_done,
                    bytes_total=tally.bytes_total,
                    objects_done=objects_done,
                    objects_total=tally.objects_total,
                    bytes_per_s=rate,
                    eta_s=eta,
                    retries=tally.retries,
                    errors=tally.errors,
                )
            )

    def _retried(self, key: str, attempt: int, error: str, delay_s: float) -> None:
        """A transfer retries (in a sending thread, or in a sending process's reader)."""
        with self.tally.lock:
            self.tally.retries += 1
        self.emit(UploadRetried(run_id=self.run_id, key=key, attempt=attempt, error=error, delay_s=delay_s))

    # -- events --------------------------------------------------------------------------------------

    def _phase(self, phase: str, detail: str = "") -> None:
        self._phase_emitted = time.monotonic()
        self.emit(UploadPhaseChanged(run_id=self.run_id, phase=phase, detail=detail))

    def _phase_throttled(self, phase: str, detail: str) -> None:
        if time.monotonic() - self._phase_emitted >= 0.5:
            self._phase(phase, detail)


def _os_problem(error: OSError) -> str:
    """An OSError in words; a full disk says so and names the path."""
    where = f" ({error.filename})" if error.filename else ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full{where}: {error.strerror}"
    return f"{error.strerror or error}{where}"


def _staged(manifest_item: UploadItem) -> UploadItem:
    """The manifest under its staging key: sent with the data set, copied to `manifest.json` once it is whole."""
    prefix = manifest_item.key.removesuffix(MANIFEST_NAME)
    return dataclasses.replace(manifest_item, key=prefix + STAGED_MANIFEST_NAME)


def run_upload(
    settings: Settings,
    request: UploadRequest,
    *,
    store: ObjectStore | None = None,
    on_event: EventSink = ignore_events,
    control: UploadControl | None = None,
) -> UploadOutcome:
    """Blocking. Validates, packs (shards mode), sends with N concurrent requests, verifies, uploads the
    manifest last. Resumes from the journal by default.

    Raises `DatasetError` (no such folder, no images), `UploadRefused` (problems without allow_problems),
    `UploadBusy` (the same upload is live in another process), `StateError` when its journal cannot be
    written (a full disk under the home folder) and `StoreError` when the store cannot be
    opened; once sending starts, failures end in an outcome with status "failed" and the journal kept.
    `on_event` is called from worker threads: consumers must be thread-safe.
    """
    store_from_settings = store is None
    if store is None:
        from arsl_tui.backends import backend_for

        store = backend_for(settings).object_store()
    engine = _Engine(
        settings, request, store, on_event, control or UploadControl(), store_from_settings=store_from_settings
    )
    return engine.run()
