"""What the writer process runs: every write of the SQLite store, one function per message of
:mod:`hookgate.store.sqlite.protocol`, inside the group's transaction."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from hookgate.errors import FlowConflict, FlowNotFound
from hookgate.store import columns as table
from hookgate.store.columns import DEAD, DONE, FILTERED, LEASED, LIVE, QUEUED
from hookgate.store.sqlite import protocol as p
from hookgate.store.sqlite.schema import MULTI_ROW

_LIVE = (QUEUED, LEASED)

# inserts and outcomes, batched into as few statements as possible -----------------------
_INSERT_HEAD = f"INSERT INTO deliveries ({table.INSERTED}) VALUES "
_ROW = "(" + ",".join("?" * table.INSERTED_COUNT) + ")"


@functools.cache
def _insert_many(rows: int) -> str:
    return _INSERT_HEAD + ",".join([_ROW] * rows)


def insert_all(conn: sqlite3.Connection, rows: Sequence[p.InsertedRow]) -> None:
    """One statement per ``MULTI_ROW`` rows: a statement per row costs a step each."""
    for start in range(0, len(rows), MULTI_ROW):
        chunk = rows[start : start + MULTI_ROW]
        conn.execute(_insert_many(len(chunk)), [value for row in chunk for value in row])


_MOVE = (
    "UPDATE deliveries SET state = v.column1, next_at = coalesce(v.column2, deliveries.next_at),"
    " lease_until = NULL, last_error = v.column3, updated_at = v.column4"
    " FROM (VALUES {}) AS v"
    f" WHERE deliveries.id = v.column5 AND deliveries.state = {LEASED}"
    " AND deliveries.attempts = v.column6"
    " RETURNING deliveries.id"
)
_ATTEMPTS = "INSERT INTO attempts VALUES {}"


def finish_all(conn: sqlite3.Connection, finishes: Sequence[p.Finish]) -> list[bool]:
    """LEASED -> DONE/QUEUED/DEAD, each guarded by its lease (``attempts``), in one UPDATE ...
    FROM VALUES per chunk; only the moved ones get their attempt recorded."""
    moved_all: list[bool] = []
    for start in range(0, len(finishes), MULTI_ROW):
        chunk = finishes[start : start + MULTI_ROW]
        moved = {
            delivery_id
            for (delivery_id,) in conn.execute(
                _MOVE.format(",".join(["(?,?,?,?,?,?)"] * len(chunk))),
                [value for f in chunk for value in f.move],
            )
        }
        flags = [_moved_id(f.move) in moved for f in chunk]
        recorded = [f.attempt for f, ok in zip(chunk, flags, strict=True) if ok]
        if recorded:
            conn.execute(
                _ATTEMPTS.format(",".join(["(?,?,?,?,?,?,?)"] * len(recorded))),
                [value for row in recorded for value in row],
            )
        moved_all += flags
    return moved_all


def _moved_id(move: p.Move) -> str:
    _state, _next_at, _error, _updated_at, delivery_id, _attempts = move
    return delivery_id


# the other writes, one per message ---------------------------------------------------------
def create_flow(conn: sqlite3.Connection, m: p.CreateFlow) -> None:
    _flow_id, name, *_ = m.row
    try:
        conn.execute(
            "INSERT INTO flows (id, name, spec, status, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)",
            m.row,
        )
    except sqlite3.IntegrityError:
        raise FlowConflict(f"a flow named {name!r} exists already") from None


def update_flow(conn: sqlite3.Connection, m: p.UpdateFlow) -> None:
    name, _spec, _status, _updated_at, flow_id = m.row
    try:
        cur = conn.execute(
            "UPDATE flows SET name = ?, spec = ?, status = ?, updated_at = ? WHERE id = ?", m.row
        )
    except sqlite3.IntegrityError:
        raise FlowConflict(f"a flow named {name!r} exists already") from None
    if cur.rowcount != 1:
        raise FlowNotFound(f"no flow with id {flow_id}")


def delete_flow(conn: sqlite3.Connection, m: p.DeleteFlow) -> None:
    if conn.execute("DELETE FROM flows WHERE id = ?", (m.flow_id,)).rowcount != 1:
        raise FlowNotFound(f"no flow with id {m.flow_id}")
    conn.execute(
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE flow_id = ?)",
        (m.flow_id,),
    )
    for name in ("deliveries", "dedupe", "schedules"):
        conn.execute(f"DELETE FROM {name} WHERE flow_id = ?", (m.flow_id,))


def _dedupe_insert(
    conn: sqlite3.Connection, rows: Sequence[p.InsertedRow], key: str, until: float
) -> p.Seen | None:
    """Insert unless the key was seen within its window; then the first request's ids."""
    delivery_id, request_id, flow_id, _next_at, received_at = rows[0][:5]
    seen = conn.execute(
        "SELECT request_id, delivery_id FROM dedupe"
        " WHERE flow_id = ? AND key = ? AND expires_at > ?",
        (flow_id, key, received_at),
    ).fetchone()
    if seen is not None:
        first_request_id, first_delivery_id = seen
        return first_request_id, first_delivery_id
    conn.execute(
        "INSERT OR REPLACE INTO dedupe VALUES (?,?,?,?,?)",
        (flow_id, key, request_id, delivery_id, until),
    )
    insert_all(conn, rows)
    return None


