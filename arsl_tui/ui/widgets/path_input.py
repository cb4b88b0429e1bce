"""A folder path field with shell-like completion (Tab or → accepts the suggestion).

Esc leaves the field with nothing focused, so the digits switch tabs again and Enter comes back to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import unicodedata
from pathlib import Path

from textual.actions import SkipAction
from textual.keys import REPLACED_KEYS
from textual.suggester import Suggester
from textual.widgets import Input

from arsl_tui.ui.keymap import bindings_for

_MAX_ENTRIES_SCANNED = 5000


def complete_path(typed: str) -> str | None:
    """The typed text extended to the first matching entry (folders first, a folder ends in `/`).

    `~` is kept as typed; hidden entries are offered only when the typed name starts with a dot.
    """
    if not typed:
        return None
    expanded = os.path.expanduser(typed)
    folder_part, _, name_part = expanded.rpartition(os.sep)
    folder = Path(folder_part or ("/" if expanded.startswith(os.sep) else "."))
    if typed.endswith(os.sep):
        folder, name_part = Path(expanded), ""
    matches: list[tuple[bool, str]] = []
    try:
        with os.scandir(folder) as entries:
            for scanned, entry in enumerate(entries):
                if scanned >= _MAX_ENTRIES_SCANNED:
                    break
                if not entry.name.startswith(name_part):
                    continue
                if entry.name.startswith(".") and not name_part.startswith("."):
                    continue
                try:
                    is_folder = entry.is_dir()
                except OSError:
                    is_folder = False
                matches.append((not is_folder, entry.name))
    except OSError:
        return None
    if not matches:
        return None
    is_file, name = min(matches)
    completed = typed[: len(typed) - len(name_part)] + name + ("" if is_file else os.sep)
    return completed if completed != typed else None


class PathSuggester(Suggester):
    """Suggests completions from the file system, off the event loop (folders can be large)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(complete_path, value)


class PathInput(Input):
    """The data set folder field; Tab completes, Esc leaves the field, Enter validates (and leaves it)."""

    BINDINGS = bindings_for("path")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            placeholder="folder of class folders, e.g. ~/data/ArASL_Database_54K_Final",
            suggester=PathSuggester(),
            compact=True,
            id=id,
        )
        self.cursor_blink = False

    def check_consume_key(self, key: str, character: str | None) -> bool:
        # Textual finds no character for a few renamed keys (`slash` is "solidus"): the field types them too,
        # so the tab's binding on `/` must not be listed as working here.
        if character is None and key in REPLACED_KEYS:
            with contextlib.suppress(KeyError):  # `minus` is "hyphen-minus", which the underscores lost
                character = unicodedata.lookup(REPLACED_KEYS[key].replace("_", " ").upper())
        return super().check_consume_key(key, character)

    def action_complete(self) -> None:
        if self._suggestion and self.cursor_at_end and self._suggestion != self.value:
            self.value = self._suggestion
            self.cursor_position = len(self.value)
            return
        raise SkipAction()

    def action_leave(self) -> None:
        self.screen.set_focus(None)
