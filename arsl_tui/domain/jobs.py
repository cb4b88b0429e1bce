"""Training jobs as plain records: what to run, where it stands, what it reported.

Both backends speak these: a local `torchrun` process group and a ModelArts training job. Phases use
ModelArts' names. The trainer's `metrics.jsonl` (one JSON object per line, flushed per record) is read
incrementally: readers hand over whatever bytes are new, get back the complete records, and keep a
byte cursor that never passes a half-written last line.
"""

from __future__ import annotations

import json
import math
import re
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from arsl_tui.domain.errors import BackendCallError
from arsl_tui.domain.events import Event


class JobPhase(StrEnum):
    """A job's phase, spelled as ModelArts spells it (`status.phase` of a v2 training job)."""

    CREATING = "Creating"
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"
    ABNORMAL = "Abnormal"
    """ModelArts' eighth phase: the platform lost the job (node failure); as final as Failed."""

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def succeeded(self) -> bool:
        return self is JobPhase.COMPLETED

    @classmethod
    def parse(cls, text: str) -> JobPhase:
        """The phase named by `text` (case-insensitive); ValueError naming the known phases otherwise."""
        for phase in cls:
            if phase.value.lower() == text.strip().lower():
                return phase
        raise ValueError(f"unknown job phase {text!r} (known: {', '.join(phase.value for phase in cls)})")


_TERMINAL = frozenset({JobPhase.COMPLETED, JobPhase.FAILED, JobPhase.TERMINATED, JobPhase.ABNORMAL})


class JobSpecError(ValueError):
    """A job spec value is out of range; the message names the field and the value."""


class TrainingError(BackendCallError):
    """A training platform call failed; the message says what, where, and the service's own words."""


class JobNotFound(TrainingError):
    """No job with that id on this platform."""


class PlatformUnavailable(TrainingError):
    """The platform cannot be used as configured (no credentials, no project id): a setup problem."""


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PARAMETER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
# The trainer's own flags; extra parameters must not override them behind the spec's back.
_SPEC_FLAGS = frozenset({"data", "output", "epochs", "batch-size", "lr", "seed", "model", "resume"})


