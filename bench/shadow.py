"""Shadow benchmark: the clients' latency with and without shadow copies, on the same gateway, in one run.

    .venv/bin/python bench/shadow.py                      # 100 req/s, 8 s per run, 2 pairs of runs
    .venv/bin/python bench/shadow.py --rate 60 --duration 5 --pairs 3

One real gateway (the app `arsl deploy` serves: auth, limits, micro-batching) runs in its own process
with two real model packages (trainer.export, compact CNN, random weights): v1 answers every client,
v2 is loaded with no traffic. Runs alternate, shadow off then on (`PUT /admin/shadow` with share 100),
so both meet the same background load; each run is an open-loop fixed rate from the serving bench's
load generator (a separate process; latency counts from each request's scheduled time, so queueing
shows). Reported per run and pooled per mode: p50/p95/p99 of client latency, the p99 ratio (shadow on
÷ off; the issue asks for ≤ 1.10), and the shadow window (copies sent, dropped, agreement). Results:
printed, and written to bench/results/shadow.json.

`--tiny` runs one pair at 20 req/s, 2 s each, and writes to a fresh temporary folder unless `--out` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "shadow.json"
SERVE_BENCH = REPO / "bench" / "serve.py"
TINY_DEFAULTS = {"rate": 20.0, "duration": 2.0, "pairs": 1}


def gateway_main(args: argparse.Namespace) -> int:
    """The gateway process: v1 at 100 %, v2 loaded at 0 %; writes its port and a client key, then serves."""
    import shutil

    from arsl_tui.config import load_settings
    from arsl_tui.domain.serving import Deployment
    from arsl_tui.providers.local.serving_control import ServingState, models_dir
    from arsl_tui.serving.app import create_app
    from arsl_tui.serving.auth import KeyStore
    from arsl_tui.serving.server import bind, build_gateway, uvicorn_server

    home = Path(args.home)
    settings = load_settings(
        None,
        cli_overrides={
            "home": str(home),
            "gateway.port": 0,
            "gateway.api_call_limit": 1_000_000,
            "gateway.app_call_limit": 1_000_000,
            "gateway.time_unit": "SECOND",
        },
        environ={},
        cwd=home,
    )
    for version in ("v1", "v2"):
        shutil.copytree(Path(args.packages) / version / "model", models_dir(home) / version)
    deployment = Deployment(stable="v1", canary="v2", weights={"v1": 100, "v2": 0})
    state = ServingState.open(home)
    state.save_deployment(deployment, "shadow bench")
    gateway = build_gateway(settings, home, state, deployment)
    key = KeyStore(state.db).create("bench")
    sock = bind("127.0.0.1", 0)
    Path(args.port_file).write_text(json.dumps({"port": sock.getsockname()[1], "key": key}), encoding="utf-8")
    uvicorn_server(create_app(gateway), sock).run(sockets=[sock])
    return 0


def _export_packages(folder: Path) -> None:
    import torch

    from arsl_tui.domain.classes import ARSL_CLASSES
    from trainer.export import export_package
    from trainer.model import build_model

    for seed, version in ((1, "v1"), (2, "v2")):
        torch.manual_seed(seed)
        export_package(
            folder / version,
            build_model("compact", len(ARSL_CLASSES)),
            architecture="compact",
            classes=ARSL_CLASSES,
            mean=0.5,
            std=0.25,
            manifest_id="m-bench",
            metrics={},
            job_id=f"bench-{version}",
        )


def _images(folder: Path, count: int = 16) -> list[Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    paths = []
    for index in range(count):
        path = folder / f"image-{index}.jpg"
        Image.fromarray(rng.integers(0, 256, size=(64, 64), dtype=np.uint8), mode="L").save(path, format="JPEG")
        paths.append(path)
    return paths


def _wait_for(path: Path, process: subprocess.Popen[bytes], bound_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + bound_s
    while not path.exists() or not path.read_text(encoding="utf-8"):
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit("the gateway did not start")
        time.sleep(0.1)
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _load(port: int, key: str, images: list[Path], rate: float, duration: float) -> dict[str, Any]:
    command = [
        sys.executable,
        str(SERVE_BENCH),
        "--loadgen",
        "--port",
        str(port),
        "--key",
        key,
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--connections",
        "64",
        "--images",
        *map(str, images),
    ]
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120, check=True)
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def _percentile(values: list[float], q: float) -> float | None:
    import math

    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


def main(args: argparse.Namespace) -> int:
    import httpx

    from arsl_tui.providers.local.serving_control import read_admin_token

    work = Path(tempfile.mkdtemp(prefix="arsl-shadow-bench-"))
    _export_packages(work / "packages")
    images = _images(work)
    port_file = work / "gateway.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    gateway = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--gateway",
            "--home",
            str(work / "home"),
            "--packages",
            str(work / "packages"),
            "--port-file",
            str(port_file),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs: list[dict[str, Any]] = []
    try:
        started = _wait_for(port_file, gateway)
        port, key = int(started["port"]), str(started["key"])
        admin = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {read_admin_token(work / 'home')}"},
            trust_env=False,
            timeout=30,
        )
        _load(port, key, images, args.rate, 1.0)  # warm-up: first batches, allocator, JIT-free paths
        for pair in range(args.pairs):
            for mode in ("off", "on"):
                share = 100 if mode == "on" else 0
                admin.put("/admin/shadow", json={"version": "v2" if share else None, "share": share}).raise_for_status()
                began = time.monotonic()
                result = _load(port, key, images, args.rate, args.duration)
                window = admin.get("/admin/shadow", params={"window_s": time.monotonic() - began + 0.5}).json()[
                    "window"
                ]
                result.update(
                    mode=mode,
                    pair=pair,
                    load_1m=round(os.getloadavg()[0], 2),
                    shadow={name: window.get(name) for name in ("offered", "sent", "dropped", "agreement")}
                    if share
                    else None,
                )
                runs.append(result)
                print(
                    f"pair {pair + 1} shadow {mode:>3}: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
                    f"p99 {result['p99_ms']} ms, {result['completed']} ok, {result['errors']} errors, "
                    f"versions {result['versions']}"
                    + (
                        f"; copies {result['shadow']['sent']} sent, {result['shadow']['dropped']} dropped"
                        if share
                        else ""
                    ),
                    flush=True,
                )
        admin.close()
    finally:
        gateway.terminate()
        gateway.wait(30)
    summary: dict[str, Any] = {}
    for mode in ("off", "on"):
        mine = [run for run in runs if run["mode"] == mode]
        summary[mode] = {
            "p99_ms_per_run": [run["p99_ms"] for run in mine],
            "p99_ms_median_of_runs": _percentile(
                [float(run["p99_ms"]) for run in mine if run["p99_ms"] is not None], 50
            ),
            "completed": sum(run["completed"] for run in mine),
            "errors": sum(run["errors"] for run in mine),
        }
    off, on = summary["off"]["p99_ms_median_of_runs"], summary["on"]["p99_ms_median_of_runs"]
    summary["p99_ratio_on_over_off"] = round(on / off, 3) if on and off else None
    report = {
        "tiny": args.tiny,
        "rate_rps": args.rate,
        "duration_s": args.duration,
        "pairs": args.pairs,
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "summary": summary,
    }
    print(
        f"client p99 (median of runs): without shadow {off} ms, with shadow {on} ms, "
        f"ratio {summary['p99_ratio_on_over_off']} (target ≤ 1.10)"
    )
    out = args.out or (Path(tempfile.mkdtemp(prefix="arsl-bench-")) / "shadow.json" if args.tiny else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="client requests per second (open loop)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--pairs", type=int, default=2, help="pairs of runs (shadow off, then on)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default bench/results/shadow.json)")
    parser.add_argument("--tiny", action="store_true", help="one pair at 20 req/s, 2 s each")
    parser.add_argument("--gateway", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", default="", help=argparse.SUPPRESS)
    parser.add_argument("--packages", default="", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tiny:  # a second pass, so that an option given on the command line still wins
        parser.set_defaults(**TINY_DEFAULTS)
        args = parser.parse_args(argv)
    return args


if __name__ == "__main__":
    arguments = parse()
    sys.exit(gateway_main(arguments) if arguments.gateway else main(arguments))
