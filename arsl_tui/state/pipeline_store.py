"""Pipeline runs and the phases each finished, in the state file (component "pipeline", `state/db.py`).

`ops.pipeline` keys each run by the data set's fingerprint and the code's digest, so a re-run with the
same data and code finds the phases an earlier run finished (`PipelineStore.done_phases`) and skips them.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from arsl_tui.domain.pipeline import PhaseName, PhaseRecord
from arsl_tui.state.db import Migrations, StateDB, open_state

MIGRATIONS = Migrations(
    "pipeline",
    steps=(
        """
    CREATE TABLE pipeline_runs (
        run_id TEXT PRIMARY KEY,
        dataset_key TEXT NOT NULL,
        code TEXT NOT NULL,
        started_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE TABLE pipeline_phases (
        run_id TEXT NOT NULL REFERENCES pipeline_runs (run_id),
        phase TEXT NOT NULL,
        detail TEXT NOT NULL,
        record_values TEXT NOT NULL,
        finished_at REAL NOT NULL,
        PRIMARY KEY (run_id, phase)
    );
    CREATE INDEX pipeline_runs_key ON pipeline_runs (dataset_key, code);
    """,
    ),
)


def new_run_id(now: float) -> str:
    """`p20260101-100000-ab12`: sorts by start time (UTC), unique by its random end."""
    return time.strftime("p%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(2)


class PipelineStore:
    """Pipeline runs and the phases each finished, in the state file."""

    def __init__(self, db: StateDB) -> None:
        self.db = db
        db.ensure_schema(MIGRATIONS)

    @classmethod
    def open(cls, home: Path) -> PipelineStore:
        return cls(open_state(home))

    def close(self) -> None:
        self.db.close()

    def start_run(self, dataset_key: str, code: str, now: float, run_id: str | None = None) -> str:
        run_id = run_id or new_run_id(now)
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO pipeline_runs VALUES (?, ?, ?, ?, ?, ?)", (run_id, dataset_key, code, now, now, "running")
            )
        return run_id

    def done_phases(self, dataset_key: str, code: str) -> dict[PhaseName, PhaseRecord]:
        """The newest record of each phase finished by a run with this data set and code."""
        rows = (
            self.db.connection()
            .execute(
                "SELECT p.run_id, p.phase, p.detail, p.record_values FROM pipeline_phases p "
                "JOIN pipeline_runs r ON r.run_id = p.run_id WHERE r.dataset_key = ? AND r.code = ? "
                "ORDER BY p.finished_at",
                (dataset_key, code),
            )
            .fetchall()
        )
        return {
            PhaseName(phase): PhaseRecord(PhaseName(phase), detail, json.loads(values), run_id)
            for run_id, phase, detail, values in rows
        }

    def record(self, run_id: str, record: PhaseRecord, now: float) -> None:
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO pipeline_phases VALUES (?, ?, ?, ?, ?)",
                (run_id, record.phase.value, record.detail, json.dumps(dict(record.values)), now),
            )
            connection.execute("UPDATE pipeline_runs SET updated_at = ? WHERE run_id = ?", (now, run_id))

    def finish(self, run_id: str, outcome: str, now: float) -> None:
        with self.db.transaction() as connection:
            connection.execute(
                "UPDATE pipeline_runs SET outcome = ?, updated_at = ? WHERE run_id = ?", (outcome, now, run_id)
            )

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT run_id, dataset_key, code, started_at, updated_at, outcome FROM pipeline_runs "
                "ORDER BY started_at DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [
            dict(zip(("run_id", "dataset_key", "code", "started_at", "updated_at", "outcome"), row, strict=True))
            for row in rows
        ]


__all__ = ["MIGRATIONS", "PipelineStore", "new_run_id"]
