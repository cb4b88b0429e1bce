"""SIGKILL at seeded progress points, in loops: the upload, the console, a training rank, `arsl gate`,
the canary controller and the gateway — each a real process — and what must hold afterwards.

Every loop makes `reliability_runs(default)` runs (`ARSL_RELIABILITY_RUNS` scales them); run i uses
seed 1000 + i (or `$ARSL_KILL_SEED` + i), prints its kill points, and on failure prints the command
that replays that seed. A kill point is a *progress point* found by polling (k objects confirmed in
the journal, the k-th training step, k canary records, the k-th registry object), sometimes followed
by a short delay drawn from the seed so that the kill lands inside an action.

After each kill: the SQLite state file passes `PRAGMA integrity_check`; the journal agrees with the
store; no model version stays half-registered once the command is re-run; the gateway routes only
what the canary controller recorded; and the work, re-run, ends exactly where an uninterrupted run
ends (the same objects, the same epochs and test figures, the same promotion-log entries, once each).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arsl_tui.config import Settings, load_settings
from arsl_tui.domain.classes import ARSL_CLASSES
from arsl_tui.domain.jobs import JobSpecError
from arsl_tui.domain.manifest import SplitPolicy
from arsl_tui.ops.dataset import validate_dataset
from arsl_tui.ops.upload import dataset_prefix
from arsl_tui.providers.local.store import LocalObjectStore
from arsl_tui.state.db import state_path
from tests.conftest import jpeg_bytes
from tests.fixtures.upload_checks import assert_store_matches
from tests.reliability.kill_support import (
    CANARY_ENV,
    CLIENT_ERRORS,
    CanarySnapshot,
    CanaryStage,
    KillLoop,
    LoopRun,
    Processes,
    Tmux,
    Traffic,
    alive,
    arsl,
    assert_canary_ended_cleanly,
    assert_gateway_matches_record,
    assert_journal_agrees_with_store,
    assert_sqlite_intact,
    clean_env,
    confirmed_count,
    final_split,
    journal_objects,
    json_lines,
    last_json,
    query,
    seeded_pause,
    sigkill,
    wait_for,
    weights_key,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.close()


def make_images(root: Path, per_class: int, seed: int = 0) -> Path:
    for class_number, class_name in enumerate(ARSL_CLASSES):
        folder = root / class_name
        folder.mkdir(parents=True)
        for index in range(per_class):
            image = jpeg_bytes(seed * 1_000_003 + class_number * 1_009 + index)
            (folder / f"{class_name}_{index:04d}.jpg").write_bytes(image)
    return root


def settings_for(home: Path, cwd: Path) -> Settings:
    return load_settings(None, environ={}, cwd=cwd, cli_overrides={"home": str(home)})


def store_of(settings: Settings) -> LocalObjectStore:
    return LocalObjectStore(settings.home_dir / "store" / settings.storage.bucket)


# --- the upload -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upload_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """320 images (10 a class): 321 objects in files mode, room for kill points."""
    return make_images(tmp_path_factory.mktemp("kill-upload") / "data", per_class=10)


@dataclass
class UploadCase:
    """One data set uploaded to one fresh home, killed and re-run."""

    data: Path
    home: Path
    cwd: Path
    env: dict[str, str]
    settings: Settings
    prefix: str
    total: int

    @classmethod
    def make(cls, data: Path, root: Path) -> UploadCase:
        home, cwd = root / "home", root
        cwd.mkdir(parents=True, exist_ok=True)
        settings = settings_for(home, cwd)
        manifest = validate_dataset(data, SplitPolicy()).manifest
        return cls(
            data=data,
            home=home,
            cwd=cwd,
            env=clean_env(home),
            settings=settings,
            prefix=dataset_prefix(settings, manifest.id),
            total=len(manifest.images),
        )

    @property
    def db(self) -> Path:
        return state_path(self.home)

    def check_after_kill(self) -> set[str]:
        """The journal is intact and agrees with the store; the run reads as interrupted. Its confirmed keys."""
        assert_sqlite_intact(self.db)
        journal = assert_journal_agrees_with_store(self.db, store_of(self.settings), self.prefix)
        confirmed = {key for key, (state, _md5, _size) in journal.items() if state == "confirmed"}
        status = arsl(self.env, self.cwd, "upload", "status", "--json")
        assert status.returncode == 0, status.stderr
        runs = json.loads(status.stdout)["runs"]
        if runs and runs[0]["status"] != "done":
            assert runs[0]["status"] == "interrupted", runs[0]
            assert runs[0]["objects_confirmed"] <= len(confirmed), "the run counts objects never confirmed"
        return confirmed

    def finish_and_check(self, confirmed_before: set[str]) -> dict[str, Any]:
        """`arsl upload` again: only the rest is sent, nothing confirmed is rewritten, the store is exact."""
        store = store_of(self.settings)
        staged = self.prefix + ".manifest.json.staged"  # removed once copied into place: not kept as it was
        identity = {key: (store.root / key).stat() for key in confirmed_before if key != staged}
        rerun = arsl(self.env, self.cwd, "upload", str(self.data), "--mode", "files", "--json", "--yes")
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        outcome = last_json(rerun)
        assert (outcome["event"], outcome["status"]) == ("outcome", "done"), outcome
        assert outcome["objects_skipped"] >= len(confirmed_before), "confirmed objects were sent again"
        assert outcome["objects_sent"] + outcome["objects_skipped"] == self.total + 1
        for key, before in identity.items():
            after = (store.root / key).stat()
            assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), f"{key} was rewritten"
        assert store.head(staged) is None, "the staged manifest is left behind"
        assert_store_matches(store, self.settings, validate_dataset(self.data, SplitPolicy()).manifest, "files")
        assert_sqlite_intact(self.db)
        assert {state for state, _md5, _size in journal_objects(self.db).values()} == {"confirmed"}
        report = json.loads(arsl(self.env, self.cwd, "upload", "status", "--json").stdout)
        assert report["runs"][0]["status"] == "done" and report["resumable"] is None
        return outcome


def kill_upload_at(
    case: UploadCase, run: LoopRun, processes: Processes, target: int, concurrency: int, output: Path
) -> bool:
    """Start `arsl upload`, SIGKILL it once the journal confirms `target` objects; False if it ended first."""
    process = processes.arsl(
        case.env,
        case.cwd,
        "upload",
        str(case.data),
        "--mode",
        "files",
        "--concurrency",
        str(concurrency),
        "--yes",
        output=output,
    )

    def reached() -> bool:
        if process.poll() is not None:
            return True
        return (
            bool(query(case.db, "SELECT 1 FROM upload_runs WHERE pid = ?", (process.pid,)))
            and confirmed_count(case.db) >= target
        )

    wait_for(reached, f"{target} confirmed objects", timeout=120)
    killed = sigkill(process.pid)
    process.wait(timeout=30)
    if not killed or process.returncode == 0:
        run.note(f"kill point {target} confirmed (concurrency {concurrency}): the upload ended first")
        return False
    run.note(f"kill point {target} confirmed (concurrency {concurrency}): SIGKILL landed at {confirmed_count(case.db)}")
    return True


def upload_run(case: UploadCase, run: LoopRun, loop: KillLoop, processes: Processes) -> None:
    points = sorted(run.rng.sample(range(case.total), 2 if run.rng.random() < 0.5 else 1))
    confirmed: set[str] = set()
    for number, target in enumerate(points):
        killed = kill_upload_at(
            case, run, processes, target, run.rng.choice((1, 2, 8)), case.cwd / f"upload-{number}.log"
        )
        now_confirmed = case.check_after_kill()
        assert confirmed <= now_confirmed, "an object the journal confirmed became unconfirmed"
        confirmed = now_confirmed
        loop.count("kills" if killed else "ended before the kill")
    outcome = case.finish_and_check(confirmed)
    run.note(f"re-run: {outcome['objects_skipped']} skipped, {outcome['objects_sent']} sent, store exact")
    loop.count("resumed exact")


def test_upload_kill_loop(
    upload_set: Path, tmp_path: Path, processes: Processes, request: pytest.FixtureRequest
) -> None:
    """kill -9 of `arsl upload` at k confirmed objects (once or twice a run), then a re-run finishes exactly."""
    loop = KillLoop("upload", 2, request.node.nodeid)
    for run in loop:
        with loop.replayable(run):
            upload_run(UploadCase.make(upload_set, tmp_path / f"run-{run.index}"), run, loop, processes)
    loop.summary()


# --- the console ----------------------------------------------------------------------------------

CONSOLE = Path(sys.executable).with_name("arsl")
PROGRESS = re.compile(r"objects ([0-9,]+)\s*/\s*([0-9,]+)")


def console_run(case: UploadCase, run: LoopRun, loop: KillLoop) -> None:
    target = run.rng.randint(1, case.total // 2)
    tmux = Tmux()
    try:
        slow = "ARSL_UPLOAD_MODE=files ARSL_UPLOAD_CONCURRENCY=1"  # one object at a time: room to kill in
        tmux.start(f"exec env -u COLORTERM TERM=xterm-256color ARSL_HOME={case.home} ESCDELAY=25 {slow} {CONSOLE}")
        tmux.wait_text("1 Overview")
        tmux.keys("2")
        tmux.wait_text("Data set folder")
        tmux.keys("Enter")  # opens the folder field
        tmux.wait_text("leave field")
        tmux.keys(str(case.data), literal=True)
        tmux.keys("Enter")
        tmux.wait_text(f"Valid: {case.total} images")
        tmux.keys("S")
        tmux.wait_text("Start the upload?")
        tmux.keys("y")
        screen = wait_for(
            lambda: (lambda text: text if PROGRESS.search(text) else None)(tmux.screen()),
            "the Upload tab to show the upload running",
            interval=0.02,
        )
        wait_for(lambda: confirmed_count(case.db) >= target, f"{target} confirmed objects", timeout=120)
        screen = tmux.screen() if PROGRESS.search(tmux.screen()) else screen
        shown = PROGRESS.search(screen)
        assert shown is not None and "no upload running" not in screen
        pid = tmux.pane_pid()
        assert sigkill(pid), "the console ended before the kill"
        landed = confirmed_count(case.db)
        wait_for(lambda: not tmux.alive(), "the killed console's pane to close", interval=0.02)
        assert not alive(pid)
    finally:
        tmux.kill_server()
    run.note(
        f"kill point {target} confirmed: the Upload tab showed objects {shown.group(1)}/{shown.group(2)}; "
        f"SIGKILL of the console (pid {pid}) landed at {landed}"
    )
    loop.count("kills")
    confirmed = case.check_after_kill()
    assert len(confirmed) >= target
    outcome = case.finish_and_check(confirmed)
    run.note(f"`arsl upload`: {outcome['objects_skipped']} skipped, {outcome['objects_sent']} sent, store exact")
    loop.count("resumed exact")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_console_kill_loop(upload_set: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """SIGKILL of the console (the tmux pane's process) while its Upload tab shows an upload running, at k
    confirmed objects: the journal is consistent and `arsl upload` resumes to exact."""
    loop = KillLoop("console", 1, request.node.nodeid)
    for run in loop:
        with loop.replayable(run):
            console_run(UploadCase.make(upload_set, tmp_path / f"run-{run.index}"), run, loop)
    loop.summary()


# --- a training rank ------------------------------------------------------------------------------

TRAIN_EPOCHS = 2
TRAIN_ARGS = (
    "--epochs",
    str(TRAIN_EPOCHS),
    "--batch-size",
    "32",
    "--gpus",
    "2",
    "--seed",
    "4",
    "--model",
    "compact",
    "--param",
    "log-every=1",
    "--param",
    "patience=0",
    "--param",
    "val-fraction=0.2",
    "--param",
    "test-fraction=0.2",
)


def job_pids(job_id: str) -> dict[str, list[int]]:
    """The live processes of a local job, found by the ARSL_JOB_ID it hands down: 'ranks' and 'others'."""
    found: dict[str, list[int]] = {"ranks": [], "others": []}
    marker = f"ARSL_JOB_ID={job_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not alive(int(entry.name)):
            continue
        try:
            variables = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in variables:
            rank = any(item.startswith(b"RANK=") for item in variables)
            found["ranks" if rank else "others"].append(int(entry.name))
    return found


def rank_of(pid: int) -> int:
    variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(item for item in variables if item.startswith(b"RANK=")).split(b"=", 1)[1])


def metric_records(output: Path) -> list[dict[str, Any]]:
    from trainer.metrics import read_records

    return read_records(output / "metrics.jsonl")


@dataclass
class TrainingStage:
    root: Path
    data: Path
    env: dict[str, str]
    home: Path
    reference: list[dict[str, Any]]
    """metrics.jsonl of an uninterrupted run of the same job."""

    def platform(self) -> Any:
        from arsl_tui.providers.local.jobs import LocalTrainingPlatform

        return LocalTrainingPlatform(self.home)

    def submit(self) -> tuple[str, Path]:
        """`arsl train submit`: the job's id and output folder."""
        result = arsl(self.env, self.root, "train", "submit", str(self.data), *TRAIN_ARGS, "--yes", "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        submitted = last_json(result)
        return str(submitted["job_id"]), Path(submitted["output"])

    def resume(self, job_id: str) -> str:
        from arsl_tui.ops.training import resume_job

        platform = self.platform()
        try:
            return str(resume_job(platform, job_id).job_id)
        finally:
            platform.close()

    def wait_ended(self, job_id: str, timeout: float = 240) -> Any:
        platform = self.platform()
        try:
            return wait_for(
                lambda: (lambda status: status if status.terminal else None)(platform.status(job_id)),
                f"job {job_id} to end",
                timeout=timeout,
                interval=0.05,
            )
        finally:
            platform.close()

    @property
    def steps(self) -> int:
        return sum(record["type"] == "step" for record in self.reference)


def assert_trained_to_the_end(output: Path, reference: list[dict[str, Any]]) -> dict[str, Any]:
    """metrics.jsonl holds every epoch once and one final record, equal to the uninterrupted run's figures;
    the package is whole; no temporary of the killed run is left."""
    from arsl_tui.ops.registry import inspect_package

    records = metric_records(output)
    epochs = [record for record in records if record["type"] == "epoch"]
    assert [record["epoch"] for record in epochs] == list(range(1, TRAIN_EPOCHS + 1)), "an epoch missing or twice"
    finals = [record for record in records if record["type"] == "final"]
    assert len(finals) == 1 and records[-1] is finals[0]
    expected = {record["epoch"]: record for record in reference if record["type"] == "epoch"}
    for record in epochs:  # same seed, same global batches: the resumed run retraces the uninterrupted one
        assert record["val_loss"] == pytest.approx(expected[record["epoch"]]["val_loss"], rel=1e-4)
        assert record["val_acc"] == pytest.approx(expected[record["epoch"]]["val_acc"], abs=1e-9)
    final, reference_final = finals[0], reference[-1]
    assert final["test_acc"] == pytest.approx(reference_final["test_acc"], abs=1e-9)
    assert final["test_loss"] == pytest.approx(reference_final["test_loss"], rel=1e-4)
    assert final["confusion"] == reference_final["confusion"]
    inspect_package(output / "model")  # whole, safetensors only, its weights' SHA-256 as recorded
    strays = [
        path.name
        for folder in (output, output / "checkpoints")
        for path in folder.iterdir()
        if path.name.startswith(".")
    ]
    assert not strays, f"a killed run's temporaries were left behind: {strays}"
    return final


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainingStage]:
    """256 synthetic images, and the metrics of one uninterrupted 2-rank job on them (the reference)."""
    from arsl_tui.ops.synth import synthesize

    root = tmp_path_factory.mktemp("kill-training")
    data = synthesize(root / "data", per_class=8, seed=3).out
    home = root / "home"
    stage = TrainingStage(root=root, data=data, env=clean_env(home), home=home, reference=[])
    try:
        job_id, output = stage.submit()
        status = stage.wait_ended(job_id)
        assert status.phase.value == "Completed", status.reason
        stage.reference = metric_records(output)
        assert stage.steps and stage.reference[-1]["type"] == "final"
        yield stage
    finally:
        platform = stage.platform()
        try:
            for status in platform.list(limit=200):
                if not status.terminal:
                    platform.stop(status.job_id)  # by the process groups it recorded
        finally:
            platform.close()


def training_run(stage: TrainingStage, run: LoopRun, loop: KillLoop) -> None:
    target = run.rng.randint(1, stage.steps + 1)  # the last point: after the last epoch, in the final phase
    victim = run.rng.choice((0, 1))
    delay = run.rng.choice((0.0, 0.0, run.rng.uniform(0, 0.3)))
    job_id, output = stage.submit()

    def reached() -> bool:
        records = metric_records(output)
        if target > stage.steps:
            hit = sum(record["type"] == "epoch" for record in records) >= TRAIN_EPOCHS
        else:
            hit = sum(record["type"] == "step" for record in records) >= target
        return hit or (bool(records) and not job_pids(job_id)["ranks"])

    wait_for(reached, f"step {target} of job {job_id}", timeout=240, interval=0.01)
    seeded_pause(delay)
    ranks = {rank_of(pid): pid for pid in job_pids(job_id)["ranks"]}
    records = metric_records(output)
    where = (
        f"{sum(r['type'] == 'step' for r in records)} steps, {sum(r['type'] == 'epoch' for r in records)} "
        "epochs written"
    )
    killed = victim in ranks and sigkill(ranks[victim])
    status = stage.wait_ended(job_id)
    if not killed or status.phase.value == "Completed":
        run.note(f"kill point step {target} (+{delay:.3f} s), rank {victim}: the job ended first ({where})")
        loop.count("ended before the kill")
        return
    run.note(
        f"kill point step {target} of {stage.steps} (+{delay:.3f} s): SIGKILL of rank {victim} (pid "
        f"{ranks[victim]}) at {where}; job {status.phase.value}: {' '.join(status.reason.split())[:90]}"
    )
    assert status.phase.value == "Failed" and status.reason
    assert job_pids(job_id) == {"ranks": [], "others": []}, "the killed job left processes running"
    assert_sqlite_intact(state_path(stage.home))
    interrupted = metric_records(output)
    assert "final" not in [record["type"] for record in interrupted]
    done = [record["epoch"] for record in interrupted if record["type"] == "epoch"]
    assert done == list(range(1, len(done) + 1))
    loop.count("kills")

    resumed = stage.resume(job_id)
    ended = stage.wait_ended(resumed)
    assert ended.phase.value == "Completed", ended.reason
    assert Path(ended.output) == output
    final = assert_trained_to_the_end(output, stage.reference)
    shown = arsl(stage.env, stage.root, "train", "status", resumed, "--json")
    assert json.loads(shown.stdout)["progress"]["epochs_done"] == TRAIN_EPOCHS, shown.stdout[-500:]
    with pytest.raises(JobSpecError, match="completed: there is nothing to resume"):
        stage.resume(resumed)
    run.note(
        f"resumed as {resumed}: epochs 1..{TRAIN_EPOCHS} once each, test acc {final['test_acc']:.4f} and "
        "confusion matrix = the uninterrupted run's"
    )
    loop.count("resumed exact")


@pytest.mark.slow
def test_training_rank_kill_loop(training: TrainingStage, request: pytest.FixtureRequest) -> None:
    """SIGKILL of one torchrun rank at the k-th step (or in the final evaluation and export): the job is
    recorded Failed with nothing left running, and resuming it ends exactly as an uninterrupted run."""
    loop = KillLoop("training", 1, request.node.nodeid)
    for run in loop:
        with loop.replayable(run):
            training_run(training, run, loop)
    loop.summary()


# --- the registry: `arsl gate` registering a version ----------------------------------------------

CRAFTED_LAUNCHER = """
import json, os, sys
from pathlib import Path
from tests.fixtures.model_packages import metrics_records, write_package

scenario = json.loads(Path(sys.argv[1]).read_text())
output = Path(sys.argv[sys.argv.index("--output") + 1])
write_package(output / "model", scenario["seed"], job_id=os.environ.get("ARSL_JOB_ID", ""), manifest_id="m-kill")
with (output / "metrics.jsonl").open("w") as handle:
    for record in metrics_records(test_acc=scenario["test_acc"], manifest_id="m-kill"):
        handle.write(json.dumps(record) + "\\n")
"""


def crafted_jobs(root: Path, home: Path, seeds: tuple[int, ...]) -> list[str]:
    """Jobs of the real local platform (wrapper, record, exit status) whose launcher writes a passing job's
    metrics and a small package instead of training: each gate verdict is known in advance."""
    script = root / "launcher.py"
    script.write_text(CRAFTED_LAUNCHER, encoding="utf-8")
    data = root / "data"
    data.mkdir(exist_ok=True)
    jobs = []
    for seed in seeds:
        scenario = root / f"job-{seed}.json"
        scenario.write_text(json.dumps({"seed": seed, "test_acc": 0.975}), encoding="utf-8")
        jobs.append(crafted_job(home, [sys.executable, str(script), str(scenario)], data))
    return jobs


def crafted_job(home: Path, launcher: list[str], data: Path) -> str:
    from arsl_tui.domain.jobs import JobSpec
    from arsl_tui.providers.local.jobs import LocalTrainingPlatform

    platform = LocalTrainingPlatform(home, launcher=launcher)
    try:
        job_id = platform.submit(JobSpec(dataset=str(data), epochs=4, batch_size=8, learning_rate=0.001))
        status = wait_for(
            lambda: (lambda found: found if found.terminal else None)(platform.status(job_id)),
            f"crafted job {job_id}",
            interval=0.02,
        )
        assert status.phase.value == "Completed", status.reason
    finally:
        platform.close()
    return job_id


def store_objects(home: Path) -> set[str]:
    """Keys of every object in the local store (its own bookkeeping folder left out)."""
    root = home / "store" / "arsl-ml"
    if not root.is_dir():
        return set()
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and ".arsl-store" not in path.relative_to(root).parts
    }


