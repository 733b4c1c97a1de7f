"""The RabbitMQ sender against the real broker at 127.0.0.1:5672, with a real consumer."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import msgspec
import pytest
from aio_pika.abc import AbstractChannel
from tests.brokers import Bound, rabbit_channel, rabbit_queue, require
from tests.destinations.conftest import FLOW_ID, delivery

from hookgate.destinations.amqp import CHANNELS, RabbitSender
from hookgate.destinations.base import CONFIRMED
from hookgate.destinations.message import oih_event
from hookgate.domain.destinations import RabbitTarget


@pytest.fixture(autouse=True)
def _broker() -> None:
    require("RabbitMQ", 5672)


@pytest.fixture
async def channel() -> AsyncIterator[AbstractChannel]:
    async with rabbit_channel() as opened:
        yield opened


@pytest.fixture
async def bound(channel: AbstractChannel) -> AsyncIterator[Bound]:
    async with rabbit_queue(channel) as made:
        yield made


def sender(exchange: str = "", routing_key: str = "", **target: Any) -> RabbitSender:
    flow = f"test-{secrets.token_hex(4)}"
    spec = RabbitTarget(exchange=exchange, routing_key=routing_key, **target)
    return RabbitSender(flow, FLOW_ID, spec, "raw")


async def test_a_confirmed_publish_reaches_a_consumer_with_body_id_and_headers(
    bound: Bound,
) -> None:
    stored = delivery(b'{"id": 42}', attempts=2)
    out = sender(bound.exchange, bound.key)
    try:
        reply = await out.send(stored, timeout=10)
    finally:
        await out.close()
    assert reply.error is None
    assert reply.status == CONFIRMED
    assert (
        reply.head == f"published to exchange '{bound.exchange}' with routing key 'orders'".encode()
    )
    [got] = await bound.take(1)
    assert got.body == b'{"id": 42}'
    assert got.message_id == stored.id
    assert got.content_type == "application/json"
    assert got.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert got.headers == {
        "x-request-id": stored.request_id,
        "x-hookgate-flow": FLOW_ID,
        "x-hookgate-delivery": stored.id,
        "x-hookgate-attempt": "2",
    }


async def test_the_oih_preset_publishes_oihs_flow_execute_event_to_its_event_bus(
    channel: AbstractChannel,
) -> None:
    existed = await _exists(channel, "event-bus")
    out = sender(preset="oih")
    stored = delivery(
        b'{"order": {"id": 7}}', headers=[("content-type", "application/json"), ("x-tag", "a")]
    )
    try:
        # OIH's orchestrator binds its queue to the event bus; one like it takes the event.
        await out.send(delivery(), timeout=10)  # declares the exchange, as OIH's bus does
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind("event-bus", "flow.execute")
        reply = await out.send(stored, timeout=10)
        assert reply.status == CONFIRMED, reply.error
        assert reply.head == b"published to exchange 'event-bus' with routing key 'flow.execute'"
        [got] = await Bound("event-bus", "flow.execute", queue).take(1)
    finally:
        await out.close()
        if not existed:
            await channel.exchange_delete("event-bus")
    assert got.routing_key == "flow.execute"
    assert got.exchange == "event-bus"
    assert got.message_id == stored.id
    assert got.content_type == "application/json"
    event = json.loads(got.body)
    assert event == msgspec.json.decode(msgspec.json.encode(oih_event(stored)))
    assert event["headers"]["name"] == "flow.execute"
    assert event["headers"]["serviceName"] == "webhooks"
    assert event["payload"]["flow"] == {"_id": FLOW_ID}
    msg = event["payload"]["msg"]
    assert msg["id"] == stored.id
    assert msg["data"] == {"order": {"id": 7}}
    assert msg["query"] == {"src": "shop", "a": ["1", "2"], "b": {"c": "3"}}
    assert msg["headers"]["x-tag"] == "a"
    assert msg["pathSuffix"] == f"/hook/{FLOW_ID}/orders/new"
    assert "passthrough" not in msg


async def _exists(channel: AbstractChannel, name: str) -> bool:
    probe = await channel.get_underlay_channel()
    try:
        await probe.exchange_declare(name, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        await channel.reopen()
        return False
    return True


async def test_a_message_no_queue_takes_is_an_error_not_a_silent_drop(bound: Bound) -> None:
    out = sender(bound.exchange, "nobody-listens")
    try:
        # One send per channel: publishes take the sender's channels in turn.
        replies = [await out.send(delivery(), timeout=10) for _ in range(CHANNELS + 1)]
    finally:
        await out.close()
    for reply in replies:
        assert reply.status is None
        assert reply.error is not None
        assert "unroutable" in reply.error and "312 NO_ROUTE" in reply.error


async def test_a_missing_exchange_is_an_error_and_the_sender_recovers(bound: Bound) -> None:
    out = sender("hookgate-test-no-such-exchange", "orders")
    try:
        reply = await out.send(delivery(), timeout=10)
        assert reply.status is None
        assert "NOT_FOUND" in (reply.error or "")
        again = await out.send(delivery(), timeout=10)
        assert "NOT_FOUND" in (again.error or "")
    finally:
        await out.close()


async def test_a_nack_is_an_error(channel: AbstractChannel) -> None:
    full = await channel.declare_queue(
        exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    out = sender(routing_key=full.name)
    try:
        reply = await out.send(delivery(), timeout=10)
    finally:
        await out.close()
        await full.delete(if_unused=False, if_empty=False)
    assert reply.status is None
    assert (
        reply.error
        == f"RabbitMQ refused (nack) the publish to exchange '' with routing key '{full.name}'"
    )


async def test_an_unreachable_broker_is_an_error_reply_not_an_exception() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    out = sender("x", "y", url=f"amqp://guest:guest@127.0.0.1:{port}/")
    reply = await out.send(delivery(), timeout=30)
    await out.close()
    assert reply.status is None
    assert not reply.timed_out
    assert reply.error is not None
    assert f"RabbitMQ at 127.0.0.1:{port}" in reply.error
    assert "Connect call failed" in reply.error


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says anything."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


async def test_a_broker_that_does_not_answer_times_out(silent_port: int) -> None:
    out = sender("x", "y", url=f"amqp://guest:guest@127.0.0.1:{silent_port}/")
    reply = await out.send(delivery(), timeout=0.5)
    await out.close()
    assert reply.status is None
    assert reply.timed_out
    assert "did not confirm the publish to exchange 'x' with routing key 'y' within 0.5s" in (
        reply.error or ""
    )


def _connections(name: str) -> list[str]:
    """The broker's connections with this client-given name (``rabbitmqctl``: no plugin)."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties", "--no-table-headers"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    tag = f'{{"connection_name","{name}"}}'
    return [line.split("\t")[0] for line in listed.splitlines() if tag in line]


