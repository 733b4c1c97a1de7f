"""The PostgreSQL store's writes but the group-committed ones (``groups``): each its own
transaction on a pooled connection the store hands in, announcing what it changed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

from hookgate.domain.deliveries import Delivery, Request, State
from hookgate.domain.destinations import DeliveryRate
from hookgate.domain.flows import Flow, encode
from hookgate.domain.pacing import TokenBucket
from hookgate.errors import FlowConflict, FlowNotFound
from hookgate.store import rows as table
from hookgate.store.base import Claim, DeliveryRecord
from hookgate.store.columns import DEAD, DONE, FILTERED, LEASED, LIVE, QUEUED
from hookgate.store.postgres.statements import (
    FLOW_CHANNEL,
    INSERT_ROWS,
    NOTIFY_QUEUE,
    QUEUE_CHANNEL,
    columns,
)

Conn = AsyncConnection[Any]
Sizes = list[tuple[str, int]]
"""``(flow id, queued size)`` of deliveries that joined or left the queue."""
_NOTIFY_FLOW = f"SELECT pg_notify('{FLOW_CHANNEL}', %s)"


async def create_flow(conn: Conn, flow: Flow) -> None:
    async with conn.transaction():
        try:
            await conn.execute(
                "INSERT INTO flows (id, name, spec, status, created_at, updated_at)"
                " VALUES (%s, %s, %s::jsonb, %s, %s, %s)",
                [
                    flow.id,
                    flow.name,
                    encode(flow.spec).decode(),
                    flow.status.value,
                    flow.created_at,
                    flow.updated_at,
                ],
            )
        except psycopg.errors.UniqueViolation:
            raise FlowConflict(f"a flow named {flow.name!r} exists already") from None
        await conn.execute(_NOTIFY_FLOW, [flow.id])


async def update_flow(conn: Conn, flow: Flow) -> None:
    async with conn.transaction():
        try:
            cur = await conn.execute(
                "UPDATE flows SET name = %s, spec = %s::jsonb, status = %s, updated_at = %s"
                " WHERE id = %s",
                [
                    flow.name,
                    encode(flow.spec).decode(),
                    flow.status.value,
                    flow.updated_at,
                    flow.id,
                ],
            )
        except psycopg.errors.UniqueViolation:
            raise FlowConflict(f"a flow named {flow.name!r} exists already") from None
        if cur.rowcount != 1:
            raise FlowNotFound(f"no flow with id {flow.id}")
        await conn.execute(_NOTIFY_FLOW, [flow.id])


async def delete_flow(conn: Conn, flow_id: str) -> None:
    async with conn.transaction():
        cur = await conn.execute("DELETE FROM flows WHERE id = %s", [flow_id])
        if cur.rowcount != 1:
            raise FlowNotFound(f"no flow with id {flow_id}")
        await conn.execute(
            "WITH gone AS (DELETE FROM deliveries WHERE flow_id = %s RETURNING id)"
            " DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM gone)",
            [flow_id],
        )
        await conn.execute("DELETE FROM dedupe WHERE flow_id = %s", [flow_id])
        await conn.execute("DELETE FROM schedules WHERE flow_id = %s", [flow_id])
        await conn.execute("DELETE FROM buckets WHERE name LIKE %s", [f"{flow_id}/%"])
        await conn.execute(_NOTIFY_FLOW, [flow_id])


async def keep_answer(conn: Conn, delivery: Delivery, answer: bytes) -> bool:
    cur = await conn.execute(
        f"UPDATE deliveries SET answer = %s WHERE id = %s AND state = {LEASED} AND attempts = %s",
        [answer, delivery.id, delivery.attempts],
    )
    return cur.rowcount == 1


async def replay(conn: Conn, clause: sql.Composable, params: list[Any], now: float) -> Sizes:
    """Queue again what ``clause`` picks of the done and dead: the queued sizes."""
    query = sql.SQL(
        f"UPDATE deliveries SET state = {QUEUED}, attempts = 0, next_at = %s, lease_until = NULL,"
        f" updated_at = %s WHERE ({{}}) AND state IN ({DONE}, {DEAD}) RETURNING flow_id, {{}}"
    ).format(clause, sql.SQL(table.QUEUED_SIZE))
    async with conn.transaction():
        cur = await conn.execute(query, [now, now, *params])
        rows = await cur.fetchall()
        await conn.execute(NOTIFY_QUEUE, [sorted({flow_id for flow_id, _ in rows})])
    return rows


async def delete_deliveries(conn: Conn, ids: Sequence[str]) -> tuple[int, Sizes]:
    """How many were deleted, and the queued sizes freed."""
    async with conn.transaction():
        cur = await conn.execute(
            "WITH gone AS (DELETE FROM deliveries WHERE id = ANY(%s)"
            f"  RETURNING id, flow_id, state, {table.QUEUED_SIZE} AS size),"
            " tried AS (DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM gone))"
            f" SELECT flow_id, count(*), coalesce(sum(size) FILTER (WHERE state IN {LIVE}), 0)"
            " FROM gone GROUP BY flow_id",
            [list(ids)],
        )
        rows = await cur.fetchall()
    freed = [(flow_id, int(size)) for flow_id, _, size in rows]
    return sum(int(count) for _, count, _ in rows), freed


async def purge(conn: Conn, flow_id: str, done_before: float, limit: int) -> int:
    """One small batch, skipping rows another purge holds, so no lock is held for long."""
    async with conn.transaction():
        cur = await conn.execute(
            "WITH gone AS (DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries"
            f"  WHERE flow_id = %s AND state IN ({DONE}, {FILTERED}) AND updated_at < %s"
            "  ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id),"
            " tried AS (DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM gone))"
            " SELECT count(*) FROM gone",
            [flow_id, done_before, limit],
        )
        row = await cur.fetchone()
        await conn.execute(
            "DELETE FROM dedupe WHERE flow_id = %s AND expires_at < extract(epoch FROM now())",
            [flow_id],
        )
    return int(row[0]) if row else 0


async def import_deliveries(
    conn: Conn, records: Sequence[DeliveryRecord]
) -> tuple[int, list[Delivery]]:
    """COPY the ones not present yet; one transaction, so a failed batch leaves nothing.
    How many were imported, and those of them in the queue."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT id FROM deliveries WHERE id = ANY(%s)", [[r.delivery.id for r in records]]
        )
        present = {delivery_id for (delivery_id,) in await cur.fetchall()}
        fresh = [r for r in records if r.delivery.id not in present]
        async with conn.cursor().copy(
            sql.SQL("COPY deliveries ({}) FROM STDIN").format(sql.SQL(table.FULL))
        ) as copy:
            for record in fresh:
                await copy.write_row(table.full_row(record.delivery))
        async with conn.cursor().copy(
            "COPY attempts (delivery_id, number, started_at, duration_ms, status_code,"
            " error, response) FROM STDIN"
        ) as copy:
            for record in fresh:
                for a in record.attempts:
                    await copy.write_row(table.attempt_row(record.delivery.id, a))
        pending = [r.delivery for r in fresh if r.delivery.state in (State.QUEUED, State.LEASED)]
        await conn.execute(NOTIFY_QUEUE, [sorted({d.flow_id for d in pending})])
    return len(fresh), pending


