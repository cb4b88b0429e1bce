"""Serving benchmark: the gateway (micro-batching, 90/10 canary split) vs a plain one-request-one-forward endpoint.

    .venv/bin/python bench/serve.py                          # rates 50,100,200,300 req/s, 8 s each, then saturation
    .venv/bin/python bench/serve.py --duration 4 --rates 100,200 --concurrency 32

Both servers run the same stack (Starlette under uvicorn with httptools and uvloop, on 127.0.0.1), the
same real model packages (trainer.export, compact CNN, random weights: speed does not depend on them)
and the same torch thread count, so the difference is what the gateway adds:
(a) the gateway as `arsl deploy` starts it (its own detached process, auth with X-Apig-AppCode, rate
    limits, metrics, v1/v2 at 90/10), with micro-batching ([gateway] max_batch / max_wait_ms);
(b) a plain endpoint: each request decodes its image and runs its own forward pass on one worker
    thread (Predictor.predict([image])), no batching.
Both servers run side by side and each run is made on one, then at once on the other, so both meet the
same background load (the 1-minute load average and the cores the whole machine kept busy are recorded
with every run: on a shared 2-core machine other work moves the figures a lot).

The bare forward pass is measured first, in this process: CPU milliseconds per image at batch 1 and at
every batch size the micro-batcher forms (powers of two up to `--max-batch`), for each runtime the
gateway can serve with (torch, and ONNX Runtime when `onnxruntime` and `onnx` are installed), interleaved
so both meet the same load. The summary sets the gateway's CPU per request at saturation against the bare
forward cost of its runtime at the mean batch it formed there: the difference is what the gateway adds
(HTTP, auth, rate limits, decoding, batching, metrics); goal ≤ 30 % of the forward cost.
(c) the floor: a no-op endpoint on the gateway's own server stack (the same `uvicorn_server` settings,
    Starlette, httptools, uvloop) that reads the body and answers a constant JSON of the gateway's shape,
    decoding nothing, measured at saturation right after the other two. Its CPU per request is what the
    HTTP stack alone costs; when it alone exceeds 30 % of the forward cost, the goal cannot be met on this
    stack, and the summary (and printout) says so with the figures.
The load generator is a separate process: an asyncio (uvloop) client over raw keep-alive sockets with
pre-built requests, so it costs the machine little. Fixed rates are open-loop (requests are scheduled
on a clock; latency counts from the scheduled time, so queueing shows); saturation is closed-loop
(`--concurrency` connections, back to back). Also reported: the gateway's RSS with both versions loaded
(VmRSS and VmHWM) and the time from starting it to its first answer. Results: printed, and written to
bench/results/serve.json.

`--tiny` runs every step above in seconds (one fixed rate of 20 req/s and saturation at 4 connections, 1 s
each; any option given on the command line wins) and writes its JSON to a fresh temporary folder unless
`--out` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "serve.json"
TINY_DEFAULTS = {"rates": [20.0], "duration": 1.0, "concurrency": 4}
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)
_VERSION = re.compile(rb'"model_version":\s*"(v\d+)"')
OVERHEAD_TARGET = 0.30
"""The gateway may add at most this share of the bare forward cost per image (CPU per request at saturation)."""


# --- load generator (runs in its own process) ------------------------------------------------------


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        found = _LENGTH.search(head)
        body = await self.reader.readexactly(int(found.group(1))) if found else b""
        return int(head[9:12]), body


def _requests(host: str, port: int, path: str, key: str, images: list[bytes]) -> list[bytes]:
    auth = f"X-Apig-AppCode: {key}\r\n" if key else ""
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Content-Type: image/jpeg\r\n"
            f"Content-Length: {len(image)}\r\n\r\n"
        ).encode()
        + image
        for image in images
    ]


async def _connect(host: str, port: int, count: int) -> list[Connection]:
    return [Connection(*await asyncio.open_connection(host, port)) for _ in range(count)]


def _summary(
    samples: list[tuple[float, int, bytes]], duration_s: float, offered: float | None, unfinished: int
) -> dict[str, Any]:
    ok = [latency for latency, status, _version in samples if status == 200]
    ordered = sorted(ok)
    versions: dict[str, int] = {}
    for _latency, status, version in samples:
        if status == 200:
            versions[version.decode()] = versions.get(version.decode(), 0) + 1
    return {
        "offered_rps": offered,
        "completed": len(ok),
        "errors": len(samples) - len(ok) + unfinished,
        "throughput_rps": round(len(ok) / duration_s, 1),
        "duration_s": round(duration_s, 2),
        "p50_ms": _round(_percentile(ordered, 50)),
        "p95_ms": _round(_percentile(ordered, 95)),
        "p99_ms": _round(_percentile(ordered, 99)),
        "max_ms": _round(ordered[-1] if ordered else None),
        "versions": versions,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def fixed_rate(
    host: str, port: int, requests: list[bytes], rate: float, duration_s: float, connections: int
) -> dict[str, Any]:
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for connection in await _connect(host, port, connections):
        pool.put_nowait(connection)
    samples: list[tuple[float, int, bytes]] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, scheduled: float) -> None:
        connection = await pool.get()
        try:
            status, body = await connection.roundtrip(requests[index % len(requests)])
        except (OSError, asyncio.IncompleteReadError, ValueError):
            samples.append(((time.perf_counter() - scheduled) * 1000, 0, b""))
            return
        found = _VERSION.search(body)
        samples.append(((time.perf_counter() - scheduled) * 1000, status, found.group(1) if found else b"-"))
        pool.put_nowait(connection)

    start = time.perf_counter() + 0.05
    total = int(rate * duration_s)
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    _done, pending = await asyncio.wait(tasks, timeout=30) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - start
    return _summary(samples, max(duration_s, min(elapsed, duration_s + 30)), rate, len(pending))


async def saturation(
    host: str, port: int, requests: list[bytes], concurrency: int, duration_s: float
) -> dict[str, Any]:
    connections = await _connect(host, port, concurrency)
    samples: list[tuple[float, int, bytes]] = []
    deadline = time.perf_counter() + duration_s

    async def worker(connection: Connection, offset: int) -> None:
        index = offset
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                status, body = await connection.roundtrip(requests[index % len(requests)])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                samples.append(((time.perf_counter() - sent) * 1000, 0, b""))
                return
            found = _VERSION.search(body)
            samples.append(((time.perf_counter() - sent) * 1000, status, found.group(1) if found else b"-"))
            index += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(worker(connection, offset) for offset, connection in enumerate(connections)))
    result = _summary(samples, time.perf_counter() - started, None, 0)
    result["concurrency"] = concurrency
    return result


def loadgen_main(args: argparse.Namespace) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    images = [Path(path).read_bytes() for path in args.images]
    requests = _requests(args.host, args.port, args.path, args.key, images)
    if args.rate:
        result = asyncio.run(fixed_rate(args.host, args.port, requests, args.rate, args.duration, args.connections))
    else:
        result = asyncio.run(saturation(args.host, args.port, requests, args.concurrency, args.duration))
    print(json.dumps(result))
    return 0


# --- the plain baseline server (runs in its own process) ---------------------------------------------


def baseline_main(args: argparse.Namespace) -> int:
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from arsl_tui.serving.batching import configure_torch
    from trainer.predict import InvalidImage, Predictor

    configure_torch(args.threads)
    predictor = Predictor.load(args.model_dir)
    predictor.predict([Path(args.images[0]).read_bytes()])  # warm-up, as the gateway does
    worker = ThreadPoolExecutor(max_workers=1)  # one forward at a time, off the event loop

    async def predict(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            rows = await asyncio.get_running_loop().run_in_executor(worker, predictor.predict, [body], 5)
        except InvalidImage as error:
            return JSONResponse({"error": str(error)}, status_code=422)
        top = rows[0]
        return JSONResponse(
            {
                "label": top[0].label,
                "class_index": top[0].index,
                "confidence": top[0].probability,
                "top5": [item.to_json() for item in top],
                "model_version": "v1",
            }
        )

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    Path(args.port_file).write_text(str(sock.getsockname()[1]))
    app = Starlette(routes=[Route("/v1/predict", predict, methods=["POST"])])
    config = uvicorn.Config(app, loop="auto", http="auto", log_level="warning", access_log=False, backlog=2048)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


# --- the floor: a no-op endpoint on the gateway's server stack (runs in its own process) -------------

NOOP_REQUEST_ID = "0" * 32
NOOP_ANSWER = {
    "request_id": NOOP_REQUEST_ID,
    "model_version": "v1",
    "label": "ain",
    "class_index": 0,
    "confidence": 0.5,
    "top5": [{"label": "ain", "class_index": index, "confidence": 0.1} for index in range(5)],
}
"""A constant answer of the gateway's shape and about its size, so both servers write as many bytes."""


