"""The full-screen console: `arsl` / `arsl console [--read-only] [--theme NAME]`.

Start-up stays light: this module imports Textual and the console's own widgets only; the data set
validator and the upload engine are imported inside the worker threads that use them. Each tab owns
the actions of its scope (`tabs.body.TabBody`); starting, cancelling and following the whole pipeline
is the Overview's `pipeline_follow.PipelineFollow`, which reports here by messages.

A backend that cannot work here (the huawei backend without its SDKs or credentials) gets one notice
in place of the tabs: nothing is read, so no state kept on this machine shows as that backend's.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import ClassVar

from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import Provider
from textual.dom import DOMNode
from textual.keys import key_to_character
from textual.lazy import Lazy
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from arsl_tui.backends import backend_for
from arsl_tui.config import Settings
from arsl_tui.ui.commands import ArslCommands
from arsl_tui.ui.keymap import (
    GLOBAL_SCOPE,
    TAB_TITLES,
    ActionSpec,
    actions_of,
    app_actions,
    bindings_for,
    check_keymap,
    spec_for_action,
)
from arsl_tui.ui.messages import Logged
from arsl_tui.ui.pipeline_follow import PipelineFollow
from arsl_tui.ui.screens.confirm import ConfirmScreen
from arsl_tui.ui.screens.help import HelpScreen, collect_help_rows, place_name
from arsl_tui.ui.screens.too_small import MIN_HEIGHT, MIN_WIDTH, TooSmallScreen
from arsl_tui.ui.services import ConsoleServices, default_services
from arsl_tui.ui.tabs.alarms import AlarmsTab
from arsl_tui.ui.tabs.body import TabBody
from arsl_tui.ui.tabs.canary import CanaryTab
from arsl_tui.ui.tabs.gate import GateTab
from arsl_tui.ui.tabs.live import LiveTab
from arsl_tui.ui.tabs.overview import OverviewTab
from arsl_tui.ui.tabs.training import TrainingTab
from arsl_tui.ui.tabs.upload import UploadRunEnded, UploadTab
from arsl_tui.ui.themes import (
    DEFAULT_THEME,
    FALLBACK_THEME,
    SIXTEEN_COLOUR_THEME,
    ThemeFileError,
    load_theme_dirs,
    load_theme_file,
    theme_folders,
)
from arsl_tui.ui.widgets.header import ArslHeader
from arsl_tui.ui.widgets.log_panel import LogPanel
from arsl_tui.ui.widgets.pipeline_line import PipelineLine

MODULE_IMPORTED_AT = time.perf_counter()
QUIT_WAIT_S = 30.0
EXIT_BACKEND = 3
"""The CLI's exit status for a backend error (`cli.common.EXIT_BACKEND`)."""
_WITHOUT_BACKEND_ACTIONS = frozenset(
    {"app.help", "app.palette", "app.toggle_log", "app.toggle_header", "app.copy_error", "app.quit"}
)
"""What the console still offers when its backend cannot be used: no tab reads or changes anything."""


class BackendProblem(Static):
    """The notice shown in place of the tabs when the backend cannot be used."""

    DEFAULT_CSS = """
    BackendProblem { height: 1fr; padding: 1 2; }
    """

    def __init__(self, problem: str, backend: str) -> None:
        text = (
            f"✗ The {backend} backend cannot be used on this machine.\n\n{problem}.\n\n"
            f"Nothing is shown for it until that is fixed. q quits; `arsl --backend local` opens the "
            f"console on this machine's own state."
        )
        super().__init__(text, id="backend-problem", markup=False)
        self.problem = problem


_TAB_BODIES: dict[str, type[TabBody]] = {
    body.scope: body for body in (OverviewTab, UploadTab, TrainingTab, GateTab, CanaryTab, AlarmsTab)
}


