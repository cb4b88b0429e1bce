"""The cross-cutting reliability suite: faults, kills, load, bad input and security, across every phase.

`ARSL_RELIABILITY_RUNS` scales the seeded loops (kill points, fuzz examples): CI runs the default, a
longer run for the README's reliability table sets it higher.
"""

from __future__ import annotations

import os

import pytest


def reliability_runs(default: int) -> int:
    """How many seeded runs a loop makes: `$ARSL_RELIABILITY_RUNS` if set, else `default`."""
    value = os.environ.get("ARSL_RELIABILITY_RUNS", "")
    if not value:
        return default
    try:
        runs = int(value)
    except ValueError:
        raise pytest.UsageError(f"ARSL_RELIABILITY_RUNS={value!r}: expected a whole number") from None
    if runs < 1:
        raise pytest.UsageError(f"ARSL_RELIABILITY_RUNS={value!r}: expected at least 1")
    return runs


@pytest.fixture
def runs() -> int:
    """Seeded runs for a loop test that has no default of its own (3 in CI)."""
    return reliability_runs(3)
