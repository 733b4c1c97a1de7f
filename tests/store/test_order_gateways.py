"""Per-key order with two gateways on one store (PostgreSQL: two stores on one database; the
memory twin: two stores on one set of tables), leasing at once, with random failures, retries
and dead letters: no key ever has two deliveries leased at once, each key's deliveries succeed
in accept order (a dead one releases its key), and different keys are leased side by side."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from hookgate.domain.deliveries import Delivery, Route, State
from hookgate.store.base import DeliveryFilter, Store

from .conftest import Backend, attempt_for, make_request

LEASE = 30.0
KEYS = ["a", "b", "c", "d"]


async def gateway(
    store: Store,
    rng: random.Random,
    held: dict[str, str],
    succeeded: list[tuple[str, int]],
    overlap: list[int],
    order: dict[str, int],
) -> None:
    """Lease, judge each delivery at random (done 60 %, retry 30 %, dead 10 %), until idle.

    ``held`` is what the two gateways hold, by key: a key found held when leased is a second
    lease at once unless the other holder's delivery is already done or dead, or is this very
    delivery (the other gateway retried it and has not yet let go here)."""
    idle = 0
    while idle < 20:
        batch = await store.lease("f", limit=3, lease_for=LEASE, now=time.time())
        if not batch:
            idle += 1
            await asyncio.sleep(0.005)
            continue
        idle = 0
        for delivery in batch:
            key = delivery.order_key
            assert key is not None
            if (other := held.get(key)) is not None and other != delivery.id:
                # The other gateway may have finished it and not yet let go here.
                finished = (await store.get_delivery(other)).state
                assert finished in (State.DONE, State.DEAD), f"key {key} leased twice at once"
            held[key] = delivery.id
        overlap.append(len(held))
        await asyncio.sleep(0)
        for delivery in batch:
            await judge(store, rng, delivery, succeeded, order)
            if held.get(delivery.order_key or "") == delivery.id:
                del held[delivery.order_key or ""]


async def judge(
    store: Store,
    rng: random.Random,
    delivery: Delivery,
    succeeded: list[tuple[str, int]],
    order: dict[str, int],
) -> None:
    roll, now = rng.random(), time.time()
    attempt = attempt_for(delivery, at=now, status=200 if roll < 0.6 else 500)
    if roll < 0.6:
        assert await store.complete(delivery, attempt)
        succeeded.append((delivery.order_key or "", order[delivery.id]))
    elif roll < 0.9 and delivery.attempts < 5:
        assert await store.retry(delivery, attempt, next_at=now)
    else:
        assert await store.bury(delivery, attempt)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_two_gateways_keep_each_keys_order(backend: Backend, where: str, seed: int) -> None:
    if backend.name == "sqlite":
        pytest.skip("one gateway per SQLite store (the data directory's lock)")
    rng = random.Random(seed)
    one, two = backend.store(where), backend.store(where)
    await one.open()
    await two.open()
    try:
        order: dict[str, int] = {}
        for n in range(60):
            request = make_request("f")
            request.routes = [Route(request.id, "worker", request.received_at, rng.choice(KEYS))]
            await one.enqueue(request)
            order[request.id] = n
        held: dict[str, str] = {}
        succeeded: list[tuple[str, int]] = []
        overlap: list[int] = []
        await asyncio.gather(
            gateway(one, random.Random(seed * 10), held, succeeded, overlap, order),
            gateway(two, random.Random(seed * 10 + 1), held, succeeded, overlap, order),
        )
        page = await one.list_deliveries(DeliveryFilter(flow_id="f"), limit=100, cursor=None)
        assert {d.state for d in page.items} <= {State.DONE, State.DEAD}
        assert len(succeeded) == sum(d.state is State.DONE for d in page.items)
        for key in KEYS:
            ns = [n for k, n in succeeded if k == key]
            assert ns == sorted(ns), (key, ns)
        assert max(overlap) >= 2, "different keys were never leased side by side"
    finally:
        await one.close()
        await two.close()
