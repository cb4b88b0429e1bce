"""`arsl doctor`: a read-only preflight of the configured backend, as a list of checks.

Each check says what it looked at, whether it is fine, what was found, how to fix it, and which pipeline
phases need it (`domain.pipeline.PhaseName` values). A failing check that some phase needs makes the
report unhealthy (`arsl doctor` exits 1); a failing check no phase needs is advice.

The probes themselves belong to the backend (`Backend.preflight()`: the local backend's in
`providers.local.preflight`, Huawei Cloud's in `providers.huawei.preflight`); this module only gathers
and judges them, so the CLI and the console show the same report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arsl_tui.backends import Backend


PASS_GLYPH = "✓"  # noqa: S105 - a check mark, not a password
FAIL_GLYPH = "✗"
NOT_APPLICABLE_GLYPH = "–"


@dataclass(frozen=True)
class Check:
    """One thing the doctor looked at."""

    name: str
    ok: bool
    detail: str
    """What was found, in one line."""
    fix: str = ""
    """What to do when not ok (empty when ok)."""
    needed_by: tuple[str, ...] = ()
    """The pipeline phases that cannot run without it."""
    skipped: bool = False
    """Not looked at (not configured, or a check it depends on failed); `ok` says whether that matters."""

    @property
    def glyph(self) -> str:
        """✓ fine, ✗ not, – not configured (and not needed)."""
        if self.skipped and self.ok:
            return NOT_APPLICABLE_GLYPH
        return PASS_GLYPH if self.ok else FAIL_GLYPH

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "skipped": self.skipped,
            "detail": self.detail,
            "fix": self.fix,
            "needed_by": list(self.needed_by),
        }


@dataclass(frozen=True)
class DoctorReport:
    backend: str
    checks: tuple[Check, ...]

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.ok)

    @property
    def blocked_phases(self) -> tuple[str, ...]:
        """The phases some failing check is needed by, in the order the checks name them."""
        return tuple(dict.fromkeys(phase for check in self.failed for phase in check.needed_by))

    @property
    def healthy(self) -> bool:
        """Nothing a phase needs is missing."""
        return not self.blocked_phases

    def summary(self) -> str:
        if self.healthy:
            return f"{self.backend}: every phase has what it needs"
        return f"{self.backend}: cannot run yet: {', '.join(self.blocked_phases)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "healthy": self.healthy,
            "blocked_phases": list(self.blocked_phases),
            "checks": [check.to_json() for check in self.checks],
        }


def judge(backend_name: str, checks: Iterable[Check]) -> DoctorReport:
    return DoctorReport(backend=backend_name, checks=tuple(checks))


def run_doctor(backend: Backend) -> DoctorReport:
    """Every check of `backend`, in the order a run of the pipeline needs them. Reads only."""
    return judge(backend.name, backend.preflight())


__all__ = ["FAIL_GLYPH", "NOT_APPLICABLE_GLYPH", "PASS_GLYPH", "Check", "DoctorReport", "judge", "run_doctor"]
