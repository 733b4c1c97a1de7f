"""The sync proxy on the twins: its wait line (one slot, callers served first come first
served, a caller past ``queue_timeout`` or past the gateway's waiter bound turned away with
503) and its adaptive limit (``concurrency: auto``) against workers of known capacity."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from hookgate.asgi import Receive, Scope, Send
from hookgate.domain.concurrency import INITIAL
from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import Flow
from hookgate.proxy.forward import SyncProxy
from hookgate.runtime.memory import App, MemoryRuntime, Network
from hookgate.transport.memory import MemoryTransport

from .conftest import worker_app


async def call(proxy: SyncProxy, flow: Flow, name: str) -> tuple[int, bytes]:
    """A caller: the status the proxy answered and the body it sent back."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Future()  # the caller stays connected
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [], "client": ("198.51.100.1", 1)}
    status = await proxy.forward(
        flow, scope, receive, send, request_id=name, sub_path="/", body=name.encode()
    )
    return status, b"".join(m.get("body", b"") for m in sent if m["type"].endswith("body"))


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
        return await call(self.proxy, self.flow, name)

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


class Capacity:
    """Replicas of a sync flow, each a worker of known capacity (as ``tests/workers/capacity.py``):
    ``capacity`` requests served at once in ``service`` seconds each, more wait inside it (their
    latency grows, its throughput does not). ``refuse`` is answered, once, instead of that."""

    def __init__(
        self,
        *,
        concurrency: int | str = "auto",
        replicas: int = 1,
        capacity: int = 4,
        service: float = 0.01,
    ) -> None:
        self.capacity = capacity
        self.service = service
        self.refuse: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.most = 0
        """The most requests one worker ever had in flight at once."""
        network = Network()
        self.runtime = MemoryRuntime(lambda flow, env: self.worker(), network=network)
        self.transport = MemoryTransport(network)
        self.proxy = SyncProxy(runtime=self.runtime, transport=self.transport, max_waiting=1000)
        spec = spec_from_object(
            {
                "name": "cap",
                "mode": "sync",
                "worker": {"command": ["app"]},
                "concurrency": concurrency,
                "replicas": replicas,
                "queue_timeout": "30s",
            }
        )
        self.flow = Flow(id="f-cap", spec=spec, created_at=0.0, updated_at=0.0)

    def worker(self) -> App:
        gate = asyncio.Semaphore(self.capacity)
        inflight = 0

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal inflight
            if scope["type"] == "lifespan":
                raise RuntimeError("no lifespan")  # ready at once
            inflight += 1
            self.most = max(self.most, inflight)
            try:
                status, headers = self.refuse or (200, [])
                self.refuse = None
                if status == 200:
                    async with gate:
                        await asyncio.sleep(self.service)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": b"ok"})
            finally:
                inflight -= 1

        return app

    async def start(self) -> None:
        await self.runtime.scale(self.flow, self.flow.spec.replicas)
        async with asyncio.timeout(2):
            while len(self.runtime.endpoints(self.flow.id)) < self.flow.spec.replicas:
                await asyncio.sleep(0.001)

    async def load(self, callers: int, seconds: float) -> list[int]:
        """``callers`` calling one after another for ``seconds``: every status answered."""
        statuses: list[int] = []
        deadline = time.monotonic() + seconds

        async def caller(n: int) -> None:
            while time.monotonic() < deadline:
                statuses.append((await call(self.proxy, self.flow, f"c{n}"))[0])

        await asyncio.gather(*(caller(n) for n in range(callers)))
        return statuses

    def limit(self) -> int:
        limit = self.proxy.limit(self.flow.id)
        assert limit is not None
        return limit

    async def close(self) -> None:
        await self.runtime.close()
        await self.transport.close()


async def test_the_limit_settles_near_what_the_worker_can_serve_at_once() -> None:
    """A worker that serves 4 at once (more only wait inside it): 128 callers keep the proxy's
    limit the bottleneck (more callers than it could reach), and it comes down from 16 to
    about 4 and stays there for a second."""
    rig = Capacity(capacity=4)
    await rig.start()
    try:
        limits: list[int] = []
        async with asyncio.timeout(15):
            while not (len(limits) >= 4 and all(2 <= x <= 10 for x in limits[-4:])):
                assert set(await rig.load(128, 0.25)) == {200}
                limits.append(rig.limit())
    finally:
        await rig.close()


async def test_an_overloaded_answer_halves_its_limit_and_with_retry_after_every_replica_s() -> None:
    """A ``503`` lowers the limit of the replica that answered it; a ``429`` with
    ``Retry-After`` (the flow's backend is full) halves both replicas'."""
    rig = Capacity(replicas=2)
    await rig.start()
    try:
        assert (await call(rig.proxy, rig.flow, "first"))[0] == 200
        assert rig.limit() == 2 * INITIAL
        rig.refuse = (503, [])
        assert (await call(rig.proxy, rig.flow, "refused"))[0] == 503
        assert rig.limit() == INITIAL // 2 + INITIAL
        rig.refuse = (429, [(b"retry-after", b"1")])
        assert (await call(rig.proxy, rig.flow, "full"))[0] == 429
        assert rig.limit() == INITIAL // 4 + INITIAL // 2
    finally:
        await rig.close()


async def test_a_pinned_number_pins_the_sync_limit() -> None:
    """``concurrency: 5`` on a worker that serves 2 at once: 16 callers never get it more
    than 5 requests at a time, and neither its queueing nor a 503 moves the limit."""
    rig = Capacity(concurrency=5, capacity=2)
    await rig.start()
    try:
        assert set(await rig.load(16, 1.0)) == {200}
        assert (rig.limit(), rig.most) == (5, 5)
        rig.refuse = (503, [(b"retry-after", b"1")])
        assert (await call(rig.proxy, rig.flow, "refused"))[0] == 503
        assert rig.limit() == 5
    finally:
        await rig.close()