async def claim_tick(
    conn: Conn, flow_id: str, tick: float, request: Request | None, exclusive: bool
) -> Claim:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO schedules (flow_id) VALUES (%s) ON CONFLICT DO NOTHING", [flow_id]
        )
        # The row lock orders gateways claiming the same flow's ticks.
        cur = await conn.execute(
            "SELECT last_tick FROM schedules WHERE flow_id = %s FOR UPDATE", [flow_id]
        )
        row = await cur.fetchone()
        if row is not None and row[0] is not None and row[0] >= tick:
            return "taken"
        if exclusive:
            cur = await conn.execute(
                "SELECT 1 FROM deliveries WHERE flow_id = %s AND source = 'schedule'"
                f" AND state IN {LIVE} LIMIT 1",
                [flow_id],
            )
            if await cur.fetchone() is not None:
                return "busy"
        await conn.execute(
            "UPDATE schedules SET last_tick = %s WHERE flow_id = %s", [tick, flow_id]
        )
        if request is not None:
            await conn.execute(INSERT_ROWS, columns(table.inserted_rows(request)))
            await conn.execute(f"SELECT pg_notify('{QUEUE_CHANNEL}', %s)", [flow_id])
    return "claimed"


async def take_tokens(conn: Conn, bucket: str, wanted: int, rate: DeliveryRate) -> int:
    """The bucket's row is locked for the moment of the take, so gateways take in turn;
    time is the database's, so gateways' clocks need not agree."""
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO buckets AS b (name, tokens, stamp)"
            " VALUES (%s, %s, extract(epoch FROM clock_timestamp()))"
            " ON CONFLICT (name) DO UPDATE SET stamp = b.stamp"
            " RETURNING tokens, stamp, extract(epoch FROM clock_timestamp())::float8",
            [bucket, float(rate.burst)],
        )
        row = await cur.fetchone()
        assert row is not None
        tokens, stamp, now = row
        pace = TokenBucket.of(rate)
        pace.tokens, pace.stamp = tokens, stamp
        granted = pace.spend(wanted, rate, now)
        await conn.execute(
            "UPDATE buckets SET tokens = %s, stamp = %s WHERE name = %s",
            [pace.tokens, pace.stamp, bucket],
        )
    return granted


async def set_snapshot(conn: Conn, flow_id: str, snapshot: bytes | None) -> None:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO schedules (flow_id, snapshot) VALUES (%s, %s)"
            " ON CONFLICT (flow_id) DO UPDATE SET snapshot = excluded.snapshot",
            [flow_id, snapshot],
        )
