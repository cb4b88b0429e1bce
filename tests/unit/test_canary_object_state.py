"""Team-safe release state: two homes (two operators' `$ARSL_HOME`s) against one object store.

Each home runs the real controller on the real `ObjectCanaryStore` over the local directory object store
(`providers/local/store.py`, the same `ObjectStore` port as OBS), sharing one bucket, one registry and one
in-memory serving platform. Time is an injected clock: a holder "dies" by not renewing while the clock moves.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.canary import CanaryError, Command, Phase
from arsl_tui.domain.ports import LeaseHolder, ObjectStore
from arsl_tui.ops.canary import CanaryController
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.canary_store import ControllerBusy, LeaseHeld
from arsl_tui.state.object_canary_store import (
    CLOCK_MARGIN_S,
    LEASE_TTL_S,
    SNAPSHOT_EVERY,
    ControllerIdentity,
    ObjectCanaryStore,
    ObjectControllerLease,
)
from tests.fixtures.store_wrappers import ListingCounter, RacingStore
from tests.unit.test_canary_state import T0, FakePlatform, copy_registry

# The module-scoped fixture that registers v1..v3 once (registering is the slow part), shared with that module.
from tests.unit.test_canary_state import registry_template as registry_template

ANA = ControllerIdentity("a" * 32, "jump-1", 1111, "ana")
BO = ControllerIdentity("b" * 32, "jump-2", 2222, "bo")
ANA_SINCE = "ana@jump-1 (pid 1111) since 2023-11-14 22:13:20 UTC"  # T0


@dataclass
class Team:
    """One bucket, one service; each operator's home opens its own controller on it."""

    root: Path
    platform: FakePlatform = field(default_factory=lambda: FakePlatform({"v2": "good", "v3": "bad"}))
    now: float = T0

    def settings(self, home: str) -> Settings:
        return load_settings(
            None,
            environ={},
            cwd=self.root,
            cli_overrides={
                "home": str(self.root / home),
                "canary.steps": "25,100",
                "canary.window_s": 60,
                "canary.min_samples": 20,
                "canary.min_feedback": 10,
            },
        )

    def bucket(self) -> LocalObjectStore:
        return LocalObjectStore(self.root / "store")

    def state(self, home: str, identity: ControllerIdentity) -> ObjectCanaryStore:
        return ObjectCanaryStore(
            self.bucket(), "models/", "svc", home=self.root / home, user=identity.user, clock=lambda: self.now,
            identity=identity,
        )  # fmt: skip

    def controller(self, home: str, identity: ControllerIdentity) -> CanaryController:
        return CanaryController(
            self.settings(home),
            platform=self.platform,
            registry=ModelRegistry(self.bucket(), "models/", clock=lambda: self.now),
            store=self.state(home, identity),
            service="svc",
            user=identity.user,
            clock=lambda: self.now,
        )

    def end_window(self, controller: CanaryController) -> None:
        run = controller.current()
        assert run is not None and run.next_judgement_at is not None
        self.now = max(self.now, run.next_judgement_at) + 1


@pytest.fixture
def team(registry_template: Path, tmp_path: Path) -> Team:
    copy_registry(registry_template, tmp_path)
    return Team(root=tmp_path)


