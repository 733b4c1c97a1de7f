"""``drain``: how fast a backlog reaches a warm Python SDK worker that answers 200 at once.

wrk enqueues in one-second runs until the backlog target is passed (or time is up) while the warm
worker already receives; when wrk stops, what is still waiting is the backlog, and its drain
(timed by the worker's own record of every delivery) gives deliveries/s. The end-to-end rate
covers enqueue and drain together.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from bench import load, record, wrk
from bench.context import Context
from bench.errors import BenchFailure
from bench.gateway import Gateway, flow, recorder
from bench.procs import Meter
from bench.results import Row
from bench.scenarios import Outcome

JSON = {"Content-Type": "application/json"}
WARM_REQUESTS = 20
MIN_BACKLOG = 200
STALL_S = 15.0
CONNECTIONS = 64


def spec(record_file: Path) -> dict[str, object]:
    # One warm worker that answers at once can take far more than the default 8 in flight.
    return flow(
        "bench", worker=recorder(record_file), max_workers=1, concurrency=64, idle_timeout="5m"
    )


def run(ctx: Context) -> Outcome:
    rows, settings = drain_rows(ctx)
    return Outcome(rows=rows, settings=settings)


def drain_rows(ctx: Context, *, database: str | None = None) -> tuple[list[Row], dict[str, object]]:
    work = ctx.workdir("drain")
    record_file = work / "deliveries.log"
    flows = [spec(record_file)]
    with Gateway(workdir=work, flows=flows, database=database) as gateway:
        flow_id = gateway.flow_id("bench")
        url = f"{gateway.public}/hook/{flow_id}"
        warm_up(url, record_file, timeout=30)
        target = wrk.Target(url=url, body=ctx.body_file(), headers=JSON)
        enqueued_at = time.time()
        accepted, runs = enqueue_backlog(ctx, target, workdir=work)
        enqueue_done = time.time()
        meter = Meter(gateway.pid).start()
        wait_drained(gateway, flow_id, record_file)
        usage = meter.stop()
        dead = gateway.call(
            "GET", "/api/v1/deliveries", params={"flow": flow_id, "status": "dead", "limit": 1}
        )["items"]
    received = [d for d in record.read(record_file) if d.at >= enqueued_at]
    unique = len({d.delivery_id for d in received})
    if dead:
        raise BenchFailure("some deliveries went dead during the drain; see the worker's answers")
    if unique < accepted:
        raise BenchFailure(f"only {unique} of {accepted} accepted requests were delivered")
    if unique > accepted + runs * CONNECTIONS:
        raise BenchFailure(
            f"{unique} deliveries for {accepted} accepted requests: more than the "
            "requests still in flight when wrk stopped can explain"
        )
    last = max(d.at for d in received)
    backlog = [d for d in received if d.at > enqueue_done]
    duplicates = record.duplicates(received)
    enqueue_rate = accepted / (enqueue_done - enqueued_at)
    rows = [
        Row(
            case="enqueue (wrk, while delivering)",
            rate=round(enqueue_rate, 1),
            ratio=ctx.ratio(enqueue_rate),
            note=f"{accepted:,} answered 202 (wrk's count)",
        ),
        Row(
            case="end to end: first accept → last delivery",
            unit="deliveries/s",
            rate=round(unique / (last - enqueued_at), 1),
            note=f"{unique:,} delivered, {duplicates} twice",
            extra={"delivered": unique, "duplicates": duplicates},
        ),
    ]
    if len(backlog) >= MIN_BACKLOG:
        drain_s = last - enqueue_done
        rows.insert(
            1,
            Row(
                case="drain of the backlog",
                unit="deliveries/s",
                rate=round(len(backlog) / drain_s, 1),
                usage=usage,
                note=f"{len(backlog):,} delivered after wrk stopped, in {drain_s:.1f} s",
                extra={"backlog": len(backlog), "drain_s": round(drain_s, 3)},
            ),
        )
    else:
        rows[1].note += f"; no backlog to time (delivery kept up with {enqueue_rate:,.0f} req/s)"
    return rows, {"flow": flows[0], "database": "postgresql" if database else "sqlite"}


def enqueue_backlog(ctx: Context, target: wrk.Target, *, workdir: Path) -> tuple[int, int]:
    """wrk runs of one second until the target backlog is passed or the time is up.

    Returns the 202s wrk saw and the number of runs: the gateway may have stored up to
    :data:`CONNECTIONS` more per run, whose answers were in flight when wrk stopped.
    """
    sent = runs = 0
    started = time.monotonic()
    while sent < ctx.timing.backlog and time.monotonic() - started < ctx.timing.enqueue_s:
        run = wrk.run(target, seconds=1, workdir=workdir, connections=CONNECTIONS)
        load.check(run, case="enqueue")
        sent += run.requests
        runs += 1
    return sent, runs


def warm_up(url: str, record_file: Path, *, timeout: float) -> None:
    """Deliver a few requests so the worker is started and warm before the clock runs."""
    with httpx.Client(timeout=10) as client:
        for _ in range(WARM_REQUESTS):
            answer = client.post(url, content=b'{"warm":true}', headers=JSON)
            if answer.status_code != 202:
                raise BenchFailure(f"warm-up POST answered {answer.status_code}: {answer.text}")
    deadline = time.monotonic() + timeout
    while len(record.read(record_file)) < WARM_REQUESTS:
        if time.monotonic() > deadline:
            raise BenchFailure(f"the worker did not get the warm-up requests in {timeout:.0f} s")
        time.sleep(0.05)


def wait_drained(gateway: Gateway, flow_id: str, record_file: Path) -> None:
    """Until nothing of the flow is queued or leased any more; a drain that makes no progress
    for :data:`STALL_S` is a failure, however long the backlog."""
    received, progress_at = 0, time.monotonic()
    while gateway.waiting(flow_id):
        now_received = len(record.read(record_file))
        if now_received > received:
            received, progress_at = now_received, time.monotonic()
        elif time.monotonic() - progress_at > STALL_S:
            raise BenchFailure(
                f"the drain stalled: no delivery for {STALL_S:.0f} s, "
                f"{received:,} received, some still waiting"
            )
        time.sleep(0.1)
