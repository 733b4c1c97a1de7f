"""The NATS JetStream sender against the real server at 127.0.0.1:4222, with a real consumer."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from tests.brokers import Stream, jet_stream, require
from tests.destinations.conftest import FLOW_ID, delivery

from hookgate.destinations.base import CONFIRMED
from hookgate.destinations.message import oih_event
from hookgate.destinations.nats import NatsSender
from hookgate.domain.destinations import NatsTarget


@pytest.fixture(autouse=True)
def _server() -> None:
    require("NATS", 4222)


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    async with jet_stream() as made:
        yield made


def sender(subject: str, **target: Any) -> NatsSender:
    return NatsSender(
        f"test-{secrets.token_hex(4)}", FLOW_ID, NatsTarget(subject=subject, **target), "raw"
    )


async def test_an_acknowledged_publish_reaches_a_consumer_with_body_id_and_headers(
    stream: Stream,
) -> None:
    stored = delivery(b'{"id": 42}', attempts=2)
    out = sender(f"{stream.prefix}.orders")
    try:
        reply = await out.send(stored, timeout=10)
    finally:
        await out.close()
    assert reply.status == CONFIRMED, reply.error
    assert reply.head == f"stored in stream '{stream.name}' as sequence 1".encode()
    [got] = await stream.take(1)
    assert got.subject == f"{stream.prefix}.orders"
    assert got.data == b'{"id": 42}'
    assert got.headers == {
        "Nats-Msg-Id": stored.id,
        "x-request-id": stored.request_id,
        "x-hookgate-flow": FLOW_ID,
        "x-hookgate-delivery": stored.id,
        "x-hookgate-attempt": "2",
        "content-type": "application/json",
    }


async def test_a_repeat_within_the_duplicate_window_is_acknowledged_and_stored_once(
    stream: Stream,
) -> None:
    stored = delivery()
    out = sender(f"{stream.prefix}.orders")
    try:
        first = await out.send(stored, timeout=10)
        stored.attempts = 2
        again = await out.send(stored, timeout=10)
    finally:
        await out.close()
    assert (first.status, again.status) == (CONFIRMED, CONFIRMED)
    assert b"duplicate" in again.head
    assert len(await stream.take(1)) == 1


async def test_the_oih_preset_publishes_oihs_flow_execute_event(stream: Stream) -> None:
    stored = delivery(b'{"order": {"id": 7}}', headers=[("content-type", "application/json")])
    out = sender(f"{stream.prefix}.flow.execute", preset="oih")
    try:
        reply = await out.send(stored, timeout=10)
    finally:
        await out.close()
    assert reply.status == CONFIRMED, reply.error
    [got] = await stream.take(1)
    event = json.loads(got.data)
    assert event == msgspec.json.decode(msgspec.json.encode(oih_event(stored)))
    assert event["headers"]["name"] == "flow.execute"
    assert event["payload"]["msg"]["data"] == {"order": {"id": 7}}
    assert event["payload"]["msgOpts"]["headers"]["execId"] == stored.id
    assert got.headers is not None and got.headers["content-type"] == "application/json"


async def test_a_subject_no_stream_takes_is_an_error() -> None:
    out = sender(f"hookgate-test-nowhere-{secrets.token_hex(4)}")
    try:
        reply = await out.send(delivery(), timeout=10)
    finally:
        await out.close()
    assert reply.status is None
    assert reply.error == f"no JetStream stream takes subject {out.target.subject!r}"


async def test_an_unreachable_server_is_an_error_reply_not_an_exception() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    out = sender("x.y", url=f"nats://127.0.0.1:{port}")
    reply = await out.send(delivery(), timeout=30)
    await out.close()
    assert reply.status is None
    assert not reply.timed_out
    assert reply.error == (
        f"NATS at 127.0.0.1:{port}: ConnectionRefusedError:"
        f" [Errno 111] Connect call failed ('127.0.0.1', {port})"
    )


async def test_after_the_connection_is_closed_the_next_send_reconnects(stream: Stream) -> None:
    out = sender(f"{stream.prefix}.orders")
    try:
        assert (await out.send(delivery(), timeout=10)).status == CONFIRMED
        assert out._client is not None
        await out._client.close()  # the connection lost under the sender
        stored = delivery()
        reply = await out.send(stored, timeout=10)
    finally:
        await out.close()
    assert reply.status == CONFIRMED, reply.error
    got = await stream.take(2)
    assert got[1].headers is not None and got[1].headers["Nats-Msg-Id"] == stored.id


async def test_500_concurrent_sends_are_all_acknowledged_and_stored_once(stream: Stream) -> None:
    out = sender(f"{stream.prefix}.orders")
    stored = [delivery(str(i).encode()) for i in range(500)]
    try:
        replies = await asyncio.gather(*(out.send(d, timeout=30) for d in stored))
    finally:
        await out.close()
    assert [r.status for r in replies] == [CONFIRMED] * 500
    got = await stream.take(500)
    assert {(m.headers or {}).get("Nats-Msg-Id"): m.data for m in got} == {
        d.id: d.body for d in stored
    }
    assert len(got) == 500
