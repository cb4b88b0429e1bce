"""Gateway soak: the reliability load scenario for many cycles, with the gateway's memory over time.

    .venv/bin/python bench/gateway_soak.py                      # 15 cycles of 20 s (5 minutes)
    .venv/bin/python bench/gateway_soak.py --cycles 90          # 30 minutes

The same scenario as tests/reliability/test_gateway_load.py (see tests/reliability/load_support.py):
a real gateway process with two real model packages, paced httpx clients well under their rate
limit, and in every cycle the challenger's weight through 0 → 10 → 50 → 100 → 0 %, a key revoked
and its successor issued, a key name revoked and re-created for another client while the old holder
keeps sending, and a client bursting past its limit. It prints and writes to
bench/results/gateway_soak.json: requests and statuses, every request that failed although it
should have succeeded (there should be none), the split per weight window, latency percentiles,
and the gateway's VmRSS (after the warm-up, the maximum, the end, per 1,000 requests, and what it keeps
by design: the feedback ledger's last 100,000 answers and the stats windows) with a series every 5 s,
so a slow leak shows as a slope rather than hiding in one number.

`--tiny`: one 10 s cycle with two steady clients at 10 req/s besides the key-churn ones (any option given on
the command line wins); the JSON goes to a fresh temporary folder unless `--out` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "gateway_soak.json"
TINY_DEFAULTS = {"cycles": 1, "cycle_s": 10.0, "clients": 2, "rate": 10.0}


def main(args: argparse.Namespace) -> int:
    from arsl_tui.domain.serving import Deployment
    from arsl_tui.ops.serving import synthetic_images
    from tests.reliability.load_support import CHALLENGER, CHAMPION, GatewayProcess, ScenarioConfig, check, run_scenario
    from tests.serving.packages import export_random_package

    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="arsl-bench-soak-"))
    packages = {
        CHAMPION: export_random_package(root / "p1", seed=1),
        CHALLENGER: export_random_package(root / "p2", seed=2),
    }
    config = ScenarioConfig(
        cycles=args.cycles, cycle_s=args.cycle_s, steady_clients=args.clients, rate_per_client=args.rate
    )
    print(
        f"soak: {args.cycles} cycles of {args.cycle_s:g} s, {args.clients + 3} clients at {args.rate:g} req/s "
        f"each; load average before {load_before[0]:.2f}",
        flush=True,
    )
    gateway = GatewayProcess.start(
        root, packages, Deployment(stable=CHAMPION, canary=CHALLENGER, weights={CHAMPION: 100, CHALLENGER: 0})
    )
    try:
        started = time.monotonic()
        scenario = run_scenario(gateway, [data for data, _label in synthetic_images(32)], config)
        report = check(scenario, args.rss_slack_mb)
        alive = gateway.alive()
    finally:
        gateway.stop()
    series: list[dict[str, float]] = []
    next_at = scenario.started
    for at, kb in scenario.rss:
        if at >= next_at:
            series.append({"t_s": round(at - scenario.started, 1), "rss_mb": round(kb / 1024, 1)})
            next_at = at + 5.0
    rss = dict(report.rss_mb)
    if rss:
        rss["per_1000_requests_after_warmup"] = round(
            (rss["end"] - rss["after_warmup"]) / max(report.requests, 1) * 1000, 3
        )
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "tiny": args.tiny,
        "settings": {
            "cycles": args.cycles,
            "cycle_s": args.cycle_s,
            "clients": args.clients + 3,
            "rate_per_client": args.rate,
            "rss_slack_mb": args.rss_slack_mb,
        },
        "wall_s": round(time.monotonic() - started, 1),
        "gateway_alive_at_end": alive,
        **report.to_json(),
        "rss_mb": rss,
        "rss_series": series,
    }
    out = args.out or (Path(tempfile.mkdtemp(prefix="arsl-bench-tiny-")) / RESULTS.name if args.tiny else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(
        f"{report.requests} requests in {report.duration_s:.0f} s ({report.requests / report.duration_s:.0f}/s), "
        f"statuses {dict(report.statuses)}",
        flush=True,
    )
    print(
        f"latency ms {report.latency_ms}; in flight while a key was revoked {report.straddling_revocation[0]} "
        f"(refused {report.straddling_revocation[1]})"
    )
    print(f"RSS MB {rss}")
    shares = [f"{window.weight}%: {window.versions[CHALLENGER]}/{window.requests}" for window in report.windows]
    print(f"challenger share per window: {', '.join(shares)}")
    print(f"bursts: {report.bursts[:3]}{' …' if len(report.bursts) > 3 else ''}")
    print(f"failures: {len(report.failures)}" + (f", first: {report.failures[:5]}" if report.failures else ""))
    print(f"written to {out}")
    if not report.failures and alive:
        shutil.rmtree(root, ignore_errors=True)  # the gateway is stopped; a failed run keeps its files to look at
    return 0 if not report.failures and alive else 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=15, help="cycles of the scenario (default 15)")
    parser.add_argument("--cycle-s", type=float, default=20.0, help="seconds per cycle (default 20)")
    parser.add_argument("--clients", type=int, default=6, help="steady clients besides the 3 key-churn ones")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second per client (limit: 25)")
    parser.add_argument(
        "--rss-slack-mb",
        type=float,
        default=12.0,
        help="allowed RSS growth after the warm-up beyond what the gateway keeps by design",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON results (default {RESULTS.relative_to(REPO)}; with --tiny a new temporary folder)",
    )
    parser.add_argument("--tiny", action="store_true", help="one 10 s cycle, two steady clients at 10 req/s")
    args = parser.parse_args(argv)
    if args.tiny:  # a second pass, so that an option given on the command line still wins
        parser.set_defaults(**TINY_DEFAULTS)
        args = parser.parse_args(argv)
    if args.cycles < 1 or args.cycle_s < 10 or args.clients < 0 or not 0 < args.rate <= 10:
        parser.error("need --cycles >= 1, --cycle-s >= 10, --clients >= 0 and 0 < --rate <= 10 (the limit is 25/s)")
    return args


if __name__ == "__main__":
    sys.exit(main(parse()))