@dataclass(frozen=True)
class RegistryTemplate:
    root: Path
    home: Path
    jobs: list[str]
    writes: list[int]
    """Objects an uninterrupted `arsl gate` of each job writes (measured on a copy)."""


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> RegistryTemplate:
    """A home holding two finished jobs that pass the gate; each run works on a copy of it."""
    root = tmp_path_factory.mktemp("kill-registry")
    home = root / "home"
    jobs = crafted_jobs(root, home, (11, 12))
    calibration = root / "calibration"
    shutil.copytree(home, calibration)
    env = clean_env(calibration)
    writes = []
    for job in jobs:
        before = store_objects(calibration)
        result = arsl(env, root, "gate", job, "--json")
        assert result.returncode == 0, result.stderr
        writes.append(len(store_objects(calibration) - before))
    return RegistryTemplate(root=root, home=home, jobs=jobs, writes=writes)


def registry_state(home: Path) -> tuple[Any, list[Any], list[Any]]:
    """(state, versions, log) read as every command reads them; a torn or corrupt object raises here."""
    from arsl_tui.ops.registry import ModelRegistry

    registry = ModelRegistry(LocalObjectStore(home / "store" / "arsl-ml"), "models/")
    return registry.state(), registry.list(), registry.log()


def assert_registry_consistent(home: Path, env: dict[str, str] | None, cwd: Path, killed_jobs: set[str]) -> list[str]:
    """The registry reads cleanly; only a killed job not re-run yet may have a version record without its log
    entry.

    Returns the half-registered versions of `killed_jobs`.
    """
    state, versions, log = registry_state(home)
    half = [record for record in versions if record.version not in state.registered]
    assert all(record.lineage.job_id in killed_jobs for record in half), (
        f"half-registered versions of other jobs: {[record.version for record in half]}"
    )
    assert set(state.aliases.values()) <= set(state.registered), "an alias points at an unregistered version"
    per_job = Counter(record.lineage.job_id for record in versions)
    assert all(count == 1 for count in per_job.values()), f"a job holds several versions: {per_job}"
    assert [entry.seq for entry in log] == list(range(1, len(log) + 1))
    if env is not None:  # and the CLI reads it too
        listed = arsl(env, cwd, "models", "list", "--json")
        assert listed.returncode == 0, listed.stderr
    return [record.version for record in half]


