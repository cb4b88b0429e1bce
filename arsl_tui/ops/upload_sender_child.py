"""A sending process's entry point: `python -m arsl_tui.ops.upload_sender_child FD` (see `ops.upload_senders`).

A module of its own, so that nothing the child and the engine pickle to each other is defined in the
child's `__main__`.
"""

from __future__ import annotations

import sys

from arsl_tui.ops.upload_senders import sender_main

if __name__ == "__main__":
    sender_main(int(sys.argv[1]))
