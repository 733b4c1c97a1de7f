"""The ``Store`` contract: every test runs against memory, SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import time

import pytest

from hookgate.domain.deliveries import (
    Answer,
    Attempt,
    Delivery,
    Request,
    Route,
    State,
    new_id,
    new_status_token,
)
from hookgate.domain.flows import (
    Flow,
    FlowSpec,
    Mode,
    RetryPolicy,
    Status,
    WorkerSpec,
    new_flow_id,
)
from hookgate.domain.schedule import poll_request
from hookgate.errors import DeliveryNotFound, FlowConflict, FlowNotFound, StoreFull
from hookgate.store.base import DeliveryFilter, Store
from hookgate.store.changes import Change, Queued
from hookgate.store.columns import ROW_OVERHEAD
from hookgate.store.memory import SCHEMA_VERSION as MEMORY_SCHEMA
from hookgate.store.postgres.store import SCHEMA_VERSION as PG_SCHEMA
from hookgate.store.postgres.store import PostgresStore
from hookgate.store.rows import queued_size
from hookgate.store.sqlite.store import SCHEMA_VERSION as SQLITE_SCHEMA

from .conftest import Backend, attempt_for, make_request

LEASE = 30.0
NOW = 1_700_000_000.0


def make_flow(name: str, **spec: object) -> Flow:
    now = time.time()
    return Flow(
        id=new_flow_id(),
        spec=FlowSpec(name=name, mode=Mode.ASYNC, worker=WorkerSpec(command=["w"]), **spec),  # type: ignore[arg-type]
        created_at=now,
        updated_at=now,
    )


async def lease_one(store: Store, flow_id: str, *, now: float = NOW) -> Delivery:
    [delivery] = await store.lease(flow_id, limit=1, lease_for=LEASE, now=now)
    return delivery


async def all_deliveries(store: Store, where: DeliveryFilter, *, limit: int = 7) -> list[Delivery]:
    items, cursor = [], None
    while True:
        page = await store.list_deliveries(where, limit=limit, cursor=cursor)
        items += page.items
        if page.cursor is None:
            return items
        cursor = page.cursor


# flows -------------------------------------------------------------------------------------
async def test_flows_round_trip_and_names_are_unique(store: Store) -> None:
    orders = make_flow("orders", concurrency=3, retry=RetryPolicy(max_attempts=4))
    await store.create_flow(orders)
    await store.create_flow(make_flow("billing"))
    assert [f.name for f in await store.list_flows()] == ["billing", "orders"]
    assert (await store.list_flows())[1] == orders

    with pytest.raises(FlowConflict, match="orders"):
        await store.create_flow(make_flow("orders"))

    orders.status, orders.updated_at = Status.STOPPED, orders.updated_at + 1
    await store.update_flow(orders)
    assert (await store.list_flows())[1] == orders

    renamed = Flow(
        id=orders.id,
        spec=make_flow("billing").spec,
        status=orders.status,
        created_at=orders.created_at,
        updated_at=orders.updated_at,
    )
    with pytest.raises(FlowConflict, match="billing"):
        await store.update_flow(renamed)
    with pytest.raises(FlowNotFound):
        await store.update_flow(make_flow("ghost"))

    assert await store.get_flow(orders.id) == orders
    await store.delete_flow(orders.id)
    assert [f.name for f in await store.list_flows()] == ["billing"]
    assert await store.get_flow(orders.id) is None
    with pytest.raises(FlowNotFound):
        await store.delete_flow(orders.id)


async def test_deleting_a_flow_removes_its_queue(store: Store) -> None:
    flow = make_flow("orders")
    await store.create_flow(flow)
    accepted = await store.enqueue(make_request(flow.id))
    other = await store.enqueue(make_request("other-flow"))
    await store.delete_flow(flow.id)
    with pytest.raises(DeliveryNotFound):
        await store.get_delivery(accepted.delivery_id)
    assert (await store.get_delivery(other.delivery_id)).flow_id == "other-flow"
    assert set(await store.queue_stats()) == {"other-flow"}


# ingest ------------------------------------------------------------------------------------
async def test_enqueue_keeps_bytes_and_headers_exactly(store: Store) -> None:
    body = bytes(range(256)) * 3 + b"\x00\r\n\xff"
    headers = [("X-Sig", "v1,abc="), ("x-dup", "1"), ("x-dup", "2"), ("x-odd", 'é"\\\x7f ')]
    request = make_request("f1", body=body, headers=headers, received_at=NOW)
    accepted = await store.enqueue(request)
    assert (accepted.request_id, accepted.delivery_id, accepted.duplicate) == (
        request.request_id,
        request.id,
        False,
    )

    stored = await store.get_delivery(request.id)
    assert stored.body == body
    assert stored.headers == headers
    assert (stored.method, stored.path, stored.query, stored.source) == (
        "POST",
        "/orders",
        "a=1&b=2",
        "203.0.113.7",
    )
    assert (stored.state, stored.attempts, stored.received_at, stored.next_at) == (
        State.QUEUED,
        0,
        NOW,
        NOW,
    )
    with pytest.raises(DeliveryNotFound):
        await store.get_delivery("0" * 32)


async def test_dedupe_key_answers_with_the_first_request(store: Store) -> None:
    first = make_request("f1", received_at=NOW)
    again = make_request("f1", received_at=NOW + 10)
    a = await store.enqueue(first, dedupe_key="evt_1", dedupe_until=NOW + 100)
    b = await store.enqueue(again, dedupe_key="evt_1", dedupe_until=NOW + 110)
    assert not a.duplicate
    assert (b.request_id, b.delivery_id, b.duplicate) == (first.request_id, first.id, True)
    assert [d.id for d in await all_deliveries(store, DeliveryFilter())] == [first.id]

    other_flow = await store.enqueue(make_request("f2", received_at=NOW), dedupe_key="evt_1")
    assert not other_flow.duplicate

    later = make_request("f1", received_at=NOW + 100)
    c = await store.enqueue(later, dedupe_key="evt_1", dedupe_until=NOW + 200)
    assert (c.delivery_id, c.duplicate) == (later.id, False)


async def test_dedupe_holds_within_one_group_commit(store: Store) -> None:
    requests = [make_request("f1", received_at=NOW) for _ in range(30)]
    answers = await asyncio.gather(
        *(store.enqueue(r, dedupe_key="same", dedupe_until=NOW + 60) for r in requests)
    )
    assert sum(not a.duplicate for a in answers) == 1
    assert len({(a.request_id, a.delivery_id) for a in answers}) == 1
    assert len(await all_deliveries(store, DeliveryFilter(flow_id="f1"))) == 1


async def test_dedupe_in_a_mixed_group_answers_each_request_with_its_own_first(
    store: Store,
) -> None:
    """A burst mixing new keys, repeats within the burst, keys seen before, expired keys and
    other flows: each request is stored once per key and window, else told the first's ids."""
    seen = make_request("f1", received_at=NOW)
    expired = make_request("f1", received_at=NOW - 100)
    await store.enqueue(seen, dedupe_key="seen", dedupe_until=NOW + 60)
    await store.enqueue(expired, dedupe_key="expired", dedupe_until=NOW - 50)
    burst = [
        (make_request(flow, received_at=NOW + 1), key)
        for key in ("new-0", "new-1", "seen", "expired", "new-0", "seen", "new-1", "new-2")
        for flow in ("f1", "f2")
    ]
    answers = await asyncio.gather(
        *(store.enqueue(r, dedupe_key=key, dedupe_until=NOW + 60) for r, key in burst)
    )
    first: dict[tuple[str, str], str] = {("f1", "seen"): seen.id}
    for (request, key), answer in zip(burst, answers, strict=True):
        expected = first.setdefault((request.flow_id, key), request.id)
        assert answer.delivery_id == expected, (request.flow_id, key)
        assert answer.duplicate == (expected != request.id)
    stored = {d.id for d in await all_deliveries(store, DeliveryFilter())}
    assert stored == {seen.id, expired.id, *first.values()}
    assert len(stored) == 2 + 2 * 5 - 1  # new-0..2 and expired per flow; "seen" once in f2


