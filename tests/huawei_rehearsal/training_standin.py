"""The ModelArts training stand-in: jobs that really run their boot file, as ModelArts runs it.

It is `tests.fixtures.huawei_contract.ModelArtsTrainingFake` (every documented route, validator and refusal
of the training contract, on the same `ContractServer`: signatures, bodies, unknown engines/flavors, job
names) plus behaviour: where the fake waits for a test to `advance` a job, a job here moves by itself.

What a job does, each step with the page it follows:

- Creating: the code directory is downloaded from OBS to `<job>/user-job-dir/<last folder of code_dir>/`
  ("Developing Code for Training Using a Preset Image", develop-modelarts-0008,
  https://support.huaweicloud.com/intl/en-us/usermanual-standard-modelarts/develop-modelarts-0008.html: "the
  content in the OBS path will be automatically downloaded to ${MA_JOB_DIR}/demo-code"), and every input's OBS
  folder to a node-local folder `<job>/node-<n>/inputs/<name>_0` before the processes start (inputs are
  downloaded to the container before the job starts; CreateTrainingJob,
  https://support.huaweicloud.com/intl/en-us/api-modelarts/CreateTrainingJob.html, `inputs[].local_dir`).
  A code folder or boot file that is not in OBS fails the job with a reason in the log.
- Pending → Running: one process per node, `python <boot file> --<input name>=<local dir>
  --<output name>=<local dir> --<parameter>=<value> …` (inputs, outputs and parameters reach the boot file as
  hyper-parameters; CreateTrainingJob `parameters[]`), working folder `${MA_JOB_DIR}`, with the documented
  environment ("Managing Environment Variables of a Training Container", develop-modelarts-0104,
  https://support.huaweicloud.com/intl/en-us/usermanual-standard-modelarts/develop-modelarts-0104.html, and
  ma_drawer_129): `MA_NUM_HOSTS` (node count), `MA_NUM_GPUS` (accelerators per container), `VC_TASK_INDEX`
  (this node, from 0), `VC_WORKER_NUM`, `VC_WORKER_HOSTS` (the nodes' host names, in order; the first is
  the master, `MASTER_ADDR` is not injected), `MA_CURRENT_IP`, `MA_TASK_NAME=worker`, `MA_JOB_DIR`,
  `MA_MOUNT_PATH`, `MA_LOG_DIR`, plus the job's own `algorithm.environments`. A two-node job is two worker
  processes on 127.0.0.1 with `VC_TASK_INDEX` 0 and 1.
- Outputs: each node's output folder is uploaded to the output's OBS folder every `output_sync_s` while
  the job runs and once more when it ends (CreateTrainingJob `outputs[].mode`: `upload_periodically` is the
  default, period 30 s), so `metrics.jsonl` is readable while the job trains.
- Running → Completed when every process exits 0; → Failed (with the exit codes and the log's reason) when
  one fails, the others being stopped, as a failed worker ends a ModelArts job.
- Logs: each task's (`worker-<n>`) output through ShowTrainingJobLogsPreview (the last 5 MB,
  https://support.huaweicloud.com/intl/en-us/api-modelarts/ShowTrainingJobLogsPreview.html).
- Resource metrics: ShowTrainingJobMetrics (`cpuUsage`, `memUsage` per task, percent;
  https://support.huaweicloud.com/intl/en-us/api-modelarts/ShowTrainingJobMetrics.html), sampled from the
  task's processes in /proc (Linux); no GPU metrics (the stand-in has no GPU counters to read).
  Loss and accuracy are in no ModelArts API: they reach the adapter through `metrics.jsonl` in OBS.
- Stop (StopTrainingJob, `{"action_type": "terminate"}`): Terminating, the processes get SIGTERM (then
  SIGKILL after a grace period), the outputs are synced, Terminated.
- The fault `job_fails` (see `faults.py`): the job's processes are killed as soon as they start, the log
  says why, and the job ends Failed, as a job whose container dies does.

Differences the rehearsal cannot avoid (say so when reading its results): every node is this host, so the
rendezvous port is a free local port passed as `ARSL_MASTER_PORT` (the trainer's documented override) unless
the job sets one, where ModelArts gives every job its own containers; there is no image: the boot file runs
under this interpreter with its packages; no quota, queueing or billing.

Unit tests wait on `wait_for` (a condition variable the job's own progress notifies), never on a clock.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.fixtures.huawei_contract import (
    TERMINAL,
    Call,
    ContractError,
    ContractServer,
    ModelArtsTrainingFake,
    Reply,
)
from tests.huawei_rehearsal.faults import Faults
from tests.huawei_rehearsal.obs_standin import ObsStore, split_obs_url

DEFAULT_OUTPUT_SYNC_S = 30.0
"""CreateTrainingJob `outputs[].period`: "upload_periodically" every 30 s by default."""
STOP_GRACE_S = 10.0
"""How long a stopped job's processes get between SIGTERM and SIGKILL."""
PREVIEW_LIMIT = 5 * 1024 * 1024
"""ShowTrainingJobLogsPreview: the preview holds at most the last 5 MB of a task's log."""
_GPU_FLAVOR = re.compile(r"\.(p\d|pi\d|g\d|gpu)", re.I)
_PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT", "OMP_NUM_THREADS")
"""What of the stand-in's own environment a job's processes see: enough to run Python, never credentials."""


