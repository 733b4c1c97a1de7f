"""Async delivery: one ``Lane`` per destination of each running flow (see ``dispatch.lane``).

A flow's lanes exist only once it has had work, so 100,000 idle flows cost nothing. The
dispatcher starts and stops them as flows change, answers whether a flow has work before a
worker is started for it, and judges whether the machine has CPU to spare for another worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from hookgate import logs
from hookgate.destinations.base import Sender
from hookgate.dispatch.cpu import CpuGauge
from hookgate.dispatch.hooks import DeliveryHook
from hookgate.dispatch.lane import Lane
from hookgate.dispatch.sender_lane import SenderLane
from hookgate.dispatch.waiters import Waiters
from hookgate.domain.concurrency import Ledger
from hookgate.domain.destinations import Destination
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import Flow, Mode
from hookgate.errors import ConfigError, StoreError
from hookgate.registry import FlowRegistry
from hookgate.runtime.base import Runtime
from hookgate.store.base import QueueStats, Store
from hookgate.transport.base import WorkerTransport

log = logs.get("hookgate.dispatch")

SenderFactory = Callable[[Flow, Destination], Sender]


def _open_sender(flow: Flow, destination: Destination) -> Sender:
    """Imported on first use: a gateway without such destinations loads no broker client."""
    from hookgate.destinations.open import open_sender

    return open_sender(flow, destination)


STATS_TTL = 0.1


class Dispatcher:
    def __init__(
        self,
        *,
        registry: FlowRegistry,
        store: Store,
        runtime: Runtime,
        transport: WorkerTransport,
        hooks: Sequence[DeliveryHook] = (),
        waiters: Waiters | None = None,
        senders: SenderFactory | None = None,
        ledger: Ledger[Endpoint] | None = None,
    ) -> None:
        self.ledger = ledger or Ledger()
        self.hooks = tuple(hooks)
        """What the lanes tell at each step of a delivery (``dispatch.hooks``)."""
        self.send_hooks = tuple(hook for hook in self.hooks if hook.wraps_sends)
        """Those that wrap each send: while there is one, no delivery is sent in a group."""
        self.waiters = waiters or Waiters()
        self.registry = registry
        self.store = store
        self.runtime = runtime
        self.transport = transport
        self.flows: dict[str, dict[str, Lane]] = {}
        """Per flow id, its lanes by destination name."""
        self.senders = senders or _open_sender
        self.cpu = CpuGauge(shares_cpu=runtime.shares_cpu)
        self._stats: asyncio.Task[dict[str, QueueStats]] | None = None
        self._stats_at = 0.0

    async def has_work(self, flow_id: str) -> bool:
        """Whether the store holds due work for the flow, before a worker is started for it.

        One shared ``queue_stats`` query answers every flow asking within the same moment.
        """
        if self._stats is None or time.monotonic() - self._stats_at > STATS_TTL:
            self._stats_at = time.monotonic()
            self._stats = asyncio.ensure_future(self.store.queue_stats())
        try:
            stats = (await asyncio.shield(self._stats)).get(flow_id)
        except StoreError:
            self._stats = None
            return True
        due = stats.next_due_at if stats is not None else None
        return due is not None and due <= time.time()

    async def start(self) -> None:
        """Loops start for the flows with work waiting; the others start on their first notify."""
        try:
            stats = await self.store.queue_stats()
        except StoreError as exc:
            log.warning("cannot read the queue at start; waiting for work", error=str(exc))
            return
        for flow_id, queued in stats.items():
            self.notify(flow_id, queued.next_due_at)

    def notify(self, flow_id: str, at: float | None = None) -> None:
        """Work is due for the flow at ``at`` (default now), e.g. the ingress committed some.

        A sync flow has lanes too once a request to it is stored (``Prefer: respond-async``,
        ``fallback: async``): it delivers to the flow's running workers.
        """
        if at is None:
            self._stats = None  # counted before this work was stored: ``has_work`` asks again
        lanes = self.flows.get(flow_id)
        if lanes is None:
            flow = self.registry.get(flow_id)
            if flow is None or not flow.running:
                return
            lanes = self.flows[flow_id] = self._lanes(flow, flow.spec.routes)
        for lane in lanes.values():
            lane.notify(at)

    def _lanes(self, flow: Flow, destinations: list[Destination]) -> dict[str, Lane]:
        lanes: dict[str, Lane] = {}
        for destination in destinations:
            if destination.kind == "worker":
                lanes[destination.name] = Lane(self, flow, destination)
                continue
            try:
                sender = self.senders(flow, destination)
            except ConfigError as exc:
                log.error(
                    "destination cannot be used; its deliveries wait",
                    flow=flow.name,
                    destination=destination.name,
                    error=str(exc),
                )
                continue
            lanes[destination.name] = SenderLane(self, flow, destination, sender)
        return lanes

    def start_failed(self, flow_id: str, reason: str) -> None:
        """A worker of the flow could not start (see ``Lane.start_failed``)."""
        for lane in self.flows.get(flow_id, {}).values():
            lane.start_failed(reason)

    def limit(self, flow_id: str) -> int | None:
        """The flow's concurrency limit now (over its lanes), None while it has none."""
        lanes = self.flows.get(flow_id)
        return None if not lanes else sum(lane.current_limit for lane in lanes.values())

    async def flow_changed(self, flow_id: str) -> None:
        """Level-based: make the flow's lanes match the registry (a destination changed in
        what it is or where it goes gets a new lane; the others keep their limits)."""
        flow = self.registry.get(flow_id)
        current = self.flows.get(flow_id)
        if flow is None or not flow.running:
            if current is not None:
                del self.flows[flow_id]
                await self._stop(list(current.values()))
                if flow is not None:
                    await self.runtime.scale(flow, 0)
            return
        if current is None:
            if await self.has_work(flow_id):
                self.notify(flow_id)
            return
        wanted = {d.name: d for d in flow.spec.routes}
        gone = [
            lane
            for name, lane in current.items()
            if _target(wanted.get(name)) != _target(lane.destination)
        ]
        await self._stop(gone)
        for lane in gone:
            del current[lane.destination.name]
        current.update(self._lanes(flow, [d for n, d in wanted.items() if n not in current]))
        for lane in current.values():
            if flow.spec.concurrency != lane.flow.spec.concurrency:
                lane.slots.reset(pinned=flow.spec.pinned() is not None)
            lane.flow, lane.destination = flow, wanted[lane.destination.name]
            if lane.wanted and flow.mode is Mode.ASYNC:
                await self.runtime.scale(flow, lane.wanted)
            lane.notify()

    @staticmethod
    async def _stop(lanes: list[Lane]) -> None:
        await asyncio.gather(*(lane.stop(grace=float(lane.flow.spec.timeout)) for lane in lanes))

    async def close(self, *, grace: float = 10.0) -> None:
        lanes = [lane for flow in self.flows.values() for lane in flow.values()]
        await asyncio.gather(*(lane.stop(grace=grace) for lane in lanes))
        self.flows.clear()
        self.cpu.close()


def _target(destination: Destination | None) -> tuple[object, ...] | None:
    """What makes a lane: its kind and where it sends (filters, retries, rates may change)."""
    if destination is None:
        return None
    return (destination.kind, destination.url, destination.rabbitmq, destination.nats)
