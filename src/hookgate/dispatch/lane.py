"""One destination of a running flow: lease its due deliveries, send them, record outcomes.

``Lane`` sends to the flow's own workers: it asks the runtime for workers only while work waits
(on demand, up to ``max_workers``), keeps at most the flow's ``concurrency`` in flight per
worker (a pinned number, or the limit ``domain.concurrency`` finds by measuring), and scales
to zero after ``idle_timeout`` without work. ``SenderLane`` (``dispatch.sender_lane``) sends
to a URL or a broker through a ``Sender``, with the same limiter on one virtual endpoint.
Leasing and pacing are here; sending and recording are ``dispatch.delivering``'s. A
destination's ``rate_limit`` is a token bucket in the store (``domain.pacing``), its
``Retry-After`` pauses are the lane's.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING

from hookgate import logs
from hookgate.dispatch.delivering import DeliveringLane
from hookgate.domain.deliveries import Delivery
from hookgate.domain.destinations import Destination
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import Flow, Mode
from hookgate.domain.forwarding import Reply
from hookgate.errors import StoreError

if TYPE_CHECKING:
    from hookgate.dispatch.dispatcher import Dispatcher

log = logs.get("hookgate.dispatch")

LEASE_MARGIN = 5.0
PIPELINE = 4
"""Plain deliveries to one worker sent as one exchange: the transport may pipeline them."""
LEASE_BATCH = 64
"""The most deliveries one lease takes. Each batch is worked through in a few event-loop turns,
and every other flow waits for those turns: batches of 256 held the loop for up to 50 ms and
put ~100 ms on another flow's deliveries while one flow drained a backlog (fairness scenario,
BENCHMARKS.md); 64 kept the drain rate and cut that to ~25 ms; 32 cost a fifth of it."""
RESYNC = 2.0
STORE_BACKOFF = 1.0


class Lane(DeliveringLane):
    """The delivery loop of one destination: the flow's own workers."""

    def __init__(self, owner: Dispatcher, flow: Flow, destination: Destination) -> None:
        super().__init__(owner, flow, destination)
        self.paused_until = 0.0
        """This gateway's pause on the destination (``Retry-After``); the rate is the store's."""
        self.bucket = f"{flow.id}/{destination.name}"
        self.pending = False
        self.timers: list[float] = []
        """When work falls due (a heap): every retry's time is kept, not only the earliest,
        or a later one would be forgotten once the earliest fired."""
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
                    await self._want(min(spec.max_workers, len(endpoints) + 1))
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
            and not self.owner.cpu.saturated()
        )

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
        wanted = min(free, LEASE_BATCH)
        granted = await self._allowed(wanted, now)
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
        if self.destination.rate_limit and len(batch) == granted < wanted:
            # The bucket, not the queue, ran out: look again when the next token is in.
            self.notify(self._next_try(time.time()))
        elif len(batch) < granted and generation == self.generation:
            self.pending = False
        elif self._may_grow(endpoints) and len(endpoints) >= self.wanted:
            await self._want(min(spec.max_workers, len(endpoints) + 1))
        # A full batch means more work waits: the limit, not the demand, decides the pace.
        limited = len(batch) >= wanted
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
