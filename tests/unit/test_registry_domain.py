"""The registry's pure rules: version names and numbering, what a registration moves, alias moves, the log."""

from __future__ import annotations

import math
from typing import Any

import pytest

from arsl_tui.domain.registry import (
    AliasMoveError,
    Lineage,
    LogConsistencyError,
    ModelVersion,
    PackageFile,
    PromotionLogEntry,
    RecordFormatError,
    RegistryError,
    RegistryState,
    VersionFormatError,
    format_version,
    next_version,
    parse_version,
    plan_alias_move,
    plan_registration,
    registration_action,
    replay,
)

T = "2026-01-02T03:04:05Z"


def register_all(state: RegistryState, version: str, action: Any = "register") -> tuple[RegistryState, list[str]]:
    """Append every entry a registration plans, as the ops layer does; returns the state and what moved."""
    moved = []
    while entry := plan_registration(state, version, action, user="ann", time=T, reason="r", writer="w"):
        state = state.apply(entry)
        moved.append(entry.describe())
    return state, moved


def test_version_names_round_trip_and_bad_names_are_refused() -> None:
    assert parse_version("v12") == 12 and format_version(12) == "v12"
    for bad in ("v0", "v01", "12", "V3", "v-1", "v1.0", "", "champion"):
        with pytest.raises(VersionFormatError, match=r"is not a model version"):
            parse_version(bad)
    with pytest.raises(VersionFormatError):
        format_version(0)


def test_numbering_continues_past_the_highest_and_never_reuses_gaps() -> None:
    assert next_version([]) == "v1"
    assert next_version([1, 2, 5]) == "v6"
    assert next_version([10, 9]) == "v11"


def test_the_first_passing_version_becomes_challenger_and_champion() -> None:
    state, moved = register_all(RegistryState(), "v1")
    assert moved == ["registered v1", "challenger — → v1", "champion — → v1"]
    assert state.aliases == {"challenger": "v1", "champion": "v1"}
    assert state.seq == 3


def test_a_later_version_moves_only_the_challenger() -> None:
    state, _ = register_all(RegistryState(), "v1")
    state, moved = register_all(state, "v2")
    assert moved == ["registered v2", "challenger v1 → v2"]
    assert state.aliases == {"challenger": "v2", "champion": "v1"}


def test_a_slow_writer_never_moves_the_challenger_back_to_an_older_version() -> None:
    state, _ = register_all(RegistryState(), "v1")
    # v3's registration completed first; v2's writer appends its entries afterwards.
    state, _ = register_all(state, "v3")
    state, moved = register_all(state, "v2")
    assert moved == ["registered v2"]
    assert state.aliases["challenger"] == "v3"


def test_an_override_needs_a_reason_and_never_makes_a_champion_by_itself() -> None:
    assert registration_action("pass", None) == "register"
    with pytest.raises(RegistryError, match=r"needs an override with a reason"):
        registration_action("fail", None)
    with pytest.raises(RegistryError, match=r"needs an override with a reason"):
        registration_action("fail", "   ")
    assert registration_action("fail", "demo for the customer") == "override"
    state, moved = register_all(RegistryState(), "v1", action="override")
    assert moved == ["registered v1 despite a failed gate", "challenger — → v1"]
    assert "champion" not in state.aliases and state.overridden == {"v1"}


def test_manual_alias_moves_are_validated() -> None:
    state, _ = register_all(RegistryState(), "v1")
    state, _ = register_all(state, "v2")
    move = plan_alias_move(state, "champion", "v2", reason="canary passed", user="bob", time=T, writer="w")
    assert (move.from_version, move.to_version, move.seq, move.reason) == ("v1", "v2", state.seq + 1, "canary passed")
    for alias, version, reason, message in (
        ("production", "v2", "x", "unknown alias 'production'"),
        ("champion", "v9", "x", "v9 is not a registered version"),
        ("champion", "v2", "  ", "needs a reason"),
        ("champion", "v1", "x", "champion already points at v1"),
    ):
        with pytest.raises(AliasMoveError, match=message):
            plan_alias_move(state, alias, version, reason=reason, user="bob", time=T, writer="w")
    with pytest.raises(VersionFormatError):
        plan_alias_move(state, "champion", "latest", reason="x", user="bob", time=T, writer="w")


