"""Async delivery: per flow, lease due deliveries, send them to workers, record the outcome.

One task per running async flow. It asks the runtime for workers only while work waits
(on demand, up to ``max_workers``), keeps at most the flow's ``concurrency`` in flight per
worker (a pinned number, or the limit ``domain.concurrency`` finds by measuring), and scales
to zero after ``idle_timeout`` without work. What an answer means
(done, retry when, dead) is decided by the pure rules in ``domain.backoff``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec

from hookgate import logs
from hookgate.dispatch.waiters import Waiters
from hookgate.domain.answers import answer_of
from hookgate.domain.backoff import Verdict, next_delay, parse_retry_after, verdict
from hookgate.domain.concurrency import Slots
from hookgate.domain.deliveries import POLL_SOURCE, Attempt, Delivery
from hookgate.domain.flows import Flow, Mode
from hookgate.domain.forwarding import Reply, outbound
from hookgate.domain.schedule import MAX_SNAPSHOT, snapshot_of
from hookgate.errors import StoreError
from hookgate.events import EventHub
from hookgate.metrics import Metrics
from hookgate.registry import FlowRegistry
from hookgate.runtime.base import Endpoint, Runtime
from hookgate.store.base import QueueStats, Store
from hookgate.tracing import TRACE_HEADERS, Attributes, Tracing
from hookgate.transport.base import WorkerTransport

log = logs.get("hookgate.dispatch")

LEASE_MARGIN = 5.0
RESYNC = 2.0
STORE_BACKOFF = 1.0
STATS_TTL = 0.1
CPU_WINDOW = 0.5
SATURATED = 0.85
MIN_IDLE = 0.15


def machine_idle() -> tuple[float, float] | None:
    """Linux: the machine's idle and total CPU time so far (``/proc/stat``), else None."""
    try:
        with open("/proc/stat", "rb") as stat:
            fields = [float(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0.0), sum(fields)


def _share(now: tuple[float, float] | None, before: tuple[float, float] | None) -> float | None:
    """The idle share of the machine's CPU between two ``machine_idle`` readings."""
    if now is None or before is None or now[1] <= before[1]:
        return None
    return (now[0] - before[0]) / (now[1] - before[1])


def overloaded(reply: Reply) -> bool:
    """A worker that says it has too much, or does not answer in time."""
    return reply.status in (429, 503) or reply.timed_out


def _trace_headers(delivery: Delivery) -> list[tuple[bytes, bytes]]:
    """The stored request's ``traceparent``: the request span it was accepted under."""
    pairs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in delivery.headers]
    return [(k, v) for k, v in pairs if k in TRACE_HEADERS]


def _span_attributes(flow: Flow, delivery: Delivery, endpoint: Endpoint) -> Attributes:
    """Built only when tracing is on: the drain path does not pay for it otherwise."""
    return {
        "hookgate.flow": flow.name,
        "hookgate.delivery_id": delivery.id,
        "hookgate.attempt": delivery.attempts,
        "server.address": endpoint.host,
        "server.port": endpoint.port,
    }