# the queue bounds --------------------------------------------------------------------------
async def test_a_request_counts_its_head_body_and_row(backend: Backend, where: str) -> None:
    request = make_request("f1", body=b"x" * 60)
    size = queued_size(request)
    head = (
        len("POST")
        + len("/orders")
        + len("a=1&b=2")
        + len(b'[["content-type","application/json"]]')
    )
    assert size == head + 60 + ROW_OVERHEAD
    store = backend.store(where, max_queued_bytes=2 * size)
    await store.open()
    try:
        assert store.accepting
        for _ in range(2):
            await store.enqueue(make_request("f1", body=b"x" * 60), max_queued=2 * size)
        with pytest.raises(StoreFull, match=f"the queue holds {2 * size} bytes"):
            await store.enqueue(make_request("f2", body=b""), max_queued=2 * size)
        assert len(await all_deliveries(store, DeliveryFilter())) == 2

        delivery = await lease_one(store, "f1", now=time.time())
        assert await store.complete(delivery, attempt_for(delivery, at=time.time()))
        await store.enqueue(make_request("f2", body=b"y" * 60), max_queued=2 * size)
    finally:
        await store.close()


def padded(flow_id: str) -> Request:
    """An empty body under a 50 KB header: it takes the disk what a 50 KB body would."""
    return make_request(flow_id, body=b"", headers=[("x-pad", "p" * 50_000)])