def kill_gate_at(
    home: Path, env: dict[str, str], cwd: Path, job: str, target: int, processes: Processes, output: Path
) -> tuple[bool, list[str]]:
    """`arsl gate JOB`, SIGKILLed once `target` new objects are in the store; (killed, the objects it wrote)."""
    before = store_objects(home)
    process = processes.arsl(env, cwd, "gate", job, "--json", output=output)
    wait_for(
        lambda: process.poll() is not None or len(store_objects(home) - before) >= target,
        f"{target} registry objects",
        timeout=120,
        interval=0.001,
    )
    killed = sigkill(process.pid)
    process.wait(timeout=30)
    root = home / "store" / "arsl-ml"
    written = sorted(store_objects(home) - before, key=lambda key: (root / key).stat().st_mtime_ns)
    return killed and process.returncode == -9, [_short(key) for key in written]


def _short(key: str) -> str:
    """A registry key as a kill-point name: versions/v1.json, log/00000002.json, packages/…/config.json."""
    parts = key.removeprefix("models/").split("/")
    return "/".join([*parts[:1], "…", *parts[-1:]]) if parts[0] in ("packages", "gate-records") else "/".join(parts)


def registry_run(template: RegistryTemplate, home: Path, run: LoopRun, loop: KillLoop, processes: Processes) -> None:
    shutil.copytree(template.home, home)
    env, cwd = clean_env(home), home.parent
    first = template.jobs[0]
    deferred = False
    for job, writes in zip(template.jobs, template.writes, strict=True):
        target = run.rng.randint(1, writes)
        killed, written = kill_gate_at(home, env, cwd, job, target, processes, cwd / f"gate-{job}.log")
        # The first job, when its re-run is deferred, may still be half-registered beside this one.
        half = assert_registry_consistent(home, env, cwd, {job, first} if deferred else {job})
        run.note(
            f"{job}: kill point object {target} of {writes}: "
            + (
                f"SIGKILL landed after {', '.join(written)}; half-registered: {half or 'none'}"
                if killed
                else "the gate ended first"
            )
        )
        loop.count("kills" if killed else "ended before the kill")
        loop.count("half-registered after a kill", len(half))
        if job == first and run.rng.random() < 0.5:
            deferred = True  # the next job registers before this one is re-run
            run.note(f"{job}: re-run after the next job")
            continue
        again = [job, first] if deferred else [job]
        for index, rerun in enumerate(again):
            result = arsl(env, cwd, "gate", rerun, "--json")
            assert result.returncode == 0, result.stderr[-2000:]
            # A job still waiting for its re-run may still be half-registered; every one re-run may not.
            assert_registry_consistent(home, None, cwd, set(again[index + 1 :]))
    state, versions, log = registry_state(home)
    assert sorted(record.lineage.job_id for record in versions) == sorted(template.jobs)
    assert set(state.registered) == {record.version for record in versions}, "a version stayed half-registered"
    registrations = [entry.to_version for entry in log if entry.action == "register"]
    assert sorted(registrations) == sorted(state.registered), "a version was registered twice"
    if deferred:
        # The first job's version may be registered without its champion move when the kill lands between them;
        # the next job's version, registered while there is no champion, then becomes champion, as it should.
        assert state.aliases["champion"] in registrations, "the champion is a registered version"
    else:
        assert state.aliases["champion"] == registrations[0], "the first version registered is champion"
    assert state.aliases["challenger"] == max(state.registered, key=lambda version: int(version[1:]))
    run.note(
        f"re-run: {', '.join(f'{r.lineage.job_id}={r.version}' for r in versions)}, aliases "
        f"{dict(state.aliases)}, {len(log)} log entries, none twice"
    )
    loop.count("completed once")