class ArslApp(App[int], inherit_bindings=False):
    """The console. Every user action is listed in `keymap.ACTIONS` and bound here, so its keys work
    wherever the focus is; a tab's action runs on the tab that owns it (`_run_on_its_tab`). `check_action`
    is the single gate (tab scope, read-only mode, what the current state allows) for keys, the command
    palette and remapped keys alike."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "arsl"
    BINDINGS: ClassVar[list[BindingType]] = [
        *bindings_for("app"),
        Binding("ctrl+c", "help_quit", show=False, system=True),
    ]
    COMMANDS: ClassVar[set[type[Provider] | Callable[[], type[Provider]]]] = App.COMMANDS | {ArslCommands}

    def __init__(
        self,
        settings: Settings,
        *,
        read_only: bool = False,
        theme: str | None = None,
        services: ConsoleServices | None = None,
        progress_interval_s: float = 0.25,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.read_only = read_only or settings.read_only
        self.services = services or default_services()
        self.progress_interval_s = progress_interval_s
        self.animation_level = "none"
        self.last_error = ""
        self._pending_log: list[tuple[str, str]] = []
        self._too_small: TooSmallScreen | None = None
        self._quitting = False
        self._reported_clashes: set[str] = set()
        self._shown_tab = ""
        """The tab `_tab_shown` last prepared (timers, focus)."""
        self.backend = backend_for(settings)
        self.backend_problem = self.backend.unusable_reason()
        """Why the configured backend cannot be used on this machine, or None."""
        self._setup_themes(theme, theme_folders(settings.home_dir))

    # ----- set-up -------------------------------------------------------------------------------

    def _setup_themes(self, requested: str | None, folders: Sequence[Traversable]) -> None:
        catalogue = load_theme_dirs(folders)
        for problem in catalogue.problems:
            self.write_log("warning", problem)
        for theme in catalogue.themes.values():
            self.register_theme(theme)
        name = requested or self.settings.console.theme
        if name.endswith(".toml") or os.sep in name:
            try:
                theme = load_theme_file(Path(name).expanduser())
            except ThemeFileError as error:
                self._theme_problem(f"{error}; using {DEFAULT_THEME}")
                name = DEFAULT_THEME
            else:
                self.register_theme(theme)
                name = theme.name
        sixteen_colours = self.console.color_system == "standard"
        if requested is None and sixteen_colours and SIXTEEN_COLOUR_THEME in self.available_themes:
            current = self.available_themes.get(name)
            if current is None or not current.ansi:
                self.write_log(
                    "info",
                    f"the terminal offers 16 colours (TERM={os.environ.get('TERM', '')!s}); "
                    f"using theme {SIXTEEN_COLOUR_THEME} (--theme NAME overrides)",
                )
                name = SIXTEEN_COLOUR_THEME
        if name not in self.available_themes:
            known = ", ".join(sorted(catalogue.themes)) or "none loaded"
            fallback = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else FALLBACK_THEME
            self._theme_problem(f"theme {name!r} not found (themes: {known}); using {fallback}")
            name = fallback
        self.theme = name

    def _theme_problem(self, text: str) -> None:
        self.write_log("error", text)  # also kept as the last error, shown once the screen is up

    def compose(self) -> ComposeResult:
        yield ArslHeader(self.settings, read_only=self.read_only, id="header")
        if self.backend_problem is not None:
            yield BackendProblem(self.backend_problem, self.backend.name)
            yield LogPanel(id="log")
            yield Footer(show_command_palette=True)
            return
        yield PipelineLine(id="pipeline-line")
        with TabbedContent(initial="overview", id="tabs"):
            with TabPane(f"1 {TAB_TITLES['overview']}", id="overview"):
                yield OverviewTab(self.settings, self.services)
            with TabPane(f"2 {TAB_TITLES['upload']}", id="upload"):
                yield UploadTab(self.settings, self.services, progress_interval_s=self.progress_interval_s)
            # Hidden tabs are mounted after the first frame, which then comes sooner.
            with TabPane(f"3 {TAB_TITLES['training']}", id="training"):
                yield Lazy(TrainingTab(self.settings, self.services))
            with TabPane(f"4 {TAB_TITLES['gate']}", id="gate"):
                yield Lazy(GateTab(self.settings, self.services))
            with TabPane(f"5 {TAB_TITLES['canary']}", id="canary"):
                yield Lazy(CanaryTab(self.settings, self.services))
            with TabPane(f"6 {TAB_TITLES['alarms']}", id="alarms"):
                yield Lazy(AlarmsTab(self.settings, self.services))
        yield LogPanel(id="log")
        yield Footer(show_command_palette=True)

    def on_mount(self) -> None:
        self.query_one("#header", ArslHeader).display = self.settings.console.show_header
        log_panel = self.query_one("#log", LogPanel)
        log_panel.display = False
        for level, text in self._pending_log:
            log_panel.add(level, text)
        self._pending_log.clear()
        checked = check_keymap(self.settings.keymap, self.settings.source)
        for problem in checked.problems:
            self.write_log("warning", problem)
        if checked.problems:
            self.notify(f"{len(checked.problems)} keymap problem(s); l shows the log", severity="warning", timeout=8)
        if checked.applicable:
            self.set_keymap(checked.applicable)
        if self.last_error:
            self.notify(self.last_error, severity="error", timeout=8)
        if self.read_only:
            self.write_log("info", "read-only mode: actions that change something are off")
        if self.backend_problem is not None:  # on screen already: logged (and copyable with Y), not notified
            self.write_log("error", self.backend_problem)

    def on_ready(self) -> None:
        self.write_log(
            "info",
            f"console ready in {1000 * (time.perf_counter() - MODULE_IMPORTED_AT):.0f} ms "
            f"(theme {self.theme}, backend {self.backend.name})",
        )
        self._check_size()
        if self.backend_problem is not None:
            self.refresh_bindings()
            return
        self._tab_shown(self.active_tab)
        self.read_pipeline_now()

    # ----- the gate -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = spec_for_action(action, parameters)
        if spec is None:
            return True
        if self.backend_problem is not None and spec.id not in _WITHOUT_BACKEND_ACTIONS:
            return False
        if spec.scope != GLOBAL_SCOPE and self.active_tab != spec.scope:
            return False
        state: bool | None = True
        tab = self.tab_body(spec.scope)
        if tab is not None:
            state = tab.availability(action)
        if spec.mutates and self.read_only:
            return None if state is not False else False
        return state

    def palette_state(self, spec: ActionSpec) -> str:
        if spec.mutates and self.read_only:
            return "off: read-only mode"
        return ""

    def keys_for(self, spec: ActionSpec) -> list[str]:
        """The keys bound to an action now (after the user's keymap), as shown in the footer."""
        return [self.get_key_display(binding) for _, binding in self._bindings if binding.id == spec.id]

    async def run_from_palette(self, spec: ActionSpec) -> None:
        if spec.scope != GLOBAL_SCOPE and self.active_tab != spec.scope:
            self.show_tab_now(spec.scope)
        if not await self.run_action(spec.action):
            reason = "read-only mode is on" if spec.mutates and self.read_only else "not available right now"
            self.notify(f"{spec.title}: {reason}", severity="warning")
            self.write_log("warning", f"{spec.title}: {reason}")

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title in ("Theme", "Quit", "Screenshot"):
                yield command

    # ----- tabs, layout -------------------------------------------------------------------------

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#tabs", TabbedContent)

    @property
    def active_tab(self) -> str:
        try:
            return self.tabs.active
        except Exception:  # before compose
            return "overview"

    @property
    def upload_tab(self) -> UploadTab:
        return self.query_one(UploadTab)

    @property
    def training_tab(self) -> TrainingTab:
        return self.query_one(TrainingTab)

    @property
    def gate_tab(self) -> GateTab:
        return self.query_one(GateTab)

    @property
    def alarms_tab(self) -> AlarmsTab:
        return self.query_one(AlarmsTab)

    @property
    def canary_tab(self) -> CanaryTab:
        return self.query_one(CanaryTab)

    def tab_body(self, tab_id: str) -> TabBody | None:
        """The tab with that id (None for the global scope, or before the tabs are mounted)."""
        kind = _TAB_BODIES.get(tab_id)
        if kind is None:
            return None
        try:
            return self.query_one(kind)
        except Exception:  # not mounted (yet, or any more)
            return None

    def show_tab_now(self, tab_id: str) -> None:
        self.tabs.active = tab_id
        self._tab_shown(tab_id)

    def action_show_tab(self, tab_id: str) -> None:
        if self.active_tab != tab_id:
            self.show_tab_now(tab_id)

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # A key or the palette already ran `show_tab_now`; a second focus request queued behind the
        # user's next key would pull the focus back (a click on a tab comes only this way).
        if self.active_tab != self._shown_tab:
            self._tab_shown(self.active_tab)

    def _tab_shown(self, tab_id: str) -> None:
        self._shown_tab = tab_id
        for body in self.query(".live-tab").results(LiveTab):
            visible = body.parent is not None and body.parent.id == tab_id
            body.set_visible(visible)
            if visible:
                body.focus_default()
        focused = self.screen.focused
        if focused is not None and self.tab_pane(tab_id) not in focused.ancestors:
            self.screen.set_focus(None)  # a focused widget in a hidden pane would pull its tab back
        self.refresh_bindings()

    def tab_pane(self, tab_id: str) -> TabPane | None:
        try:
            return self.query_one(f"#{tab_id}", TabPane)
        except Exception:  # before compose
            return None

    def on_resize(self, event: events.Resize) -> None:
        # Runs before Textual's own resize handling, so the new size comes from the event.
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int | None = None, height: int | None = None) -> None:
        if width is None or height is None:
            width, height = self.size
        too_small = width < MIN_WIDTH or height < MIN_HEIGHT
        if too_small and self._too_small is None:
            self._too_small = TooSmallScreen()
            self.push_screen(self._too_small)
            self.write_log("warning", f"terminal {width}×{height} is below {MIN_WIDTH}×{MIN_HEIGHT}")
        elif not too_small and self._too_small is not None:
            if self.screen is self._too_small:
                self.pop_screen()
            self._too_small = None

    def action_toggle_log(self) -> None:
        panel = self.query_one("#log", LogPanel)
        panel.display = not panel.display

    def action_toggle_header(self) -> None:
        header = self.query_one("#header", ArslHeader)
        header.display = not header.display

    def action_show_help(self) -> None:
        screen = self.screen
        focused = screen.focused
        place = place_name(focused) if focused is not None else "nothing"
        where = f"{TAB_TITLES.get(self.active_tab, self.active_tab)} tab, focus: {place}"
        rows = collect_help_rows(
            screen, read_only=self.read_only, active_tab=self.active_tab, idle_tab_actions=self._idle_tab_actions()
        )
        self.push_screen(HelpScreen(rows, where))

    def _idle_tab_actions(self) -> list[tuple[ActionSpec, list[str]]]:
        """The active tab's actions with the keys that reach them where the focus is now (a text field takes
        the letters), when the tab offers none of them now (no canary run, say)."""
        specs = actions_of(self.active_tab)
        if any(self.check_action(spec.action_name, spec.action_params) is not False for spec in specs):
            return []
        focused = self.screen.focused
        consumers = list(focused.ancestors_with_self) if focused is not None else []
        idle: list[tuple[ActionSpec, list[str]]] = []
        for spec in specs:
            keys = [
                self.get_key_display(binding)
                for key, binding in self._bindings
                if binding.id == spec.id
                and not any(node.check_consume_key(key, key_to_character(key)) for node in consumers)
            ]
            if keys:
                idle.append((spec, keys))
        return idle

    # ----- copy ---------------------------------------------------------------------------------

    def action_copy_id(self) -> None:
        body = self.tab_body(self.active_tab)
        identifier = body.current_id() if body is not None else self.upload_tab.current_id()
        if not identifier:
            self.notify("Nothing to copy yet: no id selected on this tab.", severity="warning")
            return
        self.copy_to_clipboard(identifier)
        self.notify(f"Copied {identifier[:12]}… to the clipboard (OSC 52).")
        self.write_log("info", f"copied id {identifier}")

    def action_copy_error(self) -> None:
        if not self.last_error:
            self.notify("No error to copy.", severity="information")
            return
        self.copy_to_clipboard(self.last_error)
        self.notify("Copied the last error to the clipboard (OSC 52).")

    # ----- the whole pipeline ---------------------------------------------------------------------

    def read_pipeline_now(self) -> None:
        """Read the pipeline's files now, as the follow timer does."""
        for follower in self.query(PipelineFollow):  # none when the backend is unusable
            follower.read_now()

    def on_pipeline_follow_changed(self, message: PipelineFollow.Changed) -> None:
        """The line under the header and the Overview show the pipeline, in one step."""
        try:
            self.query_one("#pipeline-line", PipelineLine).show(message.state)
        except Exception:  # closing: the widgets are gone
            return
        for overview in self.query(OverviewTab):
            overview.show_pipeline(message.state, message.first_run)
        if message.offers_changed:  # what d, S and X do changed
            self.refresh_bindings()

    # ----- log and cross-tab messages -----------------------------------------------------------

    def write_log(self, level: str, text: str) -> None:
        if level == "error":
            self.last_error = text
        try:
            panel = self.query_one("#log", LogPanel)
        except Exception:  # not mounted yet
            self._pending_log.append((level, text))
            return
        panel.add(level, text)

    def on_logged(self, message: Logged) -> None:
        self.write_log(message.level, message.text)

    def on_upload_run_ended(self, message: UploadRunEnded) -> None:
        if self.active_tab == "overview":
            for overview in self.query(OverviewTab):  # none while the console is closing
                overview.reload()

    def on_overview_tab_status_read(self, message: OverviewTab.StatusRead) -> None:
        """The header's champion and challenger follow the registry, as the Overview reads it; an empty
        home makes a first run."""
        if message.report is None:
            return
        models = next((phase for phase in message.report.phases if phase.phase == "models"), None)
        if models is None or models.error:
            return
        header = self.query_one("#header", ArslHeader)
        header.champion = str(models.details.get("champion") or "–")
        header.challenger = str(models.details.get("challenger") or "–")

    def handle_bindings_clash(self, clashed_bindings: set[Binding], node: DOMNode) -> None:
        """A remapped key that another binding also uses: reported once, in the log panel."""
        for binding in clashed_bindings:
            text = (
                f"keymap: key {binding.key!r} is bound to more than one action "
                f"({binding.id or binding.action} among them); the first one found wins"
            )
            if text not in self._reported_clashes:
                self._reported_clashes.add(text)
                self.write_log("warning", text)

    # ----- quitting -----------------------------------------------------------------------------

    async def action_quit(self) -> None:
        if self._quitting:
            return
        if self.backend_problem is not None:  # no tab, so no upload to ask about
            self.exit(0)
            return
        tab = self.upload_tab
        if not tab.active:
            self.exit(0)
            return
        lines = [
            f"Upload run {tab.view.run_id[:12] or '(starting)'} is in progress.",
            "Quitting cancels it cleanly: objects in flight finish; confirmed objects stay in the store "
            "and the journal.",
            "Reopening the console shows the run and offers to resume it (r on the Upload tab).",
        ]

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._quitting = True
                tab.cancel_run()
                self._exit_after_upload()

        self.push_screen(ConfirmScreen("Quit during an upload?", lines, "Quit"), answered)

    @work(group="quit", exclusive=True)
    async def _exit_after_upload(self) -> None:
        uploads = [worker for worker in self.workers if worker.group == "upload"]
        try:
            await asyncio.wait_for(self.workers.wait_for_complete(uploads), timeout=QUIT_WAIT_S)
        except TimeoutError:
            self.write_log("error", f"the upload did not stop within {QUIT_WAIT_S:.0f} s; quitting anyway")
        self.exit(0)