async def test_headers_count_against_the_bound_also_after_a_restart(
    backend: Backend, where: str
) -> None:
    size = queued_size(padded("f1"))
    assert size > 50_000
    bound = 3 * size - 1
    store = backend.store(where, max_queued_bytes=bound)
    await store.open()
    try:
        for _ in range(2):
            await store.enqueue(padded("f1"), max_queued=bound)
        with pytest.raises(StoreFull):
            await store.enqueue(padded("f1"), max_queued=bound)
    finally:
        await store.close()
    store = backend.store(where, max_queued_bytes=bound)  # counts what is in the database
    await store.open()
    try:
        with pytest.raises(StoreFull):
            await store.enqueue(padded("f2"), max_queued=bound)
        delivery = await lease_one(store, "f1", now=time.time())
        assert await store.complete(delivery, attempt_for(delivery, at=time.time()))
        await store.enqueue(padded("f2"), max_queued=bound)
    finally:
        await store.close()


async def test_one_full_flow_leaves_room_for_the_others(backend: Backend, where: str) -> None:
    size = queued_size(make_request("a"))
    store = backend.store(where, max_queued_bytes=8 * size)  # a flow's share: a quarter
    await store.open()
    try:
        for _ in range(2):
            await store.enqueue(make_request("a"))
        with pytest.raises(StoreFull, match=f"the flow's queue holds {2 * size} bytes"):
            await store.enqueue(make_request("a"))
        await store.enqueue(make_request("b"))
        await store.enqueue(make_request("a"), max_queued=3 * size)  # its own bound
        with pytest.raises(StoreFull, match=f"its bound is {3 * size}"):
            await store.enqueue(make_request("a"), max_queued=3 * size)
        assert {f: s.depth for f, s in (await store.queue_stats()).items()} == {"a": 3, "b": 1}
    finally:
        await store.close()


async def test_what_leaves_or_rejoins_the_queue_moves_its_count(
    backend: Backend, where: str
) -> None:
    flow = make_flow("orders")
    bound = 2 * queued_size(make_request(flow.id))
    store = backend.store(where)
    await store.open()

    async def fits() -> bool:
        request = make_request(flow.id)
        try:
            await store.enqueue(request, max_queued=bound)
        except StoreFull:
            return False
        await store.delete_deliveries([request.id])
        return True

    try:
        await store.create_flow(flow)
        first, second = make_request(flow.id), make_request(flow.id)
        for request in (first, second):
            await store.enqueue(request, max_queued=bound)
        assert not await fits()
        delivery = await lease_one(store, flow.id, now=time.time())
        assert await store.bury(delivery, attempt_for(delivery, at=time.time(), status=400))
        assert await fits()  # dead: out of the queue
        assert await store.replay([delivery.id], now=time.time()) == 1
        assert not await fits()  # replayed: back in it
        await store.delete_deliveries([second.id])
        assert await fits()
        await store.enqueue(make_request(flow.id), max_queued=bound)
        await store.delete_flow(flow.id)
        await store.create_flow(flow)
        assert await fits()
    finally:
        await store.close()


async def test_concurrent_enqueues_are_all_stored_once(store: Store) -> None:
    requests = [make_request(f"f{i % 3}", body=str(i).encode()) for i in range(2000)]
    answers = await asyncio.gather(*(store.enqueue(r) for r in requests))
    assert {a.delivery_id for a in answers} == {r.id for r in requests}
    stored = await all_deliveries(store, DeliveryFilter(), limit=500)
    assert sorted(d.id for d in stored) == sorted(r.id for r in requests)
    assert {f: s.depth for f, s in (await store.queue_stats()).items()} == {
        "f0": 667,
        "f1": 667,
        "f2": 666,
    }


# the queue ---------------------------------------------------------------------------------
async def test_lease_complete_is_guarded_by_the_lease(store: Store) -> None:
    request = make_request("f1", received_at=NOW)
    await store.enqueue(request)
    leased = await lease_one(store, "f1")
    assert (leased.id, leased.state, leased.attempts) == (request.id, State.LEASED, 1)
    assert leased.body == request.body and leased.headers == request.headers
    assert leased.lease_until == NOW + LEASE
    assert await store.lease("f1", limit=10, lease_for=LEASE, now=NOW + 1) == []

    assert await store.complete(leased, attempt_for(leased, at=NOW + 1))
    assert not await store.complete(leased, attempt_for(leased, at=NOW + 2))
    assert not await store.retry(leased, attempt_for(leased, at=NOW + 2), next_at=NOW)
    assert not await store.bury(leased, attempt_for(leased, at=NOW + 2))
    done = await store.get_delivery(request.id)
    assert (done.state, done.attempts, done.lease_until) == (State.DONE, 1, None)
    assert [a.status_code for a in await store.attempts(request.id)] == [200]
    assert await store.lease("f1", limit=10, lease_for=LEASE, now=NOW + 10 * LEASE) == []


