"""``routing``: what destinations cost, on the defaults.

* ingest with a ``filter`` against the same flow without one (issue #17: within 10 %), four
  gateways in the order plain, filter, filter, plain, each mean compared. Both flows' worker
  exits at once (as in ``ingest``), so the figures are the ingress and the store;
  the filter reads the JSON body and a header, and holds for every request (so each is stored
  queued, as without a filter).
* RabbitMQ end to end: an async flow whose one destination is a RabbitMQ queue (the default
  exchange, publisher confirms, persistent messages), loaded with wrk for the measured time;
  delivered/s = accepted / (time from the load's start until nothing is queued). Needs
  RabbitMQ on 127.0.0.1:5672 (guest/guest), as ``.ci/run`` starts it.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import aio_pika

from bench import load, wrk
from bench.context import Context
from bench.errors import BenchFailure
from bench.gateway import Gateway, flow
from bench.procs import Meter
from bench.results import Row
from bench.scenarios import Outcome
from bench.scenarios.accept import DURABLE, JSON, accept_row
from bench.scenarios.e2e import wait_empty

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
ROOM = {"HOOKGATE_MAX_QUEUED_BYTES": "8GiB"}
"""Room for every accepted request: a fast run accepts ~150,000 and none is delivered (the
default bound gives one flow 256 MiB). A bound, not a speed setting."""
FILTER = 'has(body.order) && headers["content-type"].startsWith("application/json")'


def run(ctx: Context) -> Outcome:
    # In the order plain, filter, filter, plain: neither gets the quieter disk of going first.
    runs = [ingest(ctx, e, i) for i, e in enumerate((None, FILTER, FILTER, None))]
    rows = [runs[0], runs[1]]
    plain = (runs[0].rate + runs[3].rate) / 2
    filtered = (runs[1].rate + runs[2].rate) / 2
    rows[0].note = f"runs 1 and 4: {runs[0].rate:,.0f} and {runs[3].rate:,.0f} req/s"
    rows[1].note = (
        f"runs 2 and 3: {runs[1].rate:,.0f} and {runs[2].rate:,.0f} req/s;"
        f" mean {(filtered / plain - 1) * 100:+.1f} % against no filter"
    )
    queue = f"bench-{secrets.token_hex(4)}"
    asyncio.run(declare(queue))
    try:
        rows.append(rabbitmq(ctx, queue))
    finally:
        asyncio.run(delete(queue))
    return Outcome(
        rows=rows,
        settings={"filter": FILTER, "rabbitmq": {"url": AMQP, "routing_key": queue}},
    )


def ingest(ctx: Context, expression: str | None, run: int) -> Row:
    work = ctx.workdir(f"routing-{'filter' if expression else 'plain'}-{run}")
    spec = flow("bench", **({"filter": expression} if expression else {}))
    with Gateway(workdir=work, flows=[spec], env={**DURABLE, **ROOM}) as gateway:
        case = "1 KB JSON, async accept, with a filter" if expression else "1 KB JSON, async accept"
        return accept_row(ctx, gateway, case=case, workdir=work)


def rabbitmq(ctx: Context, queue: str) -> Row:
    work = ctx.workdir("routing-rabbitmq")
    spec = {
        "name": "bus",
        "mode": "async",
        "destinations": [{"name": "bus", "rabbitmq": {"url": AMQP, "routing_key": queue}}],
    }
    with Gateway(workdir=work, flows=[spec]) as gateway:
        flow_id = gateway.flow_id("bus")
        target = wrk.Target(
            url=f"{gateway.public}/hook/{flow_id}", body=ctx.body_file(), headers=JSON
        )
        load.expect(target, status=202)
        wait_empty(gateway, flow_id)
        meter = Meter(gateway.pid, tree=True).start()
        started = time.monotonic()
        accepted = wrk.run(target, seconds=ctx.timing.measure_s, workdir=work)
        load.check(accepted, case="rabbitmq accept")
        wait_empty(gateway, flow_id)
        took = time.monotonic() - started
        usage = meter.stop()
    published = asyncio.run(count(queue))
    if published < accepted.requests:
        raise BenchFailure(f"{accepted.requests} accepted but {published} in the queue")
    return Row(
        case="RabbitMQ destination end to end: accepted and confirmed, defaults",
        unit="deliveries/s",
        rate=round(accepted.requests / took, 1),
        usage=usage,
        note=(
            f"{accepted.requests:,} accepted at {accepted.rate:,.0f}/s,"
            f" all confirmed after {took:.1f} s"
        ),
    )


async def declare(queue: str) -> None:
    connection = await aio_pika.connect(AMQP)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)


async def count(queue: str) -> int:
    connection = await aio_pika.connect(AMQP)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, durable=True, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def delete(queue: str) -> None:
    connection = await aio_pika.connect(AMQP)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
