"""Team-safe release state on the real OBS adapter: two homes, each with its own `ObsClient` (two jump hosts),
against one loopback OBS that checks OBS's own signature, virtual-host addressing and clock on every request.

The OBS is the rehearsal's stand-in (`tests/huawei_rehearsal/obs_standin.py`): the contract server of
`tests/fixtures/obs_contract.py` with conditional creates. The contract server alone overwrites on every PUT,
as its page documents (OBS API reference `obs_04_0080` Uploading an Object - PUT lists no conditional-create
header), and `ObsObjectStore.put_if_absent` refuses such an endpoint after its probe; the stand-in answers
`x-obs-forbid-overwrite: true` on an existing key with 409 ObjectAlreadyExists, which the adapter requires.
Whether a real bucket honours it is what `arsl doctor` probes; this test cannot prove it.

The registry (not under test here) is a local directory store both homes share; the canary's records and
lease go through OBS. Lease times come from an injected clock (a holder "dies" by not renewing); the
requests' `Date` headers are real, so the server's 15-minute rule still applies.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arsl_tui.cli import main
from arsl_tui.config import CanarySettings, HuaweiSettings, Settings, StorageSettings
from arsl_tui.domain.canary import Command, Phase
from arsl_tui.domain.ports import LeaseHolder, ObjectStore
from arsl_tui.ops.canary import CanaryController
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.huawei.obs import ObsObjectStore
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.canary_store import LeaseHeld
from arsl_tui.state.object_canary_store import (
    CLOCK_MARGIN_S,
    LEASE_TTL_S,
    ControllerIdentity,
    ObjectCanaryStore,
    ObjectControllerLease,
)
from tests.fixtures.obs_contract import loopback_dns
from tests.fixtures.store_wrappers import RacingStore
from tests.huawei_rehearsal.obs_standin import ObsStandin
from tests.providers.conftest import FAKE_CREDENTIALS, closed_port
from tests.unit.test_canary_state import T0, FakePlatform, copy_registry

# The module-scoped fixture that registers v1..v3 once, shared with the unit tests of the canary.
from tests.unit.test_canary_state import registry_template as registry_template

BUCKET = "arsl-ml"
REGION = "cn-north-4"
ANA = ControllerIdentity("a" * 32, "jump-1", 1111, "ana")
BO = ControllerIdentity("b" * 32, "jump-2", 2222, "bo")
LEASES = "models/releases/arsl-svc/lease/"


@pytest.fixture
def obs(tmp_path: Path) -> Iterator[ObsStandin]:
    credentials = {FAKE_CREDENTIALS.access_key: FAKE_CREDENTIALS.secret_key}
    server = ObsStandin(root=tmp_path / "obs", credentials=credentials, buckets=(BUCKET,), region=REGION).start()
    try:
        with loopback_dns():
            yield server
    finally:
        server.stop()


class Hosts:
    """Two operators' homes on one bucket; each home builds its OBS client as production does."""

    def __init__(self, obs: ObsStandin, root: Path) -> None:
        self.obs = obs
        self.root = root
        self.platform = FakePlatform({"v2": "good"})
        self.now = T0
        self.clients: list[ObsObjectStore] = []

    def settings(self, home: str) -> Settings:
        return Settings(
            backend="huawei",
            home=str(self.root / home),
            huawei=HuaweiSettings(region=REGION, obs_endpoint=self.obs.endpoint, timeout_s=5.0),
            storage=StorageSettings(bucket=BUCKET),
            canary=CanarySettings(steps=(25, 100), window_s=60, min_samples=20, min_feedback=10),
        )

    def client(self, home: str) -> ObsObjectStore:
        made = ObsObjectStore.from_settings(self.settings(home), credentials=FAKE_CREDENTIALS, max_retry_count=0)
        self.clients.append(made)
        return made

    def controller(self, home: str, identity: ControllerIdentity) -> CanaryController:
        state = ObjectCanaryStore(
            lambda: self.client(home), "models/", "arsl-svc", home=self.root / home, user=identity.user,
            clock=lambda: self.now, identity=identity,
        )  # fmt: skip
        return CanaryController(
            self.settings(home),
            platform=self.platform,
            registry=ModelRegistry(LocalObjectStore(self.root / "store"), "models/", clock=lambda: self.now),
            store=state,
            service="arsl-svc",
            user=identity.user,
            clock=lambda: self.now,
        )

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def hosts(obs: ObsStandin, registry_template: Path, tmp_path: Path) -> Iterator[Hosts]:
    copy_registry(registry_template, tmp_path)
    made = Hosts(obs, tmp_path)
    yield made
    made.close()


