"""What a deployment is, as pure records: the versions served, their traffic weights, per-version stats.

A deployment serves a *stable* version and, during a canary, a *canary* version beside it. Weights
are integer percentages that sum to 100, as ModelArts real-time services take them; a loaded version
may have weight 0 (kept warm, sent no traffic: a rolled-back canary). `plan_deploy` says what
`arsl deploy VERSION [--canary P]` turns the current deployment into.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from arsl_tui.domain.registry import VersionFormatError, format_version, parse_version


class ServingError(Exception):
    """The gateway cannot be started, reached or stopped; the message says why and what to do."""


class AlreadyRunning(ServingError):
    """A gateway runs already (a second start is refused)."""


class WrongBackend(ServingError):
    """The command drives the local gateway, but another backend is configured."""


MAX_VERSIONS = 4
"""Versions one gateway serves at once (stable, canary and room for a shadow); each costs memory."""


class DeploymentError(ValueError):
    """A deployment or weight change that cannot be made; the message says which value and why."""


def normalise_weights(weights: Mapping[str, Any]) -> dict[str, int]:
    """Check `{version: percent}` and return it with canonical version names, in version order."""
    if not isinstance(weights, Mapping) or not weights:
        raise DeploymentError('weights must name at least one version, e.g. {"v1": 90, "v2": 10}')
    checked: dict[str, int] = {}
    for name, value in weights.items():
        try:
            version = format_version(parse_version(str(name)))
        except VersionFormatError as error:
            raise DeploymentError(f"weights: {error}") from None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or int(value) != value
            or not 0 <= value <= 100
        ):
            raise DeploymentError(f"weights: {version} = {value!r}: expected a whole percentage from 0 to 100")
        if version in checked:
            raise DeploymentError(f"weights: {version} is named twice")
        checked[version] = int(value)
    if len(checked) > MAX_VERSIONS:
        raise DeploymentError(f"weights name {len(checked)} versions; one gateway serves at most {MAX_VERSIONS}")
    total = sum(checked.values())
    if total != 100:
        shown = ", ".join(f"{version}={value}" for version, value in checked.items())
        raise DeploymentError(f"weights must sum to 100 (they sum to {total}: {shown})")
    return dict(sorted(checked.items(), key=lambda item: parse_version(item[0])))


@dataclass(frozen=True)
class Deployment:
    """The versions a gateway serves and how traffic is split between them."""

    stable: str
    weights: Mapping[str, int]
    canary: str | None = None

    def __post_init__(self) -> None:
        weights = normalise_weights(self.weights)
        object.__setattr__(self, "weights", weights)
        if self.stable not in weights:
            raise DeploymentError(f"the stable version {self.stable} has no weight in {dict(weights)}")
        if self.canary is not None and (self.canary not in weights or self.canary == self.stable):
            raise DeploymentError(f"the canary {self.canary} must be a second version with a weight")

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def with_weights(self, weights: Mapping[str, Any]) -> Deployment:
        """The same versions with new weights; every loaded version must be named (0 keeps it idle)."""
        checked = normalise_weights(weights)
        if set(checked) != set(self.weights):
            raise DeploymentError(
                f"weights name {', '.join(checked)}, but the gateway serves "
                f"{', '.join(self.weights)} (deploy a version to add it)"
            )
        return Deployment(stable=self.stable, canary=self.canary, weights=checked)

    def to_json(self) -> dict[str, Any]:
        return {"stable": self.stable, "canary": self.canary, "weights": dict(self.weights)}

    @classmethod
    def from_json(cls, data: Any, where: str = "deployment") -> Deployment:
        if not isinstance(data, Mapping):
            raise DeploymentError(f"{where}: expected an object with stable, canary and weights")
        stable, canary, weights = data.get("stable"), data.get("canary"), data.get("weights")
        if not isinstance(stable, str) or not (canary is None or isinstance(canary, str)):
            raise DeploymentError(f"{where}: stable must be a version name and canary a version name or null")
        try:
            return cls(
                stable=format_version(parse_version(stable)),
                canary=format_version(parse_version(canary)) if canary else None,
                weights=weights if isinstance(weights, Mapping) else {},
            )
        except VersionFormatError as error:
            raise DeploymentError(f"{where}: {error}") from None


def plan_deploy(
    current: Deployment | None, version: str, canary_percent: int | None, champion: str | None = None
) -> Deployment:
    """What `deploy VERSION [--canary P]` makes of `current`.

    Without a canary percentage VERSION takes all traffic alone. With one, VERSION becomes the canary
    at P % beside the stable version: the running one, or else the registry's champion.
    """
    version = format_version(parse_version(version))
    if canary_percent is None:
        return Deployment(stable=version, weights={version: 100})
    if isinstance(canary_percent, bool) or not 0 < canary_percent < 100:
        raise DeploymentError(f"--canary {canary_percent}: expected a percentage between 1 and 99")
    stable = current.stable if current is not None else champion
    if stable is None:
        raise DeploymentError(
            f"nothing to run beside canary {version}: no service is running and there is no "
            "champion (deploy a version without --canary first)"
        )
    stable = format_version(parse_version(stable))
    if stable == version:
        raise DeploymentError(f"{version} is the stable version already; a canary must be another version")
    return Deployment(stable=stable, canary=version, weights={stable: 100 - canary_percent, version: canary_percent})


@dataclass(frozen=True)
class VersionStats:
    """What one version did over a window: the canary judge's evidence."""

    version: str
    window_s: float
    requests: int
    errors: int
    """Server-side failures (5xx): what counts against a version."""
    client_errors: int = 0
    latency_ms: Sequence[float] = field(default_factory=tuple)
    """Latency samples of successful requests (possibly a uniform subsample, see `latency_samples_total`)."""
    latency_samples_total: int = 0
    feedback: int = 0
    correct: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def online_accuracy(self) -> float | None:
        return self.correct / self.feedback if self.feedback else None

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile of the latency samples (q in 0..100)."""
        if not self.latency_ms:
            return None
        ordered = sorted(self.latency_ms)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "window_s": self.window_s,
            "requests": self.requests,
            "errors": self.errors,
            "client_errors": self.client_errors,
            "error_rate": self.error_rate,
            "latency_ms": list(self.latency_ms),
            "latency_samples_total": self.latency_samples_total,
            "p50_ms": self.percentile_ms(50),
            "p95_ms": self.percentile_ms(95),
            "p99_ms": self.percentile_ms(99),
            "feedback": self.feedback,
            "correct": self.correct,
            "online_accuracy": self.online_accuracy,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VersionStats:
        return cls(
            version=str(data["version"]),
            window_s=float(data["window_s"]),
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            client_errors=int(data.get("client_errors", 0)),
            latency_ms=tuple(float(value) for value in data.get("latency_ms", ())),
            latency_samples_total=int(data.get("latency_samples_total", 0)),
            feedback=int(data.get("feedback", 0)),
            correct=int(data.get("correct", 0)),
        )


__all__ = [
    "MAX_VERSIONS",
    "AlreadyRunning",
    "Deployment",
    "DeploymentError",
    "ServingError",
    "VersionStats",
    "WrongBackend",
    "normalise_weights",
    "plan_deploy",
]
