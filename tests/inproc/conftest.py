"""A gateway's delivery machinery in one event loop, on the twins: ``MemoryStore``,
``MemoryRuntime`` (workers are ASGI apps) and ``MemoryTransport``. The twins pass the same
contract suites as SQLite/PostgreSQL, local processes and HTTP/1.1; these tests cover what the
dispatcher, proxy, scheduler and registry do on top of them, in milliseconds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from hookgate.asgi import Receive, Scope, Send
from hookgate.dispatch.dispatcher import Dispatcher, SenderFactory
from hookgate.dispatch.hooks import DeliveryHook, delivery_hooks
from hookgate.dispatch.wakeups import Wakeups
from hookgate.domain.deliveries import Delivery, Request, State, new_id
from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import Flow
from hookgate.domain.routing import Router
from hookgate.events import EventHub
from hookgate.metrics import Metrics
from hookgate.registry import FlowRegistry
from hookgate.runtime.memory import App, MemoryRuntime, Network
from hookgate.store.base import DeliveryFilter
from hookgate.store.memory import MemoryStore
from hookgate.tracing import Tracing
from hookgate.transport.memory import MemoryTransport

BIG = 10**12
FAST_RETRY = {"max_attempts": 3, "backoff": "1ms", "max_backoff": "5ms"}
Handler = Callable[[Scope, bytes], Awaitable[tuple[int, bytes]]]
"""A worker's answer to one request (its scope and whole body): status and body."""


async def ok(scope: Scope, body: bytes) -> tuple[int, bytes]:
    return 200, b"ok"


def worker_app(handler: Handler) -> App:
    """An ASGI worker that reads the whole body and answers what ``handler`` says."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan")  # ready at once
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, answer = await handler(scope, body)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": answer})

    return app


class Rig:
    """The machinery one gateway builds, minus its listeners."""

    def __init__(
        self,
        handler: Handler = ok,
        senders: SenderFactory | None = None,
        hooks: Sequence[DeliveryHook] = (),
    ) -> None:
        self.handler = handler
        self.store = MemoryStore(max_queued_bytes=BIG)
        self.registry = FlowRegistry(self.store)
        self.network = Network()
        self.runtime = MemoryRuntime(
            lambda flow, env: worker_app(self.handler), network=self.network
        )
        self.transport = MemoryTransport(self.network)
        self.dispatcher = Dispatcher(
            registry=self.registry,
            store=self.store,
            runtime=self.runtime,
            transport=self.transport,
            hooks=(
                *delivery_hooks(metrics=Metrics(), events=EventHub(), tracing=Tracing()),
                *hooks,
            ),
            senders=senders,
        )
        self.registry.subscribe(self.dispatcher.flow_changed)
        self.runtime.on_start_failed = self.dispatcher.start_failed
        wakeups = Wakeups(dispatcher=self.dispatcher, registry=self.registry)
        self.waking = True
        self.store.changes.subscribe(lambda change: wakeups(change) if self.waking else None)

    async def flow(self, name: str = "orders", **fields: Any) -> Flow:
        obj = {"name": name, "mode": "async", "worker": {"command": ["app"]}, **fields}
        return await self.registry.create(spec_from_object(obj))

    async def accept(self, flow: Flow, payload: Any = None, *, notify: bool = True) -> Request:
        """What the ingress stores for a JSON body; the store's change wakes the flow's lanes
        unless ``notify`` is false (a wake-up another gateway got)."""
        request = Request(
            id=new_id(),
            request_id=new_id(),
            flow_id=flow.id,
            method="POST",
            path="/",
            query="",
            headers=[("content-type", "application/json")],
            body=json.dumps(payload).encode(),
            source="203.0.113.7",
            received_at=time.time(),
        )
        request.routes = Router(flow.spec).routes(request)
        self.waking = notify
        try:
            await self.store.enqueue(request)
        finally:
            self.waking = True
        return request

    async def finished(self, flow: Flow, count: int, timeout: float = 5.0) -> list[Delivery]:
        """The flow's deliveries once ``count`` of them are done or dead, oldest first."""
        async with asyncio.timeout(timeout):
            while True:
                page = await self.store.list_deliveries(
                    DeliveryFilter(flow_id=flow.id), limit=10_000, cursor=None
                )
                over = [d for d in page.items if d.state in (State.DONE, State.DEAD)]
                if len(over) >= count:
                    return list(reversed(page.items))
                await asyncio.sleep(0.002)

    async def close(self) -> None:
        await self.dispatcher.close(grace=1.0)
        await self.runtime.close()
        await self.transport.close()
        await self.store.close()


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    rigs: list[Rig] = []

    async def make(
        handler: Handler = ok,
        senders: SenderFactory | None = None,
        hooks: Sequence[DeliveryHook] = (),
    ) -> Rig:
        rig = Rig(handler, senders, hooks)
        await rig.store.open()
        await rig.registry.load()
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.close()
