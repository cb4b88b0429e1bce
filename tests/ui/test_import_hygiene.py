"""Opening the console must stay light: no torch, no Huawei SDK, no upload engine at import time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_console_loads_no_heavy_module() -> None:
    script = "import sys, json, arsl_tui.ui.app\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                            cwd=ROOT).stdout
    loaded = set(json.loads(output.splitlines()[-1]))
    top_level = {name.split(".")[0] for name in loaded}
    assert not {"torch", "torchvision", "obs", "numpy", "PIL", "plotext"} & top_level
    assert not [name for name in top_level if name.startswith("huaweicloudsdk")]
    # The validator and the upload engine are imported inside the worker threads that use them.
    assert not {"arsl_tui.ops.upload", "arsl_tui.ops.dataset", "arsl_tui.providers.local.store"} & loaded
