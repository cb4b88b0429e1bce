"""A state file that cannot be opened is one line naming it and exit 3, from every command group that reads it.

The mapping lives once in `cli.common.run_command`; each group's own error mapping leaves state errors to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = (["canary", "status"], ["alarms", "list"], ["gateway", "keys", "list"], ["service", "status"])


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unopenable_state_file_is_named_with_exit_3(command: list[str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "arsl.db").mkdir(parents=True)  # a folder where the SQLite file belongs
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    env["ARSL_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-m", "arsl_tui", *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"state file error: {home / 'arsl.db'}: cannot open the state database" in result.stderr
    assert "Traceback" not in result.stderr