async def test_expired_lease_is_taken_over_and_the_stale_holder_loses(store: Store) -> None:
    await store.enqueue(make_request("f1", received_at=NOW))
    first = await lease_one(store, "f1")
    assert await store.lease("f1", limit=1, lease_for=LEASE, now=NOW + LEASE) == []
    second = await lease_one(store, "f1", now=NOW + LEASE + 1)
    assert (second.id, second.attempts) == (first.id, 2)

    assert not await store.complete(first, attempt_for(first, at=NOW + LEASE + 2))
    assert not await store.retry(first, attempt_for(first, at=NOW + LEASE + 2), next_at=NOW)
    assert await store.complete(second, attempt_for(second, at=NOW + LEASE + 3))
    assert [a.number for a in await store.attempts(first.id)] == [2]


async def test_retry_waits_for_next_at_and_bury_makes_dead(store: Store) -> None:
    await store.enqueue(make_request("f1", received_at=NOW))
    first = await lease_one(store, "f1")
    failed = Attempt(number=1, started_at=NOW, duration_ms=5, status_code=503, response="down")
    assert await store.retry(first, failed, next_at=NOW + 60)
    waiting = await store.get_delivery(first.id)
    assert (waiting.state, waiting.next_at, waiting.last_error) == (
        State.QUEUED,
        NOW + 60,
        "HTTP 503: down",
    )
    assert await store.lease("f1", limit=5, lease_for=LEASE, now=NOW + 59) == []

    second = await lease_one(store, "f1", now=NOW + 60)
    assert second.attempts == 2
    refused = Attempt(number=2, started_at=NOW + 60, duration_ms=5, error="connection refused")
    assert await store.bury(second, refused)
    dead = await store.get_delivery(first.id)
    assert (dead.state, dead.last_error) == (State.DEAD, "connection refused")
    assert [(a.number, a.status_code, a.error) for a in await store.attempts(first.id)] == [
        (1, 503, None),
        (2, None, "connection refused"),
    ]
    assert await store.lease("f1", limit=5, lease_for=LEASE, now=NOW + 10_000) == []


async def test_lease_takes_due_work_oldest_first_up_to_the_limit(store: Store) -> None:
    requests = [make_request("f1", received_at=NOW + i) for i in range(5)]
    for request in requests:
        await store.enqueue(request)
    await store.enqueue(make_request("f2", received_at=NOW))
    first = await store.lease("f1", limit=2, lease_for=LEASE, now=NOW + 10)
    assert {d.id for d in first} == {r.id for r in requests[:2]}
    rest = await store.lease("f1", limit=10, lease_for=LEASE, now=NOW + 10)
    assert {d.id for d in rest} == {r.id for r in requests[2:]}
    assert len(await store.lease("f1", limit=10, lease_for=LEASE, now=NOW + 11 + LEASE)) == 5


async def test_replay_starts_a_fresh_series_and_keeps_history(store: Store) -> None:
    ids = []
    for i in range(3):
        request = make_request("f1", received_at=NOW + i)
        await store.enqueue(request)
        ids.append(request.id)
    for delivery in await store.lease("f1", limit=3, lease_for=LEASE, now=NOW + 5):
        finish = store.bury if delivery.id != ids[2] else store.complete
        assert await finish(delivery, attempt_for(delivery, at=NOW + 6, status=400))

    assert await store.replay([ids[0], "unknown"], now=NOW + 7) == 1
    assert await store.replay([ids[0]], now=NOW + 7) == 0
    replayed = await store.get_delivery(ids[0])
    assert (replayed.state, replayed.attempts, replayed.next_at) == (State.QUEUED, 0, NOW + 7)
    assert len(await store.attempts(ids[0])) == 1

    dead = DeliveryFilter(flow_id="f1", state=State.DEAD)
    assert await store.replay_matching(dead, now=NOW + 8) == 1
    assert await store.replay_matching(DeliveryFilter(flow_id="f2"), now=NOW + 8) == 0
    again = await store.lease("f1", limit=5, lease_for=LEASE, now=NOW + 9)
    assert {(d.id, d.attempts) for d in again} == {(ids[0], 1), (ids[1], 1)}
    assert (await store.get_delivery(ids[2])).state is State.DONE


