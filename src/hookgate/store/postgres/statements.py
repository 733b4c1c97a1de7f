"""The PostgreSQL store's batched statements (inserts, leases, outcomes) and its queries built
from a filter, with the states interpolated once, at import."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import sql

from hookgate.store import rows as table
from hookgate.store.base import DeliveryFilter
from hookgate.store.columns import LEASED, LIVE, QUEUED
from hookgate.store.shared import find_sql

FLOW_CHANNEL = "hookgate_flow"
QUEUE_CHANNEL = "hookgate_queue"
FIND_EXACT = find_sql(table.SUMMARY, "{col} = %(low)s", "%(limit)s")
FIND_PREFIX = find_sql(table.SUMMARY, "{col} ~>=~ %(low)s AND {col} ~<~ %(high)s", "%(limit)s")

INSERT_ROWS = (
    f"INSERT INTO deliveries ({table.INSERTED})"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::float8[],"
    " %b::float8[], %b::text[], %b::text[], %b::text[], %b::bytea[], %b::bytea[], %b::text[],"
    " %b::text[], %b::text[], %b::int2[])"
)
"""Rows of ``rows.inserted_rows`` (one column per array) in one statement."""
INSERT_PLAIN = (
    f"WITH added AS ({INSERT_ROWS} RETURNING flow_id)"
    f" SELECT pg_notify('{QUEUE_CHANNEL}', flow_id)"
    " FROM (SELECT DISTINCT flow_id FROM added) AS f"
)
"""A group of plain enqueues and the wake-up of their flows' dispatchers, in one statement:
in autocommit it is its own transaction, so the group costs one round trip."""


def columns(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows turned into one list per column: the arrays ``unnest`` turns back into rows."""
    return [list(column) for column in zip(*rows, strict=True)]


def _qualified(alias: str, names: str) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in names.split(","))


LEASE = sql.SQL(
    "WITH ready AS (SELECT seq FROM deliveries AS r"
    f"  WHERE flow_id = %(flow)s AND destination = %(to)s AND state = {QUEUED}"
    " AND next_at <= %(now)s"
    "  AND (order_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries AS e"
    "   WHERE e.flow_id = r.flow_id AND e.destination = r.destination"
    f"   AND e.order_key = r.order_key AND e.state IN {LIVE} AND e.seq < r.seq))"
    "  ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
    " expired AS (SELECT seq FROM deliveries"
    f"  WHERE flow_id = %(flow)s AND destination = %(to)s AND state = {LEASED}"
    "  AND lease_until < %(now)s"
    "  ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
    " pick AS (SELECT seq FROM ready UNION ALL SELECT seq FROM expired"
    "  ORDER BY seq LIMIT %(limit)s)"
    f" UPDATE deliveries AS d SET state = {LEASED}, attempts = d.attempts + 1,"
    "  lease_until = %(until)s, updated_at = %(now)s"
    " FROM pick WHERE d.seq = pick.seq RETURNING {}"
).format(sql.SQL(_qualified("d", table.FULL)))

FINISH = (
    "WITH v AS (SELECT * FROM unnest(%s::text[], %s::int4[], %s::int2[], %s::float8[],"
    "  %s::text[], %s::float8[], %s::int4[], %s::float8[], %s::float8[], %s::int4[],"
    "  %s::text[], %s::text[], %s::bool[]) AS v(id, token, target, next_at, problem, ended,"
    "  number, started, ms, status, error, response, notify)),"
    " moved AS (UPDATE deliveries AS d SET state = v.target,"
    "  next_at = coalesce(v.next_at, d.next_at), lease_until = NULL,"
    "  last_error = v.problem, updated_at = v.ended"
    f"  FROM v WHERE d.id = v.id AND d.state = {LEASED} AND d.attempts = v.token"
    "  RETURNING d.id, d.flow_id, v.notify),"
    " tried AS (INSERT INTO attempts (delivery_id, number, started_at, duration_ms,"
    "  status_code, error, response)"
    "  SELECT v.id, v.number, v.started, v.ms, v.status, v.error, v.response"
    "  FROM v JOIN moved ON moved.id = v.id)"
    f" SELECT id, CASE WHEN notify THEN pg_notify('{QUEUE_CHANNEL}', flow_id) END FROM moved"
)
"""One statement for a group of outcomes (one round trip, its own transaction): the moves,
each guarded by its lease (``attempts``), the attempts of those that moved, and for retries
the wake-up of every dispatcher."""
NOTIFY_QUEUE = f"SELECT pg_notify('{QUEUE_CHANNEL}', f) FROM unnest(%s::text[]) AS f"


def list_query(
    where: DeliveryFilter, *, limit: int, cursor: str | None
) -> tuple[sql.Composed, list[Any]]:
    """The page query: newest first by ``seq``, continuing below the cursor (keyset)."""
    clause, params = where_clause(where)
    if cursor is not None:
        clause = sql.SQL("{} AND seq < %s").format(clause)
        params.append(int(cursor))
    query = sql.SQL("SELECT seq, {} FROM deliveries WHERE {} ORDER BY seq DESC LIMIT %s").format(
        sql.SQL(table.SUMMARY), clause
    )
    return query, [*params, limit + 1]


def where_clause(where: DeliveryFilter) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = [sql.SQL("true")]
    params: list[Any] = []
    for column, op, value in (
        ("flow_id", "=", where.flow_id),
        ("state", "=", None if where.state is None else int(where.state)),
        ("received_at", ">=", where.since),
        ("received_at", "<", where.until),
    ):
        if value is not None:
            clauses.append(sql.SQL(f"{column} {op} %s"))
            params.append(value)
    return sql.SQL(" AND ").join(clauses), params
