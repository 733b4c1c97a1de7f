"""``python -m bench.brokers [--count N] [--concurrency C]``: confirmed publishes per second.

One sender per broker, ``C`` sends in flight at once (a dispatcher lane's worth), 1 KB JSON
bodies, against the brokers ``.ci/run`` starts (RabbitMQ 127.0.0.1:5672, NATS 127.0.0.1:4222).
Each run gets its own queue or stream, deleted afterwards. What it measures is the sender
alone: the gateway's accept and store come on top.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

import aio_pika
import click
import nats
import uvloop

from hookgate.destinations.amqp import RabbitSender
from hookgate.destinations.base import CONFIRMED, Sender
from hookgate.destinations.nats import NatsSender
from hookgate.domain.deliveries import Delivery, State, new_id
from hookgate.domain.destinations import NatsTarget, RabbitTarget

BODY = b'{"order": {"id": 7, "note": "' + b"x" * 990 + b'"}}'


def deliveries(count: int) -> list[Delivery]:
    now = time.time()
    return [
        Delivery(
            id=new_id(),
            request_id=new_id(),
            flow_id="bench",
            state=State.LEASED,
            attempts=1,
            next_at=now,
            received_at=now,
            method="POST",
            path="/",
            headers=[("content-type", "application/json")],
            body=BODY,
            source="127.0.0.1",
        )
        for _ in range(count)
    ]


class Rate(NamedTuple):
    per_second: float
    cpu_us: float
    """This process's CPU time per publish: steadier than the rate on a shared machine."""


async def rate(sender: Sender, count: int, concurrency: int) -> Rate:
    """Confirmed publishes per second; a refused one stops the run."""
    todo = deliveries(count)
    await sender.send(todo.pop(), timeout=10)  # connect outside the clock
    it = iter(todo)

    async def lane() -> None:
        for delivery in it:
            reply = await sender.send(delivery, timeout=30)
            if reply.status != CONFIRMED:
                raise click.ClickException(f"{sender.kind}: {reply.error}")

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Rate(len(todo) / elapsed, cpu / len(todo) * 1e6)


async def rabbitmq(count: int, concurrency: int) -> Rate:
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"hookgate-bench-{secrets.token_hex(4)}")
        target = RabbitTarget(routing_key=queue.name)
        sender = RabbitSender("bench", "bench", target, "raw")
        try:
            return await rate(sender, count, concurrency)
        finally:
            await sender.close()
            await queue.delete(if_unused=False, if_empty=False)


async def jetstream(count: int, concurrency: int) -> Rate:
    client = await nats.connect("nats://127.0.0.1:4222")
    js = client.jetstream()
    token = secrets.token_hex(4)
    await js.add_stream(name=f"HOOKGATE_BENCH_{token}", subjects=[f"hookgate-bench-{token}"])
    sender = NatsSender("bench", "bench", NatsTarget(subject=f"hookgate-bench-{token}"), "raw")
    try:
        return await rate(sender, count, concurrency)
    finally:
        await sender.close()
        await js.delete_stream(f"HOOKGATE_BENCH_{token}")
        await client.close()


@click.command()
@click.option("--count", default=20_000, show_default=True, help="publishes per broker")
@click.option("--concurrency", default=64, show_default=True, help="sends in flight at once")
def main(count: int, concurrency: int) -> None:
    runs: list[tuple[str, Callable[[int, int], Coroutine[Any, Any, Rate]]]] = [
        ("RabbitMQ (confirmed, persistent, mandatory)", rabbitmq),
        ("NATS JetStream (acknowledged, file storage)", jetstream),
    ]
    for name, run in runs:
        per_second, cpu_us = uvloop.run(run(count, concurrency))
        click.echo(
            f"{name}: {per_second:,.0f} publishes/s, {cpu_us:.0f} µs CPU each"
            f" ({count} x 1 KB, {concurrency} in flight)"
        )


if __name__ == "__main__":
    main()
