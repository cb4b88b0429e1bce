"""Console benchmark: first frame, idle CPU, memory, and key-press latency during a big upload.

    .venv/bin/python bench/console.py                        # defaults below
    .venv/bin/python bench/console.py --runs 1 --idle-s 1 --rates "" --real-files 108098 \\
        --out bench/results/console-real.json                # a real 108,098-file upload instead of the storms

First frame (median of `--runs` cold starts, each a fresh interpreter):
  * headless: a subprocess imports the console and runs it headless; the time from interpreter start
    (first line of the child) and from process spawn to the first composited frame;
  * terminal: the real `arsl` entry point in tmux at 80×24; spawn until "1 Overview" is on the pane.
Idle: the real `arsl` in tmux, left alone for `--idle-s` seconds on the Overview tab (it re-reads the
workflow every few seconds) and then on the Upload tab (no timers), each window opening once neither the
pane nor the console's CPU time has changed for `--quiet-s`; CPU from /proc/PID/stat, RSS from
/proc/PID/status at the start and the end of the window.
Key latency: in-process (Pilot, headless, 80×24) while an upload streams events: `l` (toggle the log
panel) is sent as a key event; latency = from sending the key to the first composited frame after the
panel's state flipped. Upload sources:
  * storm: a stand-in engine posting 108,098 UploadProgressed events (one per object of the full ArSL
    data set in files mode) from 8 threads as fast as Python allows — the worst case for flooding;
  * real (`--real-files N`): the real engine, files mode, local store, on N unique small JPEGs, run the way the
    console's services run it (`ui.services.run_upload`; `ops.upload_process` runs it in a process of its own).
Results are printed and written to bench/results/console.json.

`--tiny` runs every part above in seconds (one cold start, short windows, a small storm, 64 real files) and
writes its JSON to a fresh temporary folder unless `--out` is given: tests/e2e/test_benches.py runs it in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "console.json"
ARSL = Path(sys.executable).with_name("arsl")
FULL_DATASET_OBJECTS = 108_098
TINY_DEFAULTS = {
    "runs": 1,
    "idle_s": 0.5,
    "quiet_s": 0.3,
    "events": 2000,
    "rates": "2000,0",
    "presses": 2,
    "real_files": 64,
}

_CHILD = r"""
import json, sys, time
started = time.perf_counter()
from arsl_tui.config import Settings
from arsl_tui.ui.app import ArslApp
imported = time.perf_counter()

class FirstFrame(ArslApp):
    first_frame = None

    def _display(self, screen, renderable):
        super()._display(screen, renderable)
        if renderable is not None and self.first_frame is None:
            self.first_frame = time.perf_counter()
            self.first_frame_wall = time.time()
            self.exit()

app = FirstFrame(Settings(home=sys.argv[1]))
app.run(headless=True, size=(80, 24))
print(json.dumps({"import_s": imported - started, "first_frame_s": app.first_frame - started,
                  "first_frame_wall": app.first_frame_wall}))
"""


# ----- first frame ------------------------------------------------------------------------------


def first_frame_headless(runs: int, home: Path) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        spawned = time.time()
        output = subprocess.run(
            [sys.executable, "-c", _CHILD, str(home)], check=True, capture_output=True, text=True, cwd=REPO
        ).stdout
        child = json.loads(output.strip().splitlines()[-1])
        samples.append({**child, "from_spawn_s": child["first_frame_wall"] - spawned})
    return {
        "runs": samples,
        "median_import_s": statistics.median(s["import_s"] for s in samples),
        "median_first_frame_after_interpreter_s": statistics.median(s["first_frame_s"] for s in samples),
        "median_first_frame_from_spawn_s": statistics.median(s["from_spawn_s"] for s in samples),
    }


UPLOAD_TAB_TEXT = "Data set folder"
"""The label of the Upload tab's folder field: on the screen only while that tab shows."""
TAB_BAR_TEXT = "1 Overview"
"""The first entry of the tab bar, drawn in the first frame on every tab."""


