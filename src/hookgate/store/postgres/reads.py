"""The PostgreSQL store's reads, each on a pooled connection the store hands in."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql

from hookgate.domain.deliveries import Attempt, Delivery, Progress, State
from hookgate.domain.flows import Flow
from hookgate.errors import DeliveryNotFound
from hookgate.store import rows as table
from hookgate.store.base import DeliveryFilter, DeliveryRecord, Page, QueueStats
from hookgate.store.columns import LEASED, LIVE, QUEUED
from hookgate.store.postgres.statements import FIND_EXACT, FIND_PREFIX, list_query
from hookgate.store.shared import summary_page

Conn = AsyncConnection[Any]
_FLOW = "SELECT id, spec::text, status, created_at, updated_at FROM flows"


async def list_flows(conn: Conn) -> list[Flow]:
    cur = await conn.execute(f"{_FLOW} ORDER BY name")
    return [table.flow(r) for r in await cur.fetchall()]


async def get_flow(conn: Conn, flow_id: str) -> Flow | None:
    cur = await conn.execute(f"{_FLOW} WHERE id = %s", [flow_id])
    row = await cur.fetchone()
    return None if row is None else table.flow(row)


async def queued_sizes(conn: Conn) -> dict[str, int]:
    """What each flow's queue holds, by ``rows.queued_size``'s rule."""
    cur = await conn.execute(
        f"SELECT flow_id, sum({table.QUEUED_SIZE}) FROM deliveries"
        f" WHERE state IN {LIVE} GROUP BY flow_id"
    )
    return {flow_id: int(size) for flow_id, size in await cur.fetchall()}


async def get_delivery(conn: Conn, delivery_id: str) -> Delivery:
    cur = await conn.execute(
        sql.SQL("SELECT {} FROM deliveries WHERE id = %s").format(sql.SQL(table.FULL)),
        [delivery_id],
    )
    row = await cur.fetchone()
    if row is None:
        raise DeliveryNotFound(f"no delivery {delivery_id} (unknown, or purged)")
    return table.full(row)


async def attempts(conn: Conn, delivery_id: str) -> list[Attempt]:
    cur = await conn.execute(
        f"SELECT {table.ATTEMPT} FROM attempts WHERE delivery_id = %s ORDER BY seq",
        [delivery_id],
    )
    return [table.attempt(r) for r in await cur.fetchall()]


async def progress(conn: Conn, status_token: str) -> Progress | None:
    cur = await conn.execute(
        f"SELECT {table.PROGRESS} FROM deliveries WHERE status_token = %s", [status_token]
    )
    row = await cur.fetchone()
    return None if row is None else table.progress(row)


async def find_deliveries(
    conn: Conn, ref: str, bounds: tuple[str, str] | None, limit: int
) -> list[Delivery]:
    params: dict[str, Any] = {"low": ref, "limit": limit}
    cur = await conn.execute(FIND_EXACT, params)
    rows = await cur.fetchall()
    if not rows and bounds is not None:
        params["low"], params["high"] = bounds
        cur = await conn.execute(FIND_PREFIX, params)
        rows = await cur.fetchall()
    return [table.summary(row) for row in rows]


async def list_deliveries(
    conn: Conn, where: DeliveryFilter, limit: int, cursor: str | None
) -> Page:
    query, params = list_query(where, limit=limit, cursor=cursor)
    cur = await conn.execute(query, params)
    rows = await cur.fetchall()
    return summary_page(rows, limit)


async def queue_stats(conn: Conn) -> dict[str, QueueStats]:
    cur = await conn.execute(
        f"SELECT flow_id, count(*) FILTER (WHERE state = {QUEUED}),"
        f" count(*) FILTER (WHERE state = {LEASED}), min(received_at),"
        f" min(CASE WHEN state = {QUEUED} THEN next_at ELSE lease_until END)"
        f" FROM deliveries WHERE state IN {LIVE} GROUP BY flow_id"
    )
    return {
        flow_id: QueueStats(depth, leased, oldest, next_due)
        for flow_id, depth, leased, oldest, next_due in await cur.fetchall()
    }


async def count_deliveries(conn: Conn) -> dict[str, dict[State, int]]:
    cur = await conn.execute(
        "SELECT flow_id, state, count(*) FROM deliveries GROUP BY flow_id, state"
    )
    counts: dict[str, dict[State, int]] = {}
    for flow_id, state, count in await cur.fetchall():
        counts.setdefault(flow_id, {})[State(state)] = count
    return counts


async def export_deliveries(
    conn: Conn, limit: int, cursor: str | None
) -> tuple[list[DeliveryRecord], str | None]:
    """One page of deliveries with their attempts, read in one transaction."""
    async with conn.transaction():
        cur = await conn.execute(
            sql.SQL("SELECT seq, {} FROM deliveries WHERE seq > %s ORDER BY seq LIMIT %s").format(
                sql.SQL(table.FULL)
            ),
            [int(cursor or 0), limit],
        )
        rows = await cur.fetchall()
        deliveries = [table.full(full) for _seq, *full in rows]
        cur = await conn.execute(
            f"SELECT delivery_id, {table.ATTEMPT} FROM attempts"
            " WHERE delivery_id = ANY(%s) ORDER BY seq",
            [[d.id for d in deliveries]],
        )
        tried = await cur.fetchall()
    history: dict[str, list[Attempt]] = {}
    for delivery_id, *attempt in tried:
        history.setdefault(delivery_id, []).append(table.attempt(attempt))
    records = [DeliveryRecord(d, history.get(d.id, [])) for d in deliveries]
    return records, str(rows[-1][0]) if len(rows) == limit else None


async def last_tick(conn: Conn, flow_id: str) -> float | None:
    cur = await conn.execute("SELECT last_tick FROM schedules WHERE flow_id = %s", [flow_id])
    row = await cur.fetchone()
    return None if row is None else row[0]


async def snapshot(conn: Conn, flow_id: str) -> bytes | None:
    cur = await conn.execute("SELECT snapshot FROM schedules WHERE flow_id = %s", [flow_id])
    row = await cur.fetchone()
    return None if row is None or row[0] is None else bytes(row[0])
