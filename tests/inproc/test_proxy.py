"""The sync proxy's wait line on the twins: one slot, callers served first come first served,
a caller past ``queue_timeout`` or past the gateway's waiter bound turned away with 503."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from hookgate.asgi import Scope
from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import Flow
from hookgate.proxy.forward import SyncProxy
from hookgate.runtime.memory import MemoryRuntime, Network
from hookgate.transport.memory import MemoryTransport

from .conftest import worker_app


class Line:
    """A sync flow with one worker of one slot that answers each request once released."""

    def __init__(self, *, max_waiting: int = 100, queue_timeout: str = "5s") -> None:
        self.release: asyncio.Queue[None] = asyncio.Queue()
        self.served: list[str] = []
        network = Network()
        self.runtime = MemoryRuntime(lambda flow, env: worker_app(self.answer), network=network)
        self.transport = MemoryTransport(network)
        self.proxy = SyncProxy(
            runtime=self.runtime, transport=self.transport, max_waiting=max_waiting
        )
        spec = spec_from_object(
            {
                "name": "sync",
                "mode": "sync",
                "worker": {"command": ["app"]},
                "concurrency": 1,
                "queue_timeout": queue_timeout,
            }
        )
        self.flow = Flow(id="f-sync", spec=spec, created_at=0.0, updated_at=0.0)

    async def answer(self, scope: Scope, body: bytes) -> tuple[int, bytes]:
        await self.release.get()
        self.served.append(body.decode())
        return 200, body

    async def start(self) -> None:
        await self.runtime.scale(self.flow, 1)
        async with asyncio.timeout(2):
            while not self.runtime.endpoints(self.flow.id):
                await asyncio.sleep(0.001)

    async def call(self, name: str) -> tuple[int, bytes]:
        """A caller: the status the proxy answered and the body it sent back."""
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            await asyncio.Future()  # the caller stays connected
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "headers": [], "client": ("198.51.100.1", 1)}
        status = await self.proxy.forward(
            self.flow, scope, receive, send, request_id=name, sub_path="/", body=name.encode()
        )
        return status, b"".join(m.get("body", b"") for m in sent if m["type"].endswith("body"))

    async def waiting(self, count: int) -> None:
        async with asyncio.timeout(2):
            while self.proxy.waiting < count:
                await asyncio.sleep(0.001)

    async def close(self) -> None:
        await self.runtime.close()
        await self.transport.close()


async def test_callers_wait_in_line_and_are_served_in_arrival_order() -> None:
    line = Line()
    await line.start()
    try:
        calls = []
        for i, name in enumerate(["first", "second", "third"]):
            calls.append(asyncio.create_task(line.call(name)))
            await line.waiting(i)  # the first holds the slot; the others queue in order
        for _ in calls:
            line.release.put_nowait(None)
        answers = await asyncio.gather(*calls)
        assert answers == [(200, b"first"), (200, b"second"), (200, b"third")]
        assert line.served == ["first", "second", "third"]
    finally:
        await line.close()


async def test_a_caller_past_queue_timeout_gets_503() -> None:
    line = Line(queue_timeout="50ms")
    await line.start()
    try:
        holder = asyncio.create_task(line.call("holder"))
        await asyncio.sleep(0.01)
        status, body = await line.call("late")
        assert (status, line.proxy.waiting) == (503, 0)
        assert b"no worker available" in body
        line.release.put_nowait(None)
        assert await holder == (200, b"holder")
    finally:
        await line.close()


async def test_callers_past_the_gateways_waiter_bound_are_turned_away_at_once() -> None:
    line = Line(max_waiting=1)
    await line.start()
    try:
        holder = asyncio.create_task(line.call("holder"))
        waiter = asyncio.create_task(line.call("waiter"))
        await line.waiting(1)
        assert (await line.call("over"))[0] == 503
        line.release.put_nowait(None)
        line.release.put_nowait(None)
        assert [await holder, await waiter] == [(200, b"holder"), (200, b"waiter")]
    finally:
        await line.close()


async def test_waiters_in_line_each_get_503_at_their_own_queue_timeout() -> None:
    line = Line(queue_timeout="100ms")
    await line.start()
    try:
        holder = asyncio.create_task(line.call("holder"))
        first = asyncio.create_task(line.call("first"))
        await line.waiting(1)
        await asyncio.sleep(0.05)
        second = asyncio.create_task(line.call("second"))
        await line.waiting(2)
        assert (await first)[0] == 503
        assert not second.done()  # the line's one timer moved on to the next deadline
        assert (await second)[0] == 503
        line.release.put_nowait(None)
        assert await holder == (200, b"holder")
    finally:
        await line.close()


async def test_a_lowered_queue_timeout_turns_away_a_newcomer_behind_a_longer_wait() -> None:
    line = Line(queue_timeout="5s")
    await line.start()
    try:
        holder = asyncio.create_task(line.call("holder"))
        patient = asyncio.create_task(line.call("patient"))
        await line.waiting(1)
        line.flow = Flow(
            id=line.flow.id,
            spec=msgspec.structs.replace(line.flow.spec, queue_timeout=0.05),
            created_at=0.0,
            updated_at=0.0,
        )
        assert (await line.call("hasty"))[0] == 503
        assert not patient.done()
        line.release.put_nowait(None)
        line.release.put_nowait(None)
        assert [await holder, await patient] == [(200, b"holder"), (200, b"patient")]
    finally:
        await line.close()