def test_a_second_home_sees_the_first_homes_release_live(team: Team) -> None:
    first, second = team.controller("home-ana", ANA), team.controller("home-bo", BO)
    assert second.status().run is None
    first.start("v2")
    seen = second.status()
    assert seen.run is not None and seen.run.run_id == first.current().run_id  # type: ignore[union-attr]
    assert (seen.phase, seen.run.step, seen.run.challenger) == (Phase.OBSERVING, 0, "v2")
    assert seen.platform is not None and dict(seen.platform.weights) == {"v1": 75, "v2": 25}
    assert seen.controller is not None and seen.controller.describe() == ANA_SINCE
    assert "ana@jump-1 (pid 1111)" in seen.controller_text() and seen.to_json()["controller"]["user"] == "ana"
    team.end_window(first)
    first.tick()  # the first window passes: step 2 of 2
    again = second.status()
    assert again.run is not None and again.run.step == 1 and len(again.run.judgements) == 1
    assert again.run.judgements[0]["judgement"]["outcome"] == "pass"
    assert [line["event"] for line in again.journal] == [line["event"] for line in first.status().journal]
    assert again.journal[-1]["event"] == "step"
    # A brand-new console (no cache in memory) reads the same release.
    third = team.controller("home-cy", ControllerIdentity("c" * 32, "jump-3", 3333, "cy"))
    assert third.status(live=False).to_json()["judgements"] == again.to_json()["judgements"]
    for controller in (first, second, third):
        controller.close()


def test_a_second_controller_is_refused_naming_the_holder_and_since(team: Team) -> None:
    first, second = team.controller("home-ana", ANA), team.controller("home-bo", BO)
    run = first.start("v2")
    calls = list(team.platform.calls)
    team.now += 20
    for attempt in (lambda: second.command(Command.PROMOTE), second.tick, lambda: second.start("v3")):
        with pytest.raises(LeaseHeld) as refused:
            attempt()
        assert ANA_SINCE in str(refused.value) and refused.value.holder.user == "ana"
        assert "renewed 20 s ago" in str(refused.value)
    assert team.platform.calls == calls  # nothing acted
    assert first.current() == run  # nothing written
    # The holder's own processes (another controller object on the same home) are the same controller.
    same_home = team.controller("home-ana", ANA)
    assert same_home.command(Command.PROMOTE).step == 1
    for controller in (first, second, same_home):
        controller.close()


def test_a_dead_holders_lease_lapses_and_is_taken_over(team: Team) -> None:
    first, second = team.controller("home-ana", ANA), team.controller("home-bo", BO)
    first.start("v2")  # then the first host dies: no more renewals
    held = second.store.holder()
    assert held is not None and held.expires_at == T0 + LEASE_TTL_S
    team.now = T0 + LEASE_TTL_S + CLOCK_MARGIN_S - 1  # expired by the holder's clock, not past the margin
    with pytest.raises(LeaseHeld, match="within 1 s"):
        second.command(Command.PROMOTE)
    team.now = T0 + LEASE_TTL_S + CLOCK_MARGIN_S
    promoted = second.command(Command.PROMOTE)
    assert promoted.step == 1 and "by bo" in promoted.reason
    taken = second.store.holder()
    assert taken is not None and (taken.user, taken.since, taken.generation) == ("bo", team.now, held.generation + 1)
    # The first host comes back: it is now the second controller, refused naming the new holder.
    with pytest.raises(LeaseHeld, match=r"bo@jump-2 \(pid 2222\) since"):
        first.tick()
    assert first.status().controller == taken
    first.close()
    second.close()


def test_a_lapsed_holder_cannot_write_over_the_controller_that_took_over(team: Team) -> None:
    first, second = team.controller("home-ana", ANA), team.controller("home-bo", BO)
    run = first.start("v2")
    with first.store.lock():  # a decision that takes longer than the lease
        team.now = T0 + LEASE_TTL_S + CLOCK_MARGIN_S
        second.command(Command.PAUSE)
        with pytest.raises(ControllerBusy, match=r"bo@jump-2 \(pid 2222\) changed the release of svc"):
            first.store.save(run)
    current = first.current()
    assert current is not None and current.phase is Phase.PAUSED  # the new holder's write stands
    first.close()
    second.close()