async def test_delete_deliveries(store: Store) -> None:
    kept, gone = make_request("f1"), make_request("f1")
    await store.enqueue(kept)
    await store.enqueue(gone)
    assert await store.delete_deliveries([gone.id, "unknown"]) == 1
    assert await store.delete_deliveries([]) == 0
    with pytest.raises(DeliveryNotFound):
        await store.get_delivery(gone.id)
    assert [d.id for d in await all_deliveries(store, DeliveryFilter())] == [kept.id]


# reading -----------------------------------------------------------------------------------
async def test_list_filters_and_pages_newest_first(store: Store) -> None:
    requests: list[Request] = []
    for i in range(23):
        request = make_request(f"f{i % 2}", received_at=NOW + i)
        await store.enqueue(request)
        requests.append(request)
    newest_first = [r.id for r in reversed(requests)]
    for delivery in await store.lease("f0", limit=4, lease_for=LEASE, now=NOW + 100):
        await store.complete(delivery, attempt_for(delivery, at=NOW + 101))

    everything = await all_deliveries(store, DeliveryFilter(), limit=5)
    assert [d.id for d in everything] == newest_first
    assert all(d.body == b"" for d in everything)

    f0 = [r.id for r in reversed(requests) if r.flow_id == "f0"]
    assert [d.id for d in await all_deliveries(store, DeliveryFilter(flow_id="f0"))] == f0
    done = await all_deliveries(store, DeliveryFilter(flow_id="f0", state=State.DONE), limit=3)
    assert [d.id for d in done] == f0[-4:]
    queued = await all_deliveries(store, DeliveryFilter(state=State.QUEUED), limit=4)
    assert len(queued) == 19
    window = DeliveryFilter(since=NOW + 5, until=NOW + 9)
    assert [d.id for d in await all_deliveries(store, window)] == newest_first[-9:-5]

    page = await store.list_deliveries(DeliveryFilter(), limit=23, cursor=None)
    assert (len(page.items), page.cursor) == (23, None)


async def test_queue_stats(store: Store) -> None:
    for i in range(3):
        await store.enqueue(make_request("f1", received_at=NOW + i))
    await store.enqueue(make_request("f2", received_at=NOW + 50))
    leased = await lease_one(store, "f1", now=NOW + 10)
    await store.retry(leased, attempt_for(leased, at=NOW + 10, status=500), next_at=NOW + 20)
    await lease_one(store, "f1", now=NOW + 11)
    stats = await store.queue_stats()
    assert set(stats) == {"f1", "f2"}
    f1 = stats["f1"]
    assert (f1.depth, f1.leased, f1.oldest_received_at) == (2, 1, NOW)
    assert f1.next_due_at == NOW + 2
    assert (stats["f2"].depth, stats["f2"].leased, stats["f2"].next_due_at) == (1, 0, NOW + 50)


# hygiene -----------------------------------------------------------------------------------
async def test_purge_removes_only_done_before_the_bound(store: Store) -> None:
    for i in range(6):
        await store.enqueue(make_request("f1", received_at=NOW + i))
    await store.enqueue(make_request("f2", received_at=NOW))
    leased = await store.lease("f1", limit=6, lease_for=LEASE, now=NOW + 10)
    for i, delivery in enumerate(leased[:4]):
        assert await store.complete(delivery, attempt_for(delivery, at=NOW + 10 * i))
    assert await store.bury(leased[4], attempt_for(leased[4], at=NOW, status=400))
    f2 = await lease_one(store, "f2", now=NOW + 10)
    await store.complete(f2, attempt_for(f2, at=NOW))

    assert await store.purge(flow_id="f1", done_before=NOW + 25, limit=2) == 2
    assert await store.purge(flow_id="f1", done_before=NOW + 25, limit=2) == 1
    assert await store.purge(flow_id="f1", done_before=NOW + 25) == 0
    left = {d.id: d.state for d in await all_deliveries(store, DeliveryFilter(flow_id="f1"))}
    assert sorted(left.values()) == [State.LEASED, State.DONE, State.DEAD]
    assert left[leased[3].id] is State.DONE
    for purged in leased[:3]:
        with pytest.raises(DeliveryNotFound):
            await store.get_delivery(purged.id)
        assert await store.attempts(purged.id) == []
    assert (await store.get_delivery(f2.id)).state is State.DONE


# concurrency -------------------------------------------------------------------------------
async def test_two_leasers_never_get_the_same_delivery(backend: Backend, where: str) -> None:
    one, two = backend.store(where), backend.store(where)
    await one.open()
    await two.open()
    try:
        requests = [make_request("f1", received_at=NOW) for _ in range(300)]
        await asyncio.gather(*(one.enqueue(r) for r in requests))
        got: list[list[str]] = [[], []]

        async def drain(store: Store, mine: list[str]) -> None:
            while batch := await store.lease("f1", limit=7, lease_for=LEASE, now=NOW + 1):
                mine += [d.id for d in batch]

        await asyncio.gather(*(drain(s, got[i % 2]) for i, s in enumerate([one, two, one, two])))
        leased = got[0] + got[1]
        assert sorted(leased) == sorted(r.id for r in requests)
    finally:
        await one.close()
        await two.close()


