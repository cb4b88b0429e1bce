"""Tabs that later work fills in; until then each says what it will show and which command does it today."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static


@dataclass(frozen=True)
class PlannedTab:
    title: str
    will_show: tuple[str, ...]
    commands_today: tuple[str, ...]


PLANNED_TABS: dict[str, PlannedTab] = {
    "training": PlannedTab(
        "Training",
        ("the training job's phase (Creating … Completed) on the local backend or ModelArts",
         "live loss and accuracy curves from the trainer's metrics.jsonl, images/s and GPU memory",
         "the job's log tail; submit (with confirmation) and stop"),
        ("torchrun --nproc_per_node 2 -m trainer.train   (local, from the repository)",
         "arsl train submit | status | watch | logs | stop JOB   (as that command group lands)"),
    ),
    "gate": PlannedTab(
        "Gate",
        ("each evaluation-gate check for a finished job: accuracy, loss, stability, train/val gap, "
         "per-class accuracy, regression against the champion — pass or fail with the measured value",
         "register a passing model as challenger; an override needs a reason"),
        ("arsl gate JOB [--override --reason TEXT]", "arsl models list | show VERSION"),
    ),
    "canary": PlannedTab(
        "Canary",
        ("traffic weights per version, the current canary step and its observation window",
         "error rate, p95 latency and online accuracy of canary against stable, with the judge's verdict",
         "promote, promote fully and roll back (each with confirmation)"),
        ("arsl deploy VERSION --canary PERCENT", "arsl canary status | watch | promote [--full] | rollback"),
    ),
    "alarms": PlannedTab(
        "Alarms",
        ("alarm rules and their state (ok, alarm, insufficient data) on the local monitor or Cloud Eye",
         "recent alarm history and the metrics behind each rule"),
        ("arsl alarms list | history | setup",),
    ),
}


class PlannedTabBody(VerticalScroll):
    """A plain statement of what the tab will show; no live data, so no timers."""

    def __init__(self, tab_id: str) -> None:
        super().__init__(id=f"{tab_id}-body", classes="planned-tab")
        self.plan = PLANNED_TABS[tab_id]

    def compose(self) -> ComposeResult:
        plan = self.plan
        yield Static(f"○ The {plan.title} tab is not built yet.", classes="planned-title", markup=False)
        yield Static("It will show:\n" + "\n".join(f"  • {line}" for line in plan.will_show), markup=False)
        yield Static("Today, from a shell:\n" + "\n".join(f"  $ {line}" for line in plan.commands_today),
                     classes="planned-commands", markup=False)
