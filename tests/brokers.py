"""The real brokers for tests: RabbitMQ at 127.0.0.1:5672 and NATS JetStream at 127.0.0.1:4222.

A down broker skips its tests on a laptop and fails them in CI (``.ci/run`` starts both). Each
test gets a fresh exchange and queue, or a fresh stream, deleted afterwards, so tests never see
each other's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator

import aio_pika
import nats
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from nats.aio.msg import Msg
from nats.js import JetStreamContext

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"


def require(service: str, port: int) -> None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except OSError as exc:
        reason = f"{service} at 127.0.0.1:{port} is unreachable: {exc}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason} (CI is set, so {service} must be tested)")
        pytest.skip(f"{reason} (set CI=true to make this a failure)")


class Bound:
    """A fresh exchange and an exclusive queue bound to it with ``key``."""

    def __init__(self, exchange: str, key: str, queue: AbstractQueue) -> None:
        self.exchange, self.key, self.queue = exchange, key, queue

    async def poll(self) -> list[AbstractIncomingMessage]:
        """Whatever the queue holds now, acknowledged."""
        got: list[AbstractIncomingMessage] = []
        while (message := await self.queue.get(fail=False)) is not None:
            await message.ack()
            got.append(message)
        return got

    async def take(self, count: int) -> list[AbstractIncomingMessage]:
        """Exactly ``count`` messages: fails on fewer within 30 s, or on one more."""
        got: list[AbstractIncomingMessage] = []
        async with asyncio.timeout(30):
            while len(got) < count:
                got += await self.poll()
                await asyncio.sleep(0.02)
        assert len(got) == count, f"{len(got)} messages, {count} sent"
        return got


@contextlib.asynccontextmanager
async def rabbit_queue(channel: AbstractChannel, key: str = "orders") -> AsyncIterator[Bound]:
    name = f"hookgate-test-{secrets.token_hex(4)}"
    exchange = await channel.declare_exchange(name, "direct")
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, key)
    try:
        yield Bound(name, key, queue)
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()


@contextlib.asynccontextmanager
async def rabbit_channel() -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(RABBIT_URL)
    async with connection:
        yield await connection.channel()


class Stream:
    """A fresh stream on ``<prefix>.>``; ``take`` reads it through a pull consumer."""

    def __init__(self, js: JetStreamContext, name: str, prefix: str) -> None:
        self.js, self.name, self.prefix = js, name, prefix

    async def take(self, count: int) -> list[Msg]:
        """Exactly ``count`` messages: fails on fewer within 30 s, or on one more."""
        sub = await self.js.pull_subscribe(f"{self.prefix}.>", stream=self.name)
        got: list[Msg] = []
        async with asyncio.timeout(30):
            while len(got) < count:
                got += await sub.fetch(count - len(got), timeout=10)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=0.2)  # nothing more than was sent
        await sub.unsubscribe()
        return got

    async def stored(self) -> int:
        """Messages the stream holds (a repeat dropped by its duplicate window is not one)."""
        info = await self.js.stream_info(self.name)
        return info.state.messages


@contextlib.asynccontextmanager
async def jet_stream() -> AsyncIterator[Stream]:
    client = await nats.connect(NATS_URL)
    js = client.jetstream()
    token = secrets.token_hex(4)
    name, prefix = f"HOOKGATE_TEST_{token}", f"hookgate-test-{token}"
    await js.add_stream(name=name, subjects=[f"{prefix}.>"])
    try:
        yield Stream(js, name, prefix)
    finally:
        await js.delete_stream(name)
        await client.close()