class FlowDispatcher:
    """The delivery loop of one async flow."""

    def __init__(self, owner: Dispatcher, flow: Flow) -> None:
        self.owner = owner
        self.flow = flow
        self.wake = asyncio.Event()
        self.pending = False
        self.timer: float | None = None
        self.slots: Slots[Endpoint] = Slots(pinned=flow.spec.pinned() is not None)
        self.tasks: set[asyncio.Task[None]] = set()
        self.idle_since = time.monotonic()
        self.wanted = 0
        self.generation = 0
        self.task = asyncio.create_task(self._run(), name=f"dispatch-{flow.name}")

    def notify(self, at: float | None = None) -> None:
        """Work is due now (``at`` None or past) or at ``at`` (a retry's backoff)."""
        self.generation += 1
        if at is None or at <= time.time():
            self.pending = True
        else:
            self.timer = at if self.timer is None else min(self.timer, at)
        self.wake.set()

    def _due(self) -> bool:
        if self.timer is not None and self.timer <= time.time():
            self.timer = None
            self.pending = True
        return self.pending

    @property
    def busy(self) -> int:
        return self.slots.busy

    async def _run(self) -> None:
        runtime = self.owner.runtime
        while True:
            self.wake.clear()
            now = time.time()
            spec = self.flow.spec
            due = self._due()
            endpoints = runtime.endpoints(self.flow.id)
            self.slots.forget(endpoints)
            capacity = self.slots.total(endpoints)
            free = capacity - self.busy
            if due and endpoints:
                # Lease in batches, the next while the last is in flight: a quarter of the
                # slots free is enough (one store round trip per batch, never an empty pipe).
                if free > 0 and (self.busy == 0 or free * 4 >= capacity):
                    await self._lease(endpoints, free, now)
                elif free <= 0 and self._may_grow(endpoints):
                    await self._want(min(spec.max_workers, self._ready(endpoints) + 1))
            elif due:
                if self.wanted or await self.owner.has_work(self.flow.id):
                    await self._want(max(self.wanted, 1))
                else:
                    self.pending = False
            if self.busy or self.pending:
                self.idle_since = time.monotonic()
            elif self.wanted and time.monotonic() - self.idle_since >= spec.idle_timeout:
                await self._want(0)
            await self._sleep()

    async def _sleep(self) -> None:
        if not (self.pending or self.busy or self.wanted or self.timer is not None):
            await self.wake.wait()
            return
        timeout = RESYNC
        if self.timer is not None:
            timeout = min(timeout, max(0.0, self.timer - time.time()))
        if self.wanted and not self.busy:
            remaining = self.flow.spec.idle_timeout - (time.monotonic() - self.idle_since)
            timeout = min(timeout, max(0.01, remaining))
        if self.pending and not self.wake.is_set():
            # No endpoint yet: an async worker is starting (look often); a sync flow's
            # replicas are restarting, which takes longer.
            starting = self.flow.mode is Mode.ASYNC
            endpoints = self.owner.runtime.endpoints(self.flow.id)
            timeout = min(timeout, 0.05 if endpoints or not starting else 0.005)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)

    @property
    def current_limit(self) -> int:
        """The flow's limit now: the sum over its ready endpoints (for metrics and display)."""
        return self.slots.total(self.owner.runtime.endpoints(self.flow.id))

    def _may_grow(self, endpoints: list[Endpoint]) -> bool:
        """One more worker, while work waits: only once the workers' limits have found their
        knees (until then a higher limit is the cheaper way to more throughput), and not while
        the gateway itself is the bottleneck (then another process of a fast worker only takes
        CPU from the gateway: measured, twice the CPU per delivery on a 2-core machine)."""
        return (
            self.wanted < self.flow.spec.max_workers
            and self.slots.settled(endpoints)
            and not self.owner.saturated()
        )

    def _ready(self, endpoints: list[Endpoint]) -> int:
        """Ready workers, whether each has its endpoint (local) or share one (a Service)."""
        return sum(e.capacity for e in endpoints) // self.flow.spec.slots

    async def _want(self, workers: int) -> None:
        if self.flow.mode is Mode.SYNC:
            return  # its workers run at all times (``replicas``): deliveries share them
        if workers != self.wanted:
            self.wanted = workers
            log.info("scaling workers", flow=self.flow.name, workers=workers)
            await self.owner.runtime.scale(self.flow, workers)

    async def _lease(self, endpoints: list[Endpoint], free: int, now: float) -> None:
        spec = self.flow.spec
        generation = self.generation
        try:
            batch = await self.owner.store.lease(
                self.flow.id, limit=free, lease_for=spec.timeout + LEASE_MARGIN, now=now
            )
        except StoreError as exc:
            log.warning("lease failed", flow=self.flow.name, error=str(exc))
            self.pending = False
            self.notify(time.time() + STORE_BACKOFF)
            return
        if len(batch) < free and generation == self.generation:
            self.pending = False
        elif self._may_grow(endpoints) and self._ready(endpoints) >= self.wanted:
            await self._want(min(spec.max_workers, self._ready(endpoints) + 1))
        # A full batch means more work waits: the limit, not the demand, decides the pace.
        limited = len(batch) >= free
        for delivery in batch:
            # A limit may have fallen while leasing; a leased delivery is sent all the same.
            endpoint = self.slots.pick(endpoints) or min(
                endpoints, key=lambda e: self.slots.inflight.get(e, 0)
            )
            busy = self.slots.take(endpoint) or limited
            task = asyncio.create_task(self._deliver(delivery, endpoint, busy))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def start_failed(self, reason: str) -> None:
        """A worker asked for could not start: the delivery that waits longest for one takes
        the failure as an attempt, so deliveries move through retries to dead letters as
        for any other failure instead of waiting for a worker that never comes."""
        if self.wanted and not self.owner.runtime.endpoints(self.flow.id):
            task = asyncio.create_task(self._fail_one(reason))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _fail_one(self, reason: str) -> None:
        now = time.time()
        try:
            batch = await self.owner.store.lease(
                self.flow.id, limit=1, lease_for=LEASE_MARGIN, now=now
            )
        except StoreError as exc:
            log.warning("lease failed", flow=self.flow.name, error=str(exc))
            return
        for delivery in batch:
            await self._record(delivery, Reply(status=None, error=reason), now, 0.0)

    async def _deliver(self, delivery: Delivery, endpoint: Endpoint, busy: bool) -> None:
        owner, flow = self.owner, self.flow
        poll = delivery.source == POLL_SOURCE
        started, clock = time.time(), time.perf_counter()
        try:
            snapshot = await owner.store.snapshot(flow.id) if poll else None
            traced = owner.tracing.enabled
            with owner.tracing.span(
                "hookgate.deliver",
                kind="client",
                parent=_trace_headers(delivery) if traced else None,
                attributes=_span_attributes(flow, delivery, endpoint) if traced else None,
            ) as span:
                request = outbound(delivery, flow.spec.delivery, snapshot)
                if traced:
                    request = msgspec.structs.replace(
                        request, headers=owner.tracing.propagate(request.headers)
                    )
                reply = await owner.transport.send(
                    endpoint,
                    request,
                    timeout=flow.spec.timeout,
                    keep_body=MAX_SNAPSHOT + 1
                    if poll
                    else (flow.spec.max_answer + 1 if delivery.status_token else 0),
                )
                if reply.status is not None:
                    span.set("http.response.status_code", reply.status)
                if reply.error is not None or (reply.status or 500) >= 400:
                    span.fail(reply.error or f"the worker answered {reply.status}")
            self._measured(endpoint, reply, busy)
            if poll and reply.status is not None and 200 <= reply.status < 300:
                # Saved before the run counts as done, so the next run always gets it.
                await self._keep_snapshot(reply)
            await self._record(delivery, reply, started, time.perf_counter() - clock)
        except StoreError as exc:
            log.warning(
                "store unavailable for a poll run; it is retried", flow=flow.name, error=str(exc)
            )
        finally:
            self.slots.release(endpoint)
            self.wake.set()

    def _measured(self, endpoint: Endpoint, reply: Reply, busy: bool) -> None:
        """Feed the answer to the limiter: an overloaded worker lowers it at once, and a
        ``Retry-After`` lowers it for every worker of the flow (the flow's backend is full)."""
        self.slots.measured(
            endpoint,
            busy=busy,
            overloaded=overloaded(reply),
            everyone=reply.header("retry-after") is not None,
            now=time.monotonic(),
        )

    async def _keep_snapshot(self, reply: Reply) -> None:
        """A poll run's 2xx answer may carry the snapshot for the next run; garbage is ignored.

        An empty answer (a 204: nothing new) is the usual idle run and is not logged.
        """
        snapshot = snapshot_of(reply.body)
        if snapshot is None:
            if reply.body:
                log.info(
                    "poll run returned no usable snapshot; the previous one is kept",
                    flow=self.flow.name,
                )
            return
        await self.owner.store.set_snapshot(self.flow.id, snapshot)

    async def _record(self, delivery: Delivery, reply: Reply, started: float, took: float) -> None:
        spec = self.flow.spec
        attempt = Attempt(
            number=delivery.attempts,
            started_at=started,
            duration_ms=round(took * 1000, 3),
            status_code=reply.status,
            error=reply.error,
            response=reply.head.decode("utf-8", errors="replace"),
        )
        outcome = verdict(reply.status, attempt=delivery.attempts, policy=spec.retry)
        store, metrics = self.owner.store, self.owner.metrics
        answer = None
        if delivery.status_token is not None:
            answer = answer_of(reply.status, reply.headers, reply.body, spec.max_answer)
            # A waiting caller gets a final answer (done, or refused for good) at once.
            self.owner.waiters.settle(delivery.id, None if outcome is Verdict.RETRY else answer)
        metrics.delivery_seconds.labels(self.flow.name).observe(took)
        metrics.deliveries.labels(self.flow.name, outcome.value).inc()
        try:
            if outcome is Verdict.DONE:
                if answer is not None:
                    await store.keep_answer(delivery, answer.encode())
                await store.complete(delivery, attempt)
            elif outcome is Verdict.DEAD:
                await store.bury(delivery, attempt)
                log.warning(
                    "delivery dead",
                    flow=self.flow.name,
                    delivery=delivery.id,
                    attempt=delivery.attempts,
                    status=reply.status,
                    error=reply.error,
                )
            else:
                now = time.time()
                delay = next_delay(
                    attempt=delivery.attempts,
                    policy=spec.retry,
                    retry_after=parse_retry_after(reply.header("retry-after"), now=now),
                )
                await store.retry(delivery, attempt, next_at=now + delay)
                self.notify(now + delay)
                log.info(
                    "delivery retry",
                    flow=self.flow.name,
                    delivery=delivery.id,
                    attempt=delivery.attempts,
                    status=reply.status,
                    error=reply.error,
                    retry_in=round(delay, 3),
                )
        except StoreError as exc:
            log.error(
                "cannot record delivery outcome; the lease will expire and it is retried",
                flow=self.flow.name,
                delivery=delivery.id,
                error=str(exc),
            )
        # Published once the store has the outcome, so readers see it.
        self.owner.events.publish(
            "delivery",
            flowId=self.flow.id,
            flow=self.flow.name,
            deliveryId=delivery.id,
            requestId=delivery.request_id,
            attempt=delivery.attempts,
            status=reply.status,
            error=reply.error,
            outcome=outcome.value,
            ms=attempt.duration_ms,
            answer=attempt.response,
        )

    async def stop(self, *, grace: float) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=grace)
        for task in self.tasks:
            task.cancel()


