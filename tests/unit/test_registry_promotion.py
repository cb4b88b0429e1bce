"""A promoted challenger is no longer a challenger: in the replayed aliases, on every store read, and after
the next registration, with the promotion log unchanged (old logs replay as before)."""

from __future__ import annotations

import json
from pathlib import Path

from arsl_tui.domain.registry import PromotionLogEntry, replay
from arsl_tui.ops.registry import ModelRegistry
from arsl_tui.providers.local.store import LocalObjectStore
from tests.fixtures.registry_checks import register


def entry(seq: int, action: str, to: str, alias: str | None = None, source: str | None = None) -> PromotionLogEntry:
    return PromotionLogEntry(
        seq=seq,
        time="2026-01-01T10:00:00Z",
        user="ann",
        action=action,  # type: ignore[arg-type]
        to_version=to,
        from_version=source,
        alias=alias,
        reason="test",
    )


def promoted_log() -> list[tuple[str, PromotionLogEntry]]:
    """v1 registered (champion and challenger), v2 registered (challenger), then promoted by a canary."""
    entries = [
        entry(1, "register", "v1"),
        entry(2, "set_alias", "v1", "challenger"),
        entry(3, "set_alias", "v1", "champion"),
        entry(4, "register", "v2"),
        entry(5, "set_alias", "v2", "challenger", "v1"),
        entry(6, "canary", "v2", source="v1"),
        entry(7, "set_alias", "v2", "champion", "v1"),
    ]
    return [(f"log/{item.seq}", item) for item in entries]


def test_the_first_version_is_champion_and_challenger_and_a_promoted_one_only_champion() -> None:
    first = replay(promoted_log()[:3])
    assert first.aliases == {"challenger": "v1", "champion": "v1"}  # nothing to compare it with: it is both
    before = replay(promoted_log()[:6])
    assert before.aliases == {"challenger": "v2", "champion": "v1"}
    after = replay(promoted_log())
    assert after.aliases == {"champion": "v2"}
    assert after.alias_of("v2") == ["champion"] and after.alias_of("v1") == []
    assert after.positions == {"challenger": "v2", "champion": "v2"}  # where the next move must start


def test_the_next_registration_after_a_promotion_moves_the_challenger_from_where_the_log_left_it() -> None:
    log = [
        *promoted_log(),
        ("log/8", entry(8, "register", "v3")),
        ("log/9", entry(9, "set_alias", "v3", "challenger", "v2")),
    ]
    state = replay(log)
    assert state.aliases == {"challenger": "v3", "champion": "v2"}


def test_moving_the_champion_back_by_hand_shows_the_newer_version_as_challenger_again() -> None:
    state = replay([*promoted_log(), ("log/8", entry(8, "set_alias", "v1", "champion", "v2"))])
    assert state.aliases == {"challenger": "v2", "champion": "v1"}
    assert state.promoted == "v1"


def test_the_store_registry_reads_the_same_with_and_without_its_cache(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    registry = ModelRegistry(LocalObjectStore(root), "models/")
    register(registry, tmp_path / "scratch", 1)
    register(registry, tmp_path / "scratch", 2)
    registry.set_alias("champion", "v2", "canary c1: promoted after 4 steps", "ann")
    assert registry.aliases() == {"champion": "v2"}
    cache = root / "models" / "aliases.json"
    assert json.loads(cache.read_text())["promoted"] == "v2"

    fresh = ModelRegistry(LocalObjectStore(root), "models/")
    assert fresh.aliases() == {"champion": "v2"}
    stale = {key: value for key, value in json.loads(cache.read_text()).items() if key != "promoted"}
    cache.write_text(json.dumps(stale))  # a cache written before promotions were kept: replayed from the log
    assert ModelRegistry(LocalObjectStore(root), "models/").aliases() == {"champion": "v2"}

    third = register(fresh, tmp_path / "scratch", 3)
    assert third.version == "v3" and fresh.aliases() == {"challenger": "v3", "champion": "v2"}
    assert [item.describe() for item in fresh.log()][-2:] == ["registered v3", "challenger v2 → v3"]