def test_registry_kill_loop(
    registry_template: RegistryTemplate, tmp_path: Path, processes: Processes, request: pytest.FixtureRequest
) -> None:
    """SIGKILL of `arsl gate` at the k-th object it writes (gate record, package files, version record, log
    entries, alias cache), for two jobs; re-run (in a seeded order), every version is registered once."""
    loop = KillLoop("registry", 2, request.node.nodeid)
    for run in loop:
        with loop.replayable(run):
            registry_run(registry_template, tmp_path / f"run-{run.index}" / "home", run, loop, processes)
    loop.summary()


# --- the canary controller and the gateway --------------------------------------------------------


@pytest.fixture(scope="module")
def canary_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanaryStage]:
    """v1 and v2 carry the same weights (a good challenger for each other), v3 random ones (a bad one); the
    gateway serves the champion; clients send predictions and true labels for the whole module."""
    pytest.importorskip("torch")
    from arsl_tui.ops import serving
    from arsl_tui.ops.registry import ModelRegistry
    from tests.fixtures.model_packages import gate_json, metrics_json
    from tests.serving.conftest import image_bytes
    from tests.serving.packages import export_random_package
    from trainer.predict import Predictor

    root = tmp_path_factory.mktemp("kill-canary")
    home, packages = root / "home", root / "packages"
    champion = export_random_package(packages / "champion", seed=1)
    bad = export_random_package(packages / "random", seed=3)
    settings = settings_for(home, root)
    registry = ModelRegistry.from_settings(settings)
    for job, package in (("job-v1", champion), ("job-v2", champion), ("job-v3", bad)):
        registry.register(
            package,
            job_id=job,
            manifest_id="m-kill",
            source=str(package),
            gate=gate_json(),
            metrics=metrics_json(),
            user="tests",
        )
    images = [image_bytes(seed) for seed in range(48)]
    labels = [answer[0].label for answer in Predictor.load(champion).predict(images)]
    env = clean_env(home, **CANARY_ENV)
    traffic: Traffic | None = None
    try:
        first = arsl(env, root, "deploy", "champion", "--yes", "--json")
        assert first.returncode == 0, first.stderr
        traffic = Traffic(home=home, key=serving.create_key(settings, "load"), images=images, labels=labels)
        traffic.start()
        yield CanaryStage(home=home, root=root, env=env, traffic=traffic)
    finally:
        if traffic is not None:
            traffic.close()
        serving.stop(settings)  # the gateway this module started, found by its recorded pid


