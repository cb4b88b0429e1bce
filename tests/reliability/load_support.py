"""A real gateway process under paced load, for the reliability tests and `bench/gateway_soak.py`.

- `GatewayProcess`: the gateway as `arsl deploy` starts it (a detached `python -m arsl_tui.serving` on
  127.0.0.1, its own config file, a clean environment), driven through the same modules the canary
  controller uses (`LocalServingPlatform` for weights and stats); stopped by its pid.
- `PacedClient`: one API client in a thread (httpx), sending at most `rate` requests a second with
  whatever key it holds now; every request is recorded with when it was sent and answered.
- `RssSampler`: the gateway's VmRSS from /proc/<pid>/status, a few times a second.
- `run_scenario`: cycles of 0 → 10 → 50 → 100 → 0 % to the challenger, with key revocations and
  creations and a client that bursts past its rate limit in the middle of each cycle; `check`
  turns what was recorded into the list of requests that failed although they should have succeeded,
  and the figures the tests assert on and the soak bench prints.

Waiting in here is pacing (a client's next request, a sampler's next reading) on `Event.wait`,
never synchronisation: every condition a test depends on is polled with a deadline.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.serving import Deployment
from arsl_tui.ops import serving as serving_ops
from arsl_tui.providers.local.serving_control import LocalServingControl, ProcessRecord, models_dir
from arsl_tui.providers.local.serving_platform import SERVICE, LocalServingPlatform
from arsl_tui.serving.auth import HEADER

CHAMPION, CHALLENGER = "v1", "v2"
WEIGHT_PLAN = (0, 10, 50, 100, 0)
"""The challenger's share in each slot of a cycle (the canary's path: PUT /admin/weights)."""
CLIENT_TIMEOUT_S = 15.0
REVOKE_BOUND_S = 0.0
"""A revoked key is refused from the first request sent after `arsl gateway keys revoke` returned:
the gateway re-reads the key table whenever SQLite's data_version says another connection wrote it."""
LEDGER_BYTES_PER_ANSWER = 300
"""The feedback ledger's cost per remembered answer (240 B measured with tracemalloc, plus allocator slack);
it keeps the last `feedback.CAPACITY` answers."""
WINDOW_BYTES_PER_REQUEST = 13
"""A stats window's cost per routed request (`metrics.EventRing`: 8 + 4 + 1 bytes), up to WINDOW_EVENTS."""
SPLIT_Z = 4.5
"""Tolerance of a window's split: z standard deviations of the binomial (two-sided p ≈ 7e-6 per window)."""


# --- the gateway process --------------------------------------------------------------------------


