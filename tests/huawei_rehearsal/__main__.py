"""Start the Huawei rehearsal stand-ins and keep them running until SIGTERM or SIGINT.

    python -m tests.huawei_rehearsal --port-file F [--workdir D] [--output-sync-s S] [--no-serving]

When everything listens, the port file F (JSON) is written atomically and `ready F` is printed on stdout:
endpoints, the fixed test credentials, the config file to point `arsl` at (`--config` or `$ARSL_CONFIG`)
and `env`, the environment an `arsl` process needs (credentials, ARSL_CONFIG and the loopback resolver
for `*.myhuaweicloud.com`). Faults are armed through `faults_file` or the `faults` endpoint. On SIGTERM or
SIGINT every stand-in stops (job and serving processes included), the port file is removed, and the exit
status is 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from tests.huawei_rehearsal.stack import DEFAULT_BUCKET, DEFAULT_REGION, Stack
from tests.huawei_rehearsal.training_standin import DEFAULT_OUTPUT_SYNC_S


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.huawei_rehearsal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port-file", type=Path, required=True, help="where to write the endpoints (JSON)")
    parser.add_argument("--workdir", type=Path, help="objects, jobs and logs (default: a new temporary folder)")
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--bucket", default=DEFAULT_BUCKET)
    parser.add_argument(
        "--output-sync-s",
        type=float,
        default=DEFAULT_OUTPUT_SYNC_S,
        help=f"how often a running job's outputs reach OBS (ModelArts' default: {DEFAULT_OUTPUT_SYNC_S:g} s)",
    )
    parser.add_argument("--no-serving", action="store_true", help="start without the serving stand-ins")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="arsl-rehearsal-"))
    stopping = threading.Event()

    def request_stop(_number: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stack = Stack(
        workdir,
        region=arguments.region,
        bucket=arguments.bucket,
        output_sync_s=arguments.output_sync_s if arguments.output_sync_s > 0 else None,
        serving=not arguments.no_serving,
    )
    with stack:
        port_file = stack.write_port_file(arguments.port_file.resolve())
        if stack.serving_problem:
            print(f"warning: {stack.serving_problem}", file=sys.stderr, flush=True)
        print(f"ready {port_file}", flush=True)
        try:
            while not stopping.wait(3600):
                pass
        finally:
            port_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
