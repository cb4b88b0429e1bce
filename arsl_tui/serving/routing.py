"""Canary routing: which loaded version answers each request, by the current weights.

`Router.choose` uses smooth weighted round-robin (the nginx algorithm): over any run of 100 requests
a 90/10 split sends exactly 90 and 10, interleaved (v1 ×9, v2, v1 ×9, …), rather than drifting as
random draws do, so a canary's share of a small window is what its weight says.

Changes are atomic: the router holds one immutable `RoutingTable` (deployment + loaded models) and a
change builds a new table and swaps the reference. A request that was routed before the swap keeps
its model object and finishes on it, so no request is dropped; a version left out of the new table is
freed once its last request is answered. `RoutingController` serialises changes, loads new versions
off the event loop (the old table keeps serving meanwhile), persists the new deployment, and only
then swaps, so a restarted gateway comes back with the weights it had.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from arsl_tui.domain.serving import Deployment
from arsl_tui.serving.batching import LoadedModel


@dataclass(frozen=True)
class RoutingTable:
    deployment: Deployment
    models: Mapping[str, LoadedModel]
    order: tuple[LoadedModel, ...]
    weights: tuple[int, ...]


class Router:
    """Picks the version for each request. Event-loop only (the round-robin state is not locked)."""

    def __init__(self, deployment: Deployment, models: Mapping[str, LoadedModel]) -> None:
        self._table = self._build(deployment, models)
        self._current = [0] * len(self._table.order)

    @staticmethod
    def _build(deployment: Deployment, models: Mapping[str, LoadedModel]) -> RoutingTable:
        missing = [version for version in deployment.versions if version not in models]
        if missing:
            raise ValueError(f"no loaded model for {', '.join(missing)}")
        order = tuple(models[version] for version in deployment.versions)
        return RoutingTable(
            deployment=deployment,
            models={version: models[version] for version in deployment.versions},
            order=order,
            weights=tuple(deployment.weights[version] for version in deployment.versions),
        )

    @property
    def table(self) -> RoutingTable:
        return self._table

    @property
    def deployment(self) -> Deployment:
        return self._table.deployment

    def swap(self, deployment: Deployment, models: Mapping[str, LoadedModel]) -> None:
        table = self._build(deployment, models)
        self._table, self._current = table, [0] * len(table.order)

    def choose(self) -> LoadedModel:
        table, current = self._table, self._current
        best, best_value, total = 0, None, 0
        for index, weight in enumerate(table.weights):
            current[index] += weight
            total += weight
            if weight and (best_value is None or current[index] > best_value):
                best, best_value = index, current[index]
        current[best] -= total
        return table.order[best]


Loader = Callable[[str], LoadedModel]
Persist = Callable[[Deployment, str], None]


class RoutingController:
    """Applies deployment and weight changes to a router one at a time."""

    def __init__(
        self, router: Router, loader: Loader, persist: Persist, on_change: Callable[[Deployment], None] | None = None
    ) -> None:
        self.router = router
        self._loader = loader
        self._persist = persist
        self._on_change = on_change
        self._lock = asyncio.Lock()

    async def set_weights(self, weights: Mapping[str, Any], reason: str) -> Deployment:
        async with self._lock:
            deployment = self.router.deployment.with_weights(weights)
            await asyncio.to_thread(self._persist, deployment, reason)
            self.router.swap(deployment, self.router.table.models)
            self._changed(deployment)
            return deployment

    async def deploy(self, deployment: Deployment, reason: str) -> Deployment:
        """Serve `deployment`: load the versions not loaded yet, persist, swap."""
        async with self._lock:
            current = self.router.table.models
            models = dict(current)
            for version in deployment.versions:
                if version not in models:
                    models[version] = await asyncio.to_thread(self._loader, version)
            await asyncio.to_thread(self._persist, deployment, reason)
            self.router.swap(deployment, {version: models[version] for version in deployment.versions})
            self._changed(deployment)
            return deployment

    def _changed(self, deployment: Deployment) -> None:
        if self._on_change is not None:
            self._on_change(deployment)


__all__ = ["Router", "RoutingController", "RoutingTable"]
