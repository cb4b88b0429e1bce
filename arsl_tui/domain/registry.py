"""The model registry as plain records and rules: versions, aliases and the promotion log.

A model version (v1, v2, …) is immutable once created: the model package's keys and MD5s, the
metrics it was judged on, the gate record that let it in and its lineage (data set manifest id,
training job id, trainer code hash). Two aliases point at versions: `champion` (what serves) and
`challenger` (the newest registered version, next in line for a canary). A challenger that a
promotion made champion is no longer a challenger: there is none until the next registration. The
first version to pass the gate is both (champion because there is nothing to compare it with).

Aliases are never stored as mutable state. They are the replay of an append-only promotion log:
each entry has a sequence number (1, 2, …), a time, a user, an action, an alias moved from one
version to another, and a reason. The log is the history MLflow's registry lacks, and because
every entry is validated against the state before it (a move must start where the alias is), a
writer that appends entry n+1 with a conditional create has made a compare-and-swap on the aliases.

The rules live here: version numbering, what a registration moves (challenger; champion too when
there is none yet and the version passed the gate), and which alias moves are allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from arsl_tui.domain.gate import FinalMetrics

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)
RECORD_FORMAT = "arsl-model-version/1"
LOG_FORMAT = "arsl-promotion/1"

Action = Literal["register", "override", "set_alias", "canary"]
ACTIONS: tuple[Action, ...] = ("register", "override", "set_alias", "canary")
"""register: a version that passed the gate; override: a failed version registered on purpose;
set_alias: an alias moved; canary: a canary release of `to` against `from` changed state (the reason
says how and why); it moves no alias."""

_VERSION = re.compile(r"^v([1-9][0-9]{0,8})$")


class RegistryError(Exception):
    """A registry rule refused something; the message says what and why."""


class VersionFormatError(RegistryError, ValueError):
    """Text that is not a version name (v1, v2, …)."""


class AliasMoveError(RegistryError):
    """An alias move the rules do not allow (unknown alias or version, no reason, no change)."""


class RecordFormatError(RegistryError, ValueError):
    """A stored record is missing a field or holds the wrong kind of value; the message names it."""


class LogConsistencyError(RegistryError):
    """The promotion log contradicts itself (a gap, or a move that does not start where the alias is)."""


# --- versions -------------------------------------------------------------------------------------


def parse_version(text: str) -> int:
    """The number of a version name: 'v12' → 12."""
    found = _VERSION.match(text.strip()) if isinstance(text, str) else None
    if not found:
        raise VersionFormatError(f"{text!r} is not a model version (expected v1, v2, …)")
    return int(found.group(1))


def format_version(number: int) -> str:
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise VersionFormatError(f"version number {number!r} must be a positive integer")
    return f"v{number}"


def next_version(existing: Iterable[int]) -> str:
    """One past the highest version ever created (numbers are never reused, even with gaps)."""
    return format_version(max(existing, default=0) + 1)


# --- records --------------------------------------------------------------------------------------


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in data:
        raise RecordFormatError(f"{where}: field {name!r} is missing")
    value = data[name]
    if isinstance(value, bool) and kind is not bool:
        raise RecordFormatError(f"{where}: field {name!r} is {value!r}, expected {_kind_name(kind)}")
    if not isinstance(value, kind):
        raise RecordFormatError(f"{where}: field {name!r} is {value!r}, expected {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "text", int: "an integer", float: "a number", dict: "an object", list: "a list"}
    return " or ".join(names.get(item, item.__name__) for item in kinds)


def _optional_text(data: Mapping[str, Any], name: str, where: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise RecordFormatError(f"{where}: field {name!r} is {value!r}, expected text or null")
    return value


@dataclass(frozen=True)
class PackageFile:
    """One file of a registered model package: where it sits in the package and in the store."""

    path: str
    key: str
    size: int
    md5: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "key": self.key, "size": self.size, "md5": self.md5}

    @classmethod
    def from_json(cls, data: Any, where: str) -> PackageFile:
        if not isinstance(data, Mapping):
            raise RecordFormatError(f"{where}: a package file entry is {data!r}, expected an object")
        return cls(
            path=_field(data, "path", str, where),
            key=_field(data, "key", str, where),
            size=_field(data, "size", int, where),
            md5=_field(data, "md5", str, where),
        )


@dataclass(frozen=True)
class Lineage:
    """Where a version came from."""

    manifest_id: str
    """The data set manifest id the job trained and was tested on."""
    job_id: str
    backend: str
    trainer_code_sha256: str
    """SHA-256 over the trainer code shipped in the package (relative path and content of each file)."""
    package_id: str
    """SHA-256 over the package's files (relative path, size, MD5): identical packages share it."""
    source: str
    """Where the package was copied from (the job's output)."""
    trainer_version: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest_id": self.manifest_id,
            "job_id": self.job_id,
            "backend": self.backend,
            "trainer_code_sha256": self.trainer_code_sha256,
            "trainer_version": self.trainer_version,
            "package_id": self.package_id,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Lineage:
        if not isinstance(data, Mapping):
            raise RecordFormatError(f"{where}: field 'lineage' is {data!r}, expected an object")
        return cls(
            manifest_id=_field(data, "manifest_id", str, where),
            job_id=_field(data, "job_id", str, where),
            backend=_field(data, "backend", str, where),
            trainer_code_sha256=_field(data, "trainer_code_sha256", str, where),
            package_id=_field(data, "package_id", str, where),
            source=_field(data, "source", str, where),
            trainer_version=str(data.get("trainer_version") or ""),
        )


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version; never changed after it is created."""

    version: str
    created_at: str
    """UTC, ISO 8601 (2025-01-31T12:00:00Z)."""
    created_by: str
    lineage: Lineage
    gate: Mapping[str, Any]
    """The gate record (rules with measured values, thresholds and verdicts) the version was judged by."""
    metrics: Mapping[str, Any]
    """Test/validation figures, per-class accuracy, the epoch history and the confusion matrix."""
    package: tuple[PackageFile, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    """The package's config.json (architecture, classes, input, normalisation, weights digest)."""
    override_reason: str | None = None
    """Set when a version that failed the gate was registered on purpose."""
    writer: str = ""
    """A random id of the registration that created this record (tells a lost reply from a lost race)."""

    @property
    def number(self) -> int:
        return parse_version(self.version)

    @property
    def gate_verdict(self) -> str:
        return str(self.gate.get("verdict", ""))

    def final_metrics(self) -> FinalMetrics | None:
        """The held-out test figures the gate compares a challenger with (None if the record lacks them)."""
        test_acc, test_loss = self.metrics.get("test_acc"), self.metrics.get("test_loss")
        if not isinstance(test_acc, int | float) or isinstance(test_acc, bool):
            return None
        per_class = self.metrics.get("per_class_acc") or {}
        return FinalMetrics(
            test_acc=float(test_acc),
            test_loss=float(test_loss) if isinstance(test_loss, int | float) else math.nan,
            per_class_acc={
                str(name): float(value) for name, value in dict(per_class).items() if isinstance(value, int | float)
            },
            manifest_id=self.lineage.manifest_id,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "version": self.version,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "lineage": self.lineage.to_json(),
            "gate": dict(self.gate),
            "metrics": dict(self.metrics),
            "package": [item.to_json() for item in self.package],
            "config": dict(self.config),
            "override_reason": self.override_reason,
            "writer": self.writer,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> ModelVersion:
        """Parse a stored record; `where` (the key) prefixes every error."""
        if not isinstance(data, Mapping):
            raise RecordFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
        kind = data.get("format")
        if kind != RECORD_FORMAT:
            raise RecordFormatError(f"{where}: format is {kind!r}, expected {RECORD_FORMAT!r}")
        version = _field(data, "version", str, where)
        try:
            parse_version(version)
        except VersionFormatError as error:
            raise RecordFormatError(f"{where}: field 'version': {error}") from None
        package = _field(data, "package", list, where)
        return cls(
            version=version,
            created_at=_field(data, "created_at", str, where),
            created_by=_field(data, "created_by", str, where),
            lineage=Lineage.from_json(data.get("lineage"), where),
            gate=_field(data, "gate", dict, where),
            metrics=_field(data, "metrics", dict, where),
            package=tuple(PackageFile.from_json(item, where) for item in package),
            config=dict(data.get("config") or {}),
            override_reason=_optional_text(data, "override_reason", where),
            writer=str(data.get("writer") or ""),
        )


@dataclass(frozen=True)
class PromotionLogEntry:
    """One line of the append-only promotion log: who did what, when, from where to where, and why."""

    seq: int
    time: str
    user: str
    action: Action
    to_version: str
    from_version: str | None = None
    alias: str | None = None
    """The alias moved (set_alias only)."""
    reason: str = ""
    writer: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": LOG_FORMAT,
            "seq": self.seq,
            "time": self.time,
            "user": self.user,
            "action": self.action,
            "alias": self.alias,
            "from": self.from_version,
            "to": self.to_version,
            "reason": self.reason,
            "writer": self.writer,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> PromotionLogEntry:
        if not isinstance(data, Mapping):
            raise RecordFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != LOG_FORMAT:
            raise RecordFormatError(f"{where}: format is {data.get('format')!r}, expected {LOG_FORMAT!r}")
        action = _field(data, "action", str, where)
        if action not in ACTIONS:
            raise RecordFormatError(f"{where}: action {action!r} is not one of {', '.join(ACTIONS)}")
        alias = _optional_text(data, "alias", where)
        if action == "set_alias" and alias not in ALIASES:
            raise RecordFormatError(f"{where}: alias {alias!r} is not one of {', '.join(ALIASES)}")
        seq = _field(data, "seq", int, where)
        if seq < 1:
            raise RecordFormatError(f"{where}: seq {seq} must be at least 1")
        entry = cls(
            seq=seq,
            time=_field(data, "time", str, where),
            user=_field(data, "user", str, where),
            action=action,
            to_version=_field(data, "to", str, where),
            from_version=_optional_text(data, "from", where),
            alias=alias,
            reason=str(data.get("reason") or ""),
            writer=str(data.get("writer") or ""),
        )
        for name, value in (("to", entry.to_version), ("from", entry.from_version)):
            if value is not None:
                try:
                    parse_version(value)
                except VersionFormatError as error:
                    raise RecordFormatError(f"{where}: field {name!r}: {error}") from None
        return entry

    def describe(self) -> str:
        """'champion v1 → v2', 'registered v3', 'registered v4 despite a failed gate'."""
        if self.action == "set_alias":
            return f"{self.alias} {self.from_version or '—'} → {self.to_version}"
        if self.action == "override":
            return f"registered {self.to_version} despite a failed gate"
        if self.action == "canary":
            return f"canary {self.to_version} vs {self.from_version or '—'}"
        return f"registered {self.to_version}"


# --- the state the log replays to -----------------------------------------------------------------


@dataclass(frozen=True)
class RegistryState:
    """Aliases and registrations after the first `seq` log entries."""

    seq: int = 0
    positions: Mapping[str, str] = field(default_factory=dict)
    """Where the log's moves left each alias: the next move of an alias must start there (the log's
    compare-and-swap). What users see is `aliases`."""
    registered: frozenset[str] = frozenset()
    overridden: frozenset[str] = frozenset()
    promoted: str | None = None
    """The version the last champion move went to from another version (a promotion), if any."""

    @property
    def aliases(self) -> dict[str, str]:
        """The aliases in force: every view and command reads these. The challenger's position stays on a
        version that a promotion made champion, but that version is no longer a challenger."""
        challenger = self.positions.get(CHALLENGER)
        if challenger is not None and challenger == self.promoted == self.positions.get(CHAMPION):
            return {alias: version for alias, version in self.positions.items() if alias != CHALLENGER}
        return dict(self.positions)

    def alias_of(self, version: str) -> list[str]:
        aliases = self.aliases
        return [alias for alias in ALIASES if aliases.get(alias) == version]

    def apply(self, entry: PromotionLogEntry, where: str = "") -> RegistryState:
        """The state after `entry`; LogConsistencyError if it does not follow from this one."""
        where = where or f"promotion log entry {entry.seq}"
        if entry.seq != self.seq + 1:
            raise LogConsistencyError(
                f"{where}: expected entry {self.seq + 1} next, found entry {entry.seq} "
                "(the log is append-only: an entry is missing)"
            )
        if entry.action == "set_alias":
            assert entry.alias is not None
            current = self.positions.get(entry.alias)
            if entry.from_version != current:
                raise LogConsistencyError(
                    f"{where}: moves {entry.alias} from {entry.from_version or 'nothing'}, "
                    f"but the entries before it leave it at {current or 'nothing'}"
                )
            if entry.to_version not in self.registered:
                raise LogConsistencyError(
                    f"{where}: moves {entry.alias} to {entry.to_version}, which the log never registered"
                )
            promoted = self.promoted
            if entry.alias == CHAMPION:
                promoted = entry.to_version if entry.from_version is not None else None
            return replace(
                self, seq=entry.seq, positions={**self.positions, entry.alias: entry.to_version}, promoted=promoted
            )
        if entry.action == "canary":
            if entry.to_version not in self.registered:
                raise LogConsistencyError(f"{where}: a canary of {entry.to_version}, which the log never registered")
            return replace(self, seq=entry.seq)
        if entry.to_version in self.registered:
            raise LogConsistencyError(f"{where}: registers {entry.to_version} a second time")
        overridden = self.overridden | {entry.to_version} if entry.action == "override" else self.overridden
        return replace(self, seq=entry.seq, registered=self.registered | {entry.to_version}, overridden=overridden)


def replay(entries: Sequence[tuple[str, PromotionLogEntry]], start: RegistryState | None = None) -> RegistryState:
    """The state after `entries` ((where, entry) pairs in sequence order), starting from `start`."""
    state = start or RegistryState()
    for where, entry in entries:
        state = state.apply(entry, where)
    return state


# --- rules: what may be appended next -------------------------------------------------------------


def registration_action(gate_verdict: str, override_reason: str | None) -> Action:
    """'register' for a version that passed; 'override' for a failed one with a reason; else refused."""
    if gate_verdict == "pass":
        return "register"
    if gate_verdict != "fail":
        raise RegistryError(f"gate verdict {gate_verdict!r} is neither 'pass' nor 'fail'")
    if override_reason is None or not override_reason.strip():
        raise RegistryError("the model failed the gate: registering it anyway needs an override with a reason")
    return "override"


def plan_registration(
    state: RegistryState, version: str, action: Action, *, user: str, time: str, reason: str, writer: str
) -> PromotionLogEntry | None:
    """The next entry that registering `version` needs, given `state`; None once nothing is left to do.

    Order: the registration itself; `challenger` → version (unless a newer version already holds it,
    so a slow writer never moves it backwards); `champion` → version when there is no champion yet
    and the version passed the gate (nothing to compare it with). A failed version registered by
    override never becomes champion without an explicit, reasoned move.
    """
    number = parse_version(version)

    def entry(action: Action, alias: str | None, from_version: str | None, why: str) -> PromotionLogEntry:
        return PromotionLogEntry(
            seq=state.seq + 1,
            time=time,
            user=user,
            action=action,
            alias=alias,
            from_version=from_version,
            to_version=version,
            reason=why,
            writer=writer,
        )

    if version not in state.registered:
        return entry(action, None, None, reason)
    challenger = state.positions.get(CHALLENGER)
    if challenger != version and (challenger is None or parse_version(challenger) < number):
        why = f"{version} passed the gate" if action == "register" else f"{version} registered by override: {reason}"
        return entry("set_alias", CHALLENGER, challenger, why)
    if action == "register" and state.positions.get(CHAMPION) is None:
        return entry(
            "set_alias", CHAMPION, None, "first version to pass the gate: there is no champion to compare it with"
        )
    return None


def plan_alias_move(
    state: RegistryState, alias: str, version: str, *, reason: str, user: str, time: str, writer: str
) -> PromotionLogEntry:
    """A validated manual move of `alias` to `version`."""
    if alias not in ALIASES:
        raise AliasMoveError(f"unknown alias {alias!r} (known: {', '.join(ALIASES)})")
    parse_version(version)
    if version not in state.registered:
        raise AliasMoveError(f"{version} is not a registered version")
    if not reason or not reason.strip():
        raise AliasMoveError(f"moving {alias} needs a reason (it goes into the promotion log)")
    if not user or not user.strip():
        raise AliasMoveError("moving an alias needs the user who does it")
    current = state.positions.get(alias)
    if current == version:
        promoted = " (a promotion made it champion)" if alias not in state.aliases else ""
        raise AliasMoveError(f"{alias} already points at {version}{promoted}")
    return PromotionLogEntry(
        seq=state.seq + 1,
        time=time,
        user=user,
        action="set_alias",
        alias=alias,
        from_version=current,
        to_version=version,
        reason=reason.strip(),
        writer=writer,
    )


def plan_canary_entry(
    state: RegistryState, version: str, baseline: str | None, *, reason: str, user: str, time: str, writer: str
) -> PromotionLogEntry:
    """A promotion-log entry for a canary transition of `version` (against `baseline`)."""
    parse_version(version)
    if version not in state.registered:
        raise RegistryError(f"{version} is not a registered version")
    if not reason or not reason.strip():
        raise RegistryError("a canary log entry needs a reason")
    return PromotionLogEntry(
        seq=state.seq + 1,
        time=time,
        user=user,
        action="canary",
        alias=None,
        from_version=baseline,
        to_version=version,
        reason=reason.strip(),
        writer=writer,
    )


# --- imports into a serving platform --------------------------------------------------------------

IMPORT_FORMAT = "arsl-model-import/1"
_PLATFORM = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


@dataclass(frozen=True)
class ImportRecord:
    """Which model of a serving platform holds a version (a ModelArts AI application id), once imported.

    Unlike a version record this one may be replaced: the platform owns the model and may lose it (deleted
    in its console); importing again records the new id.
    """

    version: str
    platform: str
    model_id: str
    name: str
    platform_version: str
    location: str
    imported_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": IMPORT_FORMAT,
            "version": self.version,
            "platform": self.platform,
            "model_id": self.model_id,
            "name": self.name,
            "platform_version": self.platform_version,
            "location": self.location,
            "imported_at": self.imported_at,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> ImportRecord:
        if not isinstance(data, Mapping):
            raise RecordFormatError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != IMPORT_FORMAT:
            raise RecordFormatError(f"{where}: format is {data.get('format')!r}, expected {IMPORT_FORMAT!r}")
        record = cls(
            version=_field(data, "version", str, where),
            platform=_field(data, "platform", str, where),
            model_id=_field(data, "model_id", str, where),
            name=_field(data, "name", str, where),
            platform_version=_field(data, "platform_version", str, where),
            location=_field(data, "location", str, where),
            imported_at=_field(data, "imported_at", str, where),
        )
        try:
            parse_version(record.version)
        except VersionFormatError as error:
            raise RecordFormatError(f"{where}: field 'version': {error}") from None
        check_platform(record.platform)
        if not record.model_id.strip():
            raise RecordFormatError(f"{where}: field 'model_id' is empty")
        return record


def check_platform(platform: str) -> str:
    """A platform name fit for a store key (`modelarts`)."""
    if not isinstance(platform, str) or not _PLATFORM.match(platform):
        raise RegistryError(f"{platform!r} is not a platform name (lowercase letters, digits, '-')")
    return platform


__all__ = [
    "ACTIONS",
    "ALIASES",
    "CHALLENGER",
    "CHAMPION",
    "Action",
    "AliasMoveError",
    "ImportRecord",
    "Lineage",
    "LogConsistencyError",
    "ModelVersion",
    "PackageFile",
    "PromotionLogEntry",
    "RecordFormatError",
    "RegistryError",
    "RegistryState",
    "VersionFormatError",
    "check_platform",
    "format_version",
    "next_version",
    "parse_version",
    "plan_alias_move",
    "plan_canary_entry",
    "plan_registration",
    "registration_action",
    "replay",
]
