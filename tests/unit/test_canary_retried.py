"""A release that met transient problems says so after they passed (`CanaryRun.retried`).

`error` holds only the last failed attempt and is cleared when an attempt succeeds; a release that was
throttled, or whose change was applied but its answer lost, then promoted, would otherwise look as if nothing
happened. The controller half uses the real controller, state stores and registry of `test_canary_state` on
its in-memory platform, made to fail the way ModelArts' management API did in the Huawei rehearsal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from arsl_tui.domain import canary
from arsl_tui.domain.canary import MAX_RETRIED_KEPT, CanaryRun, Phase
from arsl_tui.domain.ports import ModelSlot, ServingPlatformError, ServingStatus
from tests.unit.test_canary_state import T0, FakePlatform, World, copy_registry, started
from tests.unit.test_canary_state import registry_template as registry_template  # the module's fixture

THROTTLED = "ModelArts UpdateService for service 'svc': HTTP 429 APIGW.0308 throttled"
DROPPED = (
    "ModelArts UpdateService for service 'svc': the connection closed before an answer; "
    "the change may still have been applied (it is checked before any retry)"
)


def test_note_error_keeps_each_problem_once_while_it_repeats_and_only_the_last_ones() -> None:
    run = started().run
    for problem in ("a", "a", "b", "a"):
        run = canary.note_error(run, problem, now=T0)
    assert run.retried == ("a", "b", "a") and run.error == "a"
    for number in range(MAX_RETRIED_KEPT + 5):
        run = canary.note_error(run, f"p{number}", now=T0)
    assert len(run.retried) == MAX_RETRIED_KEPT and run.retried[-1] == f"p{MAX_RETRIED_KEPT + 4}"


def test_retried_problems_are_stored_and_an_older_record_without_them_still_loads() -> None:
    run = canary.note_error(started().run, "HTTP 503 busy", now=T0)
    assert CanaryRun.from_json(run.to_json()).retried == ("HTTP 503 busy",)
    older = {key: value for key, value in run.to_json().items() if key != "retried"}
    assert CanaryRun.from_json(older).retried == ()


class ManagementFaults(FakePlatform):
    """The first deploy is throttled (nothing applied); the second is applied and its answer lost."""

    def __init__(self) -> None:
        super().__init__({"v2": "good"})
        self.attempts = 0

    def deploy(self, service: str, slots: Sequence[ModelSlot], reason: str = "") -> ServingStatus:
        self.attempts += 1
        if self.attempts == 1:
            raise ServingPlatformError(THROTTLED, transient=True)
        super().deploy(service, slots, reason)
        if self.attempts == 2:
            raise ServingPlatformError(DROPPED, transient=True)
        return self.status(service)


@pytest.mark.parametrize("state", ["sqlite", "object"])
def test_a_throttled_then_dropped_deploy_is_applied_once_and_the_run_says_what_it_met(
    registry_template: Path, tmp_path: Path, state: str
) -> None:
    copy_registry(registry_template, tmp_path)
    platform = ManagementFaults()
    world = World(root=tmp_path, platform=platform, state=state)
    controller = world.controller()
    run = controller.start("v2")
    assert run.phase is Phase.DEPLOYING and "HTTP 429" in run.error
    run = controller.tick()
    assert run is not None and "connection closed" in run.error
    run = controller.tick()  # the deploy is found applied: not sent again
    assert run is not None and run.phase is Phase.OBSERVING and run.error == ""
    assert platform.attempts == 2 and platform.calls == [("deploy", {"v1": 75, "v2": 25})]
    said = [f"deploy: {THROTTLED} (retrying)", f"deploy: {DROPPED} (retrying)"]
    assert list(run.retried) == said
    controller.close()

    reopened = world.controller()  # another process, the same records
    assert reopened.status(live=False).to_json()["retried"] == said
    reopened.close()
