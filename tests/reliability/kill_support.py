"""What the kill loops share: seeded runs that say how to replay them, processes killed by pid, bounded
polling, and the consistency checks made after each SIGKILL.

- `KillLoop`: N seeded runs of one loop. Run i uses seed `base + i` (base 1000, or `$ARSL_KILL_SEED`),
  its own `random.Random`, and prints one line per kill point; a failure names the seed and the
  command that replays exactly that run (`ARSL_KILL_SEED=S ARSL_RELIABILITY_RUNS=1 pytest …`).
- `Processes`: the `arsl` processes a test starts in the background, killed by pid on teardown (the
  gateway and training jobs, detached by design, are stopped by their fixtures through their records).
- `wait_for`: poll a condition with a deadline (the only way these tests wait for anything).
- Checks: `assert_sqlite_intact` (PRAGMA integrity_check), `assert_journal_agrees_with_store` (upload),
  `canary_snapshot` / `assert_gateway_matches_record` / `assert_canary_ended_cleanly` (canary).
- `Traffic` and `CanaryStage`: clients that follow the gateway through restarts, and one home's canary
  as the tests drive it (the CLI, the state file, the registry, the gateway's own answers).
- `Tmux`: the console in a private tmux server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from arsl_tui.domain.canary import ActionKind, CanaryRun, Phase
from arsl_tui.domain.ports import ObjectStore
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.db import state_path
from tests.fixtures.cli import arsl
from tests.reliability.conftest import reliability_runs

if TYPE_CHECKING:
    from arsl_tui.ops.registry import ModelRegistry
    from arsl_tui.providers.local.serving_control import ProcessRecord

ROOT = Path(__file__).resolve().parents[2]
SEED_VARIABLE = "ARSL_KILL_SEED"
DEFAULT_BASE_SEED = 1000
POLL_S = 0.005
"""Interval of a bounded poll: short, so a progress point is seen within a few milliseconds."""

T = TypeVar("T")


# --- seeded runs ----------------------------------------------------------------------------------


@dataclass
class LoopRun:
    loop: str
    index: int
    runs: int
    seed: int
    rng: random.Random
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """Record (and print) what this run did: the kill point chosen, where the kill landed, the outcome."""
        self.notes.append(text)
        print(f"[{self.loop}] run {self.index + 1}/{self.runs} seed {self.seed}: {text}", flush=True)


@dataclass
class KillLoop:
    """The seeded runs of one loop, with a summary line for the README's reliability table."""

    name: str
    default_runs: int
    test_id: str
    done: list[LoopRun] = field(default_factory=list)
    tallies: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def __iter__(self) -> Iterator[LoopRun]:
        runs = reliability_runs(self.default_runs)
        text = os.environ.get(SEED_VARIABLE, "").strip()
        try:
            base = int(text) if text else DEFAULT_BASE_SEED
        except ValueError:
            raise AssertionError(f"{SEED_VARIABLE}={text!r}: expected a whole number") from None
        for index in range(runs):
            seed = base + index
            run = LoopRun(self.name, index, runs, seed, random.Random(f"{self.name}:{seed}"))
            yield run
            self.done.append(run)

    @contextlib.contextmanager
    def replayable(self, run: LoopRun) -> Iterator[None]:
        """Re-raise a failure with the seed, what the run did so far and the command that replays it."""
        try:
            yield
        except Exception as error:
            lines = "\n".join(f"    {note}" for note in run.notes)
            raise AssertionError(
                f"[{self.name}] run {run.index + 1}/{run.runs} failed with seed {run.seed}:\n{lines}\n"
                f"  replay: {SEED_VARIABLE}={run.seed} ARSL_RELIABILITY_RUNS=1 .venv/bin/python -m pytest -q "
                f"-p no:cacheprovider -s '{self.test_id}'\n  {type(error).__name__}: {error}"
            ) from error

    def count(self, what: str, amount: int = 1) -> None:
        self.tallies[what] += amount

    def summary(self) -> str:
        seeds = [run.seed for run in self.done]
        tallies = ", ".join(f"{name} {count}" for name, count in sorted(self.tallies.items()))
        line = (
            f"[{self.name}] {len(self.done)} runs (seeds {seeds[0] if seeds else '-'}…"
            f"{seeds[-1] if seeds else '-'}) in {time.monotonic() - self.started:.0f} s: {tallies}"
        )
        print(line, flush=True)
        return line


