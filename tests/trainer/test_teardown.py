"""A rank of a distributed run leaves without interpreter teardown: the trainer and the bench's plain DDP loop.

gloo's threads outlive destroy_process_group, and a finished rank that tears its interpreter down races them
("terminate called without an active exception", SIGABRT) now and then. The race cannot be provoked on demand,
so the test checks that its precondition is gone: a `sitecustomize` put on PYTHONPATH registers an atexit hook
in every process of the job, and that hook leaves a marker only when an interpreter tears down.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.trainer.conftest import ROOT, run_torchrun, torchrun_command

MARKERS_VARIABLE = "ARSL_TEST_TEARDOWN_MARKERS"
SITECUSTOMIZE = f"""\
import atexit
import os
from pathlib import Path

_folder = Path(os.environ[{MARKERS_VARIABLE!r}])
_name = f"rank{{os.environ['RANK']}}-{{os.getpid()}}" if "RANK" in os.environ else f"launcher-{{os.getpid()}}"
(_folder / f"started-{{_name}}").touch()
atexit.register((_folder / f"teardown-{{_name}}").touch)
"""


def bench_plain_loop(data: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "bench" / "train.py"),
        "--plain-worker",
        "--data",
        str(data),
        "--batch-size",
        "64",
        "--steps",
        "4",
        "--warmup",
        "1",
    ]


@pytest.mark.parametrize("job", ["trainer", "bench-plain-loop"])
def test_ranks_of_a_two_rank_job_skip_interpreter_teardown(
    job: str, small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shim, markers = tmp_path / "shim", tmp_path / "markers"
    shim.mkdir()
    markers.mkdir()
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv(MARKERS_VARIABLE, str(markers))
    command = (
        torchrun_command(small_data, tmp_path / "out", "--epochs", "1")
        if job == "trainer"
        else bench_plain_loop(small_data)
    )

    completed = run_torchrun(command)

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "terminate called" not in completed.stderr and "SIGABRT" not in completed.stderr
    started = {path.name.removeprefix("started-") for path in markers.glob("started-*")}
    torn_down = {path.name.removeprefix("teardown-") for path in markers.glob("teardown-*")}
    ranks = {name for name in started if name.startswith("rank")}
    assert {name.split("-")[0] for name in ranks} == {"rank0", "rank1"}, started
    assert any(name.startswith("launcher-") for name in torn_down), "the hook runs where teardown happens"
    assert not ranks & torn_down, f"ranks that ran the interpreter's teardown: {sorted(ranks & torn_down)}"
