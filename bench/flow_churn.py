"""Flow changes on PostgreSQL: apply many flows through one gateway, then time how long the
gateway stays busy afterwards (each change is NOTIFYed to every gateway, itself included).

Run: ``python -m bench.flow_churn [--flows N] [--batch B]``. PostgreSQL comes from
``$BENCH_POSTGRES_URL`` as for the ``postgres`` scenario. Prints the apply time, the time until
the gateway's CPU is idle again (under 5 % over half a second), and its CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import psutil

from bench.gateway import NO_WORKER, Gateway
from bench.scenarios.postgres import SERVER, fresh_database

QUIET = 0.05
WINDOW = 0.5


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    server = os.environ.get("BENCH_POSTGRES_URL", SERVER)
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(server) as database,
        Gateway(workdir=Path(tmp), flows=[], database=database) as gateway,
    ):
        process = psutil.Process(gateway.pid)
        started, cpu_before = time.monotonic(), cpu_seconds(process)
        for first in range(0, args.flows, args.batch):
            names = range(first, min(args.flows, first + args.batch))
            specs = [
                {"name": f"f{i}", "mode": "async", "worker": {"command": NO_WORKER}} for i in names
            ]
            gateway.call("POST", "/api/v1/apply", json={"flows": specs})
        applied = time.monotonic() - started
        while True:
            before = cpu_seconds(process)
            time.sleep(WINDOW)
            if cpu_seconds(process) - before < QUIET * WINDOW:
                break
        idle = time.monotonic() - started - WINDOW
        cpu = cpu_seconds(process) - cpu_before
    print(
        f"{args.flows} flows applied in batches of {args.batch}: {applied:.2f} s; "
        f"gateway idle again after {idle:.2f} s, {cpu:.2f} s of its CPU"
    )


if __name__ == "__main__":
    main()