def noop_main(args: argparse.Namespace) -> int:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from arsl_tui.serving.server import bind, uvicorn_server

    async def predict(request: Request) -> JSONResponse:
        await request.body()  # the body is received as the gateway receives it, then ignored: no decoding
        return JSONResponse(NOOP_ANSWER, headers={"X-Request-Id": NOOP_REQUEST_ID})

    sock = bind("127.0.0.1", 0)
    Path(args.port_file).write_text(str(sock.getsockname()[1]))
    app = Starlette(routes=[Route("/v1/predict", predict, methods=["POST"])])
    uvicorn_server(app, sock).run(sockets=[sock])
    return 0


# --- orchestration -------------------------------------------------------------------------------


def _rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


def _run_load(
    host: str,
    port: int,
    path: str,
    key: str,
    images: list[Path],
    *,
    rate: float | None = None,
    concurrency: int = 32,
    duration: float,
    connections: int = 64,
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--loadgen",
        "--host",
        host,
        "--port",
        str(port),
        "--path",
        path,
        "--key",
        key,
        "--duration",
        str(duration),
        "--connections",
        str(connections),
        "--concurrency",
        str(concurrency),
        "--images",
        *map(str, images),
    ]
    if rate:
        command += ["--rate", str(rate)]
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def _first_answer_s(url: str, key: str, image: bytes, started: float) -> float:
    import httpx

    response = httpx.post(
        url + "/v1/predict",
        content=image,
        trust_env=False,
        timeout=30,
        headers={"X-Apig-AppCode": key, "Content-Type": "image/jpeg"},
    )
    response.raise_for_status()
    return time.perf_counter() - started