@dataclass(frozen=True)
class JobSpec:
    """What to train, on what, where the results go, and on how much hardware."""

    dataset: str
    """Where the data set lives: a local folder, `local:/…`, or `obs://bucket/prefix/`."""
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int = 0
    model: str = "compact"
    nodes: int = 1
    processes_per_node: int = 1
    """GPUs per node on ModelArts; `torchrun --nproc_per_node` locally."""
    output: str = ""
    """Where the job writes metrics.jsonl and the model package; empty lets the platform choose."""
    name: str = ""
    """A job name (letters, digits, '-' and '_', up to 64); empty lets the platform choose."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """Extra trainer flags, name → value (passed as `--name value`)."""

    def validate(self) -> JobSpec:
        """Self, if every value is in range; JobSpecError naming the first bad field otherwise."""
        if not self.dataset.strip():
            raise JobSpecError("dataset: no data set given")
        for name, value, low in (
            ("epochs", self.epochs, 1),
            ("batch_size", self.batch_size, 1),
            ("nodes", self.nodes, 1),
            ("processes_per_node", self.processes_per_node, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise JobSpecError(f"{name} = {value!r}: expected an integer of at least {low}")
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise JobSpecError(f"learning_rate = {self.learning_rate!r}: expected a positive number")
        if not self.model or not _PARAMETER_NAME.match(self.model):
            raise JobSpecError(f"model = {self.model!r}: expected a model name (letters, digits, '-', '_')")
        if self.name and not _NAME.match(self.name):
            raise JobSpecError(f"name = {self.name!r}: expected up to 64 letters, digits, '-' or '_'")
        for key, text in self.parameters.items():
            if not _PARAMETER_NAME.match(key):
                raise JobSpecError(f"parameter {key!r}: names are letters, digits, '-' and '_'")
            if key in _SPEC_FLAGS:
                raise JobSpecError(f"parameter {key!r} is set by the job spec itself; use its own field")
            if not isinstance(text, str) or "\n" in text or "\x00" in text:
                raise JobSpecError(f"parameter {key!r} = {text!r}: expected one line of text")
        return self

    def hyperparameters(self) -> list[tuple[str, str]]:
        """The trainer flags this spec sets (name without dashes, value as text), spec fields first."""
        pairs = [
            ("epochs", str(self.epochs)),
            ("batch-size", str(self.batch_size)),
            ("lr", repr(float(self.learning_rate))),
            ("seed", str(self.seed)),
            ("model", self.model),
        ]
        return pairs + sorted(self.parameters.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "model": self.model,
            "nodes": self.nodes,
            "processes_per_node": self.processes_per_node,
            "output": self.output,
            "name": self.name,
            "parameters": dict(self.parameters),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        try:
            return cls(
                dataset=str(data["dataset"]),
                epochs=int(data["epochs"]),
                batch_size=int(data["batch_size"]),
                learning_rate=float(data["learning_rate"]),
                seed=int(data.get("seed", 0)),
                model=str(data.get("model", "compact")),
                nodes=int(data.get("nodes", 1)),
                processes_per_node=int(data.get("processes_per_node", 1)),
                output=str(data.get("output", "")),
                name=str(data.get("name", "")),
                parameters={str(k): str(v) for k, v in dict(data.get("parameters") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as error:
            raise JobSpecError(f"stored job spec is not readable ({type(error).__name__}: {error})") from None


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands. Times are Unix seconds; None when not known (yet)."""

    job_id: str
    name: str
    phase: JobPhase
    backend: str
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    reason: str = ""
    """Why a job failed or was stopped (its last log lines, the platform's words); empty otherwise."""
    dataset: str = ""
    output: str = ""
    epochs: int | None = None

    @property
    def terminal(self) -> bool:
        return self.phase.terminal

    def duration_s(self, now: float) -> float | None:
        """Seconds run so far (or in all, once ended); None before it started."""
        start = self.started_at or self.created_at
        if start is None:
            return None
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - start)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "name": self.name,
            "phase": self.phase.value,
            "backend": self.backend,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "reason": self.reason,
            "dataset": self.dataset,
            "output": self.output,
            "epochs": self.epochs,
        }


@dataclass(frozen=True)
class JobResources:
    """A resource sample of a running job; a field is None where the backend does not measure it."""

    sampled_at: float
    cpu_percent: float | None = None
    """Percent of one core (200 = two cores busy)."""
    memory_mb: float | None = None
    memory_percent: float | None = None
    gpu_percent: float | None = None
    gpu_memory_percent: float | None = None
    processes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "sampled_at": self.sampled_at,
            "cpu_percent": self.cpu_percent,
            "memory_mb": self.memory_mb,
            "memory_percent": self.memory_percent,
            "gpu_percent": self.gpu_percent,
            "gpu_memory_percent": self.gpu_memory_percent,
            "processes": self.processes,
        }


@dataclass(frozen=True)
class LogChunk:
    """Log text from byte offset `start` up to `cursor` (pass `cursor` as the next `since`)."""

    text: str
    cursor: int
    start: int = 0
    truncated: bool = False
    """True when bytes before `start` that were asked for are no longer available (a capped preview)."""


# --- metrics.jsonl --------------------------------------------------------------------------------