# moving between stores ---------------------------------------------------------------------
async def test_schema_version_is_this_hookgates_after_open(backend: Backend, store: Store) -> None:
    assert (
        await store.schema_version()
        == {"memory": MEMORY_SCHEMA, "sqlite": SQLITE_SCHEMA, "postgres": PG_SCHEMA}[backend.name]
    )


async def test_export_then_import_moves_deliveries_whole(backend: Backend, store: Store) -> None:
    body = bytes(range(256)) + b"\x00"
    requests = [
        make_request("f1", body=body, headers=[("x-a", "1"), ("x-a", "2")], received_at=NOW + i)
        for i in range(5)
    ]
    await store.enqueue(make_request("f2", received_at=NOW))
    for request in requests:
        await store.enqueue(request)
    done, dead, waiting, leased = await store.lease("f1", limit=4, lease_for=LEASE, now=NOW + 9)
    assert await store.complete(done, attempt_for(done, at=NOW + 10))
    assert await store.bury(dead, attempt_for(dead, at=NOW + 10, status=400))
    assert await store.retry(waiting, attempt_for(waiting, at=NOW + 10, status=503), next_at=NOW)
    counts = await store.count_deliveries()
    assert counts == {
        "f1": {State.QUEUED: 2, State.LEASED: 1, State.DONE: 1, State.DEAD: 1},
        "f2": {State.QUEUED: 1},
    }

    records, cursor = [], None
    while True:
        page, cursor = await store.export_deliveries(limit=2, cursor=cursor)
        records += page
        if cursor is None:
            break
    assert [r.delivery.id for r in records][1:] == [r.id for r in requests]
    by_id = {r.delivery.id: r for r in records}
    assert by_id[dead.id].delivery == await store.get_delivery(dead.id)
    assert by_id[dead.id].attempts == await store.attempts(dead.id)
    assert by_id[requests[4].id].attempts == []

    target = backend.store(backend.namespace())
    await target.open()
    try:
        assert await target.import_deliveries(records[:3]) == 3
        assert await target.import_deliveries(records) == len(records) - 3
        assert await target.import_deliveries(records) == 0
        assert await target.count_deliveries() == counts
        for record in records:
            assert await target.get_delivery(record.delivery.id) == record.delivery
            assert await target.attempts(record.delivery.id) == record.attempts
        assert await target.queue_stats() == await store.queue_stats()
        again = await target.lease("f1", limit=5, lease_for=LEASE, now=NOW + 10 + LEASE)
        assert {(d.id, d.attempts) for d in again} == {
            (waiting.id, 2),
            (leased.id, 2),
            (requests[4].id, 1),
        }
    finally:
        await target.close()


# polling triggers --------------------------------------------------------------------------


async def test_each_tick_is_claimed_once_and_enqueues_its_run(store: Store) -> None:
    flow = make_flow("polled", schedule={"every": 60})
    await store.create_flow(flow)
    assert await store.last_tick(flow.id) is None
    run = poll_request(flow, scheduled_at=NOW)
    assert await store.claim_tick(flow.id, tick=NOW, request=run, exclusive=False) == "claimed"
    again = poll_request(flow, scheduled_at=NOW)
    assert await store.claim_tick(flow.id, tick=NOW, request=again, exclusive=False) == "taken"
    assert await store.last_tick(flow.id) == NOW
    [queued] = (
        await store.list_deliveries(DeliveryFilter(flow_id=flow.id), limit=5, cursor=None)
    ).items
    assert queued.id == run.id
    assert queued.source == "schedule"


async def test_exclusive_claim_is_busy_while_a_run_is_queued_or_leased(store: Store) -> None:
    flow = make_flow("polled", schedule={"every": 60})
    await store.create_flow(flow)
    first = poll_request(flow, scheduled_at=NOW)
    await store.claim_tick(flow.id, tick=NOW, request=first, exclusive=True)
    second = poll_request(flow, scheduled_at=NOW + 60)
    assert await store.claim_tick(flow.id, tick=NOW + 60, request=second, exclusive=True) == "busy"
    leased = await lease_one(store, flow.id, now=time.time())
    assert await store.claim_tick(flow.id, tick=NOW + 60, request=second, exclusive=True) == "busy"
    await store.complete(leased, attempt_for(leased, at=time.time()))
    assert await store.claim_tick(flow.id, tick=NOW + 60, request=second, exclusive=True) == (
        "claimed"
    )
    assert await store.claim_tick(flow.id, tick=NOW + 120, request=None, exclusive=False) == (
        "claimed"
    )
    assert await store.last_tick(flow.id) == NOW + 120