class Tmux:
    def __init__(self, cwd: Path) -> None:
        self.socket = f"arsl-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.cwd = cwd
        """The pane's working folder: a ./config.toml of the folder the bench runs from must not configure it."""

    def run(self, *args: str, check: bool = True) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=check, capture_output=True, text=True).stdout

    def start(self, command: str) -> None:
        self.run(
            "-f", "/dev/null", "new-session", "-d", "-s", "bench", "-x", "80", "-y", "24", "-c", str(self.cwd), command
        )

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "bench", check=False)

    def pane_pid(self) -> int:
        return int(self.run("display-message", "-p", "-t", "bench", "#{pane_pid}").strip())

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "bench", *keys)

    def wait_text(self, text: str, timeout_s: float = 30.0, poll_s: float = 0.005) -> float:
        """Poll the pane until `text` is on it; the time it was seen. A timeout names the text and shows the
        screen that was last read."""
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return time.monotonic()
            time.sleep(poll_s)  # polling interval of a bounded wait on the pane
        raise RuntimeError(f"{text!r} did not appear on the console within {timeout_s:g} s; the screen was:\n{screen}")

    def wait_idle(self, pid: int, quiet_s: float, timeout_s: float = 20.0, poll_s: float = 0.05) -> bool:
        """Poll the pane and the console's CPU time until neither has changed for `quiet_s` (its start-up or
        tab-switch work is done); False if they still changed after `timeout_s` (the window then includes it)."""
        deadline = time.monotonic() + timeout_s
        state, since = (self.screen(), _cpu_ticks(pid)), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(poll_s)  # polling interval of a bounded wait on the pane
            now_state = (self.screen(), _cpu_ticks(pid))
            if now_state != state:
                state, since = now_state, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return True
        return False

    def kill(self) -> None:
        self.run("kill-server", check=False)


def console_command(home: Path) -> str:
    return f"exec env -u COLORTERM TERM=xterm-256color ARSL_HOME={home} {ARSL}"


def first_frame_terminal(runs: int, home: Path) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        tmux = Tmux(home)
        try:
            started = time.monotonic()
            tmux.start(console_command(home))
            samples.append(tmux.wait_text(TAB_BAR_TEXT) - started)
            tmux.keys("q")
        finally:
            tmux.kill()
    return {"runs_s": samples, "median_s": statistics.median(samples)}


# ----- idle cost --------------------------------------------------------------------------------


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of the whole line)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def idle_cost(seconds: float, home: Path, quiet_s: float) -> dict[str, Any]:
    """The Overview first (the tab the console opens on), then the Upload tab, reached with `2`.

    The Overview is measured before any tab switch, so no key has to leave the Upload tab's folder field, and
    nothing waits for the Overview's own wording: its layout differs between a first run and later ones."""
    tmux = Tmux(home)
    results: dict[str, Any] = {}
    try:
        tmux.start(console_command(home))
        tmux.wait_text(TAB_BAR_TEXT)
        pid = tmux.pane_pid()
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        for tab_key, name in (("", "overview_tab"), ("2", "upload_tab")):
            if tab_key:
                tmux.keys(tab_key)
                tmux.wait_text(UPLOAD_TAB_TEXT)
            settled = tmux.wait_idle(pid, quiet_s)
            rss_start = _rss_mb(pid)
            ticks_start, wall_start = _cpu_ticks(pid), time.monotonic()
            time.sleep(seconds)  # the measurement window: the console is left idle
            ticks, wall = _cpu_ticks(pid) - ticks_start, time.monotonic() - wall_start
            results[name] = {
                "cpu_percent_of_a_core": round(100 * ticks / ticks_per_s / wall, 2),
                "window_s": round(wall, 1),
                "rss_mb_start": round(rss_start, 1),
                "rss_mb_end": round(_rss_mb(pid), 1),
                "settled_first": settled,
            }
    finally:
        tmux.kill()
    return results


# ----- key latency during an upload ---------------------------------------------------------------