def _metric_sums(url: str) -> dict[str, float]:
    import httpx

    text = httpx.get(url + "/metrics", trust_env=False).text
    sums: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("arsl_gateway_batch_size_sum", "arsl_gateway_batch_size_count"):
            if line.startswith(name + "{"):
                sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def _cpu_s(pid: int, stat_path: str = "stat") -> float:
    """User + system CPU seconds the process has used (all its threads; `task/<pid>/stat`: its main thread)."""
    stat = Path(f"/proc/{pid}/{stat_path}").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _main_thread_cpu_s(pid: int) -> float:
    """CPU seconds of the process's main thread: the event loop (HTTP, auth, decoding, metrics) in every server
    here, while the gateway's forward passes run on other threads."""
    return _cpu_s(pid, f"task/{pid}/stat")


def _measure(
    label: str,
    host: str,
    port: int,
    key: str,
    images: list[Path],
    args: argparse.Namespace,
    name: str,
    rate: float | None,
    url: str | None,
    pid: int,
) -> dict[str, Any]:
    before = _metric_sums(url) if url else {}
    cpu_before, loop_before = _cpu_s(pid), _main_thread_cpu_s(pid)
    busy_before, wall_before = _machine_busy_s(), time.perf_counter()
    result = _run_load(
        host, port, "/v1/predict", key, images, rate=rate, concurrency=args.concurrency, duration=args.duration
    )
    cpu, loop_cpu = _cpu_s(pid) - cpu_before, _main_thread_cpu_s(pid) - loop_before
    busy, wall = _machine_busy_s() - busy_before, time.perf_counter() - wall_before
    done = result["completed"]
    result["server_cpu_ms_per_request"] = round(cpu * 1000 / done, 3) if done else None
    result["event_loop_cpu_ms_per_request"] = round(loop_cpu * 1000 / done, 3) if done else None
    result["server_cpu_cores"] = round(cpu / result["duration_s"], 2)
    # Every process's CPU over the run (the load generator's and other work's too): how quiet the machine was.
    result["machine_busy_cores"] = round(busy / wall, 2)
    if url:
        after = _metric_sums(url)
        batches = after.get("arsl_gateway_batch_size_count", 0) - before.get("arsl_gateway_batch_size_count", 0)
        images_done = after.get("arsl_gateway_batch_size_sum", 0) - before.get("arsl_gateway_batch_size_sum", 0)
        result["mean_batch"] = round(images_done / batches, 2) if batches else None
    result["run"] = name
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(
        f"  {label:8} {name:24} {result['throughput_rps']:7.1f} req/s  p50 {result['p50_ms']} ms  "
        f"p95 {result['p95_ms']} ms  p99 {result['p99_ms']} ms  errors {result['errors']}  "
        f"batch {result.get('mean_batch', '-')}  CPU {result['server_cpu_ms_per_request']} ms/req "
        f"(loop {result['event_loop_cpu_ms_per_request']}) "
        f"({result['server_cpu_cores']} cores; machine {result['machine_busy_cores']})  {result['versions']}  "
        f"load {result['loadavg_1m']}",
        flush=True,
    )
    return result


