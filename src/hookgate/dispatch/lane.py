"""One destination of a running flow: lease its due deliveries, send them, record outcomes.

``Lane`` sends to the flow's own workers: it asks the runtime for workers only while work waits
(on demand, up to ``max_workers``), keeps at most the flow's ``concurrency`` in flight per
worker (a pinned number, or the limit ``domain.concurrency`` finds by measuring), and scales
to zero after ``idle_timeout`` without work. ``SenderLane`` (``dispatch.sender_lane``) sends
to a URL or a broker through a ``Sender``, with the same limiter on one virtual endpoint.
What an answer means (done, retry when, dead) is decided by the pure rules in
``domain.backoff``; a destination's ``rate_limit`` is a token bucket in the store
(``domain.pacing``), its ``Retry-After`` pauses are the lane's.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING

import msgspec

from hookgate import logs
from hookgate.domain.answers import answer_of
from hookgate.domain.backoff import Verdict, next_delay, parse_retry_after, verdict
from hookgate.domain.concurrency import Slots
from hookgate.domain.deliveries import POLL_SOURCE, Attempt, Delivery
from hookgate.domain.destinations import Destination, RetryPolicy
from hookgate.domain.filters import Filter
from hookgate.domain.flows import Flow, Mode
from hookgate.domain.forwarding import Reply, outbound
from hookgate.domain.routing import filters, unmet
from hookgate.domain.schedule import MAX_SNAPSHOT, snapshot_of
from hookgate.errors import StoreError
from hookgate.runtime.base import Endpoint
from hookgate.tracing import TRACE_HEADERS, Attributes

if TYPE_CHECKING:
    from hookgate.dispatch.dispatcher import Dispatcher

log = logs.get("hookgate.dispatch")

LEASE_MARGIN = 5.0
PIPELINE = 4
"""Plain deliveries to one worker sent as one exchange: the transport may pipeline them."""
RESYNC = 2.0
STORE_BACKOFF = 1.0


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


class Lane:
    """The delivery loop of one destination: the flow's own workers."""

    def __init__(self, owner: Dispatcher, flow: Flow, destination: Destination) -> None:
        self.owner = owner
        self.flow = flow
        self.destination = destination
        self.paused_until = 0.0
        """This gateway's pause on the destination (``Retry-After``); the rate is the store's."""
        self.bucket = f"{flow.id}/{destination.name}"
        self.wake = asyncio.Event()
        self.pending = False
        self.timers: list[float] = []
        """When work falls due (a heap): every retry's time is kept, not only the earliest,
        or a later one would be forgotten once the earliest fired."""
        self.slots: Slots[Endpoint] = Slots(pinned=flow.spec.pinned() is not None)
        self.tasks: set[asyncio.Task[None]] = set()
        self.idle_since = time.monotonic()
        self.wanted = 0
        self.generation = 0
        self.task = asyncio.create_task(
            self._run(), name=f"dispatch-{flow.name}-{destination.name}"
        )

    def notify(self, at: float | None = None) -> None:
        """Work is due now (``at`` None or past) or at ``at`` (a retry's backoff)."""
        self.generation += 1
        if at is None or at <= time.time():
            self.pending = True
        else:
            heapq.heappush(self.timers, at)
        self.wake.set()

    def _due(self) -> bool:
        now = time.time()
        while self.timers and self.timers[0] <= now:
            heapq.heappop(self.timers)
            self.pending = True
        return self.pending

    @property
    def busy(self) -> int:
        return self.slots.busy

    @property
    def retry(self) -> RetryPolicy:
        return self.destination.retry or self.flow.spec.retry

    def endpoints(self) -> list[Endpoint]:
        """Where deliveries can go now: the flow's ready workers."""
        return self.owner.runtime.endpoints(self.flow.id)

    async def _run(self) -> None:
        while True:
            self.wake.clear()
            spec = self.flow.spec
            due = self._due()
            # After ``_due``: a timer judged due must find its delivery due at ``now`` too.
            now = time.time()
            endpoints = self.endpoints()
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
        if not (self.pending or self.busy or self.wanted or self.timers):
            await self.wake.wait()
            return
        timeout = RESYNC
        if self.timers:
            timeout = min(timeout, max(0.0, self.timers[0] - time.time()))
        if self.wanted and not self.busy:
            remaining = self.flow.spec.idle_timeout - (time.monotonic() - self.idle_since)
            timeout = min(timeout, max(0.01, remaining))
        if self.pending and not self.wake.is_set():
            # No endpoint yet: an async worker is starting (look often); a sync flow's
            # replicas are restarting, which takes longer.
            starting = self.flow.mode is Mode.ASYNC
            endpoints = self.endpoints()
            timeout = min(timeout, 0.05 if endpoints or not starting else 0.005)
        # Not ``wait_for``: on Python 3.11 it can swallow a cancel that arrives as the event is
        # set, and ``stop()`` then waits for this loop forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wake.wait()

    @property
    def current_limit(self) -> int:
        """The flow's limit now: the sum over its ready endpoints (for metrics and display)."""
        return self.slots.total(self.endpoints())

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
        granted = await self._allowed(free, now)
        if not granted:
            self.pending = False
            self.notify(self._next_try(now))
            return
        try:
            batch = await self.owner.store.lease(
                self.flow.id,
                destination=self.destination.name,
                limit=granted,
                lease_for=spec.timeout + LEASE_MARGIN,
                now=now,
            )
        except StoreError as exc:
            await self._give_back(granted)
            log.warning("lease failed", flow=self.flow.name, error=str(exc))
            self.pending = False
            self.notify(time.time() + STORE_BACKOFF)
            return
        await self._give_back(granted - len(batch))
        if self.destination.rate_limit and len(batch) == granted < free:
            # The bucket, not the queue, ran out: look again when the next token is in.
            self.notify(self._next_try(time.time()))
        elif len(batch) < granted and generation == self.generation:
            self.pending = False
        elif self._may_grow(endpoints) and self._ready(endpoints) >= self.wanted:
            await self._want(min(spec.max_workers, self._ready(endpoints) + 1))
        # A full batch means more work waits: the limit, not the demand, decides the pace.
        limited = len(batch) >= free
        groups: dict[Endpoint, list[tuple[Delivery, bool]]] = {}
        pipelining = self.owner.transport.pipelining
        for delivery in batch:
            # A limit may have fallen while leasing; a leased delivery is sent all the same.
            endpoint = self.slots.pick(endpoints) or min(
                endpoints, key=lambda e: self.slots.inflight.get(e, 0)
            )
            busy = self.slots.take(endpoint) or limited
            if self._plain(delivery) and pipelining(endpoint):
                group = groups.setdefault(endpoint, [])
                group.append((delivery, busy))
                if len(group) < PIPELINE:
                    continue
                del groups[endpoint]
                self._spawn(self._deliver_many(endpoint, group))
            else:
                self._spawn(self._deliver(delivery, endpoint, busy))
        for endpoint, group in groups.items():
            self._spawn(self._deliver_many(endpoint, group))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _plain(self, delivery: Delivery) -> bool:
        """A delivery that may share a pipelined write with others (to a worker that answers
        fast, ``WorkerTransport.pipelining``): no poll run, no caller waiting for its answer,
        no span to record, no filter to judge first."""
        return (
            delivery.source != POLL_SOURCE
            and delivery.status_token is None
            and not self.owner.tracing.enabled
            and self.flow.spec.filter is None
            and self.destination.filter is None
        )

    async def _deliver_many(self, endpoint: Endpoint, group: list[tuple[Delivery, bool]]) -> None:
        """Plain deliveries to one endpoint in one pipelined exchange (``send_many``). Their
        slots are free once the worker has answered: the outcomes are written (together, in
        one store frame) while the next batch is already on its way, instead of every slot
        waiting for a commit."""
        started, clock = time.time(), time.perf_counter()
        spec = self.flow.spec
        try:
            requests = [outbound(delivery, spec.delivery) for delivery, _ in group]
            replies = await self.owner.transport.send_many(endpoint, requests, timeout=spec.timeout)
            for (_, busy), reply in zip(group, replies, strict=True):
                self._measured(endpoint, reply, busy)
        finally:
            for _ in group:
                self.slots.release(endpoint)
            self.wake.set()
        took = time.perf_counter() - clock
        await asyncio.gather(
            *(
                self._record(delivery, reply, started, took)
                for (delivery, _), reply in zip(group, replies, strict=True)
            )
        )

    async def _allowed(self, free: int, now: float) -> int:
        """How many deliveries may start now: none while paused, else what the destination's
        rate limit (a bucket in the store, shared by every gateway) grants."""
        if now < self.paused_until:
            return 0
        rate = self.destination.rate_limit
        if rate is None or not free:
            return free
        try:
            return await self.owner.store.take_tokens(self.bucket, free, rate=rate, now=now)
        except StoreError:
            return 0

    async def _give_back(self, unused: int) -> None:
        """Tokens granted for deliveries the queue did not have go back to the bucket."""
        rate = self.destination.rate_limit
        if rate is not None and unused > 0:
            with contextlib.suppress(StoreError):
                await self.owner.store.take_tokens(self.bucket, -unused, rate=rate, now=time.time())

    def _next_try(self, now: float) -> float:
        """When to ask the bucket again: after the pause, and one token's time from now."""
        rate = self.destination.rate_limit
        return max(self.paused_until, now + (1 / rate.per_second if rate else 0.0))

    def start_failed(self, reason: str) -> None:
        """A worker asked for could not start: the delivery that waits longest for one takes
        the failure as an attempt, so deliveries move through retries to dead letters as
        for any other failure instead of waiting for a worker that never comes."""
        if self.wanted and not self.endpoints():
            self._spawn(self._fail_one(reason))

    async def _fail_one(self, reason: str) -> None:
        now = time.time()
        try:
            batch = await self.owner.store.lease(
                self.flow.id,
                destination=self.destination.name,
                limit=1,
                lease_for=LEASE_MARGIN,
                now=now,
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
        held = True
        try:
            where = filters(flow.spec, self.destination)
            if where and not poll and (unwanted := unmet(where, delivery)) is not None:
                await self._filtered(delivery, unwanted, started)
                return
            snapshot = await owner.store.snapshot(flow.id) if poll else None
            traced = owner.tracing.enabled
            with owner.tracing.span(
                "hookgate.deliver",
                kind="client",
                parent=_trace_headers(delivery) if traced else None,
                attributes=_span_attributes(flow, delivery, endpoint) if traced else None,
            ) as span:
                keep = MAX_SNAPSHOT + 1 if poll else flow.spec.max_answer + 1
                reply = await self._send(
                    endpoint, delivery, snapshot, keep if poll or delivery.status_token else 0
                )
                if reply.status is not None:
                    span.set("http.response.status_code", reply.status)
                if reply.error is not None or (reply.status or 500) >= 400:
                    span.fail(reply.error or f"the worker answered {reply.status}")
            self._measured(endpoint, reply, busy)
            took = time.perf_counter() - clock
            if poll:
                if reply.status is not None and 200 <= reply.status < 300:
                    # Saved before the run counts as done, so the next run always gets it.
                    await self._keep_snapshot(reply)
            else:
                # The destination has answered: its slot is free while the outcome is written
                # (the lease still guards the delivery), as for a pipelined group.
                held = False
                self.slots.release(endpoint)
                self.wake.set()
            await self._record(delivery, reply, started, took)
        except StoreError as exc:
            log.warning(
                "store unavailable for a poll run; it is retried", flow=flow.name, error=str(exc)
            )
        finally:
            if held:
                self.slots.release(endpoint)
                self.wake.set()

    async def _filtered(self, delivery: Delivery, unwanted: Filter, started: float) -> None:
        """Recorded, not sent: the attempt says which filter did not hold (the verdict the
        console and the API show)."""
        attempt = Attempt(
            number=delivery.attempts,
            started_at=started,
            duration_ms=0.0,
            response=f"filtered: {unwanted.source} did not hold",
        )
        self.owner.metrics.filtered.labels(self.flow.name, self.destination.name).inc()
        try:
            await self.owner.store.filter_out(delivery, attempt)
        except StoreError as exc:
            log.error(
                "cannot record a filtered delivery; the lease will expire and it is judged again",
                flow=self.flow.name,
                delivery=delivery.id,
                error=str(exc),
            )
            return
        if delivery.order_key is not None:
            self.notify()  # the next delivery of its key may go now

    async def _send(
        self, endpoint: Endpoint, delivery: Delivery, snapshot: bytes | None, keep_body: int
    ) -> Reply:
        """To a worker: the request built here (with the trace context when tracing is on)."""
        request = outbound(delivery, self.flow.spec.delivery, snapshot)
        if self.owner.tracing.enabled:
            request = msgspec.structs.replace(
                request, headers=self.owner.tracing.propagate(request.headers)
            )
        return await self.owner.transport.send(
            endpoint, request, timeout=self.flow.spec.timeout, keep_body=keep_body
        )

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
        policy = self.retry
        attempt = Attempt(
            number=delivery.attempts,
            started_at=started,
            duration_ms=round(took * 1000, 3),
            status_code=reply.status,
            error=reply.error,
            response=reply.head.decode("utf-8", errors="replace"),
        )
        outcome = verdict(reply.status, attempt=delivery.attempts, policy=policy)
        store, metrics = self.owner.store, self.owner.metrics
        answer = None
        if delivery.status_token is not None:
            answer = answer_of(reply.status, reply.headers, reply.body, spec.max_answer)
            # A waiting caller gets a final answer (done, or refused for good) at once.
            self.owner.waiters.settle(delivery.id, None if outcome is Verdict.RETRY else answer)
        name = self.destination.name
        metrics.delivery_seconds.labels(self.flow.name, name).observe(took)
        metrics.deliveries.labels(self.flow.name, name, outcome.value).inc()
        try:
            if outcome is Verdict.DONE:
                if answer is not None:
                    await store.keep_answer(delivery, answer.encode())
                await store.complete(delivery, attempt)
            else:
                extra: dict[str, float] = {}
                if outcome is Verdict.DEAD:
                    await store.bury(delivery, attempt)
                else:
                    now = time.time()
                    retry_after = parse_retry_after(reply.header("retry-after"), now=now)
                    self._pause(reply, retry_after, now)
                    delay = next_delay(
                        attempt=delivery.attempts, policy=policy, retry_after=retry_after
                    )
                    await store.retry(delivery, attempt, next_at=now + delay)
                    self.notify(now + delay)
                    extra["retry_in"] = round(delay, 3)
                (log.warning if outcome is Verdict.DEAD else log.info)(
                    f"delivery {outcome.value}",
                    flow=self.flow.name,
                    destination=name,
                    delivery=delivery.id,
                    attempt=delivery.attempts,
                    status=reply.status,
                    error=reply.error,
                    **extra,
                )
            if delivery.order_key is not None and outcome is not Verdict.RETRY:
                self.notify()  # the next delivery of its key may go now
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
            destination=name,
            deliveryId=delivery.id,
            requestId=delivery.request_id,
            attempt=delivery.attempts,
            status=reply.status,
            error=reply.error,
            outcome=outcome.value,
            ms=attempt.duration_ms,
            answer=attempt.response,
        )

    def _pause(self, reply: Reply, retry_after: float | None, now: float) -> None:
        """The flow's workers: ``Retry-After`` lowers the limit (``_measured``) and delays
        that delivery; other destinations pause as a whole (``SenderLane``)."""

    async def stop(self, *, grace: float) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=grace)
        for task in self.tasks:
            task.cancel()
