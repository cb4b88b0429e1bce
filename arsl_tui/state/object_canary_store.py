"""The canary's records and its controller lease in the object store: the `CanaryStateStore` of a backend whose
operators work from several hosts (Huawei). Every console pointed at the same bucket reads the same release,
step and verdicts, and one controller at a time may change it.

Layout under the models prefix (`[storage] models_prefix`), per service:

    releases/<service>/events/<seq, 8 digits>.json    the record chain, append-only: event n+1 is created
                                                      conditionally (`ObjectStore.put_if_absent`) and holds what
                                                      one write of the controller changed (the run after a
                                                      decision with its journal line, an action's outcome, an
                                                      alarm). The records are the replay of the chain.
    releases/<service>/lease/<generation, 8 digits>.json
                                                      the controller lease: taking, renewing and releasing it is
                                                      the conditional create of the next generation; the newest
                                                      generation is the lease.
    releases/<service>/state.json                     a cache of the replay after some event n, so a new reader
                                                      fetches only the events after n; rewritten freely, never
                                                      trusted past its n.

This is how the registry's promotion log works (`ops/registry.py`), for the same reason: the store has no
transactions, and a conditional create is the one atomic step it offers. Of several writers creating one key,
exactly one succeeds; a refused create is told from the lost reply to our own successful one by reading the
object back (each document carries a random nonce). Reads are a listing (keys in alphabetical order, OBS API
reference `obs_04_0022` Listing Objects in a Bucket, https://support.huaweicloud.com/intl/en-us/api-obs/
obs_04_0022.html) and a GET of each document not read before; documents never change, so a reader keeps them.
The listing starts at the last record the reader knows (the listing's `marker` is the one before it), so a
console polling a release with a long history lists a key or two, not the history; a view whose last record
is gone (a reset or restored bucket) is rebuilt from the first record.

**The lease.** A controller is a home: its processes already decide one at a time under the home's file lock
(`HomeLock`), so they share one lease, named by a random id kept in `<home>/canary-controller.id` (with the
host, so a copied home is another controller). `lock()` takes the home lock, then takes or renews the lease:
free, released, ours, or lapsed; otherwise it refuses (`LeaseHeld`), naming the holder's host, pid and user
and since when. A holder renews when less than half its time to live is left, so a `watch` (which ticks at
least every `[canary] poll_s`, a quarter of the TTL at most) writes one generation per half TTL. The lease is
released when the release needs no controller (no run, or a run that ended with nothing pending), so the next
operator can start at once; a holder that died stops renewing and its lease lapses.

**The clock.** A lease's expiry is the holder's wall clock when it wrote the generation plus the TTL. A
contender reads it with its own clock and takes over only `CLOCK_MARGIN_S` after that expiry: hosts synchronised
by NTP differ by milliseconds, and the margin covers a host up to that far ahead without taking a live lease.
The store bounds nothing tighter (OBS refuses requests more than 15 minutes off its clock, `obs_04_0010`
Authentication of Signature in a Header), so a host whose clock is wrong by more than the margin must be fixed.

**Fencing.** Every write is the record after the last one this controller saw when it took its lock (or wrote
since), created conditionally. If the lease lapsed during a long decision and another controller took over and
wrote, that number is taken: the write fails (`ControllerBusy`, naming the writer), nothing more is done here,
and the new holder carries on from the records. An effect already sent to the platform before that write is
one the new holder finds done (the controller checks each effect before performing it).

**Conditional creates on OBS.** OBS's API reference lists no conditional-create header for PUT (`obs_04_0080`
Uploading an Object - PUT, https://support.huaweicloud.com/intl/en-us/api-obs/obs_04_0080.html), so the OBS
adapter sends `x-obs-forbid-overwrite` and `If-None-Match: *` and probes once that the bucket refuses a second
create before trusting it (`providers/huawei/obs.py`); a bucket that overwrites is refused with
`ConditionalCreateUnsupported`, exactly as for the registry.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import getpass
import hashlib
import json
import os
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from arsl_tui.domain.canary import Action, CanaryError, CanaryRun, Transition
from arsl_tui.domain.keys import UnsafeKeyError, join_key
from arsl_tui.domain.ports import LeaseHolder, ObjectNotFound, ObjectStore, StoreError
from arsl_tui.state.canary_store import (
    LOCK_FILE,
    LOCK_TIMEOUT_S,
    CanaryStateUnavailable,
    ControllerBusy,
    HomeLock,
    LeaseHeld,
)

if TYPE_CHECKING:
    from arsl_tui.config import Settings

EVENT_FORMAT = "arsl-canary-event/1"
LEASE_FORMAT = "arsl-canary-lease/1"
SNAPSHOT_FORMAT = "arsl-canary-state/1"
IDENTITY_FILE = "canary-controller.id"
LEASE_TTL_S = 60.0
"""A lease not renewed for this long lapses (longer where `[canary] poll_s` is long: `lease_ttl`)."""
CLOCK_MARGIN_S = 15.0
"""How long past a lease's expiry (by the holder's clock) a contender still waits (see the module docstring)."""
KEEP_GENERATIONS = 4
"""Lease generations kept behind the newest; older ones are deleted by the writer of the newest."""
SNAPSHOT_EVERY = 25
"""Events between two rewrites of the replay cache."""
MAX_ATTEMPTS = 16
"""Conditional creates tried before giving up (each refusal means another writer progressed)."""
STORE_ATTEMPTS = 6
_BACKOFF_BASE_S = 0.05
_BACKOFF_MAX_S = 1.0
_DIGITS = 8
_NUMBERED = re.compile(r"^([0-9]{8})\.json$")
_T = TypeVar("_T")


def lease_ttl(poll_s: float) -> float:
    """The lease's time to live for a controller that ticks every `poll_s` seconds (renewed at half of it)."""
    return max(LEASE_TTL_S, 4.0 * poll_s)


