"""The gateway-level rollback: list the versions API Gateway published of the prediction API, and make an
earlier one the version in effect again.

This is a rollback of the gateway's API definition (which service URL, which backend credential), not of
the model: the canary's rollback moves traffic between model versions inside the service. It is the way
back when a `gateway setup` published a definition that broke calls (a wrong URL, a stale AppCode).

Which API and environment: the last publication `arsl gateway setup` recorded in the state file. The
gateway itself is handed in (the composition root opens it), so these functions know no provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from arsl_tui.state.canary_store import CanaryStore


class PublishedVersions(Protocol):
    """What API Gateway offers here: the published versions of an API in an environment, and the switch."""

    def versions(self, api_id: str, env_id: str) -> list[dict[str, Any]]: ...

    def rollback_to(self, api_id: str, version_id: str) -> dict[str, Any]: ...


class GatewayVersionsError(Exception):
    """Nothing published yet, or a version that is not one of the API's; the message says which exist."""


@dataclass(frozen=True)
class PublishedApi:
    """The API `arsl gateway setup` published last, as the state file recorded it."""

    api_id: str
    env_id: str
    url: str


@dataclass(frozen=True)
class RollbackOutcome:
    api_id: str
    env_id: str
    version_id: str
    previous_version_id: str
    """The version in effect before ("" if none was)."""
    changed: bool
    """False when `version_id` was in effect already: nothing was switched."""

    def to_json(self) -> dict[str, Any]:
        return {
            "api_id": self.api_id,
            "env_id": self.env_id,
            "version_id": self.version_id,
            "previous_version_id": self.previous_version_id,
            "changed": self.changed,
        }


def published_api(home: Path) -> PublishedApi:
    """The last recorded publication; `GatewayVersionsError` when `gateway setup` never published one."""
    store = CanaryStore.open(home)
    try:
        recorded = store.publications(limit=1)
    finally:
        store.close()
    if not recorded:
        raise GatewayVersionsError(
            "no API Gateway publication is recorded here: run `arsl gateway setup` first (it records the API "
            "and environment it publishes)"
        )
    last = recorded[0]
    return PublishedApi(api_id=str(last["api_id"]), env_id=str(last["env_id"]), url=str(last["url"]))


def list_versions(gateway: PublishedVersions, api: PublishedApi) -> list[dict[str, Any]]:
    """The API's published versions in its environment, newest first, with the one in effect marked."""
    return gateway.versions(api.api_id, api.env_id)


def rollback(home: Path, gateway: PublishedVersions, api: PublishedApi, version_id: str) -> RollbackOutcome:
    """Make `version_id` the version in effect; records the switch like a publication (so the next
    rollback can come back). A version that is in effect already is left alone."""
    versions = list_versions(gateway, api)
    known = [str(item["version_id"]) for item in versions]
    if version_id not in known:
        listed = ", ".join(known) or "none"
        raise GatewayVersionsError(f"API {api.api_id} has no published version {version_id!r} (versions: {listed})")
    previous = next((str(item["version_id"]) for item in versions if item.get("effective")), "")
    if previous == version_id:
        return RollbackOutcome(api.api_id, api.env_id, version_id, previous, changed=False)
    switched = gateway.rollback_to(api.api_id, version_id)
    store = CanaryStore.open(home)
    try:
        store.record_publication(
            api.api_id, api.env_id, str(switched.get("publish_id", "")), str(switched["version_id"]), api.url
        )
    finally:
        store.close()
    return RollbackOutcome(api.api_id, api.env_id, str(switched["version_id"]), previous, changed=True)


__all__ = [
    "GatewayVersionsError",
    "PublishedApi",
    "PublishedVersions",
    "RollbackOutcome",
    "list_versions",
    "published_api",
    "rollback",
]