def test_replay_refuses_a_gap_and_a_move_that_does_not_start_where_the_alias_is() -> None:
    state, _ = register_all(RegistryState(), "v1")
    entries = [
        PromotionLogEntry(seq=1, time=T, user="a", action="register", to_version="v1"),
        PromotionLogEntry(seq=3, time=T, user="a", action="register", to_version="v2"),
    ]
    with pytest.raises(LogConsistencyError, match=r"expected entry 2 next, found entry 3"):
        replay([("log/1", entries[0]), ("log/3", entries[1])])
    forged = PromotionLogEntry(
        seq=state.seq + 1, time=T, user="a", action="set_alias", alias="champion", from_version="v7", to_version="v1"
    )
    with pytest.raises(LogConsistencyError, match=r"moves champion from v7, but the entries before it leave it at v1"):
        state.apply(forged, "models/log/00000004.json")
    twice = PromotionLogEntry(seq=state.seq + 1, time=T, user="a", action="register", to_version="v1")
    with pytest.raises(LogConsistencyError, match=r"registers v1 a second time"):
        state.apply(twice)


def sample_version(**changes: Any) -> ModelVersion:
    base = ModelVersion(
        version="v3",
        created_at=T,
        created_by="ann",
        lineage=Lineage(
            manifest_id="m1",
            job_id="job-1",
            backend="local",
            trainer_code_sha256="c" * 64,
            package_id="p" * 64,
            source="/out/model",
            trainer_version="0.1",
        ),
        gate={"verdict": "pass", "rules": []},
        metrics={"test_acc": 0.97, "test_loss": None, "per_class_acc": {"ain": 0.9, "al": None}},
        package=(PackageFile(path="config.json", key="models/packages/p/config.json", size=10, md5="a" * 32),),
        config={"weights": "model.safetensors"},
        writer="w1",
    )
    return ModelVersion(**{**base.__dict__, **changes})


def test_a_version_record_round_trips_and_gives_the_champion_figures() -> None:
    record = sample_version()
    again = ModelVersion.from_json(record.to_json(), "models/versions/v3.json")
    assert again == record and again.number == 3
    final = record.final_metrics()
    assert final is not None
    assert final.test_acc == 0.97 and math.isnan(final.test_loss)
    assert final.per_class_acc == {"ain": 0.9} and final.manifest_id == "m1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other/9"}, "format is 'other/9'"),
        ({"version": "3"}, "field 'version': '3' is not a model version"),
        ({"created_by": 7}, "field 'created_by' is 7, expected text"),
        ({"package": {"config.json": 1}}, "field 'package' is .*expected a list"),
        ({"lineage": None}, "field 'lineage' is None"),
    ],
)
def test_a_malformed_version_record_names_the_key_and_the_field(change: dict[str, Any], message: str) -> None:
    data = {**sample_version().to_json(), **change}
    with pytest.raises(RecordFormatError, match=f"^models/versions/v3.json: {message}"):
        ModelVersion.from_json(data, "models/versions/v3.json")


def test_a_log_entry_round_trips_and_a_bad_one_is_named() -> None:
    entry = PromotionLogEntry(
        seq=4,
        time=T,
        user="bob",
        action="set_alias",
        alias="champion",
        from_version="v1",
        to_version="v2",
        reason="canary passed",
        writer="w",
    )
    assert PromotionLogEntry.from_json(entry.to_json(), "k") == entry
    with pytest.raises(RecordFormatError, match=r"^k: action 'delete' is not one of"):
        PromotionLogEntry.from_json({**entry.to_json(), "action": "delete"}, "k")
    with pytest.raises(RecordFormatError, match=r"^k: alias 'prod' is not one of"):
        PromotionLogEntry.from_json({**entry.to_json(), "alias": "prod"}, "k")
    with pytest.raises(RecordFormatError, match=r"^k: field 'to': 'latest' is not a model version"):
        PromotionLogEntry.from_json({**entry.to_json(), "to": "latest"}, "k")
