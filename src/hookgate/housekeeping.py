"""What the gateway does on the side, on timers: the queue and worker gauges (with a safety
net that wakes flows whose due work was missed) and retention (purging finished deliveries)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from hookgate.dispatch import Dispatcher
from hookgate.domain.flows import Mode
from hookgate.errors import StoreError
from hookgate.ingress.protocol import Edge
from hookgate.metrics import Metrics
from hookgate.proxy import SyncProxy
from hookgate.registry import FlowRegistry
from hookgate.runtime.base import Runtime, WorkerStatus, flow_state
from hookgate.store.base import QueueStats, Store

STATS_EVERY = 5.0
PURGE_EVERY = 60.0
FULL_PURGE_EVERY = 60


class Housekeeping:
    def __init__(
        self,
        *,
        store: Store,
        registry: FlowRegistry,
        runtime: Runtime,
        dispatcher: Dispatcher,
        proxy: SyncProxy,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.registry = registry
        self.runtime = runtime
        self.dispatcher = dispatcher
        self.proxy = proxy
        self.metrics = metrics

    def concurrency_limit(self, flow_id: str) -> int | None:
        """The flow's limit now (its async lanes', else its sync lane's), None before it has
        one: what the gauge, the admin API and the console show."""
        return self.dispatcher.limit(flow_id) or self.proxy.limit(flow_id)

    async def stats(self, edges: Callable[[], Sequence[Edge]]) -> None:
        """Queue and worker gauges, and a safety net that wakes flows with due work.

        Only flows with something to report are visited, so 100,000 idle flows cost nothing.
        """
        reported: set[str] = set()
        while True:
            with contextlib.suppress(StoreError):
                stats = await self.store.queue_stats()
                now = time.time()
                watched = (
                    stats.keys()
                    | reported
                    | self.dispatcher.flows.keys()
                    | {f.id for f in self.registry.by_id.values() if f.mode is Mode.SYNC}
                )
                for flow_id in watched:
                    flow = self.registry.get(flow_id)
                    if flow is None:
                        continue
                    s = stats.get(flow_id)
                    if s is not None and s.next_due_at is not None and s.next_due_at <= now:
                        self.dispatcher.notify(flow_id, s.next_due_at)
                    workers = self.runtime.status(flow_id)
                    _report(self.metrics, flow.name, workers, s, now)
                    failing = flow_state(flow, workers) == "failing"
                    self.metrics.flow_failing.labels(flow.name).set(failing)
                    limit = self.concurrency_limit(flow_id)
                    if limit is not None:
                        self.metrics.concurrency_limit.labels(flow.name).set(limit)
                reported = set(watched)
            for edge in edges():
                self.metrics.connections.labels(edge.name).set(len(edge.open))
            await asyncio.sleep(STATS_EVERY)

    async def purge(self) -> None:
        """Retention: done and filtered deliveries go after the flow's ``retention``, in batches.

        Every minute for the flows that had work here, every hour for all of them.
        """
        rounds = 0
        while True:
            await asyncio.sleep(PURGE_EVERY)
            everyone = rounds % FULL_PURGE_EVERY == 0
            rounds += 1
            flow_ids = list(self.registry.by_id if everyone else self.dispatcher.flows)
            for flow_id in flow_ids:
                flow = self.registry.get(flow_id)
                if flow is None:
                    continue
                with contextlib.suppress(StoreError):
                    while await self.store.purge(
                        flow_id=flow.id, done_before=time.time() - flow.spec.retention
                    ):
                        await asyncio.sleep(0)


def _report(
    metrics: Metrics, name: str, workers: WorkerStatus, queue: QueueStats | None, now: float
) -> None:
    metrics.queue_depth.labels(name).set(queue.depth + queue.leased if queue else 0)
    oldest = queue.oldest_received_at if queue else None
    metrics.queue_oldest_seconds.labels(name).set(now - oldest if oldest else 0)
    metrics.workers.labels(name, "ready").set(workers.ready)
    metrics.workers.labels(name, "starting").set(workers.starting)