def dedupe_insert(conn: sqlite3.Connection, m: p.DedupeInsert) -> p.Seen | None:
    return _dedupe_insert(conn, m.rows, m.key, m.until)


def tracked_insert(
    conn: sqlite3.Connection, m: p.TrackedInsert
) -> tuple[p.Seen | None, str | None]:
    """An insert (deduped if ``key``) whose first delivery gets ``token`` for its status URL,
    unless it has one already (a duplicate keeps the first): the ids seen before, the token."""
    seen = _dedupe_insert(conn, m.rows, m.key, m.until) if m.key is not None else None
    if m.key is None:
        insert_all(conn, m.rows)
    if seen is None:
        (delivery_id, *_) = m.rows[0]
    else:
        _, delivery_id = seen
    kept = conn.execute(
        "UPDATE deliveries SET status_token = coalesce(status_token, ?) WHERE id = ?"
        " RETURNING status_token",
        (m.token, delivery_id),
    ).fetchone()
    return seen, None if kept is None else kept[0]


def keep_answer(conn: sqlite3.Connection, m: p.KeepAnswer) -> bool:
    moved = conn.execute(
        f"UPDATE deliveries SET answer = ? WHERE id = ? AND state = {LEASED} AND attempts = ?",
        (m.answer, m.delivery_id, m.attempts),
    ).rowcount
    return bool(moved == 1)


_KEY_FREE = (
    " AND (order_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries AS e"
    "  WHERE e.flow_id = d.flow_id AND e.destination = d.destination"
    f"  AND e.order_key = d.order_key AND e.state IN {LIVE} AND e.seq < d.seq))"
)
_LEASE = (
    f"UPDATE deliveries SET state = {LEASED}, attempts = attempts + 1, lease_until = ?,"
    " updated_at = ? WHERE seq IN ("
    "  SELECT seq FROM (SELECT seq FROM deliveries AS d"
    f"   WHERE flow_id = ? AND destination = ? AND state = {QUEUED} AND attempts = 0"
    " AND next_at <= ?"
    f"  {_KEY_FREE} ORDER BY seq LIMIT ?)"
    "  UNION ALL"
    "  SELECT seq FROM (SELECT seq FROM deliveries AS d"
    f"   WHERE flow_id = ? AND destination = ? AND state = {QUEUED} AND attempts > 0"
    " AND next_at <= ?"
    f"  {_KEY_FREE} ORDER BY seq LIMIT ?)"
    "  UNION ALL"
    "  SELECT seq FROM (SELECT seq FROM deliveries"
    f"   WHERE flow_id = ? AND destination = ? AND state = {LEASED} AND lease_until < ?"
    "   ORDER BY seq LIMIT ?)"
    "  ORDER BY 1 LIMIT ?"
    f") RETURNING {table.FULL}"
)
"""Due deliveries of one destination, oldest first; a keyed one only at the head of its key's
line (no older queued or leased delivery with its key), and an expired lease again.

Each branch takes at most the batch before the union is ordered: first attempts in seq order
through ``deliveries_ready`` (a backlog is walked only as far as the batch), retries whose
backoff is over through ``deliveries_backoff``, expired leases through ``deliveries_leased``.
"""


def lease(conn: sqlite3.Connection, m: p.Lease) -> list[Any]:
    branch = (m.flow_id, m.destination, m.now, m.limit)
    return conn.execute(
        _LEASE, (m.now + m.lease_for, m.now, *branch, *branch, *branch, m.limit)
    ).fetchall()


def replay(conn: sqlite3.Connection, m: p.Replay) -> tuple[int, p.Sizes]:
    rows = conn.execute(
        f"UPDATE deliveries SET state = {QUEUED}, attempts = 0, next_at = ?, lease_until = NULL,"
        f" updated_at = ? WHERE ({m.clause}) AND state IN ({DONE}, {DEAD})"
        f" RETURNING flow_id, {table.QUEUED_SIZE}",
        [m.now, m.now, *m.params],
    ).fetchall()
    return len(rows), rows