def _storm_services(events: int, threads: int, rate: float) -> tuple[Any, threading.Event]:
    """A stand-in engine emitting `events` progress events from `threads` threads at `rate` events/s in
    total (0: as fast as the threads can go)."""
    from arsl_tui.domain.events import UploadFinished, UploadProgressed, UploadStarted
    from arsl_tui.ui.services import ConsoleServices, default_services

    started = threading.Event()

    class Control:
        def __init__(self) -> None:
            self.paused = False
            self.cancelled = False

        def pause(self) -> None:
            self.paused = True

        def resume(self) -> None:
            self.paused = False

        def cancel(self) -> None:
            self.cancelled = True

    class Outcome:
        def __init__(self, elapsed: float) -> None:
            self.run_id, self.status, self.manifest_id = "storm", "done", "m" * 64
            self.destination, self.objects_sent, self.objects_skipped = "local:/bench/", events, 0
            self.bytes_sent, self.elapsed_s, self.error = events * 1700, elapsed, ""

    def run_upload(settings: Any, order: Any, on_event: Callable[[Any], None], control: Any) -> Outcome:
        begun = time.monotonic()
        on_event(
            UploadStarted(
                run_id="storm",
                manifest_id="m" * 64,
                mode="files",
                destination="local:/bench/",
                files_total=events,
                bytes_total=events * 1700,
                objects_total=events,
                objects_already_confirmed=0,
            )
        )
        started.set()
        counter = iter(range(1, events + 1))
        lock = threading.Lock()

        def emit() -> None:
            interval = threads / rate if rate > 0 else 0.0
            due = time.monotonic()
            while True:
                with lock:
                    done = next(counter, None)
                if done is None:
                    return
                if interval:
                    due += interval
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)  # pacing the stand-in engine to a target event rate
                on_event(
                    UploadProgressed(
                        run_id="storm",
                        files_done=done,
                        files_total=events,
                        bytes_done=done * 1700,
                        bytes_total=events * 1700,
                        objects_done=done,
                        objects_total=events,
                        bytes_per_s=2e7,
                        eta_s=1.0,
                        retries=0,
                        errors=0,
                    )
                )

        workers = [threading.Thread(target=emit) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        on_event(
            UploadFinished(
                run_id="storm",
                status="done",
                manifest_id="m" * 64,
                destination="local:/bench/",
                objects_sent=events,
                objects_skipped=0,
                bytes_sent=events * 1700,
                elapsed_s=time.monotonic() - begun,
            )
        )
        return Outcome(time.monotonic() - begun)

    real = default_services()
    return ConsoleServices(
        validate=real.validate,
        new_control=Control,
        run_upload=run_upload,
        resumable_run=lambda settings: None,
        list_upload_runs=lambda settings, limit: [],
    ), started


def _real_services(started_marker: threading.Event) -> Any:
    from arsl_tui.ui.services import ConsoleServices, default_services

    real = default_services()

    class Forward:
        """The tab's feed, marking the first progress; coalesced progress keeps its count (`add_progress`)."""

        def __init__(self, feed: Any) -> None:
            self.feed = feed

        def __call__(self, event: Any) -> None:
            if type(event).__name__ == "UploadProgressed":
                started_marker.set()
            self.feed(event)

        def add_progress(self, event: Any, count: int) -> None:
            started_marker.set()
            self.feed.add_progress(event, count)

    def run_upload(settings: Any, order: Any, on_event: Callable[[Any], None], control: Any) -> Any:
        return real.run_upload(settings, order, Forward(on_event), control)

    return ConsoleServices(
        validate=real.validate,
        new_control=real.new_control,
        run_upload=run_upload,
        resumable_run=real.resumable_run,
        list_upload_runs=real.list_upload_runs,
    )


async def _measure_latency(
    settings: Any, services: Any, dataset: Path, started: threading.Event, presses: int, spacing_s: float = 0.3
) -> dict[str, Any]:
    from textual import events as textual_events

    from arsl_tui.ui.app import ArslApp
    from arsl_tui.ui.screens.confirm import ConfirmScreen
    from arsl_tui.ui.widgets.path_input import PathInput

    frames: list[float] = []
    flips: list[float] = []

    class Timed(ArslApp):
        def _display(self, screen: Any, renderable: Any) -> None:
            super()._display(screen, renderable)
            if renderable is not None:
                frames.append(time.perf_counter())

        def action_toggle_log(self) -> None:
            super().action_toggle_log()
            flips.append(time.perf_counter())

    app = Timed(settings, services=services, theme="arsl-dark")
    latencies: list[float] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        path_input = app.query_one(PathInput)
        # `/` asks for the folder field; where the tab focuses the field itself, the `/` typed into it is
        # replaced by the path below.
        await pilot.press("slash")
        if app.focused is not path_input:
            raise RuntimeError(f"the Upload tab's folder field is not focused after `/` (focused: {app.focused!r})")
        path_input.value = str(dataset)
        await pilot.press("enter")
        while app.upload_tab.validated is None:
            if app.upload_tab.last_error:
                raise RuntimeError(f"validating {dataset} failed: {app.upload_tab.last_error}")
            await pilot.pause()
        driver = app._driver
        assert driver is not None

        def send(character: str) -> None:
            key = textual_events.Key(character, character)
            key.set_sender(app)
            driver.send_message(key)

        upload_began = time.perf_counter()
        send("S")
        while not isinstance(app.screen, ConfirmScreen):
            await asyncio.sleep(0.001)
        send("y")
        while not started.is_set():
            await asyncio.sleep(0.001)
        tab = app.upload_tab
        for _ in range(presses):
            if not tab.active:
                break
            flips_before = len(flips)
            sent = time.perf_counter()
            send("l")
            while len(flips) == flips_before:
                await asyncio.sleep(0.0005)
            flipped = flips[-1]
            while not frames or frames[-1] < flipped:
                await asyncio.sleep(0.0005)
            latencies.append(next(frame for frame in frames if frame >= flipped) - sent)
            await asyncio.sleep(spacing_s)  # spread the presses over the run
        while tab.active:
            await asyncio.sleep(0.01)
        upload_s = time.perf_counter() - upload_began
        result = {
            "presses_measured": len(latencies),
            "latency_ms_median": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "latency_ms_p95": round(1000 * sorted(latencies)[math.ceil(0.95 * len(latencies)) - 1], 1)
            if latencies
            else None,  # nearest rank: never below the median, even for a handful of presses
            "latency_ms_max": round(1000 * max(latencies), 1) if latencies else None,
            "progress_events": tab.progress_events_received,
            "panel_renders": tab.progress_renders,
            "upload_s": round(upload_s, 1),
            "final_status": tab.view.status,
        }
    return result


def make_unique_files(root: Path, count: int) -> Path:
    """`count` distinct valid 64×64 JPEGs spread over the 32 classes (one JPEG plus a distinct trailer)."""
    import io

    from PIL import Image

    from arsl_tui.domain.classes import ARSL_CLASSES

    buffer = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buffer, format="JPEG", quality=90)
    base = buffer.getvalue()
    for name in ARSL_CLASSES:
        (root / name).mkdir(parents=True)
    for index in range(count):
        name = ARSL_CLASSES[index % len(ARSL_CLASSES)]
        (root / name / f"{index:06d}.jpg").write_bytes(base + index.to_bytes(4, "big"))
    return root


