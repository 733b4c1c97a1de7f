"""``fairness``: flow B's accept → delivered latency while flow A drains a large backlog.

Both flows have the defaults. A's backlog is stored while A's worker command exits at once
(nothing is delivered), then A is given the fixed fast worker (``bench/workers/fast.js``, the
way a fixed worker is deployed onto a backlog) and drains it, while a probe sends B (same fast
worker) one request every 20 ms carrying its send time; B's worker notes each delivery's
latency. B's worker is started (one delivery) before A's drain begins, so the figure is B's
wait behind A, not B's cold start (the ``cold-start`` scenario's figure). Reported: B's
p50/p99 while A drains, and A's drain rate.
"""

from __future__ import annotations

import threading
import time

from bench import load, wrk
from bench.context import Context
from bench.errors import BenchFailure
from bench.gateway import NO_WORKER, Gateway
from bench.results import Row, percentiles
from bench.scenarios import Outcome
from bench.scenarios.e2e import JSON, probe, spec, wait_empty

BACKLOG = {True: 20_000, False: 100_000}


def run(ctx: Context) -> Outcome:
    work = ctx.workdir("fairness")
    quick = ctx.timing.measure_s < 10
    size = BACKLOG[quick]
    a_spec = {**spec(str(work / "a.log")), "name": "a"}
    b_spec = {**spec(str(work / "b.log")), "name": "b"}
    parked = {**a_spec, "worker": {"command": NO_WORKER}}
    with Gateway(workdir=work, flows=[parked, b_spec]) as gateway:
        a, b = gateway.flow_id("a"), gateway.flow_id("b")
        a_url, b_url = f"{gateway.public}/hook/{a}", f"{gateway.public}/hook/{b}"
        target = wrk.Target(url=a_url, body=ctx.body_file(), headers=JSON)
        load.expect(target, status=202)
        stored = 0
        while stored < size - 1:
            run_ = wrk.run(target, seconds=1, workdir=work)
            load.check(run_, case="fairness backlog")
            stored += run_.requests
        load.expect(wrk.Target(url=b_url, body=ctx.body_file(), headers=JSON), status=202)
        wait_empty(gateway, b)  # B's worker is up
        (work / "b.log").write_text("")
        stop = threading.Event()
        probes = [0]
        prober = threading.Thread(target=probe, args=(b_url, stop, probes), daemon=True)
        started = time.monotonic()
        gateway.call("PUT", f"/api/v1/flows/{a}", json=a_spec)
        prober.start()
        wait_empty(gateway, a)
        drained = time.monotonic() - started
        stop.set()
        prober.join()
        wait_empty(gateway, b)
    samples = [float(x) for x in (work / "b.log").read_text().split()]
    if not samples:
        raise BenchFailure("flow B got no delivery while A drained")
    latency = percentiles(samples)
    row = Row(
        case=f"flow B accept → delivered while A drains {stored:,}",
        unit="A deliveries/s",
        latency=latency,
        rate=round(stored / drained, 1),
        note=(
            f"B: {len(samples)} probes, p50 {latency.p50_ms:.0f} ms, p99 {latency.p99_ms:.0f} ms; "
            f"A drained {stored:,} in {drained:.1f} s ({stored / drained:,.0f}/s)"
        ),
        extra={"backlog": stored, "drain_s": round(drained, 2)},
    )
    ctx.console.print(row.note)
    return Outcome(rows=[row], settings={"flows": [a_spec, b_spec], "backlog": stored})
