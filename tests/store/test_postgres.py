"""What only the PostgreSQL store does: migrations shared by replicas, events, query plans."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from hookgate.domain.deliveries import State
from hookgate.errors import SchemaMismatch, StoreUnavailable
from hookgate.store.base import DeliveryFilter
from hookgate.store.changes import FlowChanged, Queued, Resynced
from hookgate.store.open import open_store
from hookgate.store.postgres.schema import SCHEMA_VERSION
from hookgate.store.postgres.statements import FIND_EXACT, FIND_PREFIX, list_query
from hookgate.store.postgres.store import PostgresStore

from .conftest import PostgresBackend, attempt_for, make_request
from .test_contract import make_flow

NOW = 1_700_000_000.0


@pytest.fixture
def pg(pg_admin: tuple[psycopg.Connection[Any], str]) -> Iterator[PostgresBackend]:
    backend = PostgresBackend(*pg_admin)
    try:
        yield backend
    finally:
        backend.drop()


@pytest.fixture
async def store(pg: PostgresBackend) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(pg.namespace(), max_queued_bytes=10**12, pool_size=3)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def schema_of(url: str) -> str:
    return url.rpartition("%3D")[2]


async def test_open_store_picks_postgres_by_url(pg: PostgresBackend) -> None:
    store = open_store(pg.namespace(), max_queued_bytes=1)
    assert isinstance(store, PostgresStore)


async def test_an_unreachable_database_says_so() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/x", max_queued_bytes=1)
    plainly = r"cannot reach PostgreSQL at 127\.0\.0\.1:1/x: .*refused"
    with pytest.raises(StoreUnavailable, match=plainly):
        await store.open()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.enqueue(make_request("f1"))


async def test_replicas_starting_together_migrate_once(pg: PostgresBackend) -> None:
    where = pg.namespace()
    stores = [PostgresStore(where, max_queued_bytes=1, pool_size=1) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert [await s.schema_version() for s in stores] == [SCHEMA_VERSION] * 4
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    rows = pg.admin.execute(
        sql.SQL("SELECT version FROM {}.schema_version ORDER BY version").format(
            sql.Identifier(schema_of(where))
        )
    ).fetchall()
    assert rows == [(step,) for step in range(1, SCHEMA_VERSION + 1)]


async def test_a_newer_schema_is_refused(pg: PostgresBackend) -> None:
    where = pg.namespace()
    store = PostgresStore(where, max_queued_bytes=1)
    await store.open()
    await store.close()
    pg.admin.execute(
        sql.SQL("INSERT INTO {}.schema_version (version) VALUES (%s)").format(
            sql.Identifier(schema_of(where))
        ),
        [SCHEMA_VERSION + 1],
    )
    with pytest.raises(SchemaMismatch, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        await PostgresStore(where, max_queued_bytes=1).open()


async def test_watch_hears_flow_changes_and_work_from_another_replica(
    pg: PostgresBackend,
) -> None:
    where = pg.namespace()
    listener, other = (PostgresStore(where, max_queued_bytes=10**9) for _ in range(2))
    await listener.open()
    await other.open()
    try:
        async with contextlib.aclosing(listener.watch()) as events:
            assert await anext(events) == Resynced()
            flow = make_flow("orders")
            await other.create_flow(flow)
            await other.enqueue(make_request(flow.id))
            [leased] = await other.lease(flow.id, limit=1, lease_for=30, now=4e9)
            await other.retry(leased, attempt_for(leased, at=4e9, status=503), next_at=4e9)
            await other.delete_flow(flow.id)
            heard = [await asyncio.wait_for(anext(events), 5) for _ in range(4)]
        assert heard == [
            FlowChanged(flow.id),
            Queued(flow.id),
            Queued(flow.id),
            FlowChanged(flow.id),
        ]
    finally:
        await other.close()
        await listener.close()


async def test_watch_ends_when_the_store_closes(store: PostgresStore) -> None:
    events = store.watch()
    assert await anext(events) == Resynced()
    waiting = asyncio.ensure_future(anext(events))
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 5)


async def test_a_refused_row_does_not_fail_its_batch_neighbours(store: PostgresStore) -> None:
    good = [make_request("f1") for _ in range(20)]
    bad = make_request("f1")
    bad.path = "/nul\x00byte"
    results = await asyncio.gather(
        *(store.enqueue(r) for r in [*good[:10], bad, *good[10:]]), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1
    assert isinstance(failed[0], StoreUnavailable)
    assert "refused" in str(failed[0])
    assert {d.id for d in await store.lease("f1", limit=50, lease_for=30, now=4e9)} == {
        r.id for r in good
    }


async def test_list_query_walks_an_index_newest_first(
    pg: PostgresBackend, store: PostgresStore
) -> None:
    for flow in ("f1", "f2", "f3"):
        await asyncio.gather(
            *(store.enqueue(make_request(flow, received_at=NOW + i)) for i in range(1000))
        )
    leased = await store.lease("f2", limit=200, lease_for=30, now=NOW + 2000)
    for delivery in leased:
        await store.bury(delivery, attempt_for(delivery, at=NOW, status=400))
    with psycopg.connect(pg.database, options=f"-csearch_path={pg.schemas[-1]}") as conn:
        conn.execute("ANALYZE deliveries")
        conn.execute("SET enable_seqscan = off")
        for where in (
            DeliveryFilter(),
            DeliveryFilter(flow_id="f2"),
            DeliveryFilter(state=State.DEAD),
            DeliveryFilter(flow_id="f2", state=State.DEAD),
        ):
            for cursor in (None, "1500"):
                query, params = list_query(where, limit=50, cursor=cursor)
                plan = "\n".join(
                    row[0] for row in conn.execute(sql.SQL("EXPLAIN ") + query, params)
                )
                assert "Index Scan Backward" in plan, (where, plan)
                assert "Sort" not in plan, (where, plan)


async def test_finding_by_any_id_or_prefix_walks_indexes(
    pg: PostgresBackend, store: PostgresStore
) -> None:
    await asyncio.gather(
        *(store.enqueue(make_request("f1"), dedupe_key=f"evt_{i}") for i in range(500))
    )
    params = {"low": "01234567", "high": "01234568", "limit": 11}
    with psycopg.connect(pg.database, options=f"-csearch_path={pg.schemas[-1]}") as conn:
        conn.execute("ANALYZE deliveries")
        conn.execute("ANALYZE dedupe")
        conn.execute("SET enable_seqscan = off")
        for query in (FIND_EXACT, FIND_PREFIX):
            plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN {query}", params))
            assert "Seq Scan" not in plan, plan
            for index in ("deliveries_id", "deliveries_request_id", "dedupe_key"):
                assert f"using {index} on" in plan.lower(), (index, plan)


async def test_a_database_from_before_the_lookup_indexes_gets_them_and_keeps_its_data(
    pg: PostgresBackend,
) -> None:
    where = pg.namespace()
    store = pg.store(where)
    await store.open()
    request = make_request("f1", received_at=NOW)
    await store.enqueue(request, dedupe_key="evt_old", dedupe_until=NOW + 60)
    await store.close()
    with psycopg.connect(pg.database, options=f"-csearch_path={pg.schemas[-1]}") as conn:
        conn.execute("DROP INDEX deliveries_request_id, dedupe_key, deliveries_id")
        conn.execute("CREATE UNIQUE INDEX deliveries_id ON deliveries (id)")
        conn.execute("DROP INDEX deliveries_lane, deliveries_keyed")
        conn.execute("DROP TABLE buckets")
        conn.execute("ALTER TABLE deliveries DROP COLUMN destination, DROP COLUMN order_key")
        conn.execute("DELETE FROM schema_version WHERE version > 3")
    store = pg.store(where)
    await store.open()
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        for ref in (request.request_id, "evt_old", request.id[:16]):
            assert [d.id for d in await store.find_deliveries(ref, limit=5)] == [request.id]
    finally:
        await store.close()
    with psycopg.connect(pg.database, options=f"-csearch_path={pg.schemas[-1]}") as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        ).fetchall()
    indexes = dict(rows)
    assert "text_pattern_ops" in indexes["deliveries_id"]
    assert "UNIQUE" in indexes["deliveries_id"]
    assert {"deliveries_request_id", "dedupe_key"} <= indexes.keys()


async def test_lost_connections_answer_unavailable_then_recover(
    pg: PostgresBackend, store: PostgresStore
) -> None:
    acked = [await store.enqueue(make_request("f1")) for _ in range(5)]
    pg.admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    failures: list[StoreUnavailable] = []
    for _ in range(10):
        try:
            acked.append(await store.enqueue(make_request("f1")))
            break
        except StoreUnavailable as exc:
            failures.append(exc)
    assert failures, "a terminated connection must surface as StoreUnavailable"
    assert all("cannot reach PostgreSQL" in str(exc) for exc in failures)
    stored = await store.lease("f1", limit=100, lease_for=30, now=4e9)
    assert {d.id for d in stored} == {a.delivery_id for a in acked}


async def test_accepting_is_false_while_the_database_does_not_answer(
    pg: PostgresBackend, store: PostgresStore
) -> None:
    async def until(state: bool) -> None:
        for _ in range(200):
            if store.accepting is state:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"accepting did not become {state}")

    assert store.accepting
    pg.admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    await until(False)
    with pytest.raises(StoreUnavailable, match="cannot reach PostgreSQL"):
        await store.enqueue(make_request("f1"))
    await until(True)
    accepted = await store.enqueue(make_request("f1"))
    assert (await store.get_delivery(accepted.delivery_id)).state is State.QUEUED