async def test_two_stores_claim_a_tick_once(backend: Backend, where: str) -> None:
    first, second = backend.store(where), backend.store(where)
    await first.open()
    await second.open()
    try:
        flow = make_flow("polled", schedule={"every": 60})
        await first.create_flow(flow)
        claims = await asyncio.gather(
            *(
                store.claim_tick(
                    flow.id, tick=NOW, request=poll_request(flow, scheduled_at=NOW), exclusive=False
                )
                for store in (first, second) * 5
            )
        )
        assert sorted(claims) == ["claimed"] + ["taken"] * 9
    finally:
        await first.close()
        await second.close()


async def test_snapshot_is_kept_per_flow_and_cleared(store: Store) -> None:
    flow = make_flow("polled", schedule={"every": 60})
    await store.create_flow(flow)
    assert await store.snapshot(flow.id) is None
    await store.set_snapshot(flow.id, b'{"cursor": 42}')
    assert await store.snapshot(flow.id) == b'{"cursor": 42}'
    await store.set_snapshot(flow.id, None)
    assert await store.snapshot(flow.id) is None


# status URLs -------------------------------------------------------------------------------
async def test_a_status_token_follows_its_delivery_to_done_with_the_answer(store: Store) -> None:
    token = new_status_token()
    request = make_request("f1", received_at=NOW)
    accepted = await store.enqueue(request, status_token=token)
    assert (accepted.delivery_id, accepted.status_token) == (request.id, token)
    queued = await store.progress(token)
    assert queued is not None
    assert (queued.request_id, queued.flow_id, queued.label, queued.attempts) == (
        request.request_id,
        "f1",
        "queued",
        0,
    )
    assert await store.progress(token[:-1]) is None
    assert await store.progress(new_status_token()) is None

    first = await lease_one(store, "f1")
    assert first.status_token == token
    assert (await store.progress(token)).label == "running"  # type: ignore[union-attr]
    assert await store.retry(first, attempt_for(first, at=NOW, status=503), next_at=NOW + 1)
    failed = await store.progress(token)
    assert failed is not None
    assert (failed.label, failed.attempts, failed.last_error) == ("failed", 1, "HTTP 503: boom")

    second = await lease_one(store, "f1", now=NOW + 1)
    answer = Answer(status=201, headers=[("content-type", "text/plain")], body=b"\x00made")
    assert not await store.keep_answer(first, answer.encode())  # a stale lease keeps nothing
    assert (await store.progress(token)).answer is None  # type: ignore[union-attr]
    assert await store.keep_answer(second, answer.encode())
    assert (await store.progress(token)).answer is None  # type: ignore[union-attr]
    assert await store.complete(second, attempt_for(second, at=NOW + 2, status=201))
    done = await store.progress(token)
    assert done is not None and done.label == "done" and done.attempts == 2
    assert done.answer is not None and Answer.decode(done.answer) == answer

    assert await store.replay([request.id], now=NOW + 3) == 1
    again = await store.progress(token)
    assert again is not None and (again.label, again.answer) == ("queued", None)


async def test_a_duplicate_keeps_the_first_requests_status_token(store: Store) -> None:
    token = new_status_token()
    first = make_request("f1", received_at=NOW)
    a = await store.enqueue(first, dedupe_key="evt", dedupe_until=NOW + 60, status_token=token)
    b = await store.enqueue(
        make_request("f1", received_at=NOW + 1),
        dedupe_key="evt",
        dedupe_until=NOW + 60,
        status_token=new_status_token(),
    )
    assert (a.status_token, a.duplicate) == (token, False)
    assert (b.delivery_id, b.status_token, b.duplicate) == (first.id, token, True)

    plain = make_request("f1", received_at=NOW)
    await store.enqueue(plain, dedupe_key="evt2", dedupe_until=NOW + 60)
    later = new_status_token()
    c = await store.enqueue(
        make_request("f1", received_at=NOW + 1),
        dedupe_key="evt2",
        dedupe_until=NOW + 60,
        status_token=later,
    )
    assert (c.delivery_id, c.status_token) == (plain.id, later)
    progress = await store.progress(later)
    assert progress is not None and progress.request_id == plain.request_id
    assert (await store.get_delivery(plain.id)).status_token == later


# finding a delivery by any of its ids ------------------------------------------------------
def with_ids(flow_id: str, *, delivery_id: str, request_id: str) -> Request:
    request = make_request(flow_id, received_at=NOW)
    request.id, request.request_id = delivery_id, request_id
    return request