def clean_environment() -> dict[str, str]:
    """This process's environment without ARSL_* settings (the config file alone configures the gateway)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}


def write_config(path: Path, gateway: Mapping[str, Any], extra: str = "") -> Path:
    def toml(value: Any) -> str:
        return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)

    lines = ["[gateway]", *(f"{key} = {toml(value)}" for key, value in gateway.items())]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


DEFAULT_GATEWAY = {
    "host": "127.0.0.1",
    "port": 0,
    "torch_threads": 1,
    "api_call_limit": 1_000_000,
    "app_call_limit": 25,
    "ip_call_limit": 0,
    "time_unit": "SECOND",
}
"""One torch thread (the tests' clients share the machine); 25 calls per second per key, burst 25.

A well-behaved client sends 10 a second, one request at a time, paced from when it sends: its bucket
could only run dry if its requests bunched at the gateway by more than (25 − 1) / 10 = 2.4 s of
latency variation; a bursting client outruns 25 a second even on a loaded machine."""


@dataclass
class GatewayProcess:
    root: Path
    home: Path
    config: Path
    record: ProcessRecord
    environment: dict[str, str]

    @classmethod
    def start(
        cls,
        root: Path,
        packages: Mapping[str, Path],
        deployment: Deployment,
        gateway: Mapping[str, Any] | None = None,
        extra_config: str = "",
    ) -> GatewayProcess:
        """Install the packages, store the deployment and start the gateway process; returns once it serves."""
        import shutil

        home = root / "home"
        for version, package in packages.items():
            target = models_dir(home) / version
            if not target.exists():
                shutil.copytree(package, target)
        config = write_config(root / "config.toml", {**DEFAULT_GATEWAY, **(gateway or {})}, extra_config)
        environment = clean_environment()
        control = LocalServingControl(home, config_path=str(config), environment=environment)
        try:
            control.state.save_deployment(deployment, "reliability test start")
            record = control.start()
        finally:
            control.close()
        return cls(root=root, home=home, config=config, record=record, environment=environment)

    @property
    def pid(self) -> int:
        return self.record.pid

    @property
    def url(self) -> str:
        return self.record.endpoint

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(
            str(self.config), environ={}, cwd=self.root, cli_overrides={"home": str(self.home), **overrides}
        )

    def control(self) -> LocalServingControl:
        return LocalServingControl(self.home, config_path=str(self.config), environment=self.environment)

    def platform(self) -> LocalServingPlatform:
        """The serving platform the canary controller drives (weights, stats) on this gateway."""
        return LocalServingPlatform(self.control, lambda version: models_dir(self.home) / version)

    def set_challenger_weight(self, weight: int, reason: str) -> None:
        self.platform().set_weights(SERVICE, {CHAMPION: 100 - weight, CHALLENGER: weight}, reason)

    def create_key(self, name: str) -> str:
        return serving_ops.create_key(self.settings(), name)

    def revoke_key(self, name: str) -> None:
        serving_ops.revoke_key(self.settings(), name)

    def rss_kb(self) -> int | None:
        return rss_kb(self.pid)

    def signal(self, number: signal.Signals) -> None:
        os.kill(self.pid, number)

    def alive(self) -> bool:
        return self.record.alive

    def stop(self) -> None:
        """SIGCONT (in case a test paused it), then the normal stop: SIGTERM, SIGKILL after the grace."""
        if not self.record.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)
        control = self.control()
        try:
            control.stop(grace_s=10.0)
        finally:
            control.close()


def rss_kb(pid: int) -> int | None:
    """VmRSS of `pid` in kB, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.02) -> float:
    """Poll `condition` until it holds; AssertionError after `timeout_s`. Returns the seconds it took."""
    started = time.monotonic()
    pause = threading.Event()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        pause.wait(step_s)
    return time.monotonic() - started


# --- clients --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One request as the client saw it (monotonic seconds)."""

    client: str
    key_name: str
    key_secret_id: int
    """Which issued key it carried (index into Recorder.keys), so a re-created name is a different key."""
    path: str
    sent: float
    answered: float
    status: int
    """HTTP status; 0 for a transport error (connection refused or reset, timeout)."""
    version: str | None = None
    error: str = ""
    retry_after: str | None = None


@dataclass
class KeyLife:
    name: str
    created_done: float
    revoke_started: float | None = None
    revoke_done: float | None = None


