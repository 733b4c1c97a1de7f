"""The ``Store`` contract for destinations, on both stores: a request becomes one delivery per
route, or one FILTERED row; each destination leases its own; a route's delay holds it; per-key
order lets only the head of a key's line out; rate-limit buckets grant and take back."""

from __future__ import annotations

import asyncio

import pytest

from hookgate.domain.deliveries import Attempt, Request, Route, State, new_id
from hookgate.domain.destinations import DeliveryRate
from hookgate.store.base import DeliveryFilter, Store
from hookgate.store.rows import queued_size

from .conftest import Backend, attempt_for, make_request

NOW = 1_700_000_000.0
LEASE = 30.0


def routed(flow_id: str, *routes: tuple[str, float, str | None], at: float = NOW) -> Request:
    request = make_request(flow_id, received_at=at)
    request.routes = [
        Route(request.id if i == 0 else new_id(), name, at + delay, key)
        for i, (name, delay, key) in enumerate(routes)
    ]
    return request


async def ids(
    store: Store, flow_id: str, destination: str, *, limit: int = 10, now: float = NOW
) -> list[str]:
    batch = await store.lease(
        flow_id, destination=destination, limit=limit, lease_for=LEASE, now=now
    )
    return [d.id for d in batch]


async def test_one_delivery_per_route_each_leased_by_its_destination(store: Store) -> None:
    request = routed("f", ("worker", 0, None), ("crm", 0, None), ("bus", 0, None))
    accepted = await store.enqueue(request)
    assert accepted.delivery_id == request.id
    routes = request.routes
    for route in routes:
        [delivery] = await store.lease(
            "f", destination=route.destination, limit=5, lease_for=LEASE, now=NOW
        )
        assert (delivery.id, delivery.destination, delivery.request_id) == (
            route.id,
            route.destination,
            request.request_id,
        )
        assert delivery.body == request.body
    assert await ids(store, "f", "crm") == []
    stats = (await store.queue_stats())["f"]
    assert stats.leased == 3
    listed = (await store.list_deliveries(DeliveryFilter(flow_id="f"), limit=10, cursor=None)).items
    assert sorted(d.destination for d in listed) == ["bus", "crm", "worker"]


async def test_a_delivery_its_filter_refused_is_recorded_and_never_leased_again(
    store: Store,
) -> None:
    request = routed("f", ("worker", 0, None), ("crm", 0, None))
    await store.enqueue(request)
    [leased] = await store.lease("f", destination="crm", limit=5, lease_for=LEASE, now=NOW)
    verdict = Attempt(
        number=leased.attempts, started_at=NOW, duration_ms=0.0, response="filtered: x"
    )
    assert await store.filter_out(leased, verdict)
    assert not await store.filter_out(leased, verdict)  # the lease is spent
    found = await store.get_delivery(leased.id)
    assert found.state is State.FILTERED
    assert [a.response for a in await store.attempts(leased.id)] == ["filtered: x"]
    assert await ids(store, "f", "crm", now=NOW + 100) == []
    assert (await store.queue_stats())["f"].depth == 1  # the worker's delivery still waits
    listed = await store.list_deliveries(
        DeliveryFilter(flow_id="f", state=State.FILTERED), limit=5, cursor=None
    )
    assert [d.id for d in listed.items] == [leased.id]
    assert await store.replay([leased.id], now=NOW) == 0
    assert await store.purge(flow_id="f", done_before=NOW + 100) == 1


async def test_a_route_delay_holds_the_delivery_until_due(store: Store) -> None:
    request = routed("f", ("worker", 2.0, None), ("crm", 0, None))
    await store.enqueue(request)
    assert await ids(store, "f", "worker", now=NOW + 1.9) == []
    assert len(await ids(store, "f", "crm", now=NOW)) == 1
    assert await ids(store, "f", "worker", now=NOW + 2.0) == [request.id]


async def test_only_the_head_of_each_keys_line_is_leased(store: Store) -> None:
    a1, a2, b1, none = (
        routed("f", ("worker", 0, "A"), at=NOW),
        routed("f", ("worker", 0, "A"), at=NOW + 0.1),
        routed("f", ("worker", 0, "B"), at=NOW + 0.2),
        routed("f", ("worker", 0, None), at=NOW + 0.3),
    )
    for request in (a1, a2, b1, none):
        await store.enqueue(request)
    first = await store.lease("f", limit=10, lease_for=LEASE, now=NOW + 1)
    assert [d.id for d in first] == sorted([a1.id, b1.id, none.id])
    assert {d.order_key for d in first} == {"A", "B", None}
    head = next(d for d in first if d.id == a1.id)
    # A failing head keeps its key: retried later, the next of its key still waits.
    await store.retry(head, attempt_for(head, at=NOW + 1, status=500), next_at=NOW + 5)
    assert await ids(store, "f", "worker", now=NOW + 2) == []
    [again] = await store.lease("f", limit=10, lease_for=LEASE, now=NOW + 5)
    assert again.id == a1.id
    # Dead releases the key.
    await store.bury(again, attempt_for(again, at=NOW + 5, status=400))
    assert await ids(store, "f", "worker", now=NOW + 6) == [a2.id]


async def test_a_keyed_line_is_per_destination(store: Store) -> None:
    first = routed("f", ("worker", 0, "A"), ("crm", 0, "A"), at=NOW)
    second = routed("f", ("worker", 0, "A"), ("crm", 0, "A"), at=NOW + 0.1)
    await store.enqueue(first)
    await store.enqueue(second)
    [crm_head] = await store.lease("f", destination="crm", limit=5, lease_for=LEASE, now=NOW + 1)
    await store.complete(crm_head, attempt_for(crm_head, at=NOW + 1))
    # crm's line moved on; the worker's is still at its head.
    assert await ids(store, "f", "crm", now=NOW + 1) == [second.routes[1].id]
    assert await ids(store, "f", "worker", now=NOW + 1) == [first.id]


async def test_fan_out_counts_each_delivery_against_the_queue_bound(store: Store) -> None:
    request = routed("f", ("worker", 0, None), ("crm", 0, None))
    single = make_request("f", received_at=NOW)
    assert queued_size(request) == 2 * queued_size(single)


async def test_a_bucket_grants_its_burst_then_its_rate(store: Store) -> None:
    rate = DeliveryRate(per_second=1000, burst=5)
    taken = await store.take_tokens("f/crm", 50, rate=rate, now=NOW)
    assert taken == 5
    await asyncio.sleep(0.02)  # PostgreSQL times buckets by its own clock
    later = await store.take_tokens("f/crm", 50, rate=rate, now=NOW + 0.02)
    assert 1 <= later <= 5
    await store.take_tokens("f/crm", -3, rate=rate, now=NOW + 0.02)
    assert await store.take_tokens("f/crm", 2, rate=rate, now=NOW + 0.02) == 2
    assert await store.take_tokens("f/other", 50, rate=rate, now=NOW) == 5


async def test_gateways_share_a_bucket(backend: Backend, where: str) -> None:
    if backend.name == "sqlite":
        pytest.skip("one gateway per SQLite store (the data directory's lock)")
    rate = DeliveryRate(per_second=0.001, burst=10)
    one, two = backend.store(where), backend.store(where)
    await one.open()
    await two.open()
    try:
        grants = await asyncio.gather(
            *(s.take_tokens("f/crm", 3, rate=rate, now=NOW) for s in (one, two) for _ in range(4))
        )
        assert sum(grants) == 10, grants
    finally:
        await one.close()
        await two.close()
