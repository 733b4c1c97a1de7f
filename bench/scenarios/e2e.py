"""``e2e``: an async flow with every default, loaded while it delivers, until the queue is empty.

The flow sets only ``name``, ``mode`` and ``worker``; the worker is the fixed fast one in
``bench/workers/fast.js`` (Node.js ``http``, answers ``200 {}`` at once). wrk POSTs 1 KB at 64
connections for the measured time while the flow delivers; then the clock runs until nothing
is queued. Reported (issue #21's figures):

* delivered/s end to end = requests accepted / (time from the load's start until the queue is
  empty), and the accept rate while delivering;
* accept → delivered latency: a probe sends one request every 20 ms during the load carrying
  its send time, and the worker notes how long after that it got the delivery (p50/p99);
* CPU per request accepted and delivered: the whole process tree (gateway, SQLite writer,
  workers) over the same window, divided by the requests.
"""

from __future__ import annotations

import shutil
import threading
import time

import httpx

from bench import load, wrk
from bench.context import REPO, Context
from bench.errors import BenchFailure
from bench.gateway import Gateway, flow
from bench.procs import Meter
from bench.results import Row, percentiles
from bench.scenarios import Outcome

JSON = {"Content-Type": "application/json"}
FAST = REPO / "bench" / "workers" / "fast.js"
PROBE_EVERY = 0.02
DRAIN_LIMIT_S = 300.0


def spec(latency_file: str) -> dict[str, object]:
    node = shutil.which("node") or "node"
    return flow(
        "e2e", worker={"command": [node, str(FAST)], "env": {"BENCH_LATENCY": latency_file}}
    )


def run(ctx: Context) -> Outcome:
    work = ctx.workdir("e2e")
    latency_file = work / "latency.log"
    spec_ = spec(str(latency_file))
    with Gateway(workdir=work, flows=[spec_]) as gateway:
        flow_id = gateway.flow_id("e2e")
        url = f"{gateway.public}/hook/{flow_id}"
        target = wrk.Target(url=url, body=ctx.body_file(), headers=JSON)
        load.expect(target, status=202)
        wait_empty(gateway, flow_id)  # the worker is started and warm
        latency_file.write_text("")
        meter = Meter(gateway.pid, tree=True).start()
        stop = threading.Event()
        probes = [0]
        prober = threading.Thread(target=probe, args=(url, stop, probes), daemon=True)
        started = time.monotonic()
        prober.start()
        accepted = wrk.run(target, seconds=ctx.timing.measure_s, workdir=work)
        load_s = time.monotonic() - started
        stop.set()
        prober.join()
        load.check(accepted, case="e2e accept")
        wait_empty(gateway, flow_id)
        took = time.monotonic() - started
        usage = meter.stop()
        total = accepted.requests + probes[0]
    samples = [float(x) for x in latency_file.read_text().split()]
    if not samples:
        raise BenchFailure("the worker noted no probe delivery")
    latency = percentiles(samples)
    per_request_us = usage.cpu_s / total * 1e6
    rows = [
        Row(
            case="end to end: accepted and delivered, defaults, fast worker",
            unit="deliveries/s",
            rate=round(total / took, 1),
            latency=latency,
            usage=usage,
            note=(
                f"{total:,} accepted in {load_s:.1f} s, queue empty after {took:.1f} s; "
                f"accept → delivered p50 {latency.p50_ms:.0f} ms, p99 {latency.p99_ms:.0f} ms "
                f"({len(samples)} probes); CPU {per_request_us:.0f} µs per request "
                "(gateway + writer + workers)"
            ),
            extra={"cpu_us_per_request": round(per_request_us, 1), "accepted": total},
        ),
        Row(
            case="accept while delivering (wrk, 64 connections)",
            rate=round(accepted.rate, 1),
            ratio=ctx.ratio(accepted.rate),
            latency=accepted.latency,
        ),
    ]
    ctx.console.print(rows[0].note)
    return Outcome(rows=rows, settings={"flow": spec_, "worker": "bench/workers/fast.js"})


def probe(url: str, stop: threading.Event, sent: list[int]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.wait(PROBE_EVERY):
            headers = {**JSON, "x-sent-at": str(int(time.time() * 1000))}
            if client.post(url, content=b"{}", headers=headers).status_code == 202:
                sent[0] += 1


def wait_empty(gateway: Gateway, flow_id: str) -> None:
    deadline = time.monotonic() + DRAIN_LIMIT_S
    while gateway.waiting(flow_id):
        if time.monotonic() > deadline:
            raise BenchFailure(f"the queue was not empty after {DRAIN_LIMIT_S:.0f} s")
        time.sleep(0.05)