def key_latency(events: int, rates: list[float], presses: int, real_files: int, work: Path) -> dict[str, Any]:
    from arsl_tui.config import Settings, UploadSettings

    small = make_unique_files(work / "small-set", 96)
    results: dict[str, Any] = {}
    for rate in rates:
        services, started = _storm_services(events, threads=8, rate=rate)
        settings = Settings(home=str(work / f"home-storm-{rate:g}"))
        name = f"storm at {rate:g} events/s" if rate else "unpaced storm"
        results[name] = {
            "events": events,
            "target_rate": rate,
            **asyncio.run(_measure_latency(settings, services, small, started, presses)),
        }
    if real_files:
        dataset = make_unique_files(work / "big-set", real_files)
        marker = threading.Event()
        settings = Settings(home=str(work / "home-real"), upload=UploadSettings(mode="files"))
        results["real_engine"] = {
            "files": real_files,
            **asyncio.run(_measure_latency(settings, _real_services(marker), dataset, marker, presses)),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="cold starts for the first-frame medians")
    parser.add_argument("--idle-s", type=float, default=10.0, help="idle window per tab")
    parser.add_argument("--events", type=int, default=FULL_DATASET_OBJECTS, help="progress events in the storm")
    parser.add_argument(
        "--rates",
        default="5000,0",
        help="storm event rates per second, comma-separated; 0 = unpaced (default 5000,0; the "
        "local engine confirms ~370 objects/s in files mode, bench/upload.py)",
    )
    parser.add_argument(
        "--presses",
        type=int,
        default=150,
        help="key presses measured per upload (default 150: with 30, the p95 is the second slowest press, and "
        "it moved between 77 and 127 ms from one run to the next)",
    )
    parser.add_argument("--real-files", type=int, default=0, help="also upload this many real files (0: skip)")
    parser.add_argument(
        "--quiet-s",
        type=float,
        default=1.0,
        help="an idle window opens once neither the pane nor the console's CPU time has changed for this long",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON results (default {RESULTS.relative_to(REPO)}; with --tiny a new temporary folder)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="every part in seconds: 1 cold start, 0.5 s windows, a 2,000-event storm, 64 real files",
    )
    options = parser.parse_args()
    if options.tiny:  # a second pass, so that an option given on the command line still wins
        parser.set_defaults(**TINY_DEFAULTS)
        options = parser.parse_args()
    if options.out is None:
        options.out = (Path(tempfile.mkdtemp(prefix="arsl-bench-tiny-")) / RESULTS.name) if options.tiny else RESULTS

    has_tmux = shutil.which("tmux") is not None
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "tiny": options.tiny,
        "load_average_at_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="arsl-bench-console-") as scratch:
        work = Path(scratch)
        home = work / "home"
        home.mkdir()
        results["first_frame_headless"] = first_frame_headless(options.runs, home)
        headless = results["first_frame_headless"]
        print(
            f"first frame, headless: median {headless['median_first_frame_after_interpreter_s']:.3f} s after "
            f"interpreter start ({headless['median_import_s']:.3f} s of it importing), "
            f"{headless['median_first_frame_from_spawn_s']:.3f} s from process spawn"
        )
        if has_tmux:
            results["first_frame_terminal"] = first_frame_terminal(options.runs, home)
            print(
                f"first frame, real arsl in tmux 80×24: median {results['first_frame_terminal']['median_s']:.3f} s "
                f"({', '.join(f'{s:.2f}' for s in results['first_frame_terminal']['runs_s'])})"
            )
            results["idle"] = idle_cost(options.idle_s, home, options.quiet_s)
            for name, figures in results["idle"].items():
                print(
                    f"idle on the {name.replace('_', ' ')}: {figures['cpu_percent_of_a_core']} % of a core over "
                    f"{figures['window_s']} s, RSS {figures['rss_mb_start']} → {figures['rss_mb_end']} MB"
                )
        else:
            print("tmux not found: terminal first frame and idle CPU skipped")
        rates = [float(rate) for rate in options.rates.split(",") if rate.strip()]
        results["key_latency"] = key_latency(options.events, rates, options.presses, options.real_files, work)
        for name, figures in results["key_latency"].items():
            size = figures.get("events", figures.get("files"))
            print(
                f"key → screen during the {name} upload ({size}): median {figures['latency_ms_median']} ms, p95 "
                f"{figures['latency_ms_p95']} ms, max {figures['latency_ms_max']} ms over "
                f"{figures['presses_measured']} presses; {figures['progress_events']} progress events → "
                f"{figures['panel_renders']} panel renders in {figures['upload_s']} s ({figures['final_status']})"
            )
    results["load_average_at_end"] = os.getloadavg()
    print(
        f"load average (1 min) at start {results['load_average_at_start'][0]:.1f}, at end "
        f"{results['load_average_at_end'][0]:.1f} on {os.cpu_count()} CPUs: figures are noisy when it is high"
    )
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {options.out}")


if __name__ == "__main__":
    main()