class Recorder:
    """Everything that happened, thread-safe: requests, keys, weight changes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[Sent] = []
        self.keys: list[KeyLife] = []
        self.weights: list[tuple[float, float, int]] = []
        """(change started, change done, challenger weight) in order."""

    def add(self, item: Sent) -> None:
        with self.lock:
            self.sent.append(item)

    def key_created(self, name: str, at: float) -> int:
        with self.lock:
            self.keys.append(KeyLife(name, at))
            return len(self.keys) - 1

    def snapshot(self) -> list[Sent]:
        with self.lock:
            return list(self.sent)


class PacedClient(threading.Thread):
    """Sends one request at a time, at most `rate` a second (a well-behaved client), with the key it holds now."""

    def __init__(
        self,
        name: str,
        url: str,
        images: Sequence[bytes],
        recorder: Recorder,
        rate: float,
        stop: threading.Event,
        path: str = "/v1/predict",
    ) -> None:
        super().__init__(name=f"client-{name}", daemon=True)
        self.client_name = name
        self.url, self.images, self.recorder, self.rate, self.stop_event, self.path = (
            url,
            images,
            recorder,
            rate,
            stop,
            path,
        )
        self._key: tuple[str, str, int] | None = None
        self._lock = threading.Lock()

    def hold(self, name: str | None, key: str | None = None, key_id: int = -1) -> None:
        """Use this key from the next request on (None: stop sending until given one)."""
        with self._lock:
            self._key = (name, key, key_id) if name is not None and key is not None else None

    def run(self) -> None:
        gap = 1.0 / self.rate
        next_at = time.monotonic()
        index = 0
        with httpx.Client(base_url=self.url, trust_env=False, timeout=CLIENT_TIMEOUT_S) as client:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if now < next_at:
                    self.stop_event.wait(next_at - now)  # pacing
                    continue
                # Never catch up after a slow answer: the rate bounds every interval, not just the average.
                next_at = max(next_at + gap, now)
                with self._lock:
                    held = self._key
                if held is None:
                    continue
                name, key, key_id = held
                image = self.images[index % len(self.images)]
                index += 1
                self.recorder.add(send(client, self.client_name, name, key, key_id, self.path, image))


def send(client: httpx.Client, who: str, name: str, key: str, key_id: int, path: str, image: bytes) -> Sent:
    sent = time.monotonic()
    try:
        if path == "/v1/predict":
            response = client.post(path, content=image, headers={HEADER: key, "Content-Type": "image/jpeg"})
        else:
            response = client.get(path, headers={HEADER: key})
    except httpx.HTTPError as error:
        return Sent(who, name, key_id, path, sent, time.monotonic(), 0, error=f"{type(error).__name__}: {error}")
    answered = time.monotonic()
    version = None
    error = ""
    if response.status_code == 200 and path == "/v1/predict":
        version = str(response.json().get("model_version"))
    elif response.status_code != 200:
        with contextlib.suppress(ValueError):
            error = str(response.json().get("code", ""))
    return Sent(
        who,
        name,
        key_id,
        path,
        sent,
        answered,
        response.status_code,
        version,
        error,
        response.headers.get("retry-after"),
    )


def burst(
    url: str,
    who: str,
    name: str,
    key: str,
    key_id: int,
    duration_s: float,
    recorder: Recorder,
    path: str = "/v1/model/info",
    connections: int = 12,
) -> tuple[float, float]:
    """A misbehaving client: back-to-back requests on `connections` connections for `duration_s`.

    Returns (first sent, last answered). Several connections, so that it outruns its limit even when a
    loaded machine slows each round trip down.
    """
    sent: list[float] = []
    answered: list[float] = []
    lock = threading.Lock()

    def hammer() -> None:
        with httpx.Client(base_url=url, trust_env=False, timeout=CLIENT_TIMEOUT_S) as client:
            started = time.monotonic()  # each connection's own start: a starved machine may start them late
            while time.monotonic() - started < duration_s:
                item = send(client, who, name, key, key_id, path, b"")
                recorder.add(item)
                with lock:
                    sent.append(item.sent)
                    answered.append(item.answered)

    workers = [threading.Thread(target=hammer, name=f"burst-{number}", daemon=True) for number in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(duration_s + CLIENT_TIMEOUT_S + 5)
    with lock:
        return (min(sent), max(answered)) if sent else (time.monotonic(), time.monotonic())


class RssSampler(threading.Thread):
    def __init__(self, pid: int, stop: threading.Event, every_s: float = 0.25) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.stop_event, self.every_s = pid, stop, every_s
        self.samples: list[tuple[float, int]] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            value = rss_kb(self.pid)
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self.stop_event.wait(self.every_s)  # pacing


# --- /metrics -------------------------------------------------------------------------------------


_REQUESTS = re.compile(
    r'^arsl_gateway_requests_total\{endpoint="([^"]+)",version="([^"]+)",code="(\d+)"\} (\S+)$', re.MULTILINE
)


def request_counters(url: str) -> Counter[tuple[str, str, int]]:
    """(endpoint, version, status) → requests answered, from the gateway's Prometheus text."""
    text = httpx.get(url + "/metrics", trust_env=False, timeout=CLIENT_TIMEOUT_S).text
    return Counter(
        {
            (endpoint, version, int(code)): int(float(value))
            for endpoint, version, code, value in _REQUESTS.findall(text)
        }
    )