def pick_challenger(stage: CanaryStage, run: LoopRun, good_share: float) -> tuple[str, str, bool]:
    """(champion, challenger, good): a good challenger has the champion's weights, a bad one random weights."""
    champion = stage.registry().aliases()["champion"]
    good = run.rng.random() < good_share
    return champion, (("v2" if champion == "v1" else "v1") if good else "v3"), good


def kill_when(stage: CanaryStage, process: subprocess.Popen[bytes], rows: int, delay: float, what: str) -> bool:
    """SIGKILL `process` once the canary's records reach `rows` (journal lines + action outcomes), `delay` later."""
    wait_for(
        lambda: process.poll() is not None or stage.rows() >= rows,
        f"{rows} canary records ({what})",
        timeout=120,
        interval=0.01,
    )
    seeded_pause(delay)
    killed = sigkill(process.pid)
    process.wait(timeout=30)
    return killed and process.returncode == -9


def check_after_controller_kill(stage: CanaryStage, run_id: str | None, before: dict[str, int]) -> CanarySnapshot:
    """The state file is intact, the lock free, and the gateway routes what the controller recorded."""
    assert_sqlite_intact(stage.db)
    assert stage.lock_is_free(), "a killed controller still holds the canary lock"
    snapshot = stage.snapshot()
    routed = stage.routed()
    if run_id is None:
        assert weights_key(routed) == weights_key(before), f"no canary was recorded, yet the gateway routes {routed}"
        return snapshot
    assert snapshot.run is not None and snapshot.run.run_id == run_id
    assert_gateway_matches_record(snapshot, routed, before)
    run = snapshot.run
    champion = stage.registry().aliases()["champion"]
    if any(kind == "promote_alias" and outcome == "done" for kind, outcome in snapshot.actions.values()):
        assert champion == run.challenger, "the alias move is recorded done but the champion did not move"
    elif any(action.kind.value == "promote_alias" for action in run.pending):
        assert champion in (run.champion, run.challenger)  # decided: done or not, never anything else
    else:
        assert champion == run.champion, f"the champion moved to {champion} without a recorded decision"
    return snapshot