def delete_deliveries(conn: sqlite3.Connection, m: p.DeleteDeliveries) -> tuple[int, p.Sizes]:
    marks = ",".join("?" * len(m.ids))
    rows = conn.execute(
        f"DELETE FROM deliveries WHERE id IN ({marks})"
        f" RETURNING flow_id, state, {table.QUEUED_SIZE}",
        m.ids,
    ).fetchall()
    conn.execute(f"DELETE FROM attempts WHERE delivery_id IN ({marks})", m.ids)
    return len(rows), [(flow_id, size) for flow_id, state, size in rows if state in _LIVE]


def purge(conn: sqlite3.Connection, m: p.Purge) -> int:
    ids = [
        delivery_id
        for (delivery_id,) in conn.execute(
            f"SELECT id FROM deliveries WHERE flow_id = ? AND state IN ({DONE}, {FILTERED})"
            " AND updated_at < ? LIMIT ?",
            (m.flow_id, m.done_before, m.limit),
        )
    ]
    marks = ",".join("?" * len(ids))
    conn.execute(f"DELETE FROM attempts WHERE delivery_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM deliveries WHERE id IN ({marks})", ids)
    conn.execute(
        "DELETE FROM dedupe WHERE flow_id = ? AND expires_at < ?", (m.flow_id, time.time())
    )
    return len(ids)


_IMPORT = (
    f"INSERT INTO deliveries ({table.FULL}) VALUES ({','.join('?' * table.FULL_COUNT)})"
    f" ON CONFLICT (id) DO NOTHING RETURNING flow_id, state, {table.QUEUED_SIZE}"
)


def import_deliveries(conn: sqlite3.Connection, m: p.ImportDeliveries) -> tuple[int, p.Sizes]:
    """``(full row, attempt rows)`` per delivery; ids already present are skipped."""
    inserted = 0
    queued: p.Sizes = []
    for row, attempts in m.records:
        added = conn.execute(_IMPORT, row).fetchone()
        if added is None:
            continue
        conn.executemany("INSERT INTO attempts VALUES (?,?,?,?,?,?,?)", attempts)
        inserted += 1
        flow_id, state, size = added
        if state in _LIVE:
            queued.append((flow_id, size))
    return inserted, queued


def claim_tick(conn: sqlite3.Connection, m: p.ClaimTick) -> str:
    conn.execute("INSERT OR IGNORE INTO schedules (flow_id) VALUES (?)", (m.flow_id,))
    if (
        m.exclusive
        and conn.execute(
            "SELECT 1 FROM deliveries WHERE flow_id = ? AND source = 'schedule'"
            f" AND state IN {LIVE} LIMIT 1",
            (m.flow_id,),
        ).fetchone()
    ):
        return "busy"
    moved = conn.execute(
        "UPDATE schedules SET last_tick = ? WHERE flow_id = ?"
        " AND (last_tick IS NULL OR last_tick < ?)",
        (m.tick, m.flow_id, m.tick),
    ).rowcount
    if moved != 1:
        return "taken"
    insert_all(conn, m.rows)
    return "claimed"


def set_snapshot(conn: sqlite3.Connection, m: p.SetSnapshot) -> None:
    conn.execute(
        "INSERT INTO schedules (flow_id, snapshot) VALUES (?, ?)"
        " ON CONFLICT (flow_id) DO UPDATE SET snapshot = excluded.snapshot",
        (m.flow_id, m.snapshot),
    )


WRITES: dict[type[p.Write[Any]], Callable[[sqlite3.Connection, Any], object]] = {
    p.CreateFlow: create_flow,
    p.UpdateFlow: update_flow,
    p.DeleteFlow: delete_flow,
    p.DedupeInsert: dedupe_insert,
    p.TrackedInsert: tracked_insert,
    p.KeepAnswer: keep_answer,
    p.Lease: lease,
    p.Replay: replay,
    p.DeleteDeliveries: delete_deliveries,
    p.Purge: purge,
    p.ImportDeliveries: import_deliveries,
    p.ClaimTick: claim_tick,
    p.SetSnapshot: set_snapshot,
}
"""The function that runs each kind of write but the two batched ones (insert, finish)."""
ISOLATED = {p.CreateFlow, p.UpdateFlow, p.DeleteFlow}
"""Writes that may fail on their own (a name taken): a savepoint keeps their neighbours."""
