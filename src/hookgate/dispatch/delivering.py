"""The send → record half of a lane: one leased delivery (or a pipelined group of plain ones)
goes to an endpoint, the limiter learns from the answer, and the outcome is written.

What an answer means (done, retry when, dead) is decided by the pure rules in
``domain.backoff``. Counting, tracing and publishing are the owner's ``DeliveryHook``s
(``dispatch.hooks``), called at fixed points: this module only sends and records.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import msgspec

from hookgate import logs
from hookgate.dispatch.hooks import Send
from hookgate.domain.answers import answer_of
from hookgate.domain.backoff import Verdict, next_delay, parse_retry_after, verdict
from hookgate.domain.concurrency import Slots
from hookgate.domain.deliveries import POLL_SOURCE, Attempt, Delivery
from hookgate.domain.destinations import Destination, RetryPolicy
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.filters import Filter
from hookgate.domain.flows import Flow
from hookgate.domain.forwarding import Reply, outbound
from hookgate.domain.routing import filters, unmet
from hookgate.domain.schedule import MAX_SNAPSHOT, snapshot_of
from hookgate.errors import StoreError

if TYPE_CHECKING:
    from hookgate.dispatch.dispatcher import Dispatcher

log = logs.get("hookgate.dispatch")


def overloaded(reply: Reply) -> bool:
    """A worker that says it has too much, or does not answer in time."""
    return reply.status in (429, 503) or reply.timed_out


class DeliveringLane(abc.ABC):
    """Sends and records for a lane (``dispatch.lane.Lane``), which leases and paces."""

    def __init__(self, owner: Dispatcher, flow: Flow, destination: Destination) -> None:
        self.owner = owner
        self.flow = flow
        self.destination = destination
        self.wake = asyncio.Event()
        self.slots = Slots(pinned=flow.spec.pinned() is not None, ledger=owner.ledger)

    @abc.abstractmethod
    def notify(self, at: float | None = None) -> None:
        """Work is due now (``at`` None or past) or at ``at`` (a retry's backoff)."""

    @abc.abstractmethod
    def _pause(self, reply: Reply, retry_after: float | None, now: float) -> None:
        """A retried answer's ``Retry-After`` (parsed), for the lane's pacing."""

    @property
    def retry(self) -> RetryPolicy:
        return self.destination.retry or self.flow.spec.retry

    def _plain(self, delivery: Delivery) -> bool:
        """A delivery that may share a pipelined write with others (to a worker that answers
        fast, ``WorkerTransport.pipelining``): no poll run, no caller waiting for its answer,
        no hook wrapping each send (a span), no filter to judge first."""
        return (
            delivery.source != POLL_SOURCE
            and delivery.status_token is None
            and not self.owner.send_hooks
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
            keep = MAX_SNAPSHOT + 1 if poll else flow.spec.max_answer + 1
            reply = await self._wrapped(
                endpoint, delivery, snapshot, keep if poll or delivery.status_token else 0
            )
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
        for hook in self.owner.hooks:
            hook.filtered(self, delivery)
        try:
            await self.owner.store.filter_out(delivery, attempt)
        except StoreError as exc:
            self._unrecorded("a filtered delivery", "judged again", delivery, exc)
            return
        if delivery.order_key is not None:
            self.notify()  # the next delivery of its key may go now

    def _wrapped(
        self, endpoint: Endpoint, delivery: Delivery, snapshot: bytes | None, keep_body: int
    ) -> Awaitable[Reply]:
        """``_send`` inside the send hooks' ``around_send``, the first hook outermost."""
        send: Send = functools.partial(self._send, endpoint, delivery, snapshot, keep_body)
        for hook in reversed(self.owner.send_hooks):
            send = functools.partial(hook.around_send, self, delivery, endpoint, send)
        return send()

    def _unrecorded(self, what: str, then: str, delivery: Delivery, exc: StoreError) -> None:
        """The store refused to record: the lease expires and the delivery comes back."""
        log.error(
            f"cannot record {what}; the lease will expire and it is {then}",
            flow=self.flow.name,
            delivery=delivery.id,
            error=str(exc),
        )

    async def _send(
        self, endpoint: Endpoint, delivery: Delivery, snapshot: bytes | None, keep_body: int
    ) -> Reply:
        """To a worker: the request built here, its headers as the send hooks want them (the
        trace context)."""
        request = outbound(delivery, self.flow.spec.delivery, snapshot)
        for hook in self.owner.send_hooks:
            request = msgspec.structs.replace(request, headers=hook.outgoing(request.headers))
        return await self.owner.transport.send(
            endpoint, request, timeout=self.flow.spec.timeout, keep_body=keep_body
        )

    def _measured(self, endpoint: Endpoint, reply: Reply, busy: bool) -> None:
        """Feed the answer to the limiter: an overloaded worker lowers it at once, and a
        ``Retry-After`` lowers it for every worker of the flow (the flow's backend is full)."""
        full = overloaded(reply)
        self.slots.measured(
            endpoint,
            busy=busy,
            overloaded=full,
            everyone=full and reply.header("retry-after") is not None,
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
        store, hooks = self.owner.store, self.owner.hooks
        answer = None
        if delivery.status_token is not None:
            answer = answer_of(reply.status, reply.headers, reply.body, spec.max_answer)
            # A waiting caller gets a final answer (done, or refused for good) at once.
            self.owner.waiters.settle(delivery.id, None if outcome is Verdict.RETRY else answer)
        for hook in hooks:
            hook.judged(self, delivery, outcome, took)
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
                    destination=self.destination.name,
                    delivery=delivery.id,
                    attempt=delivery.attempts,
                    status=reply.status,
                    error=reply.error,
                    **extra,
                )
            if delivery.order_key is not None and outcome is not Verdict.RETRY:
                self.notify()  # the next delivery of its key may go now
        except StoreError as exc:
            self._unrecorded("delivery outcome", "retried", delivery, exc)
        # Once the store has the outcome, so readers see it.
        for hook in hooks:
            hook.recorded(self, delivery, outcome, attempt)