def _start_server(work: Path, role: str, options: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start this script as one of its server roles (`--baseline-server`, `--noop-server`); (process, port)."""
    port_file = work / f"{role}.port"
    process = subprocess.Popen(
        [sys.executable, __file__, f"--{role}-server", "--port-file", str(port_file), *options],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not port_file.exists() or not port_file.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"the {role} server did not start")
        time.sleep(0.05)  # waiting for another process to write its port: nothing to block on
    return process, int(port_file.read_text())


def _start_baseline(work: Path, model_dir: Path, image: Path, threads: int) -> tuple[subprocess.Popen[bytes], int]:
    options = ["--model-dir", str(model_dir), "--threads", str(threads), "--images", str(image)]
    return _start_server(work, "baseline", options)


def batch_sizes(max_batch: int) -> list[int]:
    """The batch sizes the forward cost is measured at: powers of two up to max_batch, and max_batch itself."""
    sizes = [1]
    while sizes[-1] * 2 < max_batch:
        sizes.append(sizes[-1] * 2)
    return sorted({*sizes, max_batch})


def forward_costs(model_dir: Path, threads: int, sizes: list[int], rounds: int) -> dict[str, dict[str, float]]:
    """CPU milliseconds per image of the bare forward pass (normalised input → probabilities), per runtime and
    batch size: the least of `rounds` interleaved rounds, the figure least inflated by other work."""
    from arsl_tui.serving.batching import configure_torch
    from arsl_tui.serving.runtime import onnx_forward, onnxruntime_installed, probe_batch, torch_forward
    from trainer.predict import Predictor

    count = configure_torch(threads)
    predictor = Predictor.load(model_dir)
    forwards = {"torch": torch_forward(predictor)}
    if onnxruntime_installed():
        forwards["onnxruntime"] = onnx_forward(predictor, count)
    samples: dict[str, dict[int, list[float]]] = {name: {size: [] for size in sizes} for name in forwards}
    for _round in range(rounds):
        for size in sizes:
            batch = probe_batch(predictor, size)
            repeats = max(3, 160 // size)
            for name, forward in forwards.items():
                forward(batch)
                started = time.thread_time()
                for _ in range(repeats):
                    forward(batch)
                samples[name][size].append((time.thread_time() - started) / repeats / size * 1000)
    return {
        name: {f"batch_{size}": round(min(values), 3) for size, values in by_size.items()}
        for name, by_size in samples.items()
    }


def cost_at(costs: dict[str, float], batch: float) -> float:
    """The forward cost per image at a (mean, fractional) batch size, interpolated between measured sizes."""
    points = sorted((int(name.split("_")[1]), value) for name, value in costs.items())
    if batch <= points[0][0]:
        return points[0][1]
    for (low, low_cost), (high, high_cost) in itertools.pairwise(points):
        if batch <= high:
            return low_cost + (high_cost - low_cost) * (batch - low) / (high - low)
    return points[-1][1]


def _gateway_runtimes(url: str, key: str, timeout_s: float = 120) -> dict[str, str]:
    """The runtime each served version settled on (the gateway converts in the background after it starts)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        versions = httpx.get(url + "/v1/model/info", headers={"X-Apig-AppCode": key}, trust_env=False).json()[
            "versions"
        ]
        if all(item.get("runtime_settled", True) for item in versions) or time.monotonic() > deadline:
            return {item["version"]: item.get("runtime", "torch") for item in versions}
        time.sleep(0.1)  # another process's state, only visible by asking it again


def _machine_busy_s() -> float:
    """CPU seconds all cores of the machine have spent not idle (every process, ours and others')."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]  # steal (a VM's host's other guests) left out
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _overhead(forward: dict[str, float], run: dict[str, Any]) -> dict[str, Any]:
    """What the gateway's CPU per request adds to the bare forward cost per image at the batch it formed."""
    cpu = run["server_cpu_ms_per_request"]
    batch = run.get("mean_batch") or 1.0
    if cpu is None:
        return {}
    bare = cost_at(forward, batch)
    return {
        "mean_batch": batch,
        "gateway_cpu_ms_per_request": cpu,
        "bare_forward_cpu_ms_per_image": round(bare, 3),
        "overhead_ms": round(cpu - bare, 3),
        "overhead_ratio": round((cpu - bare) / bare, 3),
    }


def decode_cost_ms(images: list[bytes], rounds: int) -> float:
    """CPU milliseconds per image of the gateway's own decode (bytes → 64×64 pixels), least of `rounds`: a cost
    every gateway that classifies an image pays on top of the server stack's."""
    from arsl_tui.serving.batching import decode

    decode(images[0])  # the first call loads Pillow's plugins
    samples = []
    for _round in range(rounds):
        started = time.thread_time()
        for data in images:
            decode(data)
        samples.append((time.thread_time() - started) / len(images) * 1000)
    return round(min(samples), 3)


def floor(
    forward: dict[str, float], gateway: dict[str, Any], noop: list[dict[str, Any]], decode_ms: float
) -> dict[str, Any]:
    """Where the gateway's CPU per request goes, against the least any handler on this stack could cost.

    `noop` holds the no-op endpoint's runs: at saturation (the floor as defined: the stack's cost per request
    when it is kept busiest) and at the rate the gateway reached (like for like: a server answering fewer
    requests a second is woken, and pays the loop's fixed costs, once for fewer requests)."""
    overhead = _overhead(forward, gateway)
    saturated, same_rate = (run.get("server_cpu_ms_per_request") for run in noop)
    if not overhead or saturated is None or same_rate is None:
        return {}
    bare = overhead["bare_forward_cpu_ms_per_image"]
    loop = gateway["event_loop_cpu_ms_per_request"]
    inference = overhead["gateway_cpu_ms_per_request"] - loop
    result = {
        "noop_cpu_ms_per_request": saturated,
        "floor_ratio": round(saturated / bare, 3),
        "noop_cpu_ms_per_request_at_gateway_rate": same_rate,
        "floor_ratio_at_gateway_rate": round(same_rate / bare, 3),
        "decode_cpu_ms_per_image": decode_ms,
        "floor_with_decode_ratio": round((saturated + decode_ms) / bare, 3),
        # The gateway's CPU split by thread: its event loop (HTTP, auth, decode, metrics: all but the forward)
        # and the rest (the inference thread: stacking, normalising, the forward pass as it runs there, top-k).
        "gateway_event_loop_cpu_ms_per_request": loop,
        "gateway_inference_threads_cpu_ms_per_request": round(inference, 3),
        "inference_threads_beyond_bare_forward_ms": round(inference - bare, 3),
        "event_loop_beyond_noop_at_gateway_rate_ms": round(loop - same_rate, 3),
    }
    # What no gateway on this stack can avoid at the rate it runs: the stack itself and decoding the image.
    unavoidable = (same_rate + decode_ms) / bare
    result["floor_with_decode_ratio_at_gateway_rate"] = round(unavoidable, 3)
    result["goal_reachable_on_this_stack"] = unavoidable <= OVERHEAD_TARGET
    if unavoidable > OVERHEAD_TARGET:
        result["reason"] = (
            f"at the rate the gateway reaches ({gateway['throughput_rps']} req/s) the server stack alone (uvicorn + "
            f"httptools + uvloop + Starlette, a no-op endpoint that reads the body and answers constant JSON) costs "
            f"{same_rate} ms CPU per request and decoding the image {decode_ms} ms: {unavoidable:.0%} of the bare "
            f"forward ({bare} ms per image at batch {overhead['mean_batch']}), above the {OVERHEAD_TARGET:.0%} goal "
            f"before any auth, batching, answer or metrics (kept busiest, at saturation, the stack costs {saturated} "
            f"ms: with the decode {(saturated + decode_ms) / bare:.0%})"
        )
    return result


def main(args: argparse.Namespace) -> int:
    from arsl_tui.domain.serving import Deployment
    from arsl_tui.ops.serving import synthetic_images
    from arsl_tui.providers.local.serving_control import LocalServingControl, models_dir
    from arsl_tui.serving.auth import KeyStore
    from tests.serving.packages import export_random_package, install_packages

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="arsl-bench-serve-"))
    home = work / "home"
    packages = {"v1": export_random_package(work / "p1", 1), "v2": export_random_package(work / "p2", 2)}
    install_packages(models_dir(home), packages)
    image_paths = []
    for index, (data, _label) in enumerate(synthetic_images(64)):
        path = work / f"image-{index}.jpg"
        path.write_bytes(data)
        image_paths.append(path)
    config = work / "config.toml"
    config.write_text(f"""[gateway]
host = "127.0.0.1"
port = 0
api_call_limit = 1000000000
app_call_limit = 1000000000
time_unit = "SECOND"
max_batch = {args.max_batch}
max_wait_ms = {args.max_wait_ms}
torch_threads = {args.threads}
""")
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ARSL_")}
    control = LocalServingControl(home, config_path=str(config), environment=environment)
    control.state.save_deployment(Deployment(stable="v1", canary="v2", weights={"v1": 90, "v2": 10}), "bench")
    key = KeyStore(control.state.db).create("bench")
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before},
        "tiny": args.tiny,
        "settings": {
            "max_batch": args.max_batch,
            "max_wait_ms": args.max_wait_ms,
            "torch_threads": args.threads or "auto",
            "duration_s": args.duration,
            "rates": args.rates,
            "concurrency": args.concurrency,
        },
    }
    sizes = batch_sizes(args.max_batch)
    forward = forward_costs(packages["v1"], args.threads, sizes, 1 if args.tiny else 3)
    results["forward_cpu_ms_per_image"] = forward
    results["forward_loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(f"bare forward pass, CPU ms per image (least of interleaved rounds; load {results['forward_loadavg_1m']}):")
    print("  " + f"{'runtime':12}" + "".join(f"{'b' + str(size):>8}" for size in sizes), flush=True)
    for name, costs in forward.items():
        print("  " + f"{name:12}" + "".join(f"{costs[f'batch_{size}']:8.3f}" for size in sizes), flush=True)
    first_image = image_paths[0].read_bytes()
    started = time.perf_counter()
    record = control.start()
    ready_s = time.perf_counter() - started
    first_s = _first_answer_s(record.endpoint, key, first_image, started)
    baseline, port = _start_baseline(work, packages["v1"], image_paths[0], args.threads)
    noop, noop_port = _start_server(work, "noop", [])
    try:
        import httpx

        httpx.post(f"http://127.0.0.1:{port}/v1/predict", content=first_image, trust_env=False, timeout=60)
        results["gateway_start"] = {"ready_s": round(ready_s, 3), "first_answer_s": round(first_s, 3)}
        results["gateway_runtimes"] = _gateway_runtimes(record.endpoint, key)
        print(f"gateway forward runtime per version: {results['gateway_runtimes']}", flush=True)
        results["gateway_rss_mb_two_versions"] = _rss_mb(record.pid)
        results["baseline_rss_mb_one_version"] = _rss_mb(baseline.pid)
        print(
            f"gateway: start → ready {ready_s:.2f} s, → first answer {first_s:.2f} s; RSS with v1+v2 loaded "
            f"{results['gateway_rss_mb_two_versions']} MB (plain endpoint, v1 only: "
            f"{results['baseline_rss_mb_one_version']} MB)",
            flush=True,
        )
        print(
            f"gateway = micro-batching (max_batch {args.max_batch}, max_wait {args.max_wait_ms} ms), v1/v2 90/10, "
            "auth + rate limits + metrics; plain = one request, one forward, no batching. Each pair back to back.",
            flush=True,
        )
        plan: list[tuple[str, float | None]] = [(f"{rate:g} req/s", rate) for rate in args.rates]
        plan.append((f"saturation ({args.concurrency} conns)", None))
        results["gateway"], results["baseline"] = [], []
        for name, rate in plan:
            results["gateway"].append(
                _measure(
                    "gateway", record.host, record.port, key, image_paths, args, name, rate, record.endpoint, record.pid
                )
            )
            results["baseline"].append(
                _measure("plain", "127.0.0.1", port, "", image_paths, args, name, rate, None, baseline.pid)
            )
        # At saturation (the floor the goal is judged by), and at the rate the gateway reached there: a server
        # that answers faster is woken fewer times per request, so the second is the like-for-like figure.
        gateway_rate = max(1.0, results["gateway"][-1]["throughput_rps"])
        results["noop"] = [
            _measure("no-op", "127.0.0.1", noop_port, key, image_paths, args, name, rate, None, noop.pid)
            for name, rate in (plan[-1], (f"{gateway_rate:g} req/s (the gateway's saturation)", gateway_rate))
        ]
        results["gateway_rss_mb_after_load"] = _rss_mb(record.pid)
    finally:
        control.stop()
        control.close()
        for server in (baseline, noop):
            server.terminate()
            server.wait(30)

    gateway_sat = results["gateway"][-1]["throughput_rps"]
    baseline_sat = results["baseline"][-1]["throughput_rps"]
    at_200 = next((run for run in results["gateway"] if run["offered_rps"] == 200), None)
    runtime = results["gateway_runtimes"].get("v1", "torch")
    overhead = _overhead(forward.get(runtime, forward["torch"]), results["gateway"][-1])
    decode_ms = decode_cost_ms([path.read_bytes() for path in image_paths], 3 if args.tiny else 10)
    stack_floor = floor(forward.get(runtime, forward["torch"]), results["gateway"][-1], results["noop"], decode_ms)
    results["summary"] = {
        "gateway_runtime": runtime,
        "bare_forward_cpu_ms_per_image": forward,
        "gateway_overhead_at_saturation": overhead,
        "gateway_overhead_at_200_rps": _overhead(forward.get(runtime, forward["torch"]), at_200) if at_200 else None,
        "target_overhead_30pct_met": bool(overhead and overhead["overhead_ratio"] <= OVERHEAD_TARGET),
        "server_stack_floor": stack_floor,
        "saturation_rps": {"gateway": gateway_sat, "baseline": baseline_sat},
        "speedup": round(gateway_sat / baseline_sat, 2) if baseline_sat else None,
        "server_cpu_ms_per_request_at_saturation": {
            "gateway": results["gateway"][-1]["server_cpu_ms_per_request"],
            "baseline": results["baseline"][-1]["server_cpu_ms_per_request"],
        },
        "target_speedup_3x_met": bool(baseline_sat and gateway_sat >= 3 * baseline_sat),
        "gateway_p99_ms_at_200_rps": at_200["p99_ms"] if at_200 else None,
        "target_p99_under_25ms_at_200_rps_met": bool(
            at_200 and at_200["p99_ms"] is not None and at_200["p99_ms"] < 25 and at_200["errors"] == 0
        ),
        "loadavg_after": os.getloadavg(),
    }
    if overhead:
        print(
            f"gateway ({runtime}) at saturation: {overhead['gateway_cpu_ms_per_request']} ms CPU per request vs "
            f"bare forward {overhead['bare_forward_cpu_ms_per_image']} ms per image at its mean batch "
            f"{overhead['mean_batch']}: overhead {overhead['overhead_ms']} ms = {overhead['overhead_ratio']:.0%} "
            f"(goal ≤ {OVERHEAD_TARGET:.0%})",
            flush=True,
        )
    if stack_floor:
        print(
            f"floor: a no-op endpoint on the same server stack costs {stack_floor['noop_cpu_ms_per_request']} ms CPU "
            f"per request at saturation = {stack_floor['floor_ratio']:.0%} of the bare forward, "
            f"{stack_floor['noop_cpu_ms_per_request_at_gateway_rate']} ms = "
            f"{stack_floor['floor_ratio_at_gateway_rate']:.0%} at the gateway's rate; the decode "
            f"{stack_floor['decode_cpu_ms_per_image']} ms per image (floor + decode: "
            f"{stack_floor['floor_with_decode_ratio']:.0%} saturated, "
            f"{stack_floor['floor_with_decode_ratio_at_gateway_rate']:.0%} at the gateway's rate)",
            flush=True,
        )
        print(
            f"gateway CPU per request by thread: event loop {stack_floor['gateway_event_loop_cpu_ms_per_request']} ms "
            f"({stack_floor['event_loop_beyond_noop_at_gateway_rate_ms']} ms beyond the no-op at its rate), "
            f"inference {stack_floor['gateway_inference_threads_cpu_ms_per_request']} ms "
            f"({stack_floor['inference_threads_beyond_bare_forward_ms']} ms beyond the bare forward)",
            flush=True,
        )
        if "reason" in stack_floor:
            print(f"goal not reachable: {stack_floor['reason']}", flush=True)
    print(json.dumps(results["summary"], indent=1))
    out = args.out or (Path(tempfile.mkdtemp(prefix="arsl-bench-tiny-")) / RESULTS.name if args.tiny else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)  # both servers are stopped; a failed run keeps its files to look at
    return 0 if all(run["completed"] for run in results["gateway"] + results["baseline"] + results["noop"]) else 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates",
        type=lambda text: [float(item) for item in text.split(",")],
        default=[50.0, 100.0, 200.0, 300.0],
        help="fixed request rates, req/s",
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--concurrency", type=int, default=32, help="connections at saturation")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both servers (0: auto)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default bench/results/serve.json; with --tiny a new temporary folder)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="every step in seconds: 20 req/s and saturation at 4 connections, 1 s each"
    )
    # internal roles
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--noop-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/v1/predict", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--images", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tiny:  # a second pass, so that an option given on the command line still wins
        parser.set_defaults(**TINY_DEFAULTS)
        args = parser.parse_args(argv)
    return args


if __name__ == "__main__":
    arguments = parse()
    if arguments.loadgen:
        sys.exit(loadgen_main(arguments))
    if arguments.baseline_server:
        sys.exit(baseline_main(arguments))
    if arguments.noop_server:
        sys.exit(noop_main(arguments))
    sys.exit(main(arguments))
