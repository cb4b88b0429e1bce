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

Data: `--files` tiny 64×64 grayscale JPEGs in the 32 class folders, made fast by encoding one image
per class and giving every copy a distinct JPEG comment, so all MD5s differ and every file decodes.
The set is cached under the work folder and reused by later runs of the same size.
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
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FULL_SIZE = 108_098
SINK_MODULE = "tests.fixtures.s3sink"
DUMMY_CREDENTIALS = {"HUAWEICLOUD_SDK_AK": "bench-access-key", "HUAWEICLOUD_SDK_SK": "bench-secret-key",
                     "HUAWEICLOUD_SDK_PROJECT_ID": "bench-project"}


# -- data -----------------------------------------------------------------------------------------------


def _class_image(index: int) -> bytes:
    """A smooth 64×64 grayscale JPEG (about the size of an ArSL2018 image) that differs per class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:64, 0:64]
    centre_x, centre_y = rng.uniform(16, 48, size=2)
    blob = 150 * np.exp(-((x - centre_x) ** 2 + (y - centre_y) ** 2) / rng.uniform(60, 200))
    pixels = np.clip(40 + blob + 0.8 * x + rng.normal(0, 6, size=(64, 64)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    """The same image with a COM segment after SOI: a valid JPEG with different bytes."""
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def make_dataset(folder: Path, files: int) -> Path:
    from arsl_tui.domain.classes import ARSL_CLASSES

    marker = folder / ".bench-complete"
    if marker.exists() and marker.read_text().strip() == str(files):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    started = time.perf_counter()
    bases = [_class_image(index) for index in range(len(ARSL_CLASSES))]
    for name in ARSL_CLASSES:
        (folder / name).mkdir(parents=True)
    for number in range(files):
        class_number = number % len(ARSL_CLASSES)
        name = ARSL_CLASSES[class_number]
        data = _with_comment(bases[class_number], f"arsl-bench {number}".encode())
        (folder / name / f"{name}_{number:06d}.jpg").write_bytes(data)
    marker.write_text(str(files))
    print(f"wrote {files:,} images to {folder} in {time.perf_counter() - started:.1f} s", flush=True)
    return folder


# -- children: one measurement each -------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _settings(home: Path, endpoint: str | None, bucket: str, concurrency: int) -> Any:
    from arsl_tui.config import load_settings

    overrides: dict[str, Any] = {"home": str(home), "storage.bucket": bucket, "upload.concurrency": concurrency}
    if endpoint:
        overrides.update({"backend": "huawei", "huawei.obs_endpoint": endpoint})
    return load_settings(environ={}, cwd=home, cli_overrides=overrides)


def child_sequential(args: argparse.Namespace) -> dict[str, Any]:
    """The seed's loop: for each file, hash it and put it, one request at a time."""
    from arsl_tui.providers import open_store

    settings = _settings(args.home, args.endpoint, args.bucket, 1)
    store = open_store(settings)
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
    return {"sampled_objects": len(files), "sample_wall_s": round(elapsed, 3), "objects_per_s": round(rate, 1),
            "wall_s": round(args.files / rate, 1), "extrapolated": True, "bytes": sent_bytes,
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


def child_engine(args: argparse.Namespace) -> dict[str, Any]:
    from arsl_tui.domain.events import Event, UploadPhaseChanged, UploadRetried, UploadStarted
    from arsl_tui.ops.upload import UploadRequest, run_upload

    settings = _settings(args.home, args.endpoint, args.bucket, args.concurrency)
    phases: dict[str, float] = {}
    totals: dict[str, int] = {"retries": 0}
    started = time.perf_counter()

    def on_event(event: Event) -> None:
        if isinstance(event, UploadPhaseChanged) and event.phase not in phases:
            phases[event.phase] = time.perf_counter() - started
        elif isinstance(event, UploadStarted):
            totals.update(objects=event.objects_total, bytes=event.bytes_total, files=event.files_total)
        elif isinstance(event, UploadRetried):
            totals["retries"] += 1

    outcome = run_upload(settings, UploadRequest(Path(args.data), mode=args.child, concurrency=args.concurrency),
                         on_event=on_event)
    wall = time.perf_counter() - started
    order = list(phases)
    durations = {phase: round((phases[order[i + 1]] if i + 1 < len(order) else wall) - phases[phase], 2)
                 for i, phase in enumerate(order)}
    return {"status": outcome.status, "error": outcome.error, "wall_s": round(wall, 2),
            "objects": outcome.objects_sent, "objects_per_s": round(outcome.objects_sent / wall, 1),
            "images_per_s": round(totals.get("files", 0) / wall, 1), "bytes_sent": outcome.bytes_sent,
            "phases_s": durations, "retries": totals["retries"], "concurrency": args.concurrency,
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


# -- the driver ---------------------------------------------------------------------------------------


class Sink:
    """tests/fixtures/s3sink.py as a subprocess on 127.0.0.1, stopped by its PID."""

    def __init__(self, delay_ms: float, bandwidth_mbit: float, buckets: list[str]) -> None:
        # Objects stay in the sink's memory (well under 2 GB for the full set in every mode): a sink
        # writing files would measure its own disk, not the upload.
        command = [sys.executable, "-m", SINK_MODULE, "--port", "0", "--delay-ms", str(delay_ms),
                   "--bandwidth-mbit", str(bandwidth_mbit)]
        for bucket in buckets:
            command += ["--bucket", bucket]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the S3 sink did not start: {line!r}")
        self.endpoint = f"http://127.0.0.1:{line}"

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, errors = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, errors = self.process.communicate()
        return errors.strip().splitlines()[-1] if errors.strip() else ""


def run_child(kind: str, args: argparse.Namespace, data: Path, work: Path, endpoint: str | None,
              bucket: str) -> dict[str, Any]:
    home = work / f"home-{bucket}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--data", str(data),
               "--home", str(home), "--bucket", bucket, "--files", str(args.files), "--sample", str(args.sample),
               "--concurrency", str(args.concurrency)]
    if endpoint:
        command += ["--endpoint", endpoint]
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    env.update(DUMMY_CREDENTIALS)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    if result.returncode != 0:
        return {"status": "error", "error": (result.stderr or result.stdout).strip()[-800:]}
    shutil.rmtree(home, ignore_errors=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


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
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "upload.json")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per measurement")
    parser.add_argument("--child", choices=("sequential", "files", "shards"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bucket", default="arsl-ml", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        measured = child_sequential(args) if args.child == "sequential" else child_engine(args)
        print(json.dumps(measured), flush=True)
        return 0

    work = args.work or Path(tempfile.gettempdir()) / "arsl-bench-upload"
    work.mkdir(parents=True, exist_ok=True)
    data = make_dataset(work / f"data-{args.files}", args.files)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    targets = [target.strip() for target in args.targets.split(",") if target.strip()]
    results: dict[str, Any] = {
        "files": args.files, "concurrency": args.concurrency, "machine": {"cpus": os.cpu_count()},
        "dataset_bytes": sum(path.stat().st_size for path in data.rglob("*.jpg")), "targets": {}}
    for target in targets:
        sink: Sink | None = None
        endpoint: str | None = None
        if target == "sink":
            if args.endpoint:
                endpoint = args.endpoint
                results["sink"] = {"endpoint": endpoint, "started_here": False}
            else:
                sink = Sink(args.delay_ms, args.bandwidth_mbit, [f"bench-{mode}" for mode in modes])
                endpoint = sink.endpoint
                results["sink"] = {"endpoint": endpoint, "started_here": True, "delay_ms": args.delay_ms,
                                   "bandwidth_mbit": args.bandwidth_mbit}
        figures: dict[str, Any] = {}
        try:
            for mode in modes:
                print(f"[{target}] {mode} …", flush=True)
                figures[mode] = run_child(mode, args, data, work, endpoint, f"bench-{mode}")
                print(f"[{target}] {mode}: {json.dumps(figures[mode])}", flush=True)
        finally:
            if sink is not None:
                results["sink"]["requests"] = sink.stop()
        results["targets"][target] = figures

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{args.files:,} images, {results['dataset_bytes'] / 1e6:.1f} MB, concurrency {args.concurrency}")
    print(f"{'target':<7} {'mode':<11} {'wall s':>9} {'objects/s':>10} {'peak RSS MB':>12}  note")
    for target, figures in results["targets"].items():
        for mode, figure in figures.items():
            note = "extrapolated from a sample" if figure.get("extrapolated") else figure.get("status", "")
            if figure.get("error"):
                note += f": {figure['error'][:80]}"
            wall, rate, rss = (figure.get(name, float("nan")) for name in ("wall_s", "objects_per_s", "peak_rss_mb"))
            print(f"{target:<7} {mode:<11} {wall:>9} {rate:>10} {rss:>12}  {note}")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
