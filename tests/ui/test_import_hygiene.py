"""Opening the console must stay light: no torch, no Huawei SDK, no upload engine at import time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_console_loads_no_heavy_module() -> None:
    script = "import sys, json, arsl_tui.ui.app\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    loaded = set(json.loads(output.splitlines()[-1]))
    top_level = {name.split(".")[0] for name in loaded}
    assert not {"torch", "torchvision", "obs", "numpy", "PIL", "plotext", "textual_plotext"} & top_level
    assert not [name for name in top_level if name.startswith("huaweicloudsdk")]
    # The use cases and the backends are imported inside the worker threads that use them; plotext when a
    # curve is first shown.
    assert not [name for name in loaded if name.startswith(("arsl_tui.ops", "arsl_tui.providers"))]
    assert "arsl_tui.ui.widgets.curve_plot" not in loaded