@dataclass
class _Task:
    """One node of a job: its process, its folders and its log."""

    index: int
    root: Path
    process: subprocess.Popen[bytes] | None = None
    log: bytearray = field(default_factory=bytearray)
    samples: dict[str, list[float]] = field(default_factory=dict)
    reader: threading.Thread | None = None
    cpu_ticks: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        return f"worker-{self.index}"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"


@dataclass
class _Run:
    """What the stand-in keeps of a job besides the fake's record."""

    job_id: str
    root: Path
    tasks: list[_Task]
    environment: dict[str, str] = field(default_factory=dict)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class TrainingStandin(ModelArtsTrainingFake):
    """ModelArts training jobs that run; see the module docstring."""

    def __init__(
        self,
        server: ContractServer,
        obs: ObsStore,
        workdir: Path,
        faults: Faults,
        *,
        python: str = sys.executable,
        output_sync_s: float | None = DEFAULT_OUTPUT_SYNC_S,
        extra_environment: Mapping[str, str] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(server)
        self.preview_limit = PREVIEW_LIMIT
        self.obs = obs
        self.workdir = workdir
        self.faults = faults
        self.python = python
        self.output_sync_s = output_sync_s
        self.extra_environment = dict(extra_environment or {})
        self._on_event = on_event or (lambda _text: None)
        self._runs: dict[str, _Run] = {}
        self._changed = threading.Condition(self._lock)
        self._closing = threading.Event()

    # --- what tests and the launcher use ----------------------------------------------------------

    def wait_for(self, job_id: str, phases: Iterable[str], timeout_s: float) -> str:
        """Block until the job is in one of `phases` (woken by the job's own progress); its phase."""
        wanted = set(phases)
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.jobs[job_id].phase not in wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} is {self.jobs[job_id].phase}, not {sorted(wanted)}")
                self._changed.wait(left)
            return self.jobs[job_id].phase

    def wait_for_log(self, job_id: str, text: str, timeout_s: float, task: int = 0) -> str:
        """Block until `text` is in the task's log (woken by each line the task writes); the log."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                run = self._runs[job_id]
                log = bytes(run.tasks[task].log).decode("utf-8", "replace") if task < len(run.tasks) else ""
                if text in log:
                    return log
                if self.jobs[job_id].phase in TERMINAL:
                    raise AssertionError(f"job {job_id} ended {self.jobs[job_id].phase} without logging {text!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} did not log {text!r} within {timeout_s:g} s")
                self._changed.wait(left)

    def task_log(self, job_id: str, task: int = 0) -> str:
        with self._lock:
            return bytes(self._runs[job_id].tasks[task].log).decode("utf-8", "replace")

    def close(self) -> None:
        """Stop every running job's processes (the stack is going away)."""
        self._closing.set()
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.stop_requested.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout=STOP_GRACE_S + 5)

    def advance(self, job_id: str, phase: str, secondary_phase: str | None = None) -> None:
        super().advance(job_id, phase, secondary_phase)
        with self._changed:
            self._changed.notify_all()
        self._on_event(f"job {job_id}: {phase}")

    # --- handlers (the fake's validation has run before any of these) ------------------------------

    def _create(self, call: Call) -> Reply:
        reply = super()._create(call)
        job_id = str(reply.body["metadata"]["id"])
        body = call.body
        nodes = int(body["spec"]["resource"]["node_count"])
        root = self.workdir / "jobs" / job_id
        run = _Run(job_id, root, [_Task(index, root / f"node-{index}") for index in range(nodes)])
        run.thread = threading.Thread(target=self._play, args=(run, body), name=f"job-{job_id[:8]}", daemon=True)
        with self._lock:
            self._runs[job_id] = run
        run.thread.start()
        return reply

    def _stop(self, call: Call) -> Reply:
        reply = super()._stop(call)  # refuses a finished job; moves a live one to Terminating
        with self._lock:
            run = self._runs.get(call.path_params["training_job_id"])
        if run is not None:
            run.stop_requested.set()
        return reply

    def _logs(self, call: Call) -> Reply:
        job = self._get(call)
        with self._lock:
            run = self._runs.get(job.id)
            tasks = {task.name: bytes(task.log) for task in run.tasks} if run else {}
        data = tasks.get(call.path_params.get("task_id", ""))
        if data is None:
            raise ContractError(404, "ModelArts.2790", "The task does not exist.")
        content = data[-self.preview_limit :]
        return Reply(
            200, {"content": content.decode("utf-8", "replace"), "current_size": len(content), "full_size": len(data)}
        )

    def _metrics(self, call: Call) -> Reply:
        job = self._get(call)
        with self._lock:
            run = self._runs.get(job.id)
            task = next((t for t in (run.tasks if run else []) if t.name == call.path_params.get("task_id")), None)
            samples = {name: list(values) for name, values in task.samples.items()} if task else {}
        if task is None:
            raise ContractError(404, "ModelArts.2790", "The task does not exist.")
        return Reply(200, {"metrics": [{"metric": name, "value": values} for name, values in samples.items()]})

    # --- one job, on its own thread -----------------------------------------------------------------

    def _log(self, run: _Run, text: str, tasks: Iterable[_Task] | None = None) -> None:
        line = f"[modelarts] {text}\n".encode()
        with self._changed:
            for task in run.tasks if tasks is None else tasks:
                task.log += line
            if run.tasks:
                self.jobs[run.job_id].log = bytes(run.tasks[0].log).decode("utf-8", "replace")
            self._changed.notify_all()

    def _play(self, run: _Run, body: dict[str, Any]) -> None:
        try:
            self._run_job(run, body)
        except Exception as error:  # a bug of the stand-in must end the job visibly, not hang it
            self._log(run, f"error: the stand-in failed: {type(error).__name__}: {error}")
            self._finish(run, "Failed")

    def _run_job(self, run: _Run, body: dict[str, Any]) -> None:
        algorithm = body["algorithm"]
        self._log(run, "Creating: downloading the code directory and the inputs")
        code_bucket, code_prefix = split_obs_url(algorithm["code_dir"])
        code_name = code_prefix.rstrip("/").rpartition("/")[2] or code_bucket
        job_dir = run.root / "user-job-dir"
        code_local = job_dir / code_name
        try:
            fetched = self.obs.download_prefix(code_bucket, code_prefix, code_local)
        except KeyError as missing:
            fetched = []
            self._log(run, f"error: the code directory {algorithm['code_dir']} cannot be read: {missing}")
        _, boot_key = split_obs_url(algorithm["boot_file"])
        boot_local = code_local / boot_key[len(code_prefix) :]
        if not fetched or not boot_local.is_file():
            self._log(run, f"error: the boot file {algorithm['boot_file']} is not in the code directory on OBS")
            self._finish(run, "Failed")
            return
        arguments: list[str] = []
        for entry in algorithm.get("inputs") or []:
            bucket, prefix = split_obs_url(entry["remote"]["obs"]["obs_url"])
            for task in run.tasks:
                local = task.inputs / f"{entry['name']}_0"
                local.mkdir(parents=True, exist_ok=True)
                self.obs.download_prefix(bucket, prefix, local)
            arguments.append(f"--{entry['name']}={{inputs}}/{entry['name']}_0")
        for entry in algorithm.get("outputs") or []:
            arguments.append(f"--{entry['name']}={{outputs}}/{entry['name']}_0")
        arguments += [f"--{parameter['name']}={parameter['value']}" for parameter in algorithm.get("parameters") or []]
        if run.stop_requested.is_set():
            self._finish(run, "Terminated")
            return
        self.advance(run.job_id, "Pending")
        flavor = body["spec"]["resource"]["flavor_id"]
        run.environment = self._environment(run, algorithm, flavor, job_dir)
        self.advance(run.job_id, "Running")
        self._log(run, f"Running: {len(run.tasks)} node(s), boot file {algorithm['boot_file']}")
        for task in run.tasks:
            task.outputs.mkdir(parents=True, exist_ok=True)
            command = [
                self.python,
                str(boot_local),
                *(argument.format(inputs=task.inputs, outputs=task.outputs) for argument in arguments),
            ]
            environment = run.environment | {
                "VC_TASK_INDEX": str(task.index),
                "MA_CURRENT_INSTANCE_NAME": task.name,
            }
            self._log(run, f"{task.name}: {' '.join(command[1:])}", tasks=[task])
            # The job's own boot file, run as ModelArts runs it.
            task.process = subprocess.Popen(
                command,
                cwd=job_dir,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the whole process group (torchrun and its workers) can be signalled
            )
            task.reader = threading.Thread(
                target=self._read_output, args=(run, task), name=f"log-{task.name}", daemon=True
            )
            task.reader.start()
        fault = self.faults.take("job_fails", detail=body["metadata"]["name"])
        if fault is not None:
            reason = fault.params.get("reason", "the container was killed (exit code 137)")
            self._log(run, f"error: worker-0 failed: {reason} [fault job_fails]")
            self._signal_all(run, signal.SIGKILL)
        self._watch(run, body)

    def _environment(self, run: _Run, algorithm: dict[str, Any], flavor: str, job_dir: Path) -> dict[str, str]:
        nodes = len(run.tasks)
        custom = {str(key): str(value) for key, value in (algorithm.get("environments") or {}).items()}
        environment = {name: os.environ[name] for name in _PASSED_ENVIRONMENT if name in os.environ}
        environment |= self.extra_environment
        environment |= {
            "MA_HOME": str(run.root),
            "MA_JOB_DIR": str(job_dir),
            "MA_MOUNT_PATH": str(run.root),
            "MA_LOG_DIR": str(run.root / "log"),
            "MA_NUM_HOSTS": str(nodes),
            "MA_NUM_GPUS": "1" if _GPU_FLAVOR.search(flavor) else "0",
            "MA_TASK_NAME": "worker",
            "MA_CURRENT_IP": "127.0.0.1",
            "VC_WORKER_NUM": str(nodes),
            "VC_WORKER_HOSTS": ",".join("127.0.0.1" for _ in run.tasks),
            "PYTHONUNBUFFERED": "1",
        }
        # Every node is this host: a job of its own gets its own rendezvous port (ModelArts' containers each
        # have their own network), unless the job chose one.
        environment["ARSL_MASTER_PORT"] = custom.pop("ARSL_MASTER_PORT", "") or str(_free_port())
        return environment | custom

    def _read_output(self, run: _Run, task: _Task) -> None:
        assert task.process is not None and task.process.stdout is not None
        stream: IO[bytes] = task.process.stdout
        for line in iter(stream.readline, b""):
            with self._changed:
                task.log += line
                if task.index == 0:
                    self.jobs[run.job_id].log = bytes(task.log).decode("utf-8", "replace")
                self._changed.notify_all()
        stream.close()

    def _watch(self, run: _Run, body: dict[str, Any]) -> None:
        """Until every process has ended: sample resources, sync outputs, honour a stop."""
        last_sync = time.monotonic()
        stopping_since: float | None = None
        while True:
            codes = [task.process.poll() if task.process else 0 for task in run.tasks]
            if all(code is not None for code in codes):
                break
            failed = [task for task, code in zip(run.tasks, codes, strict=True) if code not in (None, 0)]
            if failed and stopping_since is None and not run.stop_requested.is_set():
                # A failed worker ends the job: the others are stopped.
                self._signal_all(run, signal.SIGTERM)
                stopping_since = time.monotonic()
            if (run.stop_requested.is_set() or self._closing.is_set()) and stopping_since is None:
                self._log(run, "Terminating: stopping the training processes")
                self._signal_all(run, signal.SIGTERM)
                stopping_since = time.monotonic()
            if stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_S:
                self._signal_all(run, signal.SIGKILL)
            self._sample(run)
            if self.output_sync_s is not None and time.monotonic() - last_sync >= self.output_sync_s:
                self._sync_outputs(run, body)
                last_sync = time.monotonic()
            run.stop_requested.wait(0.2 if stopping_since is None else 0.05)
        for task in run.tasks:
            if task.reader is not None:
                task.reader.join(timeout=5)
        self._sync_outputs(run, body)
        codes = [task.process.returncode if task.process else 0 for task in run.tasks]
        if run.stop_requested.is_set() and self.job(run.job_id).phase == "Terminating":
            self._log(run, "Terminated on request")
            self._finish(run, "Terminated")
        elif all(code == 0 for code in codes):
            self._log(run, "Completed: every worker exited 0")
            self._finish(run, "Completed")
        else:
            ends = ", ".join(
                f"worker-{task.index} {_describe_exit(code)}" for task, code in zip(run.tasks, codes, strict=True)
            )
            self._log(run, f"Failed: {ends}")
            self._finish(run, "Failed")

    def _finish(self, run: _Run, phase: str) -> None:
        if self.job(run.job_id).phase not in TERMINAL:
            self.advance(run.job_id, phase)

    def _signal_all(self, run: _Run, number: signal.Signals) -> None:
        for task in run.tasks:
            if task.process is not None and task.process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(task.process.pid, number)

    def _sync_outputs(self, run: _Run, body: dict[str, Any]) -> None:
        # Node 0 last: what the main node wrote wins where nodes wrote the same file.
        for entry in body["algorithm"].get("outputs") or []:
            bucket, prefix = split_obs_url(entry["remote"]["obs"]["obs_url"])
            for task in reversed(run.tasks):
                local = task.outputs / f"{entry['name']}_0"
                if local.is_dir():
                    # The trainer writes every file under a temporary dot-name, then renames it: a periodic
                    # sync copying a file in flight would leave a half-written object behind.
                    self.obs.upload_folder(local, bucket, prefix, skip_hidden=True)

    def _sample(self, run: _Run) -> None:
        """cpuUsage and memUsage (percent of this host) of each task's process group, from /proc."""
        for task in run.tasks:
            if task.process is None or task.process.poll() is not None:
                continue
            usage = _group_usage(task.process.pid)
            if usage is None:
                continue
            ticks, resident = usage
            now = time.monotonic()
            if task.cpu_ticks is not None and now > task.cpu_ticks[1]:
                cpu = (ticks - task.cpu_ticks[0]) / (now - task.cpu_ticks[1]) / (os.cpu_count() or 1) * 100
                with self._lock:
                    task.samples.setdefault("cpuUsage", []).append(round(max(cpu, 0.0), 2))
                    task.samples.setdefault("memUsage", []).append(round(resident * 100, 2))
            task.cpu_ticks = (ticks, now)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"was killed by signal {-code} (exit code {128 - code})"
    return f"exited with code {code}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _group_usage(leader: int) -> tuple[float, float] | None:
    """(CPU seconds used, fraction of host memory resident) of every process in `leader`'s group."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    try:
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
    except (ValueError, OSError):
        return None
    cpu = 0.0
    resident = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) != leader:  # field 5 of stat, the process group id
                continue
            cpu += (int(fields[11]) + int(fields[12])) / ticks_per_s  # utime + stime
            resident += int((entry / "statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return cpu, resident / total if total else 0.0


__all__ = ["DEFAULT_OUTPUT_SYNC_S", "TrainingStandin"]