# --- processes ------------------------------------------------------------------------------------


def clean_env(home: Path, **settings: str) -> dict[str, str]:
    """This environment without the caller's ARSL_* settings, with `home` and `settings` (ARSL_* names)."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    environment["ARSL_HOME"] = str(home)
    environment["PYTHONPATH"] = os.pathsep.join(part for part in (str(ROOT), environment.get("PYTHONPATH", "")) if part)
    environment.update(settings)
    return environment


def json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def last_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = json_lines(result.stdout)
    assert lines, f"no JSON from arsl (exit {result.returncode}): {result.stderr[-2000:]}"
    return lines[-1]


@dataclass
class Processes:
    """The `arsl` processes a test started in the background, each killed by its pid when the test ends."""

    popens: list[subprocess.Popen[Any]] = field(default_factory=list)

    def arsl(self, env: Mapping[str, str], cwd: Path, *args: str, output: Path) -> subprocess.Popen[bytes]:
        """The real `arsl` CLI in the background; stdout and stderr go to `output` (never a pipe that could fill)."""
        with output.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "arsl_tui", *args],
                env=dict(env),
                cwd=cwd,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.popens.append(process)
        return process

    def close(self) -> None:
        for process in self.popens:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=30)


def sigkill(pid: int) -> bool:
    """SIGKILL `pid`; False if it had ended already."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = 60.0, interval: float = POLL_S) -> T:
    """Poll `condition` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # the polling interval of a bounded wait, not a delay standing in for an event


def seeded_pause(seconds: float) -> None:
    """The extra delay a seed chose as part of a kill point (the kill point itself, not synchronisation)."""
    if seconds > 0:
        time.sleep(seconds)


# --- SQLite ---------------------------------------------------------------------------------------


def query(path: Path, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows from the state file, on a connection of its own (closed at once); none while it does not exist."""
    if not path.is_file():
        return []  # connecting would create it, before the program under test does
    connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=15)
    try:
        return connection.execute(sql, tuple(parameters)).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []
        raise
    finally:
        connection.close()


def assert_sqlite_intact(path: Path) -> None:
    """`PRAGMA integrity_check` says ok and every foreign key holds."""
    assert path.is_file(), f"{path} is missing"
    assert query(path, "PRAGMA integrity_check") == [("ok",)], f"{path}: integrity_check failed"
    assert query(path, "PRAGMA foreign_key_check") == [], f"{path}: a foreign key is broken"


# --- upload ---------------------------------------------------------------------------------------


def journal_objects(db: Path) -> dict[str, tuple[str, str, int]]:
    """key → (state, md5, size) of every object the upload journal knows."""
    return {
        str(key): (str(state), str(md5), int(size))
        for key, state, md5, size in query(db, "SELECT key, state, md5, size FROM upload_objects")
    }


def confirmed_count(db: Path) -> int:
    rows = query(db, "SELECT COUNT(*) FROM upload_objects WHERE state = 'confirmed'")
    return int(rows[0][0]) if rows else 0


def assert_journal_agrees_with_store(db: Path, store: ObjectStore, prefix: str) -> dict[str, tuple[str, str, int]]:
    """Every confirmed object is in the store, whole; nothing is in the store the journal never sent.

    Returns the journal (key → state, md5, size).
    """
    journal = journal_objects(db)
    stored = {info.key: info for info in store.list(prefix)}
    manifest = prefix + "manifest.json"
    staged = prefix + ".manifest.json.staged"
    for key, (state, md5, size) in journal.items():
        if state == "confirmed" and not (key == staged and manifest in stored):
            # The staged manifest is removed once copied to manifest.json, and only then.
            assert key in stored, f"the journal confirms {key} but the store lacks it"
        if key in stored:
            data = store.get_bytes(key)
            assert (hashlib.md5(data).hexdigest(), len(data)) == (md5, size), f"{key} is stored torn or wrong"
    for key in stored:
        if key == manifest:
            continue
        assert key in journal, f"{key} is in the store but not in the journal"
        assert journal[key][0] in ("sent", "confirmed"), f"{key} is stored while the journal says still pending"
    if manifest in stored:
        missing = [key for key in journal if key not in (manifest, staged) and key not in stored]
        assert not missing, f"manifest.json was written before {missing[:3]}"
        assert hashlib.md5(store.get_bytes(manifest)).hexdigest() == journal[staged][1], "not the staged manifest"
    return journal


