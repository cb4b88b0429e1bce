"""Every script in bench/ runs, in its `--tiny` mode, as a real subprocess: a bench that no longer runs on
main fails here instead of when someone next needs its figures.

The tiny modes go through the same code as the full runs (the real console in tmux, real gateway and
trainer processes, the S3 sink) at sizes that take seconds. The figures themselves are not checked (speed
is measured in bench/, not asserted); what is checked is that each script exits 0 and writes a JSON with
the parts its full run reports, and that nothing is written to bench/results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
RUN_TIMEOUT_S = 280
"""Below pytest's own 300 s limit, so an overrun reports the bench's output instead of a bare timeout."""


def _console(result: dict[str, Any]) -> None:
    assert {"first_frame_headless", "key_latency"} <= result.keys()
    if shutil.which("tmux"):
        assert result["first_frame_terminal"]["runs_s"]
        assert set(result["idle"]) == {"overview_tab", "upload_tab"}
    assert set(result["key_latency"]) == {"storm at 2000 events/s", "unpaced storm", "real_engine"}
    for name, figures in result["key_latency"].items():
        assert figures["final_status"] == "done", name


def _gateway_soak(result: dict[str, Any]) -> None:
    assert {"requests", "statuses", "windows", "rss_mb", "rss_series", "latency_ms"} <= result.keys()
    assert result["failure_count"] == 0, result["failures"]
    assert result["gateway_alive_at_end"] is True


def _gpu_train(result: dict[str, Any]) -> None:
    assert {"data_prep_s", "steady_images_per_s", "gate", "epochs"} <= result.keys()
    assert result["device"] == "cpu"
    assert [epoch["epoch"] for epoch in result["epochs"]] == [1]


def _serve(result: dict[str, Any]) -> None:
    assert {"forward_cpu_ms_per_image", "gateway_start", "gateway_rss_mb_two_versions", "summary"} <= result.keys()
    for server in ("gateway", "baseline"):
        assert [run["run"] for run in result[server]] == ["20 req/s", "saturation (4 conns)"]
        assert all(run["completed"] > 0 for run in result[server]), result[server]
    # The floor: a no-op endpoint on the gateway's own stack, and the verdict it gives on the overhead goal.
    assert result["noop"], "no no-op server run"
    floor = result["summary"]["server_stack_floor"]
    assert {"floor_ratio", "floor_with_decode_ratio_at_gateway_rate", "goal_reachable_on_this_stack"} <= floor.keys()


def _shadow(result: dict[str, Any]) -> None:
    assert [run["mode"] for run in result["runs"]] == ["off", "on"]
    assert all(run["completed"] > 0 and run["errors"] == 0 for run in result["runs"]), result["runs"]
    assert result["runs"][1]["shadow"]["sent"] > 0, "the shadow run sent no copies"
    assert result["summary"]["p99_ratio_on_over_off"] is not None


def _train(result: dict[str, Any]) -> None:
    throughput = result["throughput"]
    assert {"plain_images_per_s", "trainer_images_per_s", "trainer_vs_plain_per_cpu_s"} <= throughput.keys()
    # The trainer's time to gate and a plain in-memory loop's, in the same run, both on two ranks.
    assert [(gate["loop"], gate["ranks"]) for gate in result["gate"]] == [("trainer", 2), ("plain (data in memory)", 2)]
    for gate in result["gate"]:
        assert {"gate", "wall_s", "cpu_s", "test_acc", "test_loss", "epochs_run"} <= gate.keys(), gate["loop"]
        assert gate["gate"]["verdict"] in {"pass", "fail"}, gate["loop"]


def _upload(result: dict[str, Any]) -> None:
    assert set(result["targets"]) == {"local", "sink"}
    for target, figures in result["targets"].items():
        assert set(figures) == {"sequential", "files", "shards"}, target
        assert figures["sequential"]["objects_per_s"] > 0
        for mode in ("files", "shards"):
            assert figures[mode]["status"] == "done", (target, mode, figures[mode])


@dataclass(frozen=True)
class BenchCase:
    script: str
    out_option: str
    check: Callable[[dict[str, Any]], None]


CASES = [
    BenchCase("console.py", "--out", _console),
    BenchCase("gateway_soak.py", "--out", _gateway_soak),
    BenchCase("gpu_train.py", "--output", _gpu_train),
    BenchCase("serve.py", "--out", _serve),
    BenchCase("shadow.py", "--out", _shadow),
    BenchCase("train.py", "--out", _train),
    BenchCase("upload.py", "--out", _upload),
]


def _results_state() -> dict[str, float]:
    return {path.name: path.stat().st_mtime for path in RESULTS.glob("*.json")} if RESULTS.is_dir() else {}


def test_every_bench_script_has_a_tiny_run() -> None:
    """A new bench script needs its case below, or it could stop working unnoticed."""
    assert sorted(path.name for path in BENCH.glob("*.py")) == sorted(case.script for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.script.removesuffix(".py") for case in CASES])
def test_bench_tiny_mode_runs_and_writes_its_json(case: BenchCase, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    results_before = _results_state()
    try:
        done = subprocess.run(
            [sys.executable, str(BENCH / case.script), "--tiny", case.out_option, str(out)],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"bench/{case.script} --tiny ran past {RUN_TIMEOUT_S} s; its output:\n{expired.stdout}\n{expired.stderr}"
        )
    assert done.returncode == 0, f"bench/{case.script} --tiny exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    result = json.loads(out.read_text())
    assert result["tiny"] is True
    case.check(result)
    assert _results_state() == results_before, "a tiny run wrote to bench/results"
