"""Upload benchmark: the seed's sequential loop vs `files` mode vs `shards` mode.

    .venv/bin/python bench/upload.py                      # 108,098 files, local store + S3 sink (50 ms, 100 Mbit/s)
    .venv/bin/python bench/upload.py --files 5000 --targets local
    .venv/bin/python bench/upload.py --endpoint http://127.0.0.1:9000   # an S3-style sink already running

Targets: `local` (the directory store under a scratch $ARSL_HOME) and `sink` (an S3-protocol server
on 127.0.0.1 through the real OBS adapter: `--endpoint`, or else `tests/fixtures/s3sink.py` started
here as a subprocess with `--delay-ms` round-trip delay and a `--bandwidth-mbit` cap over all
connections). Each measurement runs in its own child process, so its peak RSS (ru_maxrss) is its
own. The sequential loop is what the seed did — hash a file, put it, wait, next — timed on a
`--sample` of files and extrapolated to the whole set. Results: printed, and written as JSON to
`bench/results/upload.json`.

Data: `--files` 64×64 grayscale JPEGs (~1.5 KB each, like ArSL2018's) in the 32 class folders: a
smooth base image per class plus fresh noise per file, so every file has its own entropy-coded data,
as real photos do (copies of one image that differ only in a comment would flatter compression).
The set is cached under the work folder and reused by later runs of the same size.

Peak memory: the engine decodes and packs in worker processes, so besides the measuring process's
own peak (`peak_rss_mb`, ru_maxrss) the child samples the summed RSS of itself and every process
below it ten times a second (`peak_tree_rss_mb`; RUSAGE_CHILDREN would not do: a spawned worker's
ru_maxrss includes the parent's pages it shared between fork and exec). The load average is recorded around each
measurement: on a shared machine it says how much of the CPUs the measurement had.

Phases: `validating` is the engine's prediction pass (every file read and hashed, sizes and modes from the
image headers) whenever it predicts no problem; the images are then decoded while the data set is sent
(by the packing workers in shards mode, beside the sending in files mode), so decoding has no phase of
its own. `sending` starts when the first object is ready (in shards mode, the first shard packed).

The floor: each stage is also timed alone, in one thread, on `--floor-sample` files (read, MD5, decode,
predict, full validation, shard planning, packing with and without the decoding check, and sending
through the real OBS adapter to the sink: a shard per MB, one image per request at `--concurrency`),
and the sink's CPU-seconds are read from /proc around every measurement. Each sink measurement then gets
a `floor`: the client's and the sink's CPU over the cores (`cores_bound_s`), the same from the stages
alone, the link's own time for the bytes sent, the round trips (files mode: objects ÷ concurrency × RTT)
and, in shards mode, the design's order (every image predicted, the shards planned, the first shard —
the plan's smallest, `ops.shards.RAMP` — packed, only then the first byte) plus the link
(`ordered_floor_s`). The largest is the best wall time the machine allows (`best_wall_s`, `bound_by`).

`--tiny` runs every measurement above in seconds (64 files, a 32-file sequential sample, a sink at 5 ms;
any option given on the command line wins) in a fresh temporary folder, where its JSON goes too unless
`--out` is given. The exit status is 1 when a measurement failed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FULL_SIZE = 108_098
TINY_DEFAULTS = {"files": 64, "sample": 32, "concurrency": 8, "delay_ms": 5.0, "timeout": 120.0, "floor_sample": 64}
SINK_MODULE = "tests.fixtures.s3sink"
DUMMY_CREDENTIALS = {
    "HUAWEICLOUD_SDK_AK": "bench-access-key",
    "HUAWEICLOUD_SDK_SK": "bench-secret-key",
    "HUAWEICLOUD_SDK_PROJECT_ID": "bench-project",
}


# -- data -----------------------------------------------------------------------------------------------


def _class_base(index: int) -> Any:
    """A smooth 64×64 grayscale picture that differs per class (float pixels, before noise)."""
    import numpy as np

    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:64, 0:64]
    centre_x, centre_y = rng.uniform(16, 48, size=2)
    blob = 150 * np.exp(-((x - centre_x) ** 2 + (y - centre_y) ** 2) / rng.uniform(60, 200))
    return 40 + blob + 0.8 * x


def _image(base: Any, rng: Any) -> bytes:
    """`base` with its own noise, as a JPEG of about the size of an ArSL2018 image."""
    import numpy as np
    from PIL import Image

    pixels = np.clip(base + rng.normal(0, 6, size=(64, 64)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_dataset(folder: Path, files: int) -> Path:
    import numpy as np

    from arsl_tui.domain.classes import ARSL_CLASSES

    marker = folder / ".bench-complete"
    if marker.exists() and marker.read_text().strip() == str(files):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    started = time.perf_counter()
    bases = [_class_base(index) for index in range(len(ARSL_CLASSES))]
    rng = np.random.default_rng(20261126)
    for name in ARSL_CLASSES:
        (folder / name).mkdir(parents=True)
    for number in range(files):
        class_number = number % len(ARSL_CLASSES)
        name = ARSL_CLASSES[class_number]
        (folder / name / f"{name}_{number:06d}.jpg").write_bytes(_image(bases[class_number], rng))
    marker.write_text(str(files))
    print(f"wrote {files:,} images to {folder} in {time.perf_counter() - started:.1f} s", flush=True)
    return folder


# -- children: one measurement each -------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tree_rss_bytes(pid: int) -> int:
    """RSS of `pid` and every process below it (from /proc; 0 for processes that ended meanwhile)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    pending.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            continue
    return total


