"""`arsl upload DIR` and `arsl upload status`."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subcommands: Any, common: argparse.ArgumentParser) -> None:
    """Registered by the upload engine's owner."""