def watch_to_the_end(
    stage: CanaryStage,
    run_id: str,
    good: bool,
    champion: str,
    challenger: str,
    result: subprocess.CompletedProcess[str] | None = None,
) -> str:
    """`arsl canary watch` (run now unless `result` is given) carried the same run to its end, saying so; every
    decision, action and log entry once; the gateway and the registry's aliases agree with the end."""
    result = result or stage.arsl("canary", "watch", "--json", timeout=180)
    lines = json_lines(result.stdout)
    assert lines, result.stderr[-2000:]
    assert {line["run_id"] for line in lines} == {run_id}, "the watch did not carry on the same run"
    final = lines[-1]
    assert final["phase"] in ("promoted", "rolled_back"), final
    assert result.returncode == (0 if final["phase"] == "promoted" else 1), result.stderr[-1000:]
    assert final["journal"][-1]["event"] == final["phase"], "the end is not in the journal"
    snapshot = stage.snapshot(run_id)
    assert snapshot.run is not None
    assert_canary_ended_cleanly(snapshot, stage.log_writers())
    assert weights_key(stage.routed()) == weights_key(final_split(snapshot.run))
    registry = stage.registry()
    assert registry.aliases()["champion"] == (challenger if final["phase"] == "promoted" else champion)
    promotions = [
        entry
        for entry in registry.log()
        if entry.action == "set_alias" and entry.alias == "champion" and run_id in entry.reason
    ]
    assert len(promotions) == (1 if final["phase"] == "promoted" else 0), "the champion moved more than once"
    if not good:
        assert final["phase"] == "rolled_back", "a bad challenger was promoted"
    return str(final["phase"])