def _run_on_its_tab(spec: ActionSpec) -> Callable[..., object]:
    """The App's action for a tab's action, made from the registry: run the tab's own `action_<name>` (the
    gate has let it through)."""
    method_name = f"action_{spec.action_name}"

    def run(app: ArslApp, *parameters: object) -> object:
        body = app.tab_body(spec.scope)
        return None if body is None else getattr(body, method_name)(*parameters)

    run.__name__ = run.__qualname__ = method_name
    run.__doc__ = spec.tooltip
    return run


def _add_tab_actions() -> None:
    for spec in app_actions():
        if spec.scope != GLOBAL_SCOPE:
            setattr(ArslApp, f"action_{spec.action_name}", _run_on_its_tab(spec))


_add_tab_actions()


def run_console(settings: Settings, *, read_only: bool = False, theme: str | None = None) -> int:
    """Run the console until the user quits; the exit status for the CLI."""
    app = ArslApp(settings, read_only=read_only, theme=theme)
    result = app.run(mouse=False)
    if app.return_code not in (None, 0):
        return int(app.return_code or 1)
    if app.backend_problem is not None:  # the screen that said so is gone: once more, in the shell
        sys.stderr.write(f"arsl: error: {app.backend_problem}\n")
        return EXIT_BACKEND
    return int(result or 0)
