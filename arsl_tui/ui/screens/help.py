"""The `?` overlay: every key that works where the focus is now, with what it does and the id that remaps it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from arsl_tui.ui.keymap import ActionSpec, bindings_for, spec_by_id

_PLACE_NAMES = {
    "PathInput": "path field",
    "ClassCountTable": "counts table",
    "ProblemList": "problem list",
    "RunsTable": "runs table",
    "ContentTabs": "tab bar",
    "Tabs": "tab bar",
    "Screen": "screen",
    "PhasesTable": "workflow phases",
    "JobTable": "job list",
    "VersionsTable": "versions table",
    "SelectCurrent": "job picker",
    "Select": "job picker",
    "DataTable": "table",
    "Log": "log view",
}


def place_name(widget: object) -> str:
    """What a user would call a widget: `path field`, `counts table`."""
    name = type(widget).__name__
    return _PLACE_NAMES.get(name, name)


@dataclass(frozen=True)
class HelpRow:
    place: str
    keys: str
    description: str
    state: str
    binding_id: str = ""
    """The id `[keymap]` remaps it by (`upload.start`); empty for a widget's built-in keys, which have none."""


def collect_help_rows(
    screen: Screen[object],
    *,
    read_only: bool,
    active_tab: str,
    idle_tab_actions: Sequence[tuple[ActionSpec, Sequence[str]]] = (),
) -> list[HelpRow]:
    """The bindings active on `screen`, one row per action (its keys joined), the tab's own actions first.

    `idle_tab_actions` are the tab's actions when it offers none of them now (no canary run): they are not
    active, and are listed first all the same, so the help never opens on a table's cursor keys alone."""
    app = screen.app
    merged: dict[tuple[int, str], list[str]] = {}
    details: dict[tuple[int, str], tuple[str, str, str, str]] = {}
    order: list[tuple[int, str]] = []
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if binding.system or not (binding.description or binding.tooltip):
            continue
        spec = spec_by_id(binding.id) if binding.id else None
        if active.node is app:
            place = "everywhere" if spec is None or spec.scope == "global" else f"{active_tab.title()} tab"
        else:
            place = place_name(active.node)
        identity = (id(active.node), binding.action)
        if identity not in merged:
            merged[identity] = []
            order.append(identity)
            if active.enabled:
                state = "✓ on"
            elif spec is not None and spec.mutates and read_only:
                state = "■ off: read-only"
            else:
                state = "○ not now"
            what = spec.tooltip if spec is not None else (binding.tooltip or binding.description)
            details[identity] = (place, what, state, spec.id if spec is not None else "")
        merged[identity].append(app.get_key_display(binding.with_key(key)))
    rows = [
        HelpRow(
            details[identity][0],
            ", ".join(dict.fromkeys(merged[identity])),
            details[identity][1],
            details[identity][2],
            details[identity][3],
        )
        for identity in order
    ]
    rows[:0] = [
        HelpRow(
            f"{active_tab.title()} tab",
            ", ".join(dict.fromkeys(keys)),
            spec.tooltip,
            "■ off: read-only" if spec.mutates and read_only else "○ not now",
            spec.id,
        )
        for spec, keys in idle_tab_actions
    ]

    # This tab's actions first, then the focused widget's own keys, then those that work everywhere.
    def rank(row: HelpRow) -> int:
        if row.place.endswith(" tab"):
            return 0
        return 2 if row.place in ("everywhere", "screen") else 1

    return sorted(rows, key=rank)


class HelpScreen(ModalScreen[None]):
    BINDINGS = bindings_for("help")

    def __init__(self, rows: list[HelpRow], where: str) -> None:
        super().__init__()
        self.rows = rows
        self.where = where

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False, header_style="bold")
        table.add_column("where", no_wrap=True)
        table.add_column("keys", no_wrap=True)
        table.add_column("state", no_wrap=True)
        table.add_column("what it does", ratio=1)
        for row in self.rows:
            what = Text(row.description)
            if row.binding_id:
                what.append(f"\nid {row.binding_id}", style="dim")
            table.add_row(row.place, row.keys, row.state, what)
        with Vertical(id="help-dialog"):
            yield Static(f"Keys here — {self.where}", id="help-title", markup=False)
            with VerticalScroll(id="help-scroll", can_focus=True):
                yield Static(table, id="help-table")
            yield Static(
                "Ctrl+P searches every action by name. Remap a key by the id under what it does, "
                'in config.toml [keymap]: "upload.start" = "ctrl+u". Esc closes.',
                id="help-hint",
                markup=False,
            )

    def on_mount(self) -> None:
        self.query_one("#help-scroll", VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