def kill_canary_start(
    stage: CanaryStage, run: LoopRun, processes: Processes, challenger: str, output: Path
) -> tuple[str | None, str]:
    """SIGKILL `arsl canary start` at 0–4 records of its run (0: a seeded delay from its launch)."""
    previous = stage.snapshot().run
    previous_id = previous.run_id if previous is not None else None
    rows = run.rng.randint(0, 4)
    delay = run.rng.uniform(0.2, 1.0) if rows == 0 else run.rng.choice((0.0, run.rng.uniform(0, 0.05)))
    process = processes.arsl(stage.env, stage.root, "canary", "start", challenger, "--yes", output=output)

    def recorded() -> bool:
        current = stage.snapshot().run
        return process.poll() is not None or (
            current is not None and current.run_id != previous_id and stage.rows() >= rows
        )

    if rows:
        wait_for(recorded, f"{rows} records of the new run", timeout=120, interval=0.01)
    killed = kill_when(stage, process, 0, delay, "start")
    current = stage.snapshot().run
    run_id = current.run_id if current is not None and current.run_id != previous_id else None
    return (
        run_id,
        f"SIGKILL of `arsl canary start` at {rows} records +{delay:.3f} s "
        f"{'landed' if killed else 'came after it ended'}",
    )


def canary_run(stage: CanaryStage, run: LoopRun, loop: KillLoop, processes: Processes, tmp_path: Path) -> None:
    champion, challenger, good = pick_challenger(stage, run, 0.6)
    stage.serve_champion_alone()
    before = {champion: 100}
    target = ("watch", "start", "promote" if good else "watch", "watch")[run.seed % 4]  # by the seed: CI sees several
    output = tmp_path / f"run-{run.index}-{target}.log"
    if target == "start":
        run_id, how = kill_canary_start(stage, run, processes, challenger, output)
    else:
        run_id = stage.start(challenger)
        if target == "promote":
            wait_for(
                lambda: (lambda now: now is not None and now.phase.value == "observing" and not now.busy)(
                    stage.snapshot().run
                ),
                "the canary to observe its first window",
                timeout=60,
            )
            command: tuple[str, ...] = ("canary", "promote", "--full", "--yes")
            rows = run.rng.randint(0, 6)
        else:
            command = ("canary", "watch", "--json")
            rows = run.rng.randint(1, 9 if good else 4)  # of the 10 (good) or 6 (bad) records a watch writes
        delay = run.rng.choice((0.0, run.rng.uniform(0, 0.15)))
        process = processes.arsl(stage.env, stage.root, *command, output=output)
        killed = kill_when(stage, process, stage.rows() + rows, delay, target)
        how = (
            f"SIGKILL of `arsl {' '.join(command[:2])}` at {rows} records +{delay:.3f} s "
            f"{'landed' if killed else 'came after it ended'}"
        )
    snapshot = check_after_controller_kill(stage, run_id, before)
    state = (
        "no run recorded"
        if run_id is None or snapshot.run is None
        else f"{snapshot.run.phase.value}, pending {[action.kind.value for action in snapshot.run.pending]}"
    )
    run.note(
        f"{challenger} ({'good' if good else 'bad'}) vs champion {champion}: {how}: {state}; the gateway "
        f"routes {stage.routed()}"
    )
    loop.count("kills" if "landed" in how else "ended before the kill")
    if run_id is None:  # killed before its decision was recorded: nothing happened, so start it again
        run_id = stage.start(challenger)
    outcome = watch_to_the_end(stage, run_id, good, champion, challenger)
    run.note(f"a restarted watch: {outcome}; every decision, action and log entry once; gateway and aliases agree")
    loop.count(outcome)