async def test_after_the_broker_closes_the_connection_the_sender_reconnects(bound: Bound) -> None:
    out = sender(bound.exchange, bound.key)
    try:
        assert (await out.send(delivery(), timeout=10)).status == CONFIRMED
        name = f"hookgate {out.flow_name}"
        [before] = await asyncio.to_thread(_connections, name)
        await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "-q", "close_connection", before, "hookgate test"],
            check=True, timeout=30,
        )  # fmt: skip
        async with asyncio.timeout(30):
            while (now := await asyncio.to_thread(_connections, name)) in ([], [before]):
                await asyncio.sleep(0.2)
        assert before not in now
        stored = delivery()
        reply = await out.send(stored, timeout=10)
    finally:
        await out.close()
    assert reply.status == CONFIRMED, reply.error
    got = await bound.take(2)
    assert got[1].message_id == stored.id


async def test_500_concurrent_sends_are_all_confirmed_and_received_once(bound: Bound) -> None:
    out = sender(bound.exchange, bound.key)
    stored = [delivery(str(i).encode()) for i in range(500)]
    try:
        replies = await asyncio.gather(*(out.send(d, timeout=30) for d in stored))
    finally:
        await out.close()
    assert [r.status for r in replies] == [CONFIRMED] * 500
    got = await bound.take(500)
    assert sorted(m.message_id or "" for m in got) == sorted(d.id for d in stored)
    assert {m.message_id: m.body for m in got} == {d.id: d.body for d in stored}
