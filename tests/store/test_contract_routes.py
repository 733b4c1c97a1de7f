"""The ``Store`` contract for destinations: a request becomes one delivery per route, each
leased by its destination alone; a keyed delivery waits for the older ones of its key; a
request no destination wanted is stored ``FILTERED``. Run against every store."""

from __future__ import annotations

from hookgate.domain.deliveries import Delivery, Request, Route, State, new_id
from hookgate.store.base import Store

from .conftest import attempt_for, make_request

LEASE = 30.0
NOW = 1_700_000_000.0


def routed(*routes: tuple[str, float, str | None], received_at: float = NOW) -> Request:
    request = make_request("f1", received_at=received_at)
    request.routes = [
        Route(request.id if i == 0 else new_id(), destination, due, key)
        for i, (destination, due, key) in enumerate(routes)
    ]
    return request


async def lease(store: Store, destination: str, *, now: float = NOW) -> list[Delivery]:
    return await store.lease("f1", destination=destination, limit=10, lease_for=LEASE, now=now)


async def test_a_request_becomes_one_delivery_per_route(store: Store) -> None:
    request = routed(("worker", NOW, None), ("audit", NOW + 5, "customer-7"))
    accepted = await store.enqueue(request)
    assert accepted.delivery_id == request.id
    assert request.routes is not None
    worker, audit = [await store.get_delivery(r.id) for r in request.routes]
    assert (worker.destination, worker.next_at, worker.order_key) == ("worker", NOW, None)
    assert (audit.destination, audit.next_at, audit.order_key) == ("audit", NOW + 5, "customer-7")
    assert audit.body == request.body and audit.request_id == request.request_id
    assert (await store.queue_stats())["f1"].depth == 2

    assert [d.id for d in await lease(store, "worker", now=NOW + 10)] == [request.id]
    assert await lease(store, "audit", now=NOW + 4) == []
    [leased] = await lease(store, "audit", now=NOW + 5)
    assert leased.id == request.routes[1].id
    assert await store.complete(leased, attempt_for(leased, at=NOW + 6))
    assert (await store.get_delivery(request.id)).state is State.LEASED


async def test_a_request_no_destination_wanted_is_filtered_and_purged_like_done(
    store: Store,
) -> None:
    request = make_request("f1", received_at=NOW)
    request.routes = []
    await store.enqueue(request)
    filtered = await store.get_delivery(request.id)
    assert (filtered.state, filtered.attempts) == (State.FILTERED, 0)
    assert await lease(store, "worker", now=NOW + 100) == []
    assert await store.queue_stats() == {}
    assert await store.count_deliveries() == {"f1": {State.FILTERED: 1}}
    assert await store.replay([request.id], now=NOW + 1) == 0
    assert await store.purge(flow_id="f1", done_before=NOW) == 0
    assert await store.purge(flow_id="f1", done_before=NOW + 1) == 1
    assert await store.count_deliveries() == {}


async def test_a_keyed_delivery_waits_for_the_older_ones_of_its_key(store: Store) -> None:
    keys = ["a", "a", "b", None, "a", "b"]
    requests = [routed(("worker", NOW, key), received_at=NOW + i) for i, key in enumerate(keys)]
    for request in requests:
        await store.enqueue(request)
    ids = [r.id for r in requests]

    first = {d.id: d for d in await lease(store, "worker", now=NOW + 10)}
    assert set(first) == {ids[0], ids[2], ids[3]}
    assert await lease(store, "worker", now=NOW + 11) == []

    a1 = first[ids[0]]
    assert await store.complete(a1, attempt_for(a1, at=NOW + 12))
    [a2] = await lease(store, "worker", now=NOW + 12)
    assert a2.id == ids[1]
    assert await store.retry(a2, attempt_for(a2, at=NOW + 12, status=503), next_at=NOW + 60)
    assert await lease(store, "worker", now=NOW + 13) == []  # a waiting retry holds its key

    b1 = first[ids[2]]
    assert await store.bury(b1, attempt_for(b1, at=NOW + 14, status=400))  # dead: b moves on
    [b2] = await lease(store, "worker", now=NOW + 14)
    assert b2.id == ids[5]

    # An expired lease is taken over as it is: the key's line does not change.
    again = await lease(store, "worker", now=NOW + 14 + LEASE + 1)
    assert {d.id for d in again} == {ids[3], ids[5]}
    [a2_again] = await lease(store, "worker", now=NOW + 60)
    assert (a2_again.id, a2_again.attempts) == (ids[1], 2)
    assert await store.complete(a2_again, attempt_for(a2_again, at=NOW + 61))
    [a3] = await lease(store, "worker", now=NOW + 62)
    assert a3.id == ids[4]


async def test_keys_are_per_destination(store: Store) -> None:
    both = routed(("worker", NOW, "k"), ("audit", NOW, "k"))
    later = routed(("worker", NOW, "k"), ("audit", NOW, "k"), received_at=NOW + 1)
    await store.enqueue(both)
    await store.enqueue(later)
    [held] = await lease(store, "worker")
    assert held.id == both.id
    assert [d.request_id for d in await lease(store, "audit")] == [both.request_id]
    assert await store.complete(held, attempt_for(held, at=NOW + 1))
    [next_one] = await lease(store, "worker", now=NOW + 1)
    assert next_one.id == later.id
