"""Random runs of enqueue / lease / complete / retry / lease expiry against a model queue.

Checked after every step: the store holds exactly the deliveries the model holds, in the same
states (none lost, none doubled); a lease hands out exactly the oldest due deliveries; a
completed delivery is never leased again; a stale lease holder can never finish a delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from hookgate.domain.deliveries import Delivery, State
from hookgate.domain.flows import new_flow_id
from hookgate.store.base import DeliveryFilter, Store

from .conftest import Backend, attempt_for, make_request

T = TypeVar("T")
LEASE = 30.0


class QueueMachine(RuleBasedStateMachine):
    runner: ClassVar[asyncio.Runner]
    store: ClassVar[Store]

    def __init__(self) -> None:
        super().__init__()
        self.flow = new_flow_id()  # each run has a queue of its own in the shared store
        self.now = 1_000_000.0
        self.order: list[str] = []
        self.state: dict[str, State] = {}
        self.token: dict[str, int] = {}
        self.due: dict[str, float] = {}
        self.held: list[Delivery] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def leasable(self, delivery_id: str) -> bool:
        state = self.state[delivery_id]
        if state is State.QUEUED:
            return self.due[delivery_id] <= self.now
        return state is State.LEASED and self.due[delivery_id] < self.now

    @rule(count=st.integers(1, 3))
    def enqueue(self, count: int) -> None:
        for _ in range(count):
            request = make_request(self.flow, received_at=self.now)
            self.run(self.store.enqueue(request))
            self.order.append(request.id)
            self.state[request.id], self.token[request.id] = State.QUEUED, 0
            self.due[request.id] = self.now

    @rule(limit=st.integers(1, 4))
    def lease(self, limit: int) -> None:
        got = self.run(self.store.lease(self.flow, limit=limit, lease_for=LEASE, now=self.now))
        expected = [i for i in self.order if self.leasable(i)][:limit]
        assert sorted(d.id for d in got) == sorted(expected)
        for delivery in got:
            assert self.state[delivery.id] is not State.DONE
            assert delivery.attempts == self.token[delivery.id] + 1
            self.state[delivery.id], self.token[delivery.id] = State.LEASED, delivery.attempts
            self.due[delivery.id] = self.now + LEASE
            self.held.append(delivery)

    def current(self, delivery: Delivery) -> bool:
        return (
            self.state[delivery.id] is State.LEASED and self.token[delivery.id] == delivery.attempts
        )

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        delivery = data.draw(st.sampled_from(self.held))
        done = self.run(self.store.complete(delivery, attempt_for(delivery, at=self.now)))
        assert done == self.current(delivery)
        if done:
            self.state[delivery.id] = State.DONE

    @precondition(lambda self: self.held)
    @rule(data=st.data(), delay=st.sampled_from([0.0, 5.0, 100.0]))
    def retry(self, data: st.DataObject, delay: float) -> None:
        delivery = data.draw(st.sampled_from(self.held))
        attempt = attempt_for(delivery, at=self.now, status=503)
        moved = self.run(self.store.retry(delivery, attempt, next_at=self.now + delay))
        assert moved == self.current(delivery)
        if moved:
            self.state[delivery.id], self.due[delivery.id] = State.QUEUED, self.now + delay

    @rule(seconds=st.sampled_from([1.0, 10.0, LEASE + 1]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def store_matches_model(self) -> None:
        page = self.run(
            self.store.list_deliveries(DeliveryFilter(flow_id=self.flow), limit=500, cursor=None)
        )
        assert {d.id: d.state for d in page.items} == self.state
        assert len(page.items) == len(self.state)


def test_queue_never_loses_nor_releases_a_finished_delivery(backend: Backend) -> None:
    with asyncio.Runner() as runner:
        store = backend.store(backend.namespace())
        runner.run(store.open())
        machine = type("Machine", (QueueMachine,), {"runner": runner, "store": store})
        try:
            run_state_machine_as_test(
                machine,
                settings=settings(
                    max_examples=25,
                    stateful_step_count=30,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                    database=None,
                ),
            )
        finally:
            runner.run(store.close())