class Dispatcher:
    def __init__(
        self,
        *,
        registry: FlowRegistry,
        store: Store,
        runtime: Runtime,
        transport: WorkerTransport,
        metrics: Metrics,
        events: EventHub | None = None,
        tracing: Tracing | None = None,
        waiters: Waiters | None = None,
    ) -> None:
        self.events = events or EventHub()
        self.waiters = waiters or Waiters()
        self.tracing = tracing or Tracing()
        self.registry = registry
        self.store = store
        self.runtime = runtime
        self.transport = transport
        self.metrics = metrics
        self.flows: dict[str, FlowDispatcher] = {}
        self._cpu = (time.process_time(), time.monotonic())
        self._machine = machine_idle()
        self._busy = 0.0
        self._idle: float | None = None
        self._stats: asyncio.Task[dict[str, QueueStats]] | None = None
        self._stats_at = 0.0

    def saturated(self) -> bool:
        """Whether another worker would only compete for CPU: this process used most of a
        core over the last half second, or (workers on this machine) the machine had little
        idle CPU left."""
        wall = time.monotonic()
        if wall - self._cpu[1] >= CPU_WINDOW:
            cpu, idle = time.process_time(), machine_idle()
            self._busy = (cpu - self._cpu[0]) / (wall - self._cpu[1])
            self._idle = _share(idle, self._machine)
            self._cpu, self._machine = (cpu, wall), idle
        spare = self._idle is None or self._idle >= MIN_IDLE or not self.runtime.shares_cpu
        return self._busy >= SATURATED or not spare

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

        A flow's delivery loop exists only once it has had work, so 100,000 idle flows cost
        nothing. A sync flow has one too once a request to it is stored (``Prefer:
        respond-async``, ``fallback: async``): it delivers to the flow's running workers.
        """
        dispatcher = self.flows.get(flow_id)
        if dispatcher is None:
            flow = self.registry.get(flow_id)
            if flow is None or not flow.running:
                return
            dispatcher = self.flows[flow_id] = FlowDispatcher(self, flow)
        dispatcher.notify(at)

    def start_failed(self, flow_id: str, reason: str) -> None:
        """A worker of the flow could not start (see ``FlowDispatcher.start_failed``)."""
        dispatcher = self.flows.get(flow_id)
        if dispatcher is not None:
            dispatcher.start_failed(reason)

    def inflight(self, endpoint: Endpoint) -> int:
        return sum(d.slots.inflight.get(endpoint, 0) for d in self.flows.values())

    def limit(self, flow_id: str) -> int | None:
        """The flow's concurrency limit now, None while it has no delivery loop."""
        dispatcher = self.flows.get(flow_id)
        return None if dispatcher is None else dispatcher.current_limit

    async def flow_changed(self, flow_id: str) -> None:
        """Level-based: make the set of flow loops match the registry."""
        flow = self.registry.get(flow_id)
        current = self.flows.get(flow_id)
        if flow is None or not flow.running:
            if current is not None:
                del self.flows[flow_id]
                await current.stop(grace=float(current.flow.spec.timeout))
                if flow is not None:
                    await self.runtime.scale(current.flow, 0)
            return
        if current is not None:
            if flow.spec.concurrency != current.flow.spec.concurrency:
                current.slots.reset(pinned=flow.spec.pinned() is not None)
            current.flow = flow
            if current.wanted and flow.mode is Mode.ASYNC:
                await self.runtime.scale(flow, current.wanted)
            current.notify()
        elif await self.has_work(flow_id):
            self.notify(flow_id)

    async def close(self, *, grace: float = 10.0) -> None:
        await asyncio.gather(*(d.stop(grace=grace) for d in self.flows.values()))
        self.flows.clear()