class TreeMemory:
    """The peak summed RSS of this process and its descendants, sampled in a thread."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self, interval_s: float) -> None:
        while True:
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))
            if self._stop.wait(interval_s):
                return


def _settings(home: Path, endpoint: str | None, bucket: str, concurrency: int) -> Any:
    from arsl_tui.config import load_settings

    overrides: dict[str, Any] = {"home": str(home), "storage.bucket": bucket, "upload.concurrency": concurrency}
    if endpoint:
        overrides.update({"backend": "huawei", "huawei.obs_endpoint": endpoint})
    return load_settings(environ={}, cwd=home, cli_overrides=overrides)


def child_sequential(args: argparse.Namespace) -> dict[str, Any]:
    """The seed's loop: for each file, hash it and put it, one request at a time."""
    from arsl_tui.backends import backend_for

    settings = _settings(args.home, args.endpoint, args.bucket, 1)
    store = backend_for(settings).object_store()
    data = Path(args.data)
    classes = sorted(entry for entry in data.iterdir() if entry.is_dir())
    files = [path for folder in classes for path in sorted(folder.iterdir())[: max(1, args.sample // len(classes))]]
    started = time.perf_counter()
    sent_bytes = 0
    for path in files:
        md5 = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        info = store.put_file(f"seed/{path.parent.name}/{path.name}", path, md5)
        sent_bytes += info.size
    elapsed = time.perf_counter() - started
    rate = len(files) / elapsed
    return {
        "sampled_objects": len(files),
        "sample_wall_s": round(elapsed, 3),
        "objects_per_s": round(rate, 1),
        "wall_s": round(args.files / rate, 1),
        "extrapolated": True,
        "bytes": sent_bytes,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def child_engine(args: argparse.Namespace) -> dict[str, Any]:
    from arsl_tui.domain.events import Event, UploadPhaseChanged, UploadRetried, UploadStarted
    from arsl_tui.ops.upload import UploadRequest, run_upload

    settings = _settings(args.home, args.endpoint, args.bucket, args.concurrency)
    phases: dict[str, float] = {}
    totals: dict[str, int] = {"retries": 0}
    marks: dict[str, float] = {}
    started = time.perf_counter()

    def on_event(event: Event) -> None:
        now = time.perf_counter() - started
        if isinstance(event, UploadPhaseChanged):
            phases.setdefault(event.phase, now)
            if event.detail.startswith("all ") and "packed" in event.detail:
                marks.setdefault("all_shards_packed_at_s", now)
        elif isinstance(event, UploadStarted):
            totals.update(objects=event.objects_total, bytes=event.bytes_total, files=event.files_total)
        elif isinstance(event, UploadRetried):
            totals["retries"] += 1

    cpu_before = os.times()
    with TreeMemory() as memory:
        outcome = run_upload(
            settings, UploadRequest(Path(args.data), mode=args.child, concurrency=args.concurrency), on_event=on_event
        )
    cpu_after = os.times()
    wall = time.perf_counter() - started
    order = list(phases)
    durations = {
        phase: round((phases[order[i + 1]] if i + 1 < len(order) else wall) - phases[phase], 2)
        for i, phase in enumerate(order)
    }
    cpu = {
        "self_s": round(cpu_after.user - cpu_before.user + cpu_after.system - cpu_before.system, 1),
        "workers_s": round(
            cpu_after.children_user - cpu_before.children_user + cpu_after.children_system - cpu_before.children_system,
            1,
        ),
    }
    return {
        "status": outcome.status,
        "error": outcome.error,
        "mode": args.child,
        "images": totals.get("files", 0),
        "wall_s": round(wall, 2),
        "objects": outcome.objects_sent,
        "objects_per_s": round(outcome.objects_sent / wall, 1),
        "images_per_s": round(totals.get("files", 0) / wall, 1),
        "bytes_sent": outcome.bytes_sent,
        "phases_s": durations,
        "phase_starts_s": {phase: round(at, 2) for phase, at in phases.items()},
        **{name: round(at, 2) for name, at in marks.items()},
        "cpu": cpu,
        "retries": totals["retries"],
        "concurrency": args.concurrency,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_tree_rss_mb": round(memory.peak / 2**20, 1),
    }


def _cpu_s() -> float:
    """CPU-seconds of this process, every thread (finer-grained than `os.times`)."""
    return time.process_time()


def child_floor(args: argparse.Namespace) -> dict[str, Any]:
    """CPU-seconds per file of each stage of an upload measured alone, in this one thread (no worker
    processes), on a sample of the data set: what the engine's parts cost, with no waiting and no sharing.

    `sign+send` puts through the real OBS adapter to the sink, as the engine does: shards (a packed
    shard, per MB) and files (one request per image, `--concurrency` threads). The sink's own CPU for
    those requests is measured by the driver, which knows its process.
    """
    import hashlib as md5_lib
    from concurrent.futures import ThreadPoolExecutor

    from arsl_tui.domain.manifest import SplitPolicy, build_manifest
    from arsl_tui.ops import dataset, shards

    data = Path(args.data)
    split = SplitPolicy(seed=1, val=0.1, test=0.1)
    classes = sorted(entry.name for entry in data.iterdir() if entry.is_dir())
    per_class = max(1, args.floor_sample // len(classes))
    chunks = [(name, sorted(os.listdir(data / name))[:per_class]) for name in classes]
    files = sum(len(names) for _, names in chunks)
    stages: dict[str, float] = {}

    def timed(stage: str, work: Any) -> Any:
        before = _cpu_s()
        result = work()
        stages[stage] = round((_cpu_s() - before) / files * 1e6, 1)
        return result

    blobs = timed("read_us", lambda: [dataset._read_regular(str(data / c / n)) for c, names in chunks for n in names])
    timed("md5_us", lambda: [md5_lib.md5(blob, usedforsecurity=False).hexdigest() for blob in blobs])
    timed("decode_us", lambda: [dataset.decoded_shape(blob) for blob in blobs])
    checked = timed("predict_us", lambda: [dataset._predict_chunk(str(data), c, names, split) for c, names in chunks])
    timed("validate_full_us", lambda: [dataset._check_chunk(str(data), c, names, split) for c, names in chunks])
    manifest = build_manifest([entry.record for part in checked for entry in part if entry.record], split)
    [whole] = timed("plan_us", lambda: shards.plan_shards(manifest, 1 << 40))
    ordered = shards.sample_order(manifest)
    samples = [(image.path, image.md5, image.cls, image.split) for image in ordered]
    shapes = [(image.width, image.height, image.mode) for image in ordered]
    scratch = Path(tempfile.mkdtemp(prefix="arsl-bench-floor-"))
    try:
        shard = scratch / "shard.tar.gz"
        timed("pack_us", lambda: shards.pack_shard(str(data), str(shard), samples))
        shard.unlink()
        timed("pack_and_decode_us", lambda: shards.pack_shard(str(data), str(shard), samples, shapes))
        shard_bytes = shard.stat().st_size
        shard_md5 = md5_lib.md5(shard.read_bytes(), usedforsecurity=False).hexdigest()
        result: dict[str, Any] = {
            "files": files,
            "stages_us_per_file": stages,
            "shard_bytes": shard_bytes,
            "sample_tar_bytes": whole.tar_bytes / files,
        }
        if args.endpoint:
            from arsl_tui.backends import backend_for

            store = backend_for(_settings(args.home, args.endpoint, args.bucket, args.concurrency)).object_store()
            store.put_bytes("floor/warm", b"x", md5_lib.md5(b"x", usedforsecurity=False).hexdigest())
            before = _cpu_s()
            for number in range(3):
                store.put_file(f"floor/shard-{number}", shard, shard_md5)
            result["send_shard_us_per_mb"] = round((_cpu_s() - before) / (3 * shard_bytes / 1e6) * 1e6, 1)
            paths = [data / c / n for c, names in chunks for n in names]
            digests = [md5_lib.md5(blob, usedforsecurity=False).hexdigest() for blob in blobs]
            before = _cpu_s()
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                list(
                    pool.map(
                        lambda pair: store.put_file(f"floor/files/{pair[0].name}", *pair),
                        zip(paths, digests, strict=True),
                    )
                )
            stages["send_file_us"] = round((_cpu_s() - before) / files * 1e6, 1)
            result["send_files_requests"] = files
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


# -- the driver ---------------------------------------------------------------------------------------


class Sink:
    """tests/fixtures/s3sink.py as a subprocess on 127.0.0.1, stopped by its PID."""

    def __init__(self, delay_ms: float, bandwidth_mbit: float, buckets: list[str]) -> None:
        # Objects stay in the sink's memory (well under 2 GB for the full set in every mode): a sink
        # writing files would measure its own disk, not the upload.
        command = [
            sys.executable,
            "-m",
            SINK_MODULE,
            "--port",
            "0",
            "--delay-ms",
            str(delay_ms),
            "--bandwidth-mbit",
            str(bandwidth_mbit),
        ]
        for bucket in buckets:
            command += ["--bucket", bucket]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the S3 sink did not start: {line!r}")
        self.endpoint = f"http://127.0.0.1:{line}"

    def cpu_s(self) -> float | None:
        """CPU-seconds the sink has used so far (it shares the machine's cores with the upload)."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, errors = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, errors = self.process.communicate()
        return errors.strip().splitlines()[-1] if errors.strip() else ""


def run_child(
    kind: str, args: argparse.Namespace, data: Path, work: Path, endpoint: str | None, bucket: str, sink: Sink | None
) -> dict[str, Any]:
    home = work / f"home-{bucket}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        "--data",
        str(data),
        "--home",
        str(home),
        "--bucket",
        bucket,
        "--files",
        str(args.files),
        "--sample",
        str(args.sample),
        "--concurrency",
        str(args.concurrency),
    ]
    if endpoint:
        command += ["--endpoint", endpoint]
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    env.update(DUMMY_CREDENTIALS)
    if kind == "floor":
        command += ["--floor-sample", str(args.floor_sample)]
    load_before = os.getloadavg()
    sink_before = sink.cpu_s() if sink is not None else None
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    load_after = os.getloadavg()
    sink_after = sink.cpu_s() if sink is not None else None
    load: dict[str, Any] = {
        "load_avg_1m_before": round(load_before[0], 2),
        "load_avg_1m_after": round(load_after[0], 2),
        "load_avg_before": [round(value, 2) for value in load_before],
        "load_avg_after": [round(value, 2) for value in load_after],
    }
    if sink_before is not None and sink_after is not None:
        load["sink_cpu_s"] = round(sink_after - sink_before, 2)
    if result.returncode != 0:
        return {"status": "error", "error": (result.stderr or result.stdout).strip()[-800:], **load}
    shutil.rmtree(home, ignore_errors=True)
    return {**json.loads(result.stdout.strip().splitlines()[-1]), **load}


def floor_of(figure: dict[str, Any], stages: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any]:
    """What two (or `cpus`) cores allow at best for a measured run: its CPU (the engine's process, its
    workers, the sink) spread over every core, against the link's own time for the bytes it sent; and the
    same from the stages measured alone, with nothing wasted between them."""
    cpus = os.cpu_count() or 1
    client = figure["cpu"]["self_s"] + figure["cpu"]["workers_s"]
    sink_cpu = figure.get("sink_cpu_s")
    floor: dict[str, Any] = {"cpus": cpus, "client_cpu_s": round(client, 1), "sink_cpu_s": sink_cpu}
    total = client + (sink_cpu or 0.0)
    floor["cores_bound_s"] = round(total / cpus, 1)
    if args.bandwidth_mbit > 0 and not args.endpoint:
        floor["link_s"] = round(figure["bytes_sent"] * 8 / (args.bandwidth_mbit * 1e6), 1)
    if stages is not None and "stages_us_per_file" in stages:
        per_file = stages["stages_us_per_file"]
        files = figure.get("images", args.files)
        if figure.get("mode") == "files":
            parts = ("predict_us", "decode_us", "send_file_us")
        else:
            parts = ("predict_us", "plan_us", "pack_and_decode_us")
        stage_cpu = sum(per_file.get(part, 0.0) for part in parts) * files / 1e6
        if figure.get("mode") == "shards" and "send_shard_us_per_mb" in stages:
            stage_cpu += stages["send_shard_us_per_mb"] * figure["bytes_sent"] / 1e6 / 1e6
        floor["stages"] = list(parts) + (["send_shard"] if figure.get("mode") == "shards" else [])
        floor["stages_cpu_s"] = round(stage_cpu, 1)
        floor["stages_bound_s"] = round((stage_cpu + (sink_cpu or 0.0)) / cpus, 1)
    if figure.get("mode") == "files" and not args.endpoint:
        # Every request waits at least one round trip, `concurrency` of them at a time.
        floor["round_trips_s"] = round(figure["objects"] / args.concurrency * args.delay_ms / 1000, 1)
    first_send = figure.get("phase_starts_s", {}).get("sending")
    if first_send is not None and "link_s" in floor:
        # Nothing can go before the first object is ready; after it, the link still needs all of its time.
        floor["first_send_s"] = first_send
        floor["after_first_send_bound_s"] = round(first_send + floor["link_s"], 1)
    if figure.get("mode") == "shards" and stages is not None and "link_s" in floor and figure["objects"] > 2:
        # The design's own order on idle cores: every image predicted (the prefix is the manifest's id), the
        # shards planned, one shard packed by one worker; only then the first byte, then the whole link.
        per_file = stages["stages_us_per_file"]
        files = figure.get("images", args.files)
        # The first shard is the plan's first (`shard_limit`: smaller than the rest), not an average one; the
        # bench's engine runs with the default shard size.
        from arsl_tui.config import UploadSettings
        from arsl_tui.ops.shards import shard_limit

        first_limit = shard_limit(0, UploadSettings().shard_size_mb << 20)
        first_shard_files = min(files, first_limit / stages["sample_tar_bytes"])
        first = (
            per_file["predict_us"] * files / cpus
            + per_file["plan_us"] * files
            + per_file["pack_and_decode_us"] * first_shard_files
        ) / 1e6
        floor["first_send_floor_s"] = round(first, 1)
        floor["ordered_floor_s"] = round(first + floor["link_s"], 1)
    bounds = {
        name: floor[name] for name in ("cores_bound_s", "link_s", "round_trips_s", "ordered_floor_s") if name in floor
    }
    floor["bound_by"] = max(bounds, key=lambda name: bounds[name])
    floor["best_wall_s"] = bounds[floor["bound_by"]]
    return floor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=FULL_SIZE, help=f"images in the data set (default {FULL_SIZE:,})")
    parser.add_argument("--sample", type=int, default=320, help="files timed in the sequential loop (default 320)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument("--targets", default="local,sink", help="comma-separated: local, sink")
    parser.add_argument("--modes", default="sequential,files,shards", help="comma-separated: sequential, files, shards")
    parser.add_argument("--endpoint", default=None, help="an S3-style sink already running (else one is started)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="round-trip delay of the started sink")
    parser.add_argument("--bandwidth-mbit", type=float, default=100.0, help="bandwidth cap of the started sink")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default bench/results/upload.json; with --tiny in the temporary folder)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="every measurement in seconds: 64 files, a 32-file sample, a sink at 5 ms"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per measurement")
    parser.add_argument(
        "--floor-sample",
        type=int,
        default=4096,
        help="files each stage is timed on alone for the floor (default 4096; 0: no floor)",
    )
    parser.add_argument("--child", choices=("sequential", "files", "shards", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bucket", default="arsl-ml", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tiny:  # a second pass, so that an option given on the command line still wins
        parser.set_defaults(**TINY_DEFAULTS)
        args = parser.parse_args(argv)

    if args.child:
        children = {"sequential": child_sequential, "floor": child_floor}
        measured = children.get(args.child, child_engine)(args)
        print(json.dumps(measured), flush=True)
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="arsl-bench-tiny-")) if args.tiny and not args.work else None
    work = args.work or scratch or Path(tempfile.gettempdir()) / "arsl-bench-upload"
    work.mkdir(parents=True, exist_ok=True)
    if args.out is None:
        args.out = (scratch or REPO / "bench" / "results") / "upload.json"
    data = make_dataset(work / f"images-v2-{args.files}", args.files)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    targets = [target.strip() for target in args.targets.split(",") if target.strip()]
    results: dict[str, Any] = {
        "files": args.files,
        "concurrency": args.concurrency,
        "machine": {"cpus": os.cpu_count()},
        "tiny": args.tiny,
        "dataset_bytes": sum(path.stat().st_size for path in data.rglob("*.jpg")),
        "targets": {},
    }
    for target in targets:
        sink: Sink | None = None
        endpoint: str | None = None
        if target == "sink":
            if args.endpoint:
                endpoint = args.endpoint
                results["sink"] = {"endpoint": endpoint, "started_here": False}
            else:
                sink = Sink(args.delay_ms, args.bandwidth_mbit, [f"bench-{mode}" for mode in [*modes, "floor"]])
                endpoint = sink.endpoint
                results["sink"] = {
                    "endpoint": endpoint,
                    "started_here": True,
                    "delay_ms": args.delay_ms,
                    "bandwidth_mbit": args.bandwidth_mbit,
                }
        figures: dict[str, Any] = {}
        try:
            for mode in modes:
                print(f"[{target}] {mode} …", flush=True)
                figures[mode] = run_child(mode, args, data, work, endpoint, f"bench-{mode}", sink)
                print(f"[{target}] {mode}: {json.dumps(figures[mode])}", flush=True)
            if args.floor_sample > 0 and target == targets[-1]:
                print(f"[{target}] stages alone, for the floor …", flush=True)
                results["stages"] = run_child("floor", args, data, work, endpoint, "bench-floor", sink)
                print(f"[{target}] stages: {json.dumps(results['stages'])}", flush=True)
        finally:
            if sink is not None:
                results["sink"]["requests"] = sink.stop()
        results["targets"][target] = figures

    stages = results.get("stages")
    if stages is not None and stages.get("status") == "error":
        stages = None
    for target, figures in results["targets"].items():
        for mode, figure in figures.items():
            if target == "sink" and mode in ("files", "shards") and figure.get("status") == "done":
                figure["floor"] = floor_of(figure, stages, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{args.files:,} images, {results['dataset_bytes'] / 1e6:.1f} MB, concurrency {args.concurrency}")
    print(
        f"{'target':<7} {'mode':<11} {'wall s':>9} {'objects/s':>10} {'MB sent':>8} {'RSS MB':>7} {'+workers':>9}  note"
    )
    for target, figures in results["targets"].items():
        for mode, figure in figures.items():
            note = "extrapolated from a sample" if figure.get("extrapolated") else figure.get("status", "")
            if figure.get("error"):
                note += f": {figure['error'][:80]}"
            if "phases_s" in figure:
                note += " " + " ".join(f"{phase} {seconds}" for phase, seconds in figure["phases_s"].items())
            if "load_avg_1m_before" in figure:
                note += f" (load {figure['load_avg_1m_before']}→{figure['load_avg_1m_after']})"
            wall, rate, rss, tree = (
                figure.get(name, float("nan"))
                for name in ("wall_s", "objects_per_s", "peak_rss_mb", "peak_tree_rss_mb")
            )
            sent = figure.get("bytes_sent", figure.get("bytes", 0)) / 1e6
            print(f"{target:<7} {mode:<11} {wall:>9} {rate:>10} {sent:>8.1f} {rss:>7} {tree:>9}  {note}")
    if stages is not None:
        per_file = ", ".join(
            f"{name.removesuffix('_us')} {value}" for name, value in stages["stages_us_per_file"].items()
        )
        print(f"stages alone, µs per file ({stages['files']} files): {per_file}", end="")
        if "send_shard_us_per_mb" in stages:
            print(f"; sending a shard {stages['send_shard_us_per_mb']} µs per MB", end="")
        print(f" (load {stages['load_avg_1m_before']}→{stages['load_avg_1m_after']})")
    for mode, figure in results["targets"].get("sink", {}).items():
        floor = figure.get("floor")
        if floor is None:
            continue
        sink_part = f" + sink {floor['sink_cpu_s']}" if floor.get("sink_cpu_s") is not None else ""
        line = (
            f"floor {mode}: client {floor['client_cpu_s']}{sink_part} CPU-s over {floor['cpus']} cores ≥ "
            f"{floor['cores_bound_s']} s"
        )
        if "stages_bound_s" in floor:
            line += f" (stages alone: {floor['stages_cpu_s']} CPU-s, ≥ {floor['stages_bound_s']} s)"
        if "link_s" in floor:
            line += f"; link {floor['link_s']} s"
        if "round_trips_s" in floor:
            line += f"; round trips {floor['round_trips_s']} s"
        if "after_first_send_bound_s" in floor:
            line += f"; first send at {floor['first_send_s']} s + link = {floor['after_first_send_bound_s']} s"
        if "ordered_floor_s" in floor:
            line += (
                f"; first send possible at {floor['first_send_floor_s']} s on idle cores + link = "
                f"{floor['ordered_floor_s']} s"
            )
        print(f"{line}; bound by {floor['bound_by']}: {floor['best_wall_s']} s vs {figure['wall_s']} s measured")
    print(f"results written to {args.out}")
    if scratch is not None:
        shutil.rmtree(work / f"images-v2-{args.files}", ignore_errors=True)  # the tiny set is not worth caching
    failed = [
        f"{target} {mode}"
        for target, figures in results["targets"].items()
        for mode, figure in figures.items()
        if figure.get("status", "done") != "done"
    ]
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
