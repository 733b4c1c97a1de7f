"""``sync``: a 1 KB POST answered by the Python SDK echo worker, through the gateway (2 replicas)
and directly (one worker), at 64 connections with wrk and at one connection with a Python driver.

The direct worker runs first with nothing else started, then the gateway with its two workers.

``sync-defaults``: the same POST at 64 connections to a sync flow that sets nothing but its
worker (1 replica, ``concurrency: auto``, ``queue_timeout: 1s``): what a user gets out of the box,
with issue #21's fixed fast worker (``bench/workers/fast.js``, Node ``http``, ``200 {}`` at once)
so that the figure is the gateway's, not the Python echo worker's (~130 µs of CPU a request on
the same two cores).
Refusals are counted, not a failure: the row gives 2xx/s and the share of non-2xx answers.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from bench import drivers, load, wrk
from bench.context import Context
from bench.errors import BenchFailure
from bench.gateway import ECHO, Gateway, echo, flow
from bench.procs import Service
from bench.results import Row
from bench.scenarios import Outcome
from bench.tools import ensure_free, free_port, listening

JSON = {"Content-Type": "application/json"}
# 2 replicas x 32 in flight each: the 64 connections the direct run gets on its one worker.
SPEC = flow("bench", mode="sync", worker=echo(), replicas=2, concurrency=32)
FAST = Path(__file__).resolve().parents[1] / "workers" / "fast.js"
DEFAULTS = flow(
    "bench", mode="sync", worker={"command": [shutil.which("node") or "node", str(FAST)]}
)


def run(ctx: Context) -> Outcome:
    direct_work = ctx.workdir("echo-direct")
    port = free_port()
    ensure_free(port)
    worker = Service(
        name="echo worker",
        command=[sys.executable, str(ECHO)],
        log=direct_work / "echo.log",
        env={**os.environ, "PORT": str(port)},
    )
    with worker.start():
        worker.wait_ready(lambda: listening(port), timeout=20)
        direct, direct_one = measure_pair(
            ctx,
            f"http://127.0.0.1:{port}/",
            workdir=direct_work,
            pid=None,
            label="worker direct (1 process)",
        )
    work = ctx.workdir("sync")
    with Gateway(workdir=work, flows=[SPEC]) as gateway:
        url = gateway.hook_url("bench")
        wait_answering(url, timeout=30)
        proxied, proxied_one = measure_pair(
            ctx, url, workdir=work, pid=gateway.pid, label="gateway → 2 echo workers"
        )
    if direct.rate and proxied.rate:
        share = proxied.rate / direct.rate
        proxied.note = f"{share:.2f}x direct"
        proxied.extra = {"vs_direct": round(share, 3)}
    if direct_one.latency and proxied_one.latency:
        added = proxied_one.latency.p50_ms - direct_one.latency.p50_ms
        proxied_one.note = f"p50 {added:+.2f} ms over direct"
        proxied_one.extra = {"added_p50_ms": round(added, 3)}
    return Outcome(rows=[direct, proxied, direct_one, proxied_one], settings={"flow": SPEC})


def defaults(ctx: Context) -> Outcome:
    work = ctx.workdir("sync-defaults")
    with Gateway(workdir=work, flows=[DEFAULTS]) as gateway:
        url = gateway.hook_url("bench")
        wait_answering(url, timeout=30)
        run, usage = load.metered(
            ctx,
            target=wrk.Target(url=url, body=ctx.body_file(), headers=JSON),
            pid=gateway.pid,
            workdir=work,
            status=200,
        )
    if run.requests == 0:
        raise BenchFailure("sync-defaults: no request completed")
    refused = run.errors.http / run.requests
    return Outcome(
        rows=[
            Row(
                case="flow defaults (1 replica, concurrency auto), 64 conns, 2xx only",
                rate=round((run.requests - run.errors.http) / run.seconds, 1),
                latency=run.latency,
                errors=run.errors,
                usage=usage,
                note=f"non-2xx {refused:.1%} of {run.requests:,} answers",
                extra={"non_2xx_share": round(refused, 4)},
            )
        ],
        settings={"flow": DEFAULTS},
    )


def measure_pair(
    ctx: Context, url: str, *, workdir: Path, pid: int | None, label: str
) -> tuple[Row, Row]:
    """The wrk row (64 connections) and the one-connection latency row for one URL."""
    body = ctx.body_file()
    many = load.measure(
        ctx,
        case=f"{label}, 64 conns",
        target=wrk.Target(url=url, body=body, headers=JSON),
        pid=pid,
        workdir=workdir,
        status=200,
    )
    single = drivers.one_connection(
        url, body=body.read_bytes(), headers=JSON, requests=ctx.timing.latency_requests, status=200
    )
    load.check(single, case=f"{label}, 1 conn")
    return many, Row(
        case=f"{label}, 1 conn",
        rate=round(single.rate, 1),
        latency=single.latency,
        errors=single.errors,
    )


def wait_answering(url: str, *, timeout: float) -> None:
    """Sync workers start after the gateway is ready: wait for the flow to answer 200."""
    deadline = time.monotonic() + timeout
    target = wrk.Target(url=url, body=None)
    last = ""
    while time.monotonic() < deadline:
        try:
            load.expect(target, status=200)
            return
        except BenchFailure as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchFailure(f"the sync flow did not answer 200 within {timeout:.0f} s: {last}")
