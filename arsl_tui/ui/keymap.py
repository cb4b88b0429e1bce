"""The console's binding registry: every user action, its id, keys, words, owner and whether it changes things.

One table drives the App's `BINDINGS`, the tabs' actions, the footer, the help overlay, the command palette
and the read-only gate, so a new action cannot be reachable by key but missing from help or the gate.
Ids are namespaced (`tabs.upload`, `upload.start`); users remap keys by id in `[keymap]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from textual.actions import parse as parse_action
from textual.binding import Binding, BindingType

GLOBAL_SCOPE = "global"
TAB_IDS: tuple[str, ...] = ("overview", "upload", "training", "gate", "canary", "alarms")
TAB_TITLES: dict[str, str] = {
    "overview": "Overview",
    "upload": "Upload",
    "training": "Training",
    "gate": "Gate",
    "canary": "Canary",
    "alarms": "Alarms",
}
# Keys that tmux or shells commonly own; a keymap that uses one gets a warning.
RISKY_KEYS = frozenset({"ctrl+a", "ctrl+b", "ctrl+z", "ctrl+s", "ctrl+backslash"})


@dataclass(frozen=True)
class ActionSpec:
    """One user action: how it is bound, named, explained and gated."""

    id: str
    """Namespaced binding id, the key users put in `[keymap]`."""
    keys: str
    """Default keys in Textual syntax, comma-separated."""
    action: str
    """The App action it runs, e.g. `show_tab('upload')`."""
    description: str
    """Footer label (a word or two)."""
    title: str
    """Command-palette title."""
    tooltip: str
    """One sentence: what exactly happens."""
    scope: str = GLOBAL_SCOPE
    """`global` (the App runs it), or the tab that owns it and runs it as `action_<name>`."""
    owner: str = "app"
    """Who holds the binding: `app` (a console action: bound on the App so it works wherever the focus is,
    gated, in the palette), or a widget or screen kind (`path`, `confirm`, `help`, `too-small`)."""
    mutates: bool = False
    """Changes something outside the console (starts, stops or alters work); off in read-only mode."""
    show: bool = True
    priority: bool = False
    key_display: str | None = None
    group: Binding.Group | None = None

    @property
    def action_name(self) -> str:
        return parse_action(self.action)[1]

    @property
    def action_params(self) -> tuple[object, ...]:
        return tuple(parse_action(self.action)[2])

    def binding(self) -> Binding:
        return Binding(
            self.keys,
            self.action,
            self.description,
            show=self.show,
            key_display=self.key_display,
            priority=self.priority,
            tooltip=self.tooltip,
            id=self.id,
            group=self.group,
        )


_TABS_GROUP = Binding.Group("tabs", compact=True)

ACTIONS: tuple[ActionSpec, ...] = (
    *(
        ActionSpec(
            id=f"tabs.{tab}",
            keys=str(number),
            action=f"show_tab('{tab}')",
            description=TAB_TITLES[tab],
            title=f"Go to the {TAB_TITLES[tab]} tab",
            tooltip=f"Show the {TAB_TITLES[tab]} tab.",
            group=_TABS_GROUP,
        )
        for number, tab in enumerate(TAB_IDS, start=1)
    ),
    ActionSpec(
        id="app.help",
        keys="question_mark,f1",
        action="show_help",
        description="help",
        title="Help: keys of this place",
        key_display="?",
        tooltip="List every key that works where the focus is now.",
    ),
    ActionSpec(
        id="app.palette",
        keys="ctrl+p",
        action="command_palette",
        description="palette",
        title="Command palette",
        tooltip="Search and run any console action by name.",
        show=False,
        priority=True,
    ),
    ActionSpec(
        id="app.toggle_log",
        keys="l",
        action="toggle_log",
        description="log",
        title="Show or hide the log panel",
        tooltip="Show or hide the log panel at the bottom.",
    ),
    ActionSpec(
        id="app.toggle_header",
        keys="H",
        action="toggle_header",
        description="header",
        show=False,
        title="Show or hide the header",
        tooltip="Show or hide the header line to gain a row.",
    ),
    ActionSpec(
        id="app.copy_id",
        keys="y",
        action="copy_id",
        description="copy id",
        show=False,
        title="Copy the id of what is selected",
        tooltip="Copy the id this tab shows (upload run or manifest, job, rule, canary run) to the clipboard "
        "via OSC 52.",
    ),
    ActionSpec(
        id="app.copy_error",
        keys="Y",
        action="copy_error",
        description="copy error",
        show=False,
        title="Copy the last error",
        tooltip="Copy the text of the last error to the clipboard via OSC 52.",
    ),
    ActionSpec(
        id="app.quit",
        keys="q,ctrl+q",
        action="quit",
        description="quit",
        key_display="q",
        title="Quit the console",
        tooltip="Quit; a running upload is cancelled cleanly and can be resumed later.",
    ),
    ActionSpec(
        id="upload.edit_path",
        keys="enter,slash,e",
        action="upload_edit_path",
        description="path",
        scope="upload",
        show=False,
        title="Upload: edit the data set path",
        tooltip="Move the cursor into the data set folder field; there every key types, until Enter "
        "validates or Esc leaves it.",
    ),
    ActionSpec(
        id="upload.validate",
        keys="v",
        action="upload_validate",
        description="validate",
        scope="upload",
        title="Upload: validate the data set",
        tooltip="Decode every image in the folder and count images per class; changes nothing.",
    ),
    ActionSpec(
        id="upload.start",
        keys="S",
        action="upload_start",
        description="upload",
        scope="upload",
        mutates=True,
        title="Upload: start uploading the validated data set",
        tooltip="Ask for confirmation, then upload the validated data set to the store.",
    ),
    ActionSpec(
        id="upload.pause",
        keys="p",
        action="upload_pause",
        description="pause",
        scope="upload",
        mutates=True,
        title="Upload: pause",
        tooltip="Stop sending new objects; those in flight finish.",
    ),
    ActionSpec(
        id="upload.resume",
        keys="r",
        action="upload_resume",
        description="resume",
        scope="upload",
        mutates=True,
        title="Upload: resume",
        tooltip="Resume a paused upload, or (after confirmation) an interrupted one from its journal.",
    ),
    ActionSpec(
        id="upload.cancel",
        keys="X",
        action="upload_cancel",
        description="cancel",
        scope="upload",
        mutates=True,
        title="Upload: cancel",
        tooltip="Ask for confirmation, then stop the upload; confirmed objects stay and a later run resumes.",
    ),
    ActionSpec(
        id="training.submit",
        keys="S",
        action="training_submit",
        description="submit",
        scope="training",
        mutates=True,
        title="Training: submit a job",
        tooltip="Open the hyper-parameter form (prefilled from [train]); a confirmation shows the job spec "
        "before anything starts.",
    ),
    ActionSpec(
        id="training.stop",
        keys="X",
        action="training_stop",
        description="stop",
        scope="training",
        mutates=True,
        title="Training: stop the selected job",
        tooltip="Ask for confirmation, then stop the selected job (its process group locally, terminate on "
        "ModelArts); its output so far stays.",
    ),
    ActionSpec(
        id="training.open_log",
        keys="o",
        action="training_open_log",
        description="full log",
        scope="training",
        title="Training: open the selected job's full log",
        tooltip="Show the selected job's whole log in a scrollable view; changes nothing.",
    ),
    ActionSpec(
        id="gate.view",
        keys="v",
        action="gate_next_view",
        description="view",
        scope="gate",
        title="Gate: next detail view",
        tooltip="Cycle the lower pane: learning curves, per-class accuracy and confusions, the champion "
        "comparison, the registered versions.",
    ),
    ActionSpec(
        id="gate.register",
        keys="R",
        action="gate_register",
        description="register",
        scope="gate",
        mutates=True,
        title="Gate: register the selected job's model",
        tooltip="Only for a job that passed: ask for confirmation, then register its model as the next "
        "version (challenger).",
    ),
    ActionSpec(
        id="gate.override",
        keys="O",
        action="gate_override",
        description="override",
        scope="gate",
        mutates=True,
        title="Gate: register a failed model by override",
        tooltip="For a finished job that failed: type a reason (it goes into the promotion log), then "
        "register its model anyway.",
    ),
    ActionSpec(
        id="alarms.filter",
        keys="f",
        action="alarms_filter",
        description="filter",
        scope="alarms",
        title="Alarms: filter rules by state",
        tooltip="Cycle the rules shown: all, in alarm, ok, without data; changes nothing.",
    ),
    ActionSpec(
        id="alarms.acknowledge",
        keys="A",
        action="alarms_acknowledge",
        description="acknowledge",
        scope="alarms",
        mutates=True,
        title="Alarms: acknowledge the selected alarm",
        tooltip="Ask for confirmation, then mark the selected rule's alarm as seen (logged with your name).",
    ),
    ActionSpec(
        id="alarms.silence",
        keys="M",
        action="alarms_silence",
        description="silence",
        scope="alarms",
        mutates=True,
        title="Alarms: silence the selected rule for a time",
        tooltip="Type how long (30m, 2h; 0 ends a silence), confirm, and its notifications stop for that "
        "long; the rule still changes state. Logged.",
    ),
    ActionSpec(
        id="canary.promote",
        keys="P",
        action="canary_promote",
        description="promote",
        scope="canary",
        mutates=True,
        title="Canary: promote to the next step",
        tooltip="Ask for confirmation, then move the challenger to the plan's next traffic weight.",
    ),
    ActionSpec(
        id="canary.promote_full",
        keys="F",
        action="canary_promote_full",
        description="promote all",
        scope="canary",
        mutates=True,
        title="Canary: promote fully",
        tooltip="Ask for confirmation, then send all traffic to the challenger and make it champion.",
    ),
    ActionSpec(
        id="canary.pause",
        keys="p",
        action="canary_pause",
        description="pause",
        scope="canary",
        mutates=True,
        title="Canary: pause",
        tooltip="Ask for confirmation, then hold the current weights: no judging, no stepping.",
    ),
    ActionSpec(
        id="canary.resume",
        keys="r",
        action="canary_resume",
        description="resume",
        scope="canary",
        mutates=True,
        title="Canary: resume",
        tooltip="Ask for confirmation, then judge and step again.",
    ),
    ActionSpec(
        id="canary.rollback",
        keys="X",
        action="canary_rollback",
        description="rollback",
        scope="canary",
        mutates=True,
        title="Canary: roll back",
        tooltip="Ask for confirmation, then send all traffic back to the champion at once.",
    ),
    ActionSpec(
        id="pipeline.demo",
        keys="d",
        action="pipeline_demo",
        description="demo",
        scope="overview",
        mutates=True,
        title="Pipeline: generate the demo data set and run the whole demo",
        tooltip="Offered on a first run: start `arsl pipeline run --demo` as a separate process (it goes "
        "on if the console quits) and follow it here.",
    ),
    ActionSpec(
        id="pipeline.start",
        keys="S",
        action="pipeline_start",
        description="run pipeline",
        scope="overview",
        mutates=True,
        title="Pipeline: run the whole pipeline",
        tooltip="Pick the data set folder (or the demo), review backend, home and command, confirm, and "
        "the pipeline runs as a separate process: upload → train → gate → canary → alarms.",
    ),
    ActionSpec(
        id="pipeline.cancel",
        keys="X",
        action="pipeline_cancel",
        description="cancel run",
        scope="overview",
        mutates=True,
        title="Pipeline: cancel the running pipeline",
        tooltip="Ask for confirmation, then send SIGINT to the run's process group (like Ctrl-C): the "
        "phase in progress stops, finished phases stay recorded, a later run resumes.",
    ),
    ActionSpec(
        id="path.complete",
        keys="tab",
        action="complete",
        description="complete",
        owner="path",
        title="Complete the path",
        tooltip="Accept the suggested completion; with none, move to the next field.",
    ),
    ActionSpec(
        id="path.leave",
        keys="escape",
        action="leave",
        description="leave field",
        owner="path",
        title="Leave the path field",
        tooltip="Leave the field: the digits switch tabs and single-letter keys work again.",
    ),
    ActionSpec(
        id="confirm.yes",
        keys="y",
        action="confirm",
        description="yes, do it",
        owner="confirm",
        title="Confirm",
        tooltip="Do exactly what the dialog describes.",
    ),
    ActionSpec(
        id="confirm.no",
        keys="n,escape",
        action="dismiss_dialog",
        description="no",
        owner="confirm",
        key_display="n/esc",
        title="Cancel",
        tooltip="Close the dialog and change nothing.",
    ),
    ActionSpec(
        id="form.cancel",
        keys="escape",
        action="cancel",
        description="cancel",
        owner="form",
        key_display="esc",
        title="Cancel the form",
        tooltip="Close the form and change nothing.",
    ),
    ActionSpec(
        id="log_view.close",
        keys="escape,q",
        action="close",
        description="close",
        owner="log-view",
        key_display="esc",
        title="Close the log",
        tooltip="Close the full log view.",
    ),
    ActionSpec(
        id="help.close",
        keys="escape,question_mark,f1,q",
        action="close",
        description="close",
        owner="help",
        key_display="esc",
        title="Close help",
        tooltip="Close the help overlay.",
    ),
    ActionSpec(
        id="too_small.quit",
        keys="ctrl+q,q",
        action="app.quit",
        description="quit",
        owner="too-small",
        title="Quit",
        tooltip="Quit the console.",
    ),
    ActionSpec(
        id="overview.doctor",
        keys="D",
        action="run_doctor",
        description="doctor",
        scope="overview",
        title="Doctor: check the backend before a run",
        tooltip="Check, changing nothing, that the configured backend has what every phase needs (credentials, "
        "endpoints, bucket, engine and flavor, serving, gateway; disk, port and torch locally), like `arsl doctor`.",
    ),
    ActionSpec(
        id="doctor.close",
        keys="escape,q",
        action="close",
        description="close",
        owner="doctor",
        key_display="esc",
        title="Close the doctor's report",
        tooltip="Close the doctor's report.",
    ),
    ActionSpec(
        id="canary.skip_shadow",
        keys="S",
        action="canary_skip_shadow",
        description="skip shadow",
        scope="canary",
        mutates=True,
        title="Canary: skip the shadow step",
        tooltip="Ask for confirmation, then stop the copies and give the challenger the first step's share "
        "without a shadow verdict.",
    ),
)

_BY_ID: dict[str, ActionSpec] = {spec.id: spec for spec in ACTIONS}
_BY_ACTION: dict[tuple[str, tuple[object, ...]], ActionSpec] = {
    (spec.action_name, spec.action_params): spec for spec in ACTIONS if spec.owner == "app"
}


def app_actions() -> list[ActionSpec]:
    """The actions the App runs: these are gated, and listed in the command palette."""
    return [spec for spec in ACTIONS if spec.owner == "app"]


def actions_of(scope: str) -> list[ActionSpec]:
    """The console actions a tab owns (none for the global scope's empty name)."""
    return [spec for spec in ACTIONS if spec.owner == "app" and spec.scope == scope and scope != GLOBAL_SCOPE]


def bindings_for(owner: str) -> list[BindingType]:
    """The Bindings of one owner (`app`, `path`, `confirm`, …), for its `BINDINGS`."""
    return [spec.binding() for spec in ACTIONS if spec.owner == owner]


def spec_by_id(binding_id: str) -> ActionSpec | None:
    return _BY_ID.get(binding_id)


def spec_for_action(action_name: str, params: Iterable[object] = ()) -> ActionSpec | None:
    """The App action behind an action name and its parameters, if any."""
    return _BY_ACTION.get((action_name, tuple(params)))


def known_binding_ids() -> list[str]:
    return sorted(_BY_ID)


@dataclass(frozen=True)
class KeymapCheck:
    """A user keymap split into what can be applied and what to report."""

    applicable: dict[str, str]
    problems: list[str]


def check_keymap(keymap: Mapping[str, str], source: str) -> KeymapCheck:
    """Keep the entries whose id exists and whose keys are not empty; describe every other entry."""
    applicable: dict[str, str] = {}
    problems: list[str] = []
    for binding_id, keys in keymap.items():
        if binding_id not in _BY_ID:
            problems.append(
                f"{source} [keymap]: unknown binding id {binding_id!r} (ignored); known ids: "
                + ", ".join(known_binding_ids())
            )
            continue
        key_list = [key.strip() for key in keys.split(",")]
        if not keys.strip() or any(not key for key in key_list):
            problems.append(
                f'{source} [keymap]: {binding_id} = {keys!r}: expected keys like "ctrl+u" or "u,ctrl+u" (ignored)'
            )
            continue
        risky = sorted(RISKY_KEYS.intersection(key_list))
        if risky:
            problems.append(
                f"{source} [keymap]: {binding_id} uses {', '.join(risky)}, which tmux or the shell may take first"
            )
        applicable[binding_id] = ",".join(key_list)
    return KeymapCheck(applicable=applicable, problems=problems)
