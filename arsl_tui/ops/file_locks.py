"""Whether some process holds an `flock` on a file: the one test the upload journal and the pipeline share."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def lock_is_held(path: Path) -> bool:
    """Whether a live process holds an exclusive `flock` on `path` (a lock in this very process counts as held).

    A file that is not there, or cannot be opened, has no holder.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


__all__ = ["lock_is_held"]