@pytest.mark.slow
def test_canary_controller_kill_loop(
    canary_stage: CanaryStage, processes: Processes, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL of the controller — `arsl canary watch`, `arsl canary start` or `arsl canary promote --full` —
    at k canary records (plus a seeded delay, to land inside an action): the gateway routes only what was
    recorded, and a restarted `arsl canary watch` carries the same run to its end, each action once."""
    loop = KillLoop("canary", 2, request.node.nodeid)
    for run in loop:
        with loop.replayable(run):
            canary_run(canary_stage, run, loop, processes, tmp_path)
    loop.summary()


def refused_requests(traffic: Traffic) -> int:
    return sum(traffic.count(name) for name in (*CLIENT_ERRORS, "no gateway"))


def restart_gateway(stage: CanaryStage, had: dict[str, int], changes_at_kill: int) -> str:
    """`arsl service start`: it comes back with the weights recorded for it — the ones it had, unless the
    controller recorded a change while it was down. What happened, in words."""
    changes, recorded = stage.stored_weights()
    started = stage.arsl("service", "start", "--json")
    if started.returncode != 0:
        assert "running already" in started.stderr, started.stderr[-1000:]
        return "the controller had restarted it already"
    back = json.loads(started.stdout)["weights"]
    changes_then, recorded_then = stage.stored_weights()
    assert weights_key(back) in {weights_key(recorded), weights_key(recorded_then)}, (
        f"the gateway came back with {back}; {recorded} was recorded for it"
    )
    if changes_then == changes == changes_at_kill:
        assert weights_key(back) == weights_key(had), f"it had {had}, it came back with {back}"
        return f"`arsl service start`: back with the weights it had, {back}"
    return f"`arsl service start`: back with {back}, recorded by the controller while it was down"


def watch_lines(log: Path) -> list[dict[str, Any]]:
    try:
        return json_lines(log.read_text())
    except FileNotFoundError:
        return []
    except json.JSONDecodeError:  # a line being written: read it next time
        return []


def start_killed_after_deploy(stage: CanaryStage, processes: Processes, challenger: str, output: Path) -> str:
    """`arsl canary start`, SIGKILLed once its deploy is recorded done (before it can record `deployed`)."""
    previous = stage.snapshot().run
    previous_id = previous.run_id if previous is not None else None
    start = processes.arsl(stage.env, stage.root, "canary", "start", challenger, "--yes", output=output)

    def deployed() -> str | None:
        current = stage.snapshot().run
        if current is None or current.run_id == previous_id:
            return None
        done = any(kind == "deploy" and outcome == "done" for kind, outcome in stage.snapshot().actions.values())
        return current.run_id if done else None

    run_id = wait_for(
        lambda: deployed() or (None if start.poll() is None else "ended"),
        "the deploy to take effect",
        timeout=120,
        interval=0.002,
    )
    sigkill(start.pid)
    start.wait(timeout=30)
    assert run_id != "ended", f"`arsl canary start` ended before its deploy was recorded: {output.read_text()[-500:]}"
    return run_id


def gateway_run(stage: CanaryStage, run: LoopRun, loop: KillLoop, processes: Processes, tmp_path: Path) -> None:
    champion, challenger, good = pick_challenger(stage, run, 0.75)
    stage.serve_champion_alone()
    before = {champion: 100}
    moment = ("watching", "deploying", "watching")[run.seed % 3]  # by the seed, so the CI's few runs see both
    log = tmp_path / f"watch-{run.index}.log"
    watch: subprocess.Popen[bytes] | None = None
    if moment == "deploying":  # the controller died after its deploy took effect; then the gateway dies too
        run_id = start_killed_after_deploy(stage, processes, challenger, tmp_path / f"start-{run.index}.log")
        rows, delay = 0, 0.0
    else:
        run_id = stage.start(challenger)
        rows = run.rng.randint(0, 8 if good else 3)
        delay = run.rng.choice((0.0, run.rng.uniform(0, 0.5)))
        watching = watch = processes.arsl(stage.env, stage.root, "canary", "watch", "--json", output=log)
        wait_for(
            lambda: watching.poll() is not None or stage.rows() >= rows,
            f"{rows} canary records",
            timeout=120,
            interval=0.01,
        )
        seeded_pause(delay)
    changes, _recorded = stage.stored_weights()
    had = stage.routed()
    pid = stage.gateway_pid()
    assert pid is not None and sigkill(pid)
    wait_for(lambda: not alive(pid), "the gateway to die", timeout=30)
    refused_before = refused_requests(stage.traffic)
    changes_after, recorded = stage.stored_weights()
    if changes_after == changes:  # nothing changed the split between reading it and the kill
        assert weights_key(recorded) == weights_key(had), f"the gateway had {had}, {recorded} is recorded"
    at_kill = stage.snapshot(run_id).run
    assert at_kill is not None
    run.note(
        f"{challenger} ({'good' if good else 'bad'}) vs champion {champion}: SIGKILL of the gateway (pid {pid}) "
        + (
            f"at {rows} records +{delay:.3f} s of `arsl canary watch`"
            if moment == "watching"
            else "after `arsl canary start` was killed with its deploy done"
        )
        + f", canary {at_kill.phase.value}, pending {[action.kind.value for action in at_kill.pending]}; "
        f"it routed {had}"
    )
    seen = len(watch_lines(log))
    if watch is None:  # the controller restarted after the gateway died
        watch = processes.arsl(stage.env, stage.root, "canary", "watch", "--json", output=log)
    running = watch

    def noticed() -> str | None:
        """What the watch shows once the gateway is gone: never nothing."""
        for line in watch_lines(log)[seen:]:
            if line.get("error") or line.get("phase") in ("promoted", "rolled_back"):
                return f"the watch shows: {(line.get('error') or line['phase'])[:110]}"
        if stage.gateway_pid() is not None:
            return "the controller restarted the gateway itself (a deployment was due)"
        if running.poll() is not None:
            return f"the watch ended (exit {running.returncode})"
        return None

    how = (
        "the canary had ended"
        if at_kill.phase.ended
        else wait_for(noticed, "the watch to show why it waits", timeout=60, interval=0.02)
    )
    assert "watch ended" not in how or at_kill.phase.ended, f"the watch did not survive the gateway: {how}"
    back = restart_gateway(stage, had, changes)
    wait_for(lambda: stage.gateway_pid() is not None, "the gateway's record", timeout=60)
    served = stage.traffic.count("200")
    wait_for(lambda: stage.traffic.count("200") > served, "clients to be answered again", timeout=60)
    assert_sqlite_intact(stage.db)
    snapshot = stage.snapshot(run_id)
    if snapshot.run is not None and not snapshot.run.phase.ended:
        assert_gateway_matches_record(snapshot, stage.routed(), before)
    run.note(
        f"{how}; {back}; {refused_requests(stage.traffic) - refused_before} client attempts found no gateway meanwhile"
    )
    loop.count(f"kills while {moment}")
    watch.wait(timeout=180)
    result = subprocess.CompletedProcess(watch.args, watch.returncode, log.read_text(), "")
    outcome = watch_to_the_end(stage, run_id, good, champion, challenger, result)
    run.note(f"the watch carried on: {outcome}; every decision, action and log entry once")
    loop.count(outcome)


@pytest.mark.slow
def test_gateway_kill_loop(
    canary_stage: CanaryStage, processes: Processes, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL of the gateway in the middle of a canary, at k canary records (plus a seeded delay), while
    `arsl canary watch` drives it: the watch keeps going and says why it waits, `arsl service start` brings
    the gateway back with the weights it had (or the ones recorded for it since), and the canary ends."""
    loop = KillLoop("gateway", 2, request.node.nodeid)
    for run in loop:
        with loop.replayable(run):
            gateway_run(canary_stage, run, loop, processes, tmp_path)
    loop.summary()