# --- canary ---------------------------------------------------------------------------------------


def weights_key(weights: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """A split without its zero weights (a version at 0 % is not routed to)."""
    return tuple(sorted((str(version), int(weight)) for version, weight in weights.items() if int(weight)))


@dataclass(frozen=True)
class CanarySnapshot:
    run: CanaryRun | None
    journal: list[dict[str, Any]]
    actions: dict[str, tuple[str, str]]
    """action id → (kind, outcome) of every action with a recorded outcome."""
    decided: dict[str, dict[str, Any]]
    """action id → the action as its decision recorded it (kind, weights, …), for every decision."""

    @property
    def rows(self) -> int:
        return len(self.journal) + len(self.actions)


def canary_snapshot(db: Path, run_id: str | None = None) -> CanarySnapshot:
    """The current canary run (or `run_id`), its journal, its actions' outcomes and every action it decided."""
    if run_id is None:
        current = query(db, "SELECT run_id FROM canary_current WHERE id = 1")
        if not current:
            return CanarySnapshot(None, [], {}, {})
        run_id = str(current[0][0])
    records = query(db, "SELECT record FROM canary_runs WHERE run_id = ?", (run_id,))
    run = CanaryRun.from_json(json.loads(records[0][0])) if records else None
    journal, decided = [], {}
    lines = query(
        db,
        "SELECT run_seq, event, from_phase, to_phase, actions FROM canary_journal WHERE run_id = ? ORDER BY seq",
        (run_id,),
    )
    for seq, event, from_phase, to_phase, actions in lines:
        journal.append({"seq": seq, "event": event, "from": from_phase, "to": to_phase})
        for action in json.loads(actions)["actions"]:
            decided[action["id"]] = action
    if run is not None:
        for action in run.pending:
            decided.setdefault(action.id, action.to_json())
    outcomes = {
        str(action_id): (str(kind), str(outcome))
        for action_id, kind, outcome in query(
            db, "SELECT action_id, kind, outcome FROM canary_actions WHERE run_id = ?", (run_id,)
        )
    }
    return CanarySnapshot(run, journal, outcomes, decided)


_ROUTING = (ActionKind.DEPLOY, ActionKind.SET_WEIGHTS, ActionKind.FINALIZE)


def allowed_splits(snapshot: CanarySnapshot, before: Mapping[str, int]) -> set[tuple[tuple[str, int], ...]]:
    """The splits the record allows the gateway to route now.

    With no routing action pending: exactly the run's target. With some pending: the split the last
    completed routing action set (or `before`, the split before the run) or one of the pending ones —
    the kill may have landed after an effect and before its completion was written, never elsewhere.
    """
    run = snapshot.run
    assert run is not None
    pending = [action for action in run.pending if action.kind in _ROUTING]
    if not pending:
        return {weights_key(run.target_weights)}
    done = [
        action_id
        for action_id, (kind, outcome) in snapshot.actions.items()
        if outcome == "done" and ActionKind(kind) in _ROUTING
    ]
    last_done = max(done, key=_action_order, default=None)
    applied = snapshot.decided[last_done]["weights"] if last_done is not None else before
    return {weights_key(applied), *(weights_key(action.weights) for action in pending)}


def _action_order(action_id: str) -> tuple[int, int]:
    _run, seq, index = action_id.rsplit("-", 2)
    return int(seq), int(index)


def assert_gateway_matches_record(
    snapshot: CanarySnapshot, routed: Mapping[str, int], before: Mapping[str, int]
) -> None:
    """What the gateway routes is what the controller recorded (done, or decided and pending)."""
    allowed = allowed_splits(snapshot, before)
    assert weights_key(routed) in allowed, (
        f"the gateway routes {dict(routed)} but the canary record ({snapshot.run.phase.value if snapshot.run else None}"
        f", pending {[a.kind.value for a in snapshot.run.pending] if snapshot.run else []}) allows only "
        f"{sorted(allowed)}"
    )


def assert_canary_ended_cleanly(snapshot: CanarySnapshot, log_writers: Counter[str]) -> None:
    """An ended run: every decision once, in order; every action with exactly one outcome; each log entry once."""
    run = snapshot.run
    assert run is not None and run.phase.ended, f"the canary did not end: {run.phase if run else None}"
    assert not run.pending, f"actions left pending: {[action.id for action in run.pending]}"
    seqs = [entry["seq"] for entry in snapshot.journal if entry["event"] != "hold"]
    assert seqs == list(range(1, len(seqs) + 1)), f"decisions out of order or repeated: {seqs}"
    assert snapshot.journal[-1]["event"] in ("promoted", "rolled_back", "failed", "deploy_failed"), snapshot.journal
    for action_id, action in snapshot.decided.items():
        assert action_id in snapshot.actions, f"{action['kind']} {action_id} was decided but has no outcome"
    for action_id, (kind, outcome) in snapshot.actions.items():
        assert outcome in ("done", "cancelled"), f"{kind} {action_id}: {outcome}"
        if kind == ActionKind.LOG.value and outcome == "done":
            assert log_writers[action_id] == 1, f"promotion-log entry {action_id} written {log_writers[action_id]}×"
    assert all(count == 1 for writer, count in log_writers.items() if writer.startswith(run.run_id + "-")), (
        "a canary transition was logged twice"
    )


def final_split(run: CanaryRun) -> dict[str, int]:
    return {run.challenger: 100} if run.phase is Phase.PROMOTED else {run.champion: 100}


CANARY_ENV = {
    "ARSL_CANARY_STEPS": "50,100",
    "ARSL_CANARY_WINDOW_S": "2",
    "ARSL_CANARY_MIN_SAMPLES": "12",
    "ARSL_CANARY_MIN_FEEDBACK": "8",
    "ARSL_CANARY_POLL_S": "0.2",
    "ARSL_CANARY_MAX_P95_LATENCY_MS": "5000",
    "ARSL_CANARY_SHADOW": "false",  # the kill loops count the traffic steps' records
    "ARSL_GATEWAY_PORT": "0",
    "ARSL_GATEWAY_TORCH_THREADS": "1",
    "ARSL_GATEWAY_API_CALL_LIMIT": "1000000",
    "ARSL_GATEWAY_APP_CALL_LIMIT": "1000000",
    "ARSL_GATEWAY_TIME_UNIT": "SECOND",
}
CLIENT_ERRORS = ("ConnectError", "ReadError", "RemoteProtocolError", "ReadTimeout", "ConnectTimeout", "WriteError")


def gateway_record(home: Path) -> ProcessRecord | None:
    """The live gateway's process record, read without writing to the state file (clients poll it often)."""
    from arsl_tui.providers.local.serving_control import ProcessRecord

    rows = query(state_path(home), "SELECT pid, start_ticks, host, port, started_at FROM serving_process WHERE id = 1")
    if not rows:
        return None
    record = ProcessRecord(int(rows[0][0]), int(rows[0][1]), str(rows[0][2]), int(rows[0][3]), float(rows[0][4]))
    return record if record.alive else None


@dataclass
class Traffic:
    """Clients in threads of the test: predict, then send the true label. They follow the gateway through a
    restart (a new port) by re-reading its process record, and count every answer and every refused connection."""

    home: Path
    key: str
    images: list[bytes]
    labels: list[str]
    statuses: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def endpoint(self) -> str | None:
        record = gateway_record(self.home)
        return record.endpoint if record is not None else None

    def start(self, clients: int = 3) -> None:
        for number in range(clients):
            thread = threading.Thread(target=self._run, args=(number,), name=f"client-{number}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _count(self, what: str) -> None:
        with self.lock:
            self.statuses[what] += 1

    def _run(self, number: int) -> None:
        import httpx

        from arsl_tui.serving.auth import HEADER

        index = number
        while not self.stop.is_set():
            endpoint = self.endpoint()
            if endpoint is None:
                self._count("no gateway")
                self.stop.wait(0.05)  # pacing while the gateway is down: nothing to send to
                continue
            with httpx.Client(base_url=endpoint, trust_env=False, timeout=30, headers={HEADER: self.key}) as client:
                while not self.stop.is_set():
                    image = index % len(self.images)
                    index += 1
                    try:
                        response = client.post(
                            "/v1/predict", content=self.images[image], headers={"Content-Type": "image/jpeg"}
                        )
                        self._count(str(response.status_code))
                        if response.status_code == 200:
                            client.post(
                                "/v1/feedback",
                                json={"request_id": response.json()["request_id"], "label": self.labels[image]},
                            )
                    except httpx.HTTPError as error:
                        self._count(type(error).__name__)
                        break  # the gateway went away: find it again

    def count(self, what: str) -> int:
        with self.lock:
            return self.statuses[what]

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@dataclass
class CanaryStage:
    home: Path
    root: Path
    env: dict[str, str]
    traffic: Traffic

    @property
    def db(self) -> Path:
        return state_path(self.home)

    def arsl(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return arsl(self.env, self.root, *args, timeout=timeout)

    def registry(self) -> ModelRegistry:
        from arsl_tui.ops.registry import ModelRegistry

        return ModelRegistry(LocalObjectStore(self.home / "store" / "arsl-ml"), "models/")

    def routed(self) -> dict[str, int]:
        """The split the running gateway routes now (its own health answer)."""
        import httpx

        endpoint = self.traffic.endpoint()
        assert endpoint is not None, "no gateway is running"
        body = httpx.get(endpoint + "/v1/health", trust_env=False, timeout=30).json()
        return {str(version): int(weight) for version, weight in body["weights"].items()}

    def gateway_pid(self) -> int | None:
        record = gateway_record(self.home)
        return record.pid if record is not None else None

    def stored_weights(self) -> tuple[int, dict[str, int]]:
        """(changes so far, the weights the gateway starts with) from the serving state."""
        rows = query(self.db, "SELECT deployment FROM serving_deployment WHERE id = 1")
        changes = query(self.db, "SELECT COUNT(*) FROM serving_changes")
        weights = json.loads(rows[0][0])["weights"] if rows else {}
        return int(changes[0][0]), {str(version): int(weight) for version, weight in weights.items()}

    def serve_champion_alone(self) -> str:
        deployed = self.arsl("deploy", "champion", "--yes", "--json")
        assert deployed.returncode == 0, deployed.stderr[-2000:]
        return str(json.loads(deployed.stdout)["version"])

    def start(self, challenger: str) -> str:
        started = self.arsl("canary", "start", challenger, "--yes", "--json")
        assert started.returncode == 0, started.stderr[-2000:]
        return str(last_json(started)["run_id"])

    def snapshot(self, run_id: str | None = None) -> CanarySnapshot:
        return canary_snapshot(self.db, run_id)

    def rows(self) -> int:
        """Journal lines and action outcomes of the current run: the canary's progress points."""
        return self.snapshot().rows

    def lock_is_free(self) -> bool:
        from arsl_tui.state.canary_store import CanaryStore

        store = CanaryStore.open(self.home)
        try:
            with store.lock(timeout_s=10):
                return True
        finally:
            store.close()

    def log_writers(self) -> Counter[str]:
        return Counter(entry.writer for entry in self.registry().log())


# --- the console in a terminal --------------------------------------------------------------------


class Tmux:
    """A private tmux server (its own socket) with one 80×24 session whose pane process is the console."""

    def __init__(self) -> None:
        self.socket = f"arsl-kill-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str, check: bool = True) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=check, capture_output=True, text=True, timeout=30
        ).stdout

    def start(self, command: str) -> None:
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "console", "-x", "80", "-y", "24", command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console", check=False)

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", "console", *(["-l"] if literal else []), *keys)

    def wait_text(self, text: str, timeout: float = 60.0) -> str:
        return wait_for(
            lambda: (lambda screen: screen if text in screen else None)(self.screen()),
            f"{text!r} on the console's screen",
            timeout=timeout,
            interval=0.05,
        )

    def pane_pid(self) -> int:
        return int(self.run("display-message", "-p", "-t", "console", "#{pane_pid}").strip())

    def alive(self) -> bool:
        return (
            subprocess.run(
                ["tmux", "-L", self.socket, "has-session", "-t", "console"], capture_output=True, timeout=30
            ).returncode
            == 0
        )

    def kill_server(self) -> None:
        self.run("kill-server", check=False)
        # A server whose only pane was killed exits without removing its socket: remove it here.
        folder = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (folder / self.socket).unlink(missing_ok=True)
