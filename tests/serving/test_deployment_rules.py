"""The pure deployment rules (domain.serving) and the key store's hashing."""

from __future__ import annotations

import hashlib

import pytest

from arsl_tui.domain.serving import Deployment, DeploymentError, VersionStats, normalise_weights, plan_deploy
from arsl_tui.serving.auth import GatewayKeyError, KeyStore, KeyVerifier
from arsl_tui.state.db import open_state


def test_weights_are_whole_percentages_summing_to_100() -> None:
    assert normalise_weights({"v10": 10, "v2": 90}) == {"v2": 90, "v10": 10}
    for bad, says in [
        ({"v1": 90, "v2": 20}, "sum to 100"),
        ({"v1": 100.5}, "whole percentage"),
        ({"v1": True}, "whole percentage"),
        ({"x1": 100}, "not a model version"),
        ({}, "at least one"),
        ({"v1": -10, "v2": 110}, "whole percentage"),
    ]:
        with pytest.raises(DeploymentError, match=says):
            normalise_weights(bad)


def test_plan_deploy() -> None:
    alone = plan_deploy(None, "v3", None)
    assert alone == Deployment(stable="v3", weights={"v3": 100})
    canary = plan_deploy(alone, "v4", 10)
    assert (canary.stable, canary.canary, dict(canary.weights)) == ("v3", "v4", {"v3": 90, "v4": 10})
    assert plan_deploy(None, "v4", 25, champion="v2").weights == {"v2": 75, "v4": 25}
    assert plan_deploy(canary, "v4", None) == Deployment(stable="v4", weights={"v4": 100})
    with pytest.raises(DeploymentError, match="no champion"):
        plan_deploy(None, "v4", 10)
    with pytest.raises(DeploymentError, match="stable version already"):
        plan_deploy(alone, "v3", 10)
    with pytest.raises(DeploymentError, match="between 1 and 99"):
        plan_deploy(alone, "v4", 100)


def test_with_weights_must_name_every_loaded_version() -> None:
    deployment = Deployment(stable="v1", canary="v2", weights={"v1": 90, "v2": 10})
    assert deployment.with_weights({"v1": 100, "v2": 0}).weights == {"v1": 100, "v2": 0}
    with pytest.raises(DeploymentError, match="deploy a version"):
        deployment.with_weights({"v1": 100})
    assert Deployment.from_json(deployment.to_json()) == deployment


def test_version_stats_percentiles_and_round_trip() -> None:
    stats = VersionStats(
        version="v1",
        window_s=60,
        requests=5,
        errors=1,
        latency_ms=(5.0, 1.0, 3.0, 2.0),
        latency_samples_total=4,
        feedback=4,
        correct=3,
    )
    assert (stats.percentile_ms(50), stats.percentile_ms(95), stats.error_rate, stats.online_accuracy) == (
        2.0,
        5.0,
        0.2,
        0.75,
    )
    assert VersionStats.from_json(stats.to_json()) == stats


def test_keys_are_stored_hashed_and_revocation_is_seen(tmp_path) -> None:
    db = open_state(tmp_path)
    store = KeyStore(db)
    verifier = KeyVerifier(store)
    key = store.create("alice")
    assert key.startswith("arsl_") and len(key) == 48
    raw = (tmp_path / "arsl.db").read_bytes()
    assert key.encode() not in raw
    assert store.active_hashes() == [(hashlib.sha256(key.encode()).hexdigest(), "alice")]
    assert verifier.verify(key) == "alice" and verifier.verify(key + "x") is None and verifier.verify(None) is None
    with pytest.raises(GatewayKeyError, match="revoke it first"):
        store.create("alice")
    with pytest.raises(GatewayKeyError, match="letters, digits"):
        store.create("bad name!")
    store.revoke("alice")
    assert verifier.verify(key) is None
    with pytest.raises(GatewayKeyError, match="revoked already"):
        store.revoke("alice")
    assert store.create("alice") != key  # a revoked name can be reused, with a new key
    verifier.close()
    db.close()


def test_api_test_images_come_from_the_manifests_test_split(make_dataset) -> None:
    from arsl_tui.domain.manifest import SplitPolicy
    from arsl_tui.ops.dataset import validate_dataset, write_manifest
    from arsl_tui.ops.serving import ServingError, dataset_test_split, synthetic_images

    folder = make_dataset(per_class=4)
    with pytest.raises(ServingError, match="arsl data validate"):
        dataset_test_split(folder)
    report = validate_dataset(folder, SplitPolicy(seed=1, val=0.2, test=0.3))
    write_manifest(report)
    samples = dataset_test_split(folder)
    expected = [image for image in report.manifest.images if image.split == "test"]
    assert len(samples) == len(expected) > 0
    assert [label for _data, label in samples] == [image.cls for image in expected]
    assert samples[0][0] == (folder / expected[0].path).read_bytes()
    synthetic = synthetic_images(40)
    assert [label for _data, label in synthetic[:2]] == ["ain", "al"] and synthetic[32][1] == "ain"