async def test_a_delivery_is_found_by_its_id_request_id_and_provider_id(store: Store) -> None:
    first = with_ids("f1", delivery_id="a" * 32, request_id="req-caller-1")
    await store.enqueue(first, dedupe_key="evt_1NpQ", dedupe_until=NOW + 100)
    await store.enqueue(with_ids("f1", delivery_id="b" * 32, request_id="req-caller-2"))
    for ref in ("a" * 32, "req-caller-1", "evt_1NpQ"):
        [found] = await store.find_deliveries(ref, limit=10)
        assert (found.id, found.request_id, found.flow_id) == ("a" * 32, "req-caller-1", "f1")
        assert found.body == b""  # a summary: the caller gets the body by id
    duplicate = with_ids("f1", delivery_id="c" * 32, request_id="req-caller-3")
    assert (await store.enqueue(duplicate, dedupe_key="evt_1NpQ")).delivery_id == "a" * 32
    assert await store.find_deliveries("req-caller-3", limit=10) == []
    assert await store.find_deliveries("unknown-id", limit=10) == []


async def test_a_prefix_of_eight_characters_or_more_finds_every_id_starting_with_it(
    store: Store,
) -> None:
    await store.enqueue(with_ids("f1", delivery_id="0123456789" + "a" * 22, request_id="r-one"))
    await store.enqueue(with_ids("f1", delivery_id="01234567ff" + "b" * 22, request_id="r-two"))
    await store.enqueue(with_ids("f2", delivery_id="c" * 32, request_id="shared-prefix-1"))
    await store.enqueue(
        with_ids("f2", delivery_id="d" * 32, request_id="zz"),
        dedupe_key="shared-prefix-2",
        dedupe_until=NOW + 100,
    )
    [one] = await store.find_deliveries("012345678", limit=10)
    assert one.request_id == "r-one"
    both = await store.find_deliveries("01234567", limit=10)
    assert [d.request_id for d in both] == ["r-two", "r-one"]  # newest first
    assert len(await store.find_deliveries("01234567", limit=1)) == 1
    by_kinds = await store.find_deliveries("shared-prefix", limit=10)
    assert {d.id for d in by_kinds} == {"c" * 32, "d" * 32}
    assert await store.find_deliveries("0123456", limit=10) == []  # too short for a prefix
    assert await store.find_deliveries("01234567" + "\u00e9", limit=10) == []


async def test_an_exact_id_wins_over_ids_it_is_a_prefix_of(store: Store) -> None:
    await store.enqueue(with_ids("f1", delivery_id="e" * 32, request_id="order-1234"))
    await store.enqueue(with_ids("f1", delivery_id="f" * 32, request_id="order-12345"))
    await store.enqueue(with_ids("f1", delivery_id="9" * 32, request_id="order-12345"))
    [exact] = await store.find_deliveries("order-1234", limit=10)
    assert exact.id == "e" * 32
    named_twice = await store.find_deliveries("order-12345", limit=10)
    assert [d.id for d in named_twice] == ["9" * 32, "f" * 32]


# changes -----------------------------------------------------------------------------------
async def test_a_store_announces_the_work_it_commits(store: Store) -> None:
    """What wakes the dispatcher: new work due now, a delayed route at its due time, replayed
    deliveries, a poll run; a duplicate is no new work."""
    heard: list[Change] = []
    store.changes.subscribe(heard.append)
    fan_out = make_request("f1", received_at=NOW)
    fan_out.routes = [Route(fan_out.id, "worker", NOW), Route(new_id(), "audit", NOW + 30)]
    await store.enqueue(fan_out, dedupe_key="k", dedupe_until=NOW + 60)
    assert {Queued("f1"), Queued("f1", NOW + 30)} <= set(heard)

    if not isinstance(store, PostgresStore):  # which also hears its own NOTIFYs, later
        heard.clear()
        again = make_request("f1", received_at=NOW + 1)
        assert (await store.enqueue(again, dedupe_key="k", dedupe_until=NOW + 60)).duplicate
        assert [change for change in heard if isinstance(change, Queued)] == []

    heard.clear()
    [delivery] = await store.lease("f1", limit=1, lease_for=LEASE, now=NOW + 2)
    assert await store.bury(delivery, attempt_for(delivery, at=NOW + 2, status=400))
    assert await store.replay([delivery.id], now=NOW + 3) == 1
    assert Queued("f1") in heard

    heard.clear()
    flow = make_flow("polled", schedule={"every": 60})
    await store.create_flow(flow)
    run = poll_request(flow, scheduled_at=NOW)
    assert await store.claim_tick(flow.id, tick=NOW, request=run, exclusive=False) == "claimed"
    assert Queued(flow.id) in heard