def _encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _patiently(operation: Callable[[], _T]) -> _T:
    """`operation`, tried again after a transient store error (with jittered backoff); the last error is the
    caller's. Every write here is a conditional create or a cache rewrite, so a retry never applies twice."""
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            return operation()
        except StoreError as error:
            if not error.transient or attempt == STORE_ATTEMPTS:
                raise
        time.sleep(random.uniform(0, min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (attempt - 1))))
    raise AssertionError("unreachable")  # the loop returns or raises


def _create(store: ObjectStore, key: str, data: bytes) -> bool:
    """Conditionally create `key`; True also when the object holds exactly `data` (our own lost reply)."""
    try:
        if _patiently(lambda: store.put_if_absent(key, data, _md5(data))):
            return True
    except StoreError as error:
        if error.code == "ETagMismatch":
            # The store kept other bytes than we sent under a key only we created: remove it, or every reader
            # would stop at a record it cannot parse; the caller tries the number again.
            with contextlib.suppress(StoreError):
                _patiently(lambda: store.delete(key))
        raise
    try:
        return _patiently(lambda: store.get_bytes(key)) == data
    except ObjectNotFound:
        return False


def _numbered(store: ObjectStore, prefix: str, after: int = 0) -> list[tuple[int, str]]:
    """(number, key) of the `<8 digits>.json` documents under `prefix` numbered above `after`, in order."""
    found = []
    marker = f"{prefix}{after:0{_DIGITS}d}.json" if after > 0 else ""
    for info in _patiently(lambda: builtins.list(store.list(prefix, marker))):
        match = _NUMBERED.match(info.key[len(prefix) :])
        if match:
            found.append((int(match.group(1)), info.key))
    return sorted(found)


@dataclass(frozen=True)
class ControllerIdentity:
    """Who writes: the home's controller id, and the host, process and user to name (never a secret)."""

    controller: str
    host: str
    pid: int
    user: str

    @classmethod
    def of_home(cls, home: Path, user: str) -> ControllerIdentity:
        """The home's id, created on first use (a random 128-bit hex string)."""
        path = Path(home) / IDENTITY_FILE
        for _ in range(2):
            try:
                text = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                text = ""
            if re.fullmatch(r"[0-9a-f]{32}", text):
                return cls(text, socket.gethostname(), os.getpid(), user)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                # O_EXCL: two processes of one home creating it at once agree on the first one's id.
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_hex(16) + "\n")
        raise CanaryError(f"{path}: not a controller id (32 hex digits); remove it to make a new one")

    def same_controller(self, holder: LeaseHolder) -> bool:
        return holder.controller == self.controller and holder.host == self.host

    def to_json(self) -> dict[str, Any]:
        return {"controller": self.controller, "host": self.host, "pid": self.pid, "user": self.user}