# --- the scenario ---------------------------------------------------------------------------------


@dataclass
class ScenarioConfig:
    cycles: int = 1
    cycle_s: float = 20.0
    steady_clients: int = 6
    rate_per_client: float = 10.0
    burst_s: float = 1.5
    warmup_s: float = 5.0


@dataclass
class Scenario:
    config: ScenarioConfig
    recorder: Recorder
    started: float
    ended: float
    rss: list[tuple[float, int]]
    counters_before: Counter[tuple[str, str, int]]
    counters_after: Counter[tuple[str, str, int]]
    bursts: list[tuple[str, int, float, float]] = field(default_factory=list)
    """(key name, key id, first sent, last answered) of each burst."""
    well_behaved: frozenset[str] = frozenset()
    app_limit: int = 0


def run_scenario(
    gateway: GatewayProcess,
    images: Sequence[bytes],
    config: ScenarioConfig,
    app_limit: int = int(DEFAULT_GATEWAY["app_call_limit"]),
) -> Scenario:
    """Load the gateway for `config.cycles` cycles; each cycle changes weights and keys as the module says."""
    recorder = Recorder()
    stop = threading.Event()
    url = gateway.url

    def new_key(name: str) -> tuple[str, int]:
        secret = gateway.create_key(name)
        return secret, recorder.key_created(name, time.monotonic())

    def revoke(name: str) -> None:
        started = time.monotonic()
        gateway.revoke_key(name)
        done = time.monotonic()
        with recorder.lock:
            life = next(item for item in reversed(recorder.keys) if item.name == name and item.revoke_started is None)
            life.revoke_started, life.revoke_done = started, done

    def set_weight(weight: int) -> None:
        started = time.monotonic()
        gateway.set_challenger_weight(weight, f"reliability load: challenger at {weight}%")
        with recorder.lock:
            recorder.weights.append((started, time.monotonic(), weight))

    set_weight(WEIGHT_PLAN[0])
    clients: dict[str, PacedClient] = {}
    names = [f"steady-{number}" for number in range(config.steady_clients)] + ["rotating", "stolen", "heir"]
    for name in names:
        clients[name] = PacedClient(name, url, images, recorder, config.rate_per_client, stop)
    for name in names[:-1]:
        secret, key_id = new_key("shared" if name == "stolen" else name + "-0")
        clients[name].hold(recorder.keys[key_id].name, secret, key_id)
    counters_before = request_counters(url)
    sampler = RssSampler(gateway.pid, stop)
    sampler.start()
    started = time.monotonic()
    for client in clients.values():
        client.start()
    scenario = Scenario(
        config=config,
        recorder=recorder,
        started=started,
        ended=started,
        rss=sampler.samples,
        counters_before=counters_before,
        counters_after=Counter(),
        app_limit=app_limit,
        well_behaved=frozenset(names),
    )
    slot_s = config.cycle_s / len(WEIGHT_PLAN)
    pause = threading.Event()

    def at(offset_s: float) -> None:
        delay = started + offset_s - time.monotonic()
        if delay > 0:
            pause.wait(delay)  # the scenario's timetable

    try:
        for cycle in range(config.cycles):
            base = cycle * config.cycle_s
            events: list[tuple[float, Callable[[], None]]] = []
            for slot, weight in enumerate(WEIGHT_PLAN):
                if slot or cycle:
                    events.append((base + slot * slot_s, lambda weight=weight: set_weight(weight)))

            def rotate(cycle: int = cycle) -> None:
                secret, key_id = new_key(f"rotating-{cycle + 1}")
                clients["rotating"].hold(f"rotating-{cycle + 1}", secret, key_id)

            def reissue() -> None:
                secret, key_id = new_key("shared")
                clients["heir"].hold("shared", secret, key_id)

            def greedy(cycle: int = cycle) -> None:
                secret, key_id = new_key(f"greedy-{cycle}")
                first, last = burst(url, "greedy", f"greedy-{cycle}", secret, key_id, config.burst_s, recorder)
                scenario.bursts.append((f"greedy-{cycle}", key_id, first, last))

            events += [
                (base + 0.30 * config.cycle_s, lambda cycle=cycle: revoke(f"rotating-{cycle}")),
                (base + 0.45 * config.cycle_s, rotate),
                (base + 0.50 * config.cycle_s, lambda: revoke("shared")),
                (base + 0.65 * config.cycle_s, reissue),
                (base + 0.85 * config.cycle_s, greedy),
            ]
            for offset, action in sorted(events, key=lambda item: item[0]):
                at(offset)
                action()
        at(config.cycles * config.cycle_s)
    finally:
        stop.set()
        for client in clients.values():
            if client.is_alive():
                client.join(CLIENT_TIMEOUT_S + 5)
        sampler.join(5)
    scenario.ended = time.monotonic()
    scenario.counters_after = request_counters(url)
    return scenario