def test_the_lease_is_renewed_at_half_its_life_and_released_when_the_release_ends(team: Team) -> None:
    first, second = team.controller("home-ana", ANA), team.controller("home-bo", BO)
    first.start("v2")
    lease = first.store.holder()
    assert lease is not None and lease.generation == 1
    team.now = T0 + LEASE_TTL_S / 2 - 1
    first.tick()
    assert first.store.holder() == lease  # fresh enough: no new generation
    team.now = T0 + LEASE_TTL_S / 2 + 1
    first.tick()
    renewed = first.store.holder()
    assert renewed is not None and renewed.generation == 2 and renewed.since == T0 and renewed.renewed_at == team.now
    team.end_window(first)
    first.tick()
    team.end_window(first)
    done = first.tick()
    assert done is not None and done.phase is Phase.PROMOTED and not done.pending
    assert first.store.holder() is None  # released: the next operator may start at once
    assert second.start("v3").challenger == "v3"
    assert second.store.holder() is not None and second.store.holder().user == "bo"  # type: ignore[union-attr]
    first.close()
    second.close()


def test_two_contenders_for_a_lapsed_lease_exactly_one_wins(team: Team) -> None:
    first = team.controller("home-ana", ANA)
    first.start("v2")
    first.close()
    team.now = T0 + LEASE_TTL_S + CLOCK_MARGIN_S + 1  # the holder died
    barrier = threading.Barrier(2)
    prefix = "models/releases/svc/lease/"
    outcomes: dict[str, LeaseHolder | LeaseHeld] = {}

    def contend(identity: ControllerIdentity) -> None:
        store = RacingStore(team.bucket(), barrier)
        lease = ObjectControllerLease(lambda: store, prefix, lambda: identity, clock=lambda: team.now)  # type: ignore[arg-type, return-value]
        try:
            outcomes[identity.user] = lease.acquire()
        except LeaseHeld as refused:
            outcomes[identity.user] = refused

    cy = ControllerIdentity("c" * 32, "jump-3", 3333, "cy")
    threads = [threading.Thread(target=contend, args=(identity,)) for identity in (BO, cy)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = {user: won for user, won in outcomes.items() if isinstance(won, LeaseHolder)}
    losers = {user: lost for user, lost in outcomes.items() if isinstance(lost, LeaseHeld)}
    assert len(winners) == 1 and len(losers) == 1, outcomes
    (winner,) = winners.values()
    (refusal,) = losers.values()
    assert refusal.holder == winner and "took the lease first" in str(refusal)
    assert f"{winner.user}@{winner.host}" in str(refusal)
    stored = ObjectControllerLease(team.bucket, prefix, lambda: ANA).holder()
    assert stored == winner and winner.generation == 2


def test_a_new_reader_starts_from_the_cache_and_never_trusts_one_ahead_of_the_chain(team: Team) -> None:
    first = team.controller("home-ana", ANA)
    first.start("v2")
    while (writes := len(list(team.bucket().list("models/releases/svc/events/")))) <= SNAPSHOT_EVERY:
        first.command(Command.PAUSE if first.current().phase is Phase.OBSERVING else Command.RESUME)  # type: ignore[union-attr]
    cache = json.loads(team.bucket().get_bytes("models/releases/svc/state.json"))
    assert cache["seq"] == SNAPSHOT_EVERY < writes
    expected = first.status(live=False).to_json()
    reader = team.controller("home-bo", BO)
    assert reader.status(live=False).to_json() == expected
    # A cache claiming more than the chain holds (a damaged or foreign one) is ignored: the chain is replayed.
    bogus = json.dumps({**cache, "seq": 10_000}).encode()
    bucket = team.bucket()
    bucket.put_bytes("models/releases/svc/state.json", bogus, hashlib.md5(bogus, usedforsecurity=False).hexdigest())
    fresh = team.controller("home-cy", ControllerIdentity("c" * 32, "jump-3", 3333, "cy"))
    assert fresh.status(live=False).to_json() == expected
    for controller in (first, reader, fresh):
        controller.close()


def toggle(controller: CanaryController) -> None:
    """Pause an observing release, or resume a paused one: a decision, so records are written."""
    run = controller.current()
    assert run is not None
    controller.command(Command.PAUSE if run.phase is Phase.OBSERVING else Command.RESUME)


def released_and_toggled(team: Team, times: int) -> CanaryController:
    """Ana's controller with v2 released and then paused or resumed `times` times."""
    controller = team.controller("home-ana", ANA)
    controller.start("v2")
    for _ in range(times):
        toggle(controller)
    return controller


def test_a_read_lists_only_the_records_written_since_the_last_one_it_knows(team: Team) -> None:
    first = released_and_toggled(team, 6)
    history = len(list(team.bucket().list("models/releases/svc/events/")))
    assert history > 6
    counter = ListingCounter(team.bucket(), "/events/")
    reader = ObjectCanaryStore(counter, "models/", "svc", home=team.root / "home-bo", user="bo", identity=BO)
    assert reader.current() == first.current()
    assert counter.listed == [history]  # the first read: the whole chain (no cache yet at this length)
    assert reader.current() == first.current()
    assert counter.listed[-1] == 1  # nothing new: only the record it already knew, to see that it is still there
    toggle(first)
    written = len(list(team.bucket().list("models/releases/svc/events/"))) - history
    assert reader.current() == first.current()
    assert counter.listed[-1] == 1 + written  # that one and the new ones, however long the history
    first.close()
    reader.close()


def test_a_reader_whose_last_record_is_gone_replays_the_chain_from_the_start(team: Team) -> None:
    first = released_and_toggled(team, 5)
    reader = team.state("home-bo", BO)
    assert reader.current() is not None and reader.current().phase is Phase.PAUSED  # type: ignore[union-attr]
    # The bucket's release folder is wiped and a shorter chain written from record 1 (a reset, or a restore
    # from an older copy): the record the reader's view ends at is gone.
    bucket = team.bucket()
    for info in list(bucket.list("models/releases/svc/")):
        bucket.delete(info.key)
    first.close()
    again = team.controller("home-cy", ControllerIdentity("c" * 32, "jump-3", 3333, "cy"))
    again.start("v3")
    assert reader.current() == again.current()
    assert reader.current().challenger == "v3"  # type: ignore[union-attr]
    again.close()
    reader.close()


def test_opening_reaches_no_store_and_an_unreachable_one_is_a_problem(team: Team) -> None:
    made: list[str] = []

    def unreachable() -> ObjectStore:
        made.append("store")
        from arsl_tui.domain.ports import TransientStoreError

        raise TransientStoreError("connection refused (obs://arsl-ml)")

    state = ObjectCanaryStore(
        unreachable, "models/", "svc", home=team.root / "home", user="ana", clock=lambda: team.now
    )
    assert made == []
    controller = CanaryController(
        team.settings("home"),
        platform=team.platform,
        registry=ModelRegistry(team.bucket(), "models/"),
        store=state,
        service="svc",
        user="ana",
        clock=lambda: team.now,
    )
    status = controller.status(live=False)
    assert status.run is None and status.state_unavailable
    assert "cannot read the release state at models/releases/svc/" in status.problems[0]
    assert not (team.root / "home" / "canary-controller.id").exists()  # reading writes nothing to the home


def test_a_homes_processes_are_one_controller_and_another_home_is_another(tmp_path: Path) -> None:
    first = ControllerIdentity.of_home(tmp_path / "home-ana", "ana")
    again = ControllerIdentity.of_home(tmp_path / "home-ana", "ana")
    other = ControllerIdentity.of_home(tmp_path / "home-bo", "bo")
    assert first.controller == again.controller != other.controller
    assert len(first.controller) == 32 and first.host and first.pid > 0
    (tmp_path / "home-cy").mkdir()
    (tmp_path / "home-cy" / "canary-controller.id").write_text("not an id\n")
    with pytest.raises(CanaryError, match="not a controller id"):
        ControllerIdentity.of_home(tmp_path / "home-cy", "cy")
