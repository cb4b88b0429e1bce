"""The upload process's entry point: `python -m arsl_tui.ops.upload_child FD` (see `ops.upload_process`).

A module of its own, so that what the child and its parent pickle to each other is defined in
`ops.upload_process` under the same name in both processes (not in the child's `__main__`).
"""

from __future__ import annotations

import sys

from arsl_tui.ops.upload_process import child_main

if __name__ == "__main__":
    child_main(int(sys.argv[1]))