# --- checking what happened -----------------------------------------------------------------------


@dataclass
class Window:
    weight: int
    start: float
    """When the weight change that opened it returned."""
    end: float
    """When the next weight change began (or the end of the run)."""
    versions: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.versions.values())

    @property
    def challenger_share(self) -> float | None:
        return self.versions[CHALLENGER] / self.requests if self.requests else None

    def tolerance(self) -> float:
        """Allowed |observed − expected| challenger count: SPLIT_Z binomial sd, at least 1 (discreteness)."""
        p = self.weight / 100
        return max(1.0, SPLIT_Z * math.sqrt(self.requests * p * (1 - p)))


@dataclass
class Report:
    failures: list[str]
    windows: list[Window]
    statuses: Counter[str]
    requests: int
    duration_s: float
    rss_mb: dict[str, float]
    straddling_revocation: tuple[int, int]
    """(requests in flight while a key was revoked, of which refused)."""
    bursts: list[dict[str, Any]]
    latency_ms: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 2),
            "statuses": dict(self.statuses),
            "failures": self.failures[:50],
            "failure_count": len(self.failures),
            "rss_mb": self.rss_mb,
            "latency_ms": self.latency_ms,
            "in_flight_at_revocation": self.straddling_revocation[0],
            "in_flight_refused": self.straddling_revocation[1],
            "bursts": self.bursts,
            "windows": [
                {
                    "weight": window.weight,
                    "requests": window.requests,
                    "challenger": window.versions[CHALLENGER],
                    "expected": round(window.requests * window.weight / 100, 1),
                    "tolerance": round(window.tolerance(), 1),
                }
                for window in self.windows
            ],
        }


def retained_by_design_mb(answers: int, routed: Mapping[str, int]) -> float:
    """What the gateway keeps on purpose after `answers` successful predictions, `routed[version]` routed requests."""
    from arsl_tui.serving.feedback import CAPACITY
    from arsl_tui.serving.metrics import WINDOW_EVENTS

    ledger = min(answers, CAPACITY) * LEDGER_BYTES_PER_ANSWER
    windows = sum(min(count, WINDOW_EVENTS) * WINDOW_BYTES_PER_REQUEST for count in routed.values())
    return (ledger + windows) / 2**20


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1] if ordered else float("nan")