_METRIC_FLOATS = ("time", "elapsed_s", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s")


def _optional_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _optional_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


@dataclass(frozen=True)
class MetricRecord:
    """One line of metrics.jsonl; the named fields typed, everything else in `data`."""

    type: str
    """"step", "epoch" or "final" (other types are kept, and ignored by the derivations)."""
    epoch: int | None = None
    step: int | None = None
    time: float | None = None
    elapsed_s: float | None = None
    """Seconds since training began (after start-up), when the trainer reports it."""
    train_loss: float | None = None
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    lr: float | None = None
    images_per_s: float | None = None
    data: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> MetricRecord:
        """A record from a decoded JSON line; ValueError if it is not an object with a string `type`."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        kind = data.get("type")
        if not isinstance(kind, str) or not kind:
            raise ValueError('the record has no "type"')
        floats = {name: _optional_float(data.get(name)) for name in _METRIC_FLOATS}
        return cls(
            type=kind, epoch=_optional_int(data.get("epoch")), step=_optional_int(data.get("step")), data=data, **floats
        )


@dataclass(frozen=True)
class MetricsChunk:
    """The complete records found after a cursor, and the cursor to continue from."""

    records: tuple[MetricRecord, ...]
    cursor: int
    skipped: int = 0
    """Complete lines that were not valid records (counted, never fatal)."""


def parse_metrics(data: bytes, start: int = 0, *, final: bool = False) -> MetricsChunk:
    """Records in the complete lines of `data[start:]`.

    The returned cursor is the offset just past the last complete line, so a half-written last line
    is read again next time. With `final=True` (the job has ended and nothing more will be written)
    an unterminated last line is parsed too.
    """
    if start < 0 or start > len(data):
        # The file shrank (rewritten from scratch): read it again from the top.
        start = 0
    end = data.rfind(b"\n", start) + 1
    if final and end < len(data):
        end = len(data)
    records: list[MetricRecord] = []
    skipped = 0
    if end > start:
        for line in data[start:end].splitlines():
            if not line.strip():
                continue
            try:
                records.append(MetricRecord.from_json(json.loads(line)))
            except ValueError:
                skipped += 1
    return MetricsChunk(records=tuple(records), cursor=max(end, start), skipped=skipped)


class MetricsReader:
    """Feeds of raw bytes in, complete records out; a partial last line waits for its end."""

    def __init__(self) -> None:
        self._pending = b""
        self.skipped = 0
        self.consumed = 0
        """Bytes of complete lines consumed so far (a cursor into the file)."""

    def feed(self, data: bytes) -> list[MetricRecord]:
        buffer = self._pending + data
        chunk = parse_metrics(buffer)
        self._pending = buffer[chunk.cursor :]
        self.skipped += chunk.skipped
        self.consumed += chunk.cursor
        return list(chunk.records)

    def finish(self) -> list[MetricRecord]:
        """Parse what is left when the writer is known to be done."""
        chunk = parse_metrics(self._pending, final=True)
        self.consumed += chunk.cursor
        self._pending = b""
        self.skipped += chunk.skipped
        return list(chunk.records)


# --- progress -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingProgress:
    """What the records say so far: epochs done, the latest and best validation, speed and ETA."""

    epochs_done: int
    epochs_total: int | None
    last_epoch: MetricRecord | None
    best_val_acc: float | None
    best_epoch: int | None
    seconds_per_epoch: float | None
    images_per_s: float | None
    eta_s: float | None
    final: MetricRecord | None

    @property
    def fraction(self) -> float | None:
        if not self.epochs_total:
            return None
        return min(1.0, self.epochs_done / self.epochs_total)

    def to_json(self) -> dict[str, Any]:
        last = self.last_epoch
        return {
            "epochs_done": self.epochs_done,
            "epochs_total": self.epochs_total,
            "epoch": last.epoch if last else None,
            "train_loss": last.train_loss if last else None,
            "train_acc": last.train_acc if last else None,
            "val_loss": last.val_loss if last else None,
            "val_acc": last.val_acc if last else None,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "seconds_per_epoch": self.seconds_per_epoch,
            "images_per_s": self.images_per_s,
            "eta_s": self.eta_s,
        }


def derive_progress(
    records: Iterable[MetricRecord],
    epochs_total: int | None,
    *,
    started_at: float | None = None,
    now: float | None = None,
) -> TrainingProgress:
    """Progress from the records so far.

    Seconds per epoch is the mean gap between epoch records' `time`; with a single epoch record it is
    its `elapsed_s` (training time, start-up excluded), else its time minus `started_at`. The ETA
    counts the remaining epochs at that pace, less the time already spent on the current one (given `now`).
    """
    epochs: dict[int, MetricRecord] = {}
    unnumbered: list[MetricRecord] = []
    final: MetricRecord | None = None
    images_per_s: float | None = None
    for record in records:
        if record.images_per_s is not None and math.isfinite(record.images_per_s):
            images_per_s = record.images_per_s
        if record.type == "epoch":
            if record.epoch is None:
                unnumbered.append(record)
            else:
                # A resumed run may repeat an epoch; the latest report of it wins.
                epochs[record.epoch] = record
        elif record.type == "final":
            final = record
    ordered = [epochs[number] for number in sorted(epochs)] + unnumbered
    last = ordered[-1] if ordered else None
    best_val_acc: float | None = None
    best_epoch: int | None = None
    for record in ordered:
        if (
            record.val_acc is not None
            and math.isfinite(record.val_acc)
            and (best_val_acc is None or record.val_acc > best_val_acc)
        ):
            best_val_acc, best_epoch = record.val_acc, record.epoch
    times = [record.time for record in ordered if record.time is not None and math.isfinite(record.time)]
    seconds_per_epoch: float | None = None
    if len(times) >= 2 and times[-1] > times[0]:
        seconds_per_epoch = (times[-1] - times[0]) / (len(times) - 1)
    elif len(ordered) == 1 and ordered[0].elapsed_s is not None and ordered[0].elapsed_s > 0:
        seconds_per_epoch = ordered[0].elapsed_s
    elif len(times) == 1 and started_at is not None and times[0] > started_at:
        seconds_per_epoch = times[0] - started_at
    done = len(ordered)
    eta: float | None = None
    if final is not None or (epochs_total is not None and done >= epochs_total):
        eta = 0.0
    elif seconds_per_epoch is not None and epochs_total is not None:
        eta = seconds_per_epoch * (epochs_total - done)
        if now is not None and times:
            eta = max(0.0, eta - max(0.0, now - times[-1]))
    return TrainingProgress(
        epochs_done=done,
        epochs_total=epochs_total,
        last_epoch=last,
        best_val_acc=best_val_acc,
        best_epoch=best_epoch,
        seconds_per_epoch=seconds_per_epoch,
        images_per_s=images_per_s,
        eta_s=eta,
        final=final,
    )


class BestEpoch(NamedTuple):
    """The epoch whose weights the trainer keeps and packages, and that epoch's validation accuracy."""

    epoch: int | None
    val_acc: float | None


def best_epoch(records: Sequence[MetricRecord]) -> BestEpoch:
    """The best epoch as the trainer picks it (trainer/train.py: the lowest validation loss so far): the final
    record's `best_epoch`, else the last epoch record marked `best`. For records that mark none, the epoch
    with the highest validation accuracy."""
    epochs: dict[int, MetricRecord] = {}
    final: MetricRecord | None = None
    for record in records:
        if record.type == "epoch" and record.epoch is not None:
            epochs[record.epoch] = record  # a resumed run may repeat an epoch; its latest report wins
        elif record.type == "final":
            final = record
    ordered = [epochs[number] for number in sorted(epochs)]
    chosen = final.data.get("best_epoch") if final is not None else None
    if isinstance(chosen, int) and not isinstance(chosen, bool) and chosen >= 1:
        kept = epochs.get(chosen)
        return BestEpoch(chosen, kept.val_acc if kept is not None else final.val_acc if final else None)
    marked = [record for record in ordered if record.data.get("best") is True]
    if marked:
        return BestEpoch(marked[-1].epoch, marked[-1].val_acc)
    scored = [record for record in ordered if record.val_acc is not None and record.val_acc == record.val_acc]
    if not scored:
        return BestEpoch(None, None)
    top = max(scored, key=lambda record: record.val_acc or 0.0)
    return BestEpoch(top.epoch, top.val_acc)


def format_duration(seconds: float | None) -> str:
    """'1h02m', '3m05s', '42s', or '—' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def failure_reason(log_text: str, max_lines: int = 5) -> str:
    """The lines of a log that say why a job died: the last error lines, else its last lines.

    torchrun wraps a worker's failure in a banner of '=' lines and a repeat of the traceback; the
    useful part is the exception line(s), so those are preferred.
    """
    lines = [line.rstrip() for line in log_text.splitlines() if line.strip()]
    errors = [line.strip() for line in lines if _ERROR_LINE.match(line.strip()) and not _LAUNCHER_ERROR.search(line)]
    if errors:
        # Keep order, drop repeats (torchrun prints the root cause again in its summary).
        unique = list(dict.fromkeys(errors))
        return "\n".join(unique[-max_lines:])
    first_dead = _first_dead_rank(log_text)
    if first_dead:
        return first_dead
    meaningful = [line for line in lines if not _NOISE_LINE.match(line.strip())]
    return "\n".join((meaningful or lines)[-max_lines:])


def _first_dead_rank(log_text: str) -> str:
    """'rank 1 was killed by signal 6 (SIGABRT)' or 'rank 1 exited with code 3': the first worker that ended
    badly, from torchrun's summary, or ''.

    Once one worker has died torchrun sends the others SIGTERM ("Sending process N closing signal
    SIGTERM") and lists them among the failures too. Its "Root Cause" is the failure with the smallest
    whole-second timestamp, so a worker it ended itself in the same second can take that place. A worker
    torchrun did not signal is the one that died first.
    """
    failures = [
        (int(found.group("rank")), int(found.group("code")), found.group("pid"), found.start())
        for found in _FAILURE_ENTRY.finditer(log_text)
    ]
    if not failures:
        return ""
    ended_by_torchrun = set(_CLOSING_SIGNAL.findall(log_text))
    root_cause_at = log_text.find("Root Cause")
    first_failures = [failure for failure in failures if failure[2] not in ended_by_torchrun] or failures
    # Among those, torchrun's own pick (the entry after "Root Cause") comes first.
    rank, code, _pid, _at = min(first_failures, key=lambda failure: (failure[3] < root_cause_at, failure[3]))
    if code >= 0:
        return f"rank {rank} exited with code {code}"
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:
        name = ""
    return f"rank {rank} was killed by signal {-code}{name}"


# "error: …", "[trainer] error (rank 0): …", "ValueError: …", "pkg.DataError: …"
_ERROR_LINE = re.compile(r"^(\[[\w.-]+\]\s*)?(error\b[^:]*:|[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b:?)", re.I)
# torchrun's own wrapper around a worker's failure says nothing the worker's line does not.
_LAUNCHER_ERROR = re.compile(r"ChildFailedError|SignalException|torch\.distributed\.elastic")
# A failed worker in torchrun's summary: "rank : 1 (local_rank: 1)" … "exitcode : -6 (pid: 9)".
_FAILURE_ENTRY = re.compile(
    r"rank\s*:\s*(?P<rank>\d+)[^\n]*\n(?:[^\n]*\n){0,2}?\s*exitcode\s*:\s*(?P<code>-?\d+)\s*\(pid:\s*(?P<pid>\d+)"
)
# torchrun ending the other workers once one has died.
_CLOSING_SIGNAL = re.compile(r"Sending process (\d+) closing signal")
_NOISE_LINE = re.compile(r"^(=+|-+|\*+|W\d{4} |I\d{4} |\[W|\[I|Traceback|File \")")


# --- events (what `ops.training` reports while it watches) ------------------------------------------


@dataclass(frozen=True)
class JobPhaseChanged(Event):
    job_id: str
    phase: str
    previous: str
    reason: str = ""


@dataclass(frozen=True)
class JobEpochReported(Event):
    """A new epoch record arrived; `progress` is as of this record."""

    job_id: str
    record: MetricRecord
    progress: TrainingProgress


@dataclass(frozen=True)
class JobEnded(Event):
    job_id: str
    phase: str
    reason: str
    final: MetricRecord | None
    progress: TrainingProgress


__all__ = [
    "BestEpoch",
    "JobEnded",
    "JobEpochReported",
    "JobNotFound",
    "JobPhase",
    "JobPhaseChanged",
    "JobResources",
    "JobSpec",
    "JobSpecError",
    "JobStatus",
    "LogChunk",
    "MetricRecord",
    "MetricsChunk",
    "MetricsReader",
    "PlatformUnavailable",
    "TrainingError",
    "TrainingProgress",
    "best_epoch",
    "derive_progress",
    "failure_reason",
    "format_duration",
    "parse_metrics",
]