def test_two_homes_share_the_release_and_one_controller_over_obs(hosts: Hosts, obs: ObsStandin) -> None:
    first, second = hosts.controller("home-ana", ANA), hosts.controller("home-bo", BO)
    started = first.start("v2")
    seen = second.status()
    assert seen.run is not None and (seen.run.run_id, seen.phase) == (started.run_id, Phase.OBSERVING)
    assert seen.controller is not None and seen.controller.user == "ana"
    # The second controller is refused, naming the holder and since when; nothing is written.
    with pytest.raises(LeaseHeld, match=r"ana@jump-1 \(pid 1111\) since 2023-11-14 22:13:20 UTC holds the lease"):
        second.command(Command.PROMOTE)
    assert first.current() == started
    # The first window passes; the second console sees the verdict live.
    assert started.next_judgement_at is not None
    hosts.now = started.next_judgement_at + 1
    first.tick()
    live = second.status(live=False)
    assert live.run is not None and live.run.step == 1 and live.run.judgements[-1]["judgement"]["outcome"] == "pass"
    # The first host dies; once its lease has lapsed the second takes over and finishes the release.
    lease = second.store.holder()
    assert lease is not None
    hosts.now = lease.expires_at + CLOCK_MARGIN_S
    promoted = second.command(Command.PROMOTE_FULL)
    assert promoted.phase is Phase.PROMOTED and hosts.platform.weights == {"v2": 100}
    assert second.store.holder() is None  # released with the release done
    # Every request passed OBS's checks (signature, host, clock); the only refusals are documented answers:
    # the adapter's conditional-create probe (409) and the replay cache not written yet (404).
    every = [request for request in obs.requests if "/models/releases/arsl-svc/" in request.target]
    assert every and {request.code for request in every if request.status >= 400} <= {
        "ObjectAlreadyExists",
        "NoSuchKey",
    }
    first.close()
    second.close()


def test_two_contenders_for_a_lapsed_lease_over_obs_exactly_one_wins(hosts: Hosts, obs: ObsStandin) -> None:
    first = hosts.controller("home-ana", ANA)
    first.start("v2")  # then its host dies
    first.close()
    hosts.now = T0 + LEASE_TTL_S + CLOCK_MARGIN_S + 1
    barrier = threading.Barrier(2)
    outcomes: dict[str, LeaseHolder | LeaseHeld] = {}

    cy = ControllerIdentity("c" * 32, "jump-3", 3333, "cy")
    clients = {identity.user: hosts.client(f"home-{identity.user}") for identity in (BO, cy)}
    for client in clients.values():
        # Each adapter probes conditional creates on its first one: done before the race, outside the barrier.
        client.verify_conditional_create(LEASES + "probe")

    def contend(identity: ControllerIdentity) -> None:
        store: ObjectStore = RacingStore(clients[identity.user], barrier)
        lease = ObjectControllerLease(lambda: store, LEASES, lambda: identity, clock=lambda: hosts.now)
        try:
            outcomes[identity.user] = lease.acquire()
        except LeaseHeld as refused:
            outcomes[identity.user] = refused

    threads = [threading.Thread(target=contend, args=(identity,)) for identity in (BO, cy)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [won for won in outcomes.values() if isinstance(won, LeaseHolder)]
    losers = [lost for lost in outcomes.values() if isinstance(lost, LeaseHeld)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert losers[0].holder == winners[0] and "took the lease first" in str(losers[0])
    assert ObjectControllerLease(lambda: hosts.client("home-ana"), LEASES, lambda: ANA).holder() == winners[0]
    lease_refusals = [r for r in obs.refusals() if LEASES + "00000002.json" in r.target]
    assert [r.code for r in lease_refusals] == ["ObjectAlreadyExists"]  # the server decided


def test_the_cli_of_a_second_home_shows_the_release_and_its_promote_is_refused(
    hosts: Hosts, obs: ObsStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`arsl canary status|promote --backend huawei` from another `$ARSL_HOME`, as an operator on host B runs them."""
    hosts.now = time.time()  # the CLI reads the lease with the real clock: the first host's must be real too
    first = hosts.controller("home-ana", ANA)
    started = first.start("v2")
    holder = first.store.holder()
    assert holder is not None
    config = tmp_path / "config.toml"
    config.write_text(
        f'[huawei]\nregion = "{REGION}"\nobs_endpoint = "{obs.endpoint}"\n'
        f'modelarts_endpoint = "http://127.0.0.1:{closed_port()}"\nservice_name = "arsl-svc"\ntimeout_s = 5.0\n'
        f'[storage]\nbucket = "{BUCKET}"\n',
        encoding="utf-8",
    )
    for name in [name for name in os.environ if name.startswith(("HUAWEICLOUD_", "OBS_", "ARSL_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ARSL_CONFIG", str(config))
    monkeypatch.setenv("ARSL_HOME", str(tmp_path / "home-bo"))
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", FAKE_CREDENTIALS.access_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", FAKE_CREDENTIALS.secret_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", "0" * 32)
    assert main(["canary", "status", "--json", "--backend", "huawei"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["run_id"], shown["phase"], shown["step"]) == (started.run_id, "observing", 1)
    assert shown["controller"]["user"] == "ana" and shown["controller"]["host"] == "jump-1"
    assert main(["canary", "promote", "--yes", "--backend", "huawei"]) == 1
    refused = capsys.readouterr().err
    assert "another canary controller drives the release of arsl-svc" in refused
    assert holder.describe() in refused and holder.describe().startswith("ana@jump-1 (pid 1111) since ")
    assert first.current() == started
    first.close()