def check(scenario: Scenario, rss_slack_mb: float) -> Report:
    """Every request that failed although it should have succeeded, and the figures, from what was recorded.

    The gateway's RSS may grow after the warm-up by what it keeps by design for the requests it answered
    (`retained_by_design_mb`) plus `rss_slack_mb`; more is a leak.
    """
    recorder = scenario.recorder
    items = recorder.snapshot()
    failures: list[str] = []
    straddling = refused_in_flight = 0
    well_behaved = scenario.well_behaved

    def describe(item: Sent) -> str:
        return (
            f"{item.client} {item.path} with key {item.key_name!r}#{item.key_secret_id} sent at "
            f"{item.sent - scenario.started:.3f} s → {item.status or item.error}"
        )

    for item in items:
        life = recorder.keys[item.key_secret_id]
        revoked = life.revoke_started is not None
        if item.status == 0 or item.status >= 500:
            failures.append(f"{describe(item)}: transport error or 5xx")
            continue
        if item.status == 200:
            if revoked and life.revoke_done is not None and item.sent >= life.revoke_done + REVOKE_BOUND_S:
                failures.append(
                    f"{describe(item)}: accepted a key revoked "
                    f"{item.sent - life.revoke_done:.3f} s before the request was sent"
                )
            elif revoked:
                assert life.revoke_started is not None
                if item.answered > life.revoke_started:
                    straddling += 1
            continue
        if item.status == 401:
            if not revoked or item.answered < life.revoke_started:  # type: ignore[operator]
                failures.append(f"{describe(item)}: refused a key that was valid when the request was answered")
            elif item.sent < life.revoke_done:  # type: ignore[operator]
                straddling += 1
                refused_in_flight += 1
            continue
        if item.status == 429:
            if item.client in well_behaved:
                failures.append(f"{describe(item)}: a client within its rate limit was throttled")
            elif not item.retry_after or int(item.retry_after) < 1:
                failures.append(f"{describe(item)}: 429 without a Retry-After of at least 1 s")
            continue
        failures.append(f"{describe(item)}: unexpected status")

    # Each revocation was tested: its key was sent again after the revocation returned (and refused, above).
    for key_id, life in enumerate(recorder.keys):
        if life.revoke_done is not None and not any(
            item.key_secret_id == key_id and item.sent >= life.revoke_done for item in items
        ):
            failures.append(f"key {life.name!r}#{key_id} was revoked but never sent again: the check is vacuous")

    # The split per window: requests sent after a weight change returned and answered before the next began.
    windows: list[Window] = []
    changes = recorder.weights
    for index, (_started, done, weight) in enumerate(changes):
        end = changes[index + 1][0] if index + 1 < len(changes) else scenario.ended
        windows.append(Window(weight, done, end))
    predictions = [item for item in items if item.path == "/v1/predict" and item.status == 200]
    for item in predictions:
        for window in windows:
            if item.sent >= window.start and item.answered <= window.end:
                window.versions[item.version or "?"] += 1
                break
    for number, window in enumerate(windows):
        observed = window.versions[CHALLENGER]
        if window.weight in (0, 100):
            wrong = window.versions[CHAMPION] if window.weight == 100 else observed
            if wrong:
                failures.append(
                    f"window {number} at {window.weight}%: {wrong} requests went to the version with weight 0"
                )
        elif abs(observed - window.requests * window.weight / 100) > window.tolerance():
            failures.append(
                f"window {number} at {window.weight}%: {observed} of {window.requests} to the "
                f"challenger, expected {window.requests * window.weight / 100:.1f} ± "
                f"{window.tolerance():.1f}"
            )
        if window.requests < 20:
            failures.append(
                f"window {number} at {window.weight}%: only {window.requests} requests (too few to check the split)"
            )

    # Rate limits: a bursting key is held to the bucket (capacity + refill over its burst), and does get refused.
    bursts = []
    limit = scenario.app_limit
    for name, key_id, first, last in scenario.bursts:
        mine = [item for item in items if item.key_secret_id == key_id]
        accepted = sum(1 for item in mine if item.status == 200)
        refused = sum(1 for item in mine if item.status == 429)
        allowed = limit + limit * (last - first) + 1
        bursts.append(
            {
                "key": name,
                "sent": len(mine),
                "accepted": accepted,
                "refused": refused,
                "seconds": round(last - first, 3),
                "allowed_at_most": round(allowed, 1),
            }
        )
        if accepted > allowed:
            failures.append(
                f"burst {name}: {accepted} accepted in {last - first:.2f} s, more than the limit allows ({allowed:.0f})"
            )
        if len(mine) > allowed and refused == 0:
            failures.append(f"burst {name}: {len(mine)} requests in {last - first:.2f} s and none refused")
        if accepted < min(limit, len(mine)):
            failures.append(f"burst {name}: only {accepted} accepted, the bucket holds {limit}")
        if len(mine) <= limit:
            failures.append(
                f"burst {name}: only {len(mine)} requests, not past the limit of {limit} (the check is vacuous)"
            )

    # The gateway's own counters must match what the clients saw, request for request.
    seen: Counter[tuple[str, str, int]] = Counter()
    for item in items:
        if item.status:
            endpoint = "predict" if item.path == "/v1/predict" else "model_info"
            version = item.version if item.status == 200 and item.version else "none"
            seen[(endpoint, version, item.status)] += 1
    counted = scenario.counters_after - scenario.counters_before
    counted = Counter({key: value for key, value in counted.items() if key[0] in ("predict", "model_info")})
    if counted != seen:
        difference = {
            f"{key}": (counted.get(key, 0), seen.get(key, 0))
            for key in set(counted) | set(seen)
            if counted.get(key, 0) != seen.get(key, 0)
        }
        failures.append(f"/metrics disagrees with the clients (gateway, clients): {difference}")

    # Memory: growth after the warm-up, from the samples of the gateway's VmRSS.
    samples = scenario.rss
    warm_at = scenario.started + scenario.config.warmup_s
    before = [kb for at, kb in samples if at <= warm_at]
    after = [kb for at, kb in samples if at > warm_at]
    rss: dict[str, float] = {}
    if not before or not after:
        failures.append(f"RSS: {len(samples)} samples, not enough around the warm-up")
    else:
        routed = Counter(item.version or "?" for item in items if item.path == "/v1/predict" and item.status == 200)
        by_design = retained_by_design_mb(sum(routed.values()), routed)
        rss = {
            "start": round(samples[0][1] / 1024, 1),
            "after_warmup": round(before[-1] / 1024, 1),
            "max": round(max(after) / 1024, 1),
            "end": round(after[-1] / 1024, 1),
            "growth_after_warmup": round((max(after) - before[-1]) / 1024, 1),
            "kept_by_design": round(by_design, 1),
            "bound": round(by_design + rss_slack_mb, 1),
        }
        if rss["growth_after_warmup"] > rss["bound"]:
            failures.append(
                f"RSS grew {rss['growth_after_warmup']} MB after the warm-up, more than the "
                f"{by_design:.1f} MB kept by design + {rss_slack_mb} MB: {rss}"
            )
    latencies = [(item.answered - item.sent) * 1000 for item in predictions]
    latency = {
        "p50": round(_percentile(latencies, 50), 1),
        "p95": round(_percentile(latencies, 95), 1),
        "p99": round(_percentile(latencies, 99), 1),
        "max": round(max(latencies, default=float("nan")), 1),
    }
    statuses = Counter(str(item.status or item.error.split(":")[0]) for item in items)
    return Report(
        failures=failures,
        windows=windows,
        statuses=statuses,
        requests=len(items),
        duration_s=scenario.ended - scenario.started,
        rss_mb=rss,
        straddling_revocation=(straddling, refused_in_flight),
        bursts=bursts,
        latency_ms=latency,
    )


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "REVOKE_BOUND_S",
    "WEIGHT_PLAN",
    "GatewayProcess",
    "PacedClient",
    "Recorder",
    "Report",
    "RssSampler",
    "Scenario",
    "ScenarioConfig",
    "Sent",
    "check",
    "clean_environment",
    "request_counters",
    "retained_by_design_mb",
    "rss_kb",
    "run_scenario",
    "wait_until",
    "write_config",
]