def _holder_from_json(data: Any, where: str) -> LeaseHolder:
    if not isinstance(data, Mapping) or data.get("format") != LEASE_FORMAT:
        raise CanaryError(f"{where}: not a controller lease ({LEASE_FORMAT!r} expected)")
    try:
        return LeaseHolder(
            controller=str(data["controller"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            user=str(data["user"]),
            since=float(data["since"]),
            renewed_at=float(data["renewed_at"]),
            expires_at=float(data["expires_at"]),
            generation=int(data["generation"]),
            released=bool(data.get("released", False)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CanaryError(f"{where}: unreadable controller lease ({type(error).__name__}: {error})") from None


class ObjectControllerLease:
    """The `ControllerLease` of one release, as numbered lease generations in the object store."""

    def __init__(
        self,
        store: Callable[[], ObjectStore],
        prefix: str,
        identity: Callable[[], ControllerIdentity],
        *,
        clock: Callable[[], float] = time.time,
        ttl_s: float = LEASE_TTL_S,
        margin_s: float = CLOCK_MARGIN_S,
        what: str = "the release",
    ) -> None:
        self._store = store
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._identity = identity
        self.clock = clock
        self.ttl_s = ttl_s
        self.margin_s = margin_s
        self.what = what
        self._seen: dict[int, LeaseHolder] = {}
        """Generations read before: a generation's document never changes once created."""

    def key(self, generation: int) -> str:
        return f"{self.prefix}{generation:0{_DIGITS}d}.json"

    def _read(self, generation: int, key: str) -> LeaseHolder | None:
        if generation in self._seen:
            return self._seen[generation]
        try:
            data = _patiently(lambda: self._store().get_bytes(key))
        except ObjectNotFound:
            return None  # pruned since it was listed
        try:
            payload = json.loads(data)
        except ValueError:
            raise CanaryError(f"{key}: not JSON") from None
        holder = _holder_from_json(payload, key)
        if holder.generation != generation:
            raise CanaryError(f"{key}: holds generation {holder.generation}")
        self._seen[generation] = holder
        return holder

    def holder(self) -> LeaseHolder | None:
        """The newest generation (None when the lease was never taken)."""
        for generation, key in reversed(_numbered(self._store(), self.prefix)):
            found = self._read(generation, key)
            if found is not None:
                return found
        return None

    def lapsed(self, holder: LeaseHolder, now: float) -> bool:
        """Another controller may take `holder`'s lease at `now` (its clock): released, or expired plus the margin."""
        return holder.released or now >= holder.expires_at + self.margin_s

    def refusal(self, holder: LeaseHolder, now: float, *, raced: bool = False) -> LeaseHeld:
        lapses_in = max(0.0, holder.expires_at + self.margin_s - now)
        took = "took the lease first" if raced else "holds the lease"
        return LeaseHeld(
            f"another canary controller drives {self.what}: {holder.describe()} {took} (renewed "
            f"{max(0.0, now - holder.renewed_at):.0f} s ago, generation {holder.generation}); it can be taken over "
            f"if it is not renewed within {lapses_in:.0f} s (at {_utc(holder.expires_at + self.margin_s)})",
            holder,
        )

    def acquire(self) -> LeaseHolder:
        me = self._identity()
        store = self._store()
        for _attempt in range(MAX_ATTEMPTS):
            latest = self.holder()
            now = self.clock()
            ours = latest is not None and not latest.released and me.same_controller(latest)
            if latest is not None and not ours and not self.lapsed(latest, now):
                raise self.refusal(latest, now)
            if ours and latest is not None and self.ttl_s / 2 < latest.expires_at - now <= self.ttl_s:
                return latest  # fresh enough: renewing each tick would write one object per tick
            generation = latest.generation + 1 if latest is not None else 1
            since = latest.since if ours and latest is not None and now < latest.expires_at else now
            record = LeaseHolder(
                controller=me.controller,
                host=me.host,
                pid=me.pid,
                user=me.user,
                since=since,
                renewed_at=now,
                expires_at=now + self.ttl_s,
                generation=generation,
            )
            if self._claim(store, record):
                return record
            winner = self._read(generation, self.key(generation))
            if winner is not None and not me.same_controller(winner) and not self.lapsed(winner, self.clock()):
                raise self.refusal(winner, self.clock(), raced=True)
        raise ControllerBusy(
            f"gave up taking the lease of {self.what} after {MAX_ATTEMPTS} attempts: other controllers kept "
            "writing first"
        )

    def _claim(self, store: ObjectStore, record: LeaseHolder) -> bool:
        """Create `record`'s generation; True if it is now the newest (the lease is ours)."""
        key = self.key(record.generation)
        payload = {"format": LEASE_FORMAT, **record.to_json(), "nonce": secrets.token_hex(8)}
        if not _create(store, key, _encode(payload)):
            return False
        newest = _numbered(store, self.prefix)
        if newest and newest[-1][0] != record.generation:
            # Created into the gap a prune left, behind a newer generation: not the lease. Remove it, so no
            # reader takes it for one, and read the newest again.
            with contextlib.suppress(StoreError):
                _patiently(lambda: store.delete(key))
            return False
        for generation, old in newest:
            if generation <= record.generation - KEEP_GENERATIONS:
                with contextlib.suppress(StoreError):  # leftovers cost a longer listing, nothing else
                    _patiently(functools.partial(store.delete, old))
        return True

    def release(self) -> None:
        me = self._identity()
        latest = self.holder()
        if latest is None or latest.released or not me.same_controller(latest):
            return
        now = self.clock()
        record = LeaseHolder(
            controller=me.controller,
            host=me.host,
            pid=me.pid,
            user=me.user,
            since=latest.since,
            renewed_at=now,
            expires_at=now,
            generation=latest.generation + 1,
            released=True,
        )
        self._claim(self._store(), record)  # lost to a contender: then it is theirs anyway


@dataclass
class _Replay:
    """The records as the chain's events up to `seq` leave them (the same tables as the state file's)."""

    seq: int = 0
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    current: str | None = None
    journal: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, event: Mapping[str, Any]) -> None:
        action = event.get("action")
        if isinstance(action, Mapping):
            self.actions[str(action["id"])] = dict(action)  # an outcome replaces an earlier one
        run = event.get("run")
        if isinstance(run, Mapping):
            run_id = str(run["run_id"])
            self.runs[run_id] = dict(run)
            if event.get("current"):
                self.current = run_id
            line = event.get("journal")
            if isinstance(line, Mapping):
                self.journal.setdefault(run_id, []).append(dict(line))
        for cancelled in event.get("cancelled") or ():
            self.actions.setdefault(str(cancelled["id"]), dict(cancelled))  # never over a recorded outcome
        alarm = event.get("alarm")
        if isinstance(alarm, Mapping):
            self.alarms.setdefault(str(alarm["id"]), dict(alarm))
        self.seq = int(event["seq"])

    def copy(self) -> _Replay:
        """A copy `apply` may change without touching this one (the records themselves are never changed)."""
        return _Replay(
            seq=self.seq,
            runs=dict(self.runs),
            current=self.current,
            journal={key: list(value) for key, value in self.journal.items()},
            actions=dict(self.actions),
            alarms=dict(self.alarms),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "seq": self.seq,
            "runs": self.runs,
            "current": self.current,
            "journal": self.journal,
            "actions": self.actions,
            "alarms": self.alarms,
        }

    @classmethod
    def from_json(cls, data: Any) -> _Replay | None:
        if not isinstance(data, Mapping) or data.get("format") != SNAPSHOT_FORMAT:
            return None
        try:
            current = data.get("current")
            return cls(
                seq=int(data["seq"]),
                runs={str(key): dict(value) for key, value in data["runs"].items()},
                current=None if current is None else str(current),
                journal={str(key): [dict(item) for item in value] for key, value in data["journal"].items()},
                actions={str(key): dict(value) for key, value in data["actions"].items()},
                alarms={str(key): dict(value) for key, value in data["alarms"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None  # only a shortcut: the chain is replayed instead


class ObjectCanaryStore:
    """The canary's records as an event chain in the object store, under a home lock and a controller lease."""

    def __init__(
        self,
        store: ObjectStore | Callable[[], ObjectStore],
        prefix: str,
        service: str,
        *,
        home: Path,
        user: str,
        clock: Callable[[], float] = time.time,
        ttl_s: float = LEASE_TTL_S,
        margin_s: float = CLOCK_MARGIN_S,
        identity: ControllerIdentity | None = None,
    ) -> None:
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        try:
            self.base = join_key(prefix, f"releases/{service}") + "/"
        except UnsafeKeyError as error:
            raise CanaryError(f"service name {service!r} cannot name a store folder: {error}") from None
        self.service = service
        self.home = Path(home)
        self.user = user
        self.clock = clock
        self._store_or_factory = store
        self._made: ObjectStore | None = None
        self._identity = identity
        self._home_lock = HomeLock(self.home / LOCK_FILE)
        self.lease = ObjectControllerLease(
            self.store,
            self.base + "lease/",
            self.identity,
            clock=clock,
            ttl_s=ttl_s,
            margin_s=margin_s,
            what=f"the release of {service}",
        )
        self._replay: _Replay | None = None
        """The last replay read; replaced, never changed, so a reader's copy stays consistent."""
        self._replay_lock = threading.Lock()
        self._documents: dict[int, dict[str, Any]] = {}
        self._holding = False
        self._fence = 0
        """The last record this controller saw or wrote under its lock: the next write must be the one after."""

    @classmethod
    def from_settings(
        cls, settings: Settings, store: ObjectStore | Callable[[], ObjectStore], service: str, *, user: str = ""
    ) -> ObjectCanaryStore:
        """The store for `settings` (models prefix, home, `[canary] poll_s` for the lease's TTL); `store` (or a
        function making it) is reached only on the first read, so opening needs no credentials or network."""
        if not user:
            try:
                user = getpass.getuser()
            except (KeyError, OSError):
                user = "unknown"
        return cls(
            store,
            settings.storage.models_prefix,
            service,
            home=settings.home_dir,
            user=user,
            ttl_s=lease_ttl(settings.canary.poll_s),
        )

    # --- plumbing ---------------------------------------------------------------------------------

    def store(self) -> ObjectStore:
        if self._made is None:
            made = self._store_or_factory
            self._made = made() if callable(made) else made
        return self._made

    def identity(self) -> ControllerIdentity:
        if self._identity is None:
            self._identity = ControllerIdentity.of_home(self.home, self.user)
        return self._identity

    @property
    def where(self) -> str:
        made = self._made
        return f"{made.location}/{self.base}" if made is not None else self.base

    def close(self) -> None:
        self._replay = None
        self._documents.clear()

    def _event_key(self, seq: int) -> str:
        return f"{self.base}events/{seq:0{_DIGITS}d}.json"

    def _unavailable(self, error: Exception) -> CanaryStateUnavailable:
        return CanaryStateUnavailable(f"cannot read the release state at {self.where}: {error}")

    # --- reading ----------------------------------------------------------------------------------

    def _event(self, seq: int, key: str) -> dict[str, Any]:
        if seq not in self._documents:
            data = _patiently(lambda: self.store().get_bytes(key))
            try:
                event = json.loads(data)
            except ValueError:
                raise CanaryError(f"{self.where}: {key} is not JSON") from None
            if not isinstance(event, dict) or event.get("format") != EVENT_FORMAT or event.get("seq") != seq:
                raise CanaryError(f"{self.where}: {key} is not canary record {seq}")
            self._documents[seq] = event
        return self._documents[seq]

    def _snapshot(self) -> _Replay:
        try:
            data = _patiently(lambda: self.store().get_bytes(self.base + "state.json"))
            replay = _Replay.from_json(json.loads(data))
        except (ObjectNotFound, ValueError):
            replay = None
        return replay if replay is not None else _Replay()

    def _since(self, base: _Replay) -> tuple[_Replay, list[tuple[int, str]]]:
        """`base` and the events after it, listed from its own last record on, so a read costs what was written
        since, not the release history. A view whose last record the chain no longer holds (a cache ahead of
        the chain it summarises, a chain that was reset) is not to be trusted: replay from the start."""
        prefix = self.base + "events/"
        if base.seq == 0:
            return base, _numbered(self.store(), prefix)
        events = _numbered(self.store(), prefix, after=base.seq - 1)
        if events and events[0][0] == base.seq:
            return base, events
        self._documents.clear()  # records read before belong to the chain that is gone
        return _Replay(), _numbered(self.store(), prefix)

    def _refresh(self) -> _Replay:
        """The records now: the events written since the last read, applied in order to a copy, so a reader in
        another thread (the console reads while a command runs) keeps a consistent view."""
        with self._replay_lock:
            try:
                base, events = self._since(self._replay or self._snapshot())
                unread = [(seq, key) for seq, key in events if seq > base.seq]
                replay = base.copy() if unread else base
                for seq, key in unread:
                    replay.apply(self._event(seq, key))
            except StoreError as error:
                raise self._unavailable(error) from None
            except (KeyError, TypeError, ValueError) as error:
                self._replay = None
                raise CanaryError(f"{self.where}: unreadable canary record ({type(error).__name__}: {error})") from None
            self._replay = replay
            return replay

    def _run(self, data: Mapping[str, Any]) -> CanaryRun:
        return CanaryRun.from_json(data, f"{self.where}events/")

    def current(self) -> CanaryRun | None:
        replay = self._refresh()
        if replay.current is None:
            return None
        return self._run(replay.runs[replay.current])

    def runs(self, limit: int = 20) -> list[CanaryRun]:
        records = sorted(self._refresh().runs.values(), key=lambda item: float(item["started_at"]), reverse=True)
        return [self._run(item) for item in records[:limit]]

    def action_outcome(self, action_id: str) -> str | None:
        found = self._refresh().actions.get(action_id)
        return str(found["outcome"]) if found is not None else None

    def actions(self, run_id: str) -> list[dict[str, Any]]:
        found = [
            {key: item[key] for key in ("id", "kind", "outcome", "time", "detail")}
            for item in self._refresh().actions.values()
            if item.get("run_id") == run_id
        ]
        return sorted(found, key=lambda item: (float(item["time"]), str(item["id"])))

    def alarms(self, limit: int = 20) -> list[dict[str, Any]]:
        found = sorted(self._refresh().alarms.values(), key=lambda item: float(item["time"]), reverse=True)
        return [dict(item) for item in found[:limit]]

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(item) for item in self._refresh().journal.get(run_id, ())]

    def holder(self) -> LeaseHolder | None:
        """The lease as stored; None when nobody ever drove this release or the last holder released it."""
        try:
            found = self.lease.holder()
        except StoreError as error:
            raise self._unavailable(error) from None
        return None if found is None or found.released else found

    # --- the lock and the lease -------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """The home's lock, then the lease (taken or renewed; `LeaseHeld` while another controller holds it)."""
        with self._home_lock.hold(timeout_s):
            try:
                self.lease.acquire()
            except StoreError as error:
                raise self._unavailable(error) from None
            self._fence = self._refresh().seq
            self._holding = True
            try:
                yield
            finally:
                if self._holding:
                    self._holding = False
                    self._release_when_idle()

    def _release_when_idle(self) -> None:
        """Give the lease up when the release needs no controller: no run, or one ended with nothing pending."""
        with contextlib.suppress(CanaryError, StoreError):  # not released: it lapses after its TTL instead
            run = self.current()
            if run is None or (run.phase.ended and not run.pending):
                self.lease.release()

    # --- writing ----------------------------------------------------------------------------------

    def _lost(self, seq: int) -> ControllerBusy:
        """Record `seq` was written by another controller since this one took its lock: it lost the lease."""
        self._holding = False
        self._replay = None
        writer = "another controller"
        with contextlib.suppress(CanaryError, StoreError, KeyError, TypeError):
            other = self._event(seq, self._event_key(seq))["writer"]
            writer = f"{other['user']}@{other['host']} (pid {other['pid']})"
        return ControllerBusy(
            f"{writer} changed the release of {self.service} (record {seq}) while this controller decided: its "
            "lease had lapsed; nothing more was done here — look again (`arsl canary status`)"
        )

    def _append(self, fields: Mapping[str, Any]) -> None:
        """The record after the last one this controller saw under its lock, created conditionally; refused
        when another controller wrote since (this one's lease lapsed while it decided and was taken over)."""
        if not self._holding:
            raise ControllerBusy(f"{self.where}: a canary record is written only under the controller's lock")
        replay = self._refresh()
        seq = self._fence + 1
        if replay.seq != self._fence:
            raise self._lost(seq)
        event = {
            "format": EVENT_FORMAT,
            "seq": seq,
            "time": self.clock(),
            "writer": self.identity().to_json(),
            "nonce": secrets.token_hex(8),
            **fields,
        }
        key = self._event_key(seq)
        try:
            created = _create(self.store(), key, _encode(event))
        except StoreError as error:
            raise CanaryError(f"cannot write canary record {seq} at {self.where}: {error}") from None
        if not created:
            raise self._lost(seq)
        self._fence = seq
        with self._replay_lock:
            self._documents[seq] = event
            known = self._replay
            if known is not None and known.seq == seq - 1:
                updated = known.copy()
                updated.apply(event)
                self._replay = known = updated
            snapshot = known.to_json() if known is not None and known.seq == seq else None
        if snapshot is not None and seq % SNAPSHOT_EVERY == 0:
            data = _encode(snapshot)
            with contextlib.suppress(StoreError):  # only a shortcut for readers
                _patiently(lambda: self.store().put_bytes(self.base + "state.json", data, _md5(data)))

    @staticmethod
    def _transition_fields(transition: Transition, make_current: bool) -> dict[str, Any]:
        run = transition.run
        event = transition.log.event if transition.log is not None else "hold"
        return {
            "run": run.to_json(),
            "current": make_current,
            "journal": {
                "seq": run.seq,
                "time": run.updated_at,
                "event": event,
                "from": transition.previous.value,
                "to": run.phase.value,
                "reason": run.reason,
            },
            "cancelled": [
                {
                    "id": item.id,
                    "run_id": run.run_id,
                    "kind": item.kind.value,
                    "outcome": "cancelled",
                    "time": run.updated_at,
                    "detail": f"superseded by {event}",
                }
                for item in transition.cancelled
            ],
        }

    def save(self, run: CanaryRun) -> None:
        self._append({"run": run.to_json()})

    def save_transition(self, transition: Transition, *, make_current: bool = False) -> None:
        self._append(self._transition_fields(transition, make_current))

    def finish_action(self, after: CanaryRun | Transition, action: Action, outcome: str, detail: str) -> None:
        run = after.run if isinstance(after, Transition) else after
        fields = self._transition_fields(after, False) if isinstance(after, Transition) else {"run": run.to_json()}
        fields["action"] = {
            "id": action.id,
            "run_id": run.run_id,
            "kind": action.kind.value,
            "outcome": outcome,
            "time": run.updated_at,
            "detail": detail,
        }
        self._append(fields)

    def raise_alarm(self, action: Action, run: CanaryRun, now: float) -> bool:
        if action.id in self._refresh().alarms:
            return False
        alarm = {
            "id": action.id,
            "run_id": run.run_id,
            "time": now,
            "champion": run.champion,
            "challenger": run.challenger,
            "reason": action.reason,
        }
        self._append({"alarm": alarm})
        return True


__all__ = [
    "CLOCK_MARGIN_S",
    "IDENTITY_FILE",
    "LEASE_TTL_S",
    "ControllerIdentity",
    "ObjectCanaryStore",
    "ObjectControllerLease",
    "lease_ttl",
]
