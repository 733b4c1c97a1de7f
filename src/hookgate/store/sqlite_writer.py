"""The SQLite writer process: the only write connection, group commit, WAL checkpoints.

``SQLiteStore`` starts ``python -m hookgate.store.sqlite_writer PATH SYNCHRONOUS FD RESERVE``
and talks to it over a socket pair. Writes run here, in their own process, because a writer *thread*
shares the gateway's GIL: every commit then waits for the busy event loop to hand the GIL
over, which capped ingest well below what either side does alone (design §7, BENCHMARKS.md).

Frames both ways are a 4-byte big-endian length and a pickle. The gateway sends lists of
``(op_id, kind, payload)``: kind ``insert`` (payload: the rows of ``rows.INSERTED`` one request
becomes, one per destination), ``finish``
(payload: the delivery's move and its attempt) or the name of a function in :data:`WRITES`
(payload: its arguments). The writer takes everything that is waiting, runs it in one
transaction, commits once (one ``fsync`` for the whole group) and answers with
``(operations, seconds, [(op_id, result), ...])``; a result that failed is the exception.
When the socket closes (the gateway stopped, or died) the writer finishes its batch and exits.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from hookgate import isolation
from hookgate.errors import (
    FlowConflict,
    FlowNotFound,
    SchemaMismatch,
    StoreFull,
    StoreUnavailable,
)
from hookgate.store import columns as table

BATCH = 2048
CHECKPOINT_EVERY = 0.25
REWIND_FRAMES = 8192  # 32 MB of 4 KB pages
MULTI_ROW = 512  # 512 rows x 15 columns stays below SQLite's 32,766 bound variables
SCHEMA_VERSION = 6
HEADER = struct.Struct(">I")
BUSY_MS = 30_000
TRUNCATE_WAIT_MS = 100
"""How long a TRUNCATE checkpoint may wait for readers: meanwhile no write can start."""

Op = tuple[int, str, Any]


def frame(payload: Any) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def take_frame(buffer: bytearray) -> bytes | None:
    """The first complete frame's payload, cut from ``buffer``; None until one is complete."""
    if len(buffer) < HEADER.size:
        return None
    (size,) = HEADER.unpack_from(buffer)
    end = HEADER.size + size
    if len(buffer) < end:
        return None
    payload = bytes(buffer[HEADER.size : end])
    del buffer[:end]
    return payload


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=30,
        cached_statements=MULTI_ROW + 64,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    return conn


def migrate(conn: sqlite3.Connection, path: str) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"{path} has schema version {version}, newer than this Hookgate "
            f"({SCHEMA_VERSION}); upgrade Hookgate or use a copy of the data directory"
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        script = resources.files("hookgate.store").joinpath(f"schema/sqlite-{step:04d}.sql")
        conn.executescript(
            f"BEGIN IMMEDIATE; {script.read_text()}; PRAGMA user_version={step}; COMMIT;"
        )


# inserts and outcomes, batched into as few statements as possible -----------------------
_INSERT_HEAD = f"INSERT INTO deliveries ({table.INSERTED}) VALUES "
_ROW = "(" + ",".join("?" * table.INSERTED_COUNT) + ")"


@functools.cache
def _insert_many(rows: int) -> str:
    return _INSERT_HEAD + ",".join([_ROW] * rows)


def insert_all(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """One statement per ``MULTI_ROW`` rows: a statement per row costs a step each."""
    for start in range(0, len(rows), MULTI_ROW):
        chunk = rows[start : start + MULTI_ROW]
        conn.execute(_insert_many(len(chunk)), [value for row in chunk for value in row])


_MOVE = (
    "UPDATE deliveries SET state = v.column1, next_at = coalesce(v.column2, deliveries.next_at),"
    " lease_until = NULL, last_error = v.column3, updated_at = v.column4"
    " FROM (VALUES {}) AS v"
    " WHERE deliveries.id = v.column5 AND deliveries.state = 1 AND deliveries.attempts = v.column6"
    " RETURNING deliveries.id"
)
_ATTEMPTS = "INSERT INTO attempts VALUES {}"


def finish_all(conn: sqlite3.Connection, finishes: Sequence[tuple[Any, Any]]) -> list[bool]:
    """LEASED -> DONE/QUEUED/DEAD, each guarded by its lease (``attempts``), in one UPDATE ...
    FROM VALUES per chunk; only the moved ones get their attempt recorded."""
    moved_all: list[bool] = []
    for start in range(0, len(finishes), MULTI_ROW):
        chunk = finishes[start : start + MULTI_ROW]
        moved = {
            row[0]
            for row in conn.execute(
                _MOVE.format(",".join(["(?,?,?,?,?,?)"] * len(chunk))),
                [value for move, _ in chunk for value in move],
            )
        }
        flags = [move[4] in moved for move, _ in chunk]
        recorded = [attempt for (_, attempt), ok in zip(chunk, flags, strict=True) if ok]
        if recorded:
            conn.execute(
                _ATTEMPTS.format(",".join(["(?,?,?,?,?,?,?)"] * len(recorded))),
                [value for row in recorded for value in row],
            )
        moved_all += flags
    return moved_all


# the other writes, by name -----------------------------------------------------------------
def create_flow(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    try:
        conn.execute(
            "INSERT INTO flows (id, name, spec, status, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?)",
            row,
        )
    except sqlite3.IntegrityError:
        raise FlowConflict(f"a flow named {row[1]!r} exists already") from None


def update_flow(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    try:
        cur = conn.execute(
            "UPDATE flows SET name = ?, spec = ?, status = ?, updated_at = ? WHERE id = ?", row
        )
    except sqlite3.IntegrityError:
        raise FlowConflict(f"a flow named {row[0]!r} exists already") from None
    if cur.rowcount != 1:
        raise FlowNotFound(f"no flow with id {row[4]}")


def delete_flow(conn: sqlite3.Connection, flow_id: str) -> None:
    if conn.execute("DELETE FROM flows WHERE id = ?", (flow_id,)).rowcount != 1:
        raise FlowNotFound(f"no flow with id {flow_id}")
    conn.execute(
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE flow_id = ?)",
        (flow_id,),
    )
    for name in ("deliveries", "dedupe", "schedules"):
        conn.execute(f"DELETE FROM {name} WHERE flow_id = ?", (flow_id,))


def dedupe_insert(
    conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], key: str, until: float
) -> tuple[str, str] | None:
    """Insert unless the key was seen within its window; then the first request's ids."""
    delivery_id, request_id, flow_id, _, received_at = rows[0][:5]
    seen = conn.execute(
        "SELECT request_id, delivery_id FROM dedupe"
        " WHERE flow_id = ? AND key = ? AND expires_at > ?",
        (flow_id, key, received_at),
    ).fetchone()
    if seen is not None:
        return seen[0], seen[1]
    conn.execute(
        "INSERT OR REPLACE INTO dedupe VALUES (?,?,?,?,?)",
        (flow_id, key, request_id, delivery_id, until),
    )
    insert_all(conn, rows)
    return None


def tracked_insert(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[Any, ...]],
    key: str | None,
    until: float,
    token: str,
) -> tuple[tuple[str, str] | None, str | None]:
    """An insert (deduped if ``key``) whose first delivery gets ``token`` for its status URL,
    unless it has one already (a duplicate keeps the first): the ids seen before, the token."""
    seen = dedupe_insert(conn, rows, key, until) if key is not None else None
    if key is None:
        insert_all(conn, rows)
    kept = conn.execute(
        "UPDATE deliveries SET status_token = coalesce(status_token, ?) WHERE id = ?"
        " RETURNING status_token",
        (token, rows[0][0] if seen is None else seen[1]),
    ).fetchone()
    return seen, None if kept is None else kept[0]


def keep_answer(conn: sqlite3.Connection, delivery_id: str, attempts: int, answer: bytes) -> bool:
    moved = conn.execute(
        "UPDATE deliveries SET answer = ? WHERE id = ? AND state = 1 AND attempts = ?",
        (answer, delivery_id, attempts),
    ).rowcount
    return bool(moved == 1)


_KEY_FREE = (
    " AND (order_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries AS e"
    "  WHERE e.flow_id = d.flow_id AND e.destination = d.destination"
    "  AND e.order_key = d.order_key AND e.state IN (0, 1) AND e.seq < d.seq))"
)
_LEASE = (
    "UPDATE deliveries SET state = 1, attempts = attempts + 1, lease_until = ?,"
    " updated_at = ? WHERE seq IN ("
    "  SELECT seq FROM (SELECT seq FROM deliveries AS d"
    "   WHERE flow_id = ? AND destination = ? AND state = 0 AND attempts = 0 AND next_at <= ?"
    f"  {_KEY_FREE} ORDER BY seq LIMIT ?)"
    "  UNION ALL"
    "  SELECT seq FROM (SELECT seq FROM deliveries AS d"
    "   WHERE flow_id = ? AND destination = ? AND state = 0 AND attempts > 0 AND next_at <= ?"
    f"  {_KEY_FREE} ORDER BY seq LIMIT ?)"
    "  UNION ALL"
    "  SELECT seq FROM (SELECT seq FROM deliveries"
    "   WHERE flow_id = ? AND destination = ? AND state = 1 AND lease_until < ?"
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


def lease(
    conn: sqlite3.Connection,
    flow_id: str,
    destination: str,
    limit: int,
    lease_for: float,
    now: float,
) -> list[Any]:
    branch = (flow_id, destination, now, limit)
    return conn.execute(_LEASE, (now + lease_for, now, *branch, *branch, *branch, limit)).fetchall()


Sizes = list[tuple[str, int]]
"""``(flow id, queued size)`` of deliveries that joined or left the queue."""


def replay(
    conn: sqlite3.Connection, clause: str, params: list[Any], now: float
) -> tuple[int, Sizes]:
    """``clause`` is built by the store from a filter, never from caller text."""
    rows = conn.execute(
        f"UPDATE deliveries SET state = 0, attempts = 0, next_at = ?, lease_until = NULL,"
        f" updated_at = ? WHERE ({clause}) AND state IN (2, 3)"
        f" RETURNING flow_id, {table.QUEUED_SIZE}",
        [now, now, *params],
    ).fetchall()
    return len(rows), rows


def delete_deliveries(conn: sqlite3.Connection, ids: list[str]) -> tuple[int, Sizes]:
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        f"DELETE FROM deliveries WHERE id IN ({marks})"
        f" RETURNING flow_id, state, {table.QUEUED_SIZE}",
        ids,
    ).fetchall()
    conn.execute(f"DELETE FROM attempts WHERE delivery_id IN ({marks})", ids)
    return len(rows), [(flow_id, size) for flow_id, state, size in rows if state in (0, 1)]


def purge(conn: sqlite3.Connection, flow_id: str, done_before: float, limit: int) -> int:
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM deliveries WHERE flow_id = ? AND state IN (2, 4) AND updated_at < ?"
            " LIMIT ?",
            (flow_id, done_before, limit),
        )
    ]
    marks = ",".join("?" * len(ids))
    conn.execute(f"DELETE FROM attempts WHERE delivery_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM deliveries WHERE id IN ({marks})", ids)
    conn.execute("DELETE FROM dedupe WHERE flow_id = ? AND expires_at < ?", (flow_id, time.time()))
    return len(ids)


def import_deliveries(
    conn: sqlite3.Connection, records: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]
) -> tuple[int, Sizes]:
    """``(full row, attempt rows)`` per delivery; ids already present are skipped."""
    inserted = 0
    queued: Sizes = []
    for row, attempts in records:
        added = conn.execute(
            f"INSERT INTO deliveries ({table.FULL}) VALUES ({','.join('?' * table.FULL_COUNT)})"
            f" ON CONFLICT (id) DO NOTHING RETURNING flow_id, state, {table.QUEUED_SIZE}",
            row,
        ).fetchone()
        if added is None:
            continue
        conn.executemany("INSERT INTO attempts VALUES (?,?,?,?,?,?,?)", attempts)
        inserted += 1
        if added[1] in (0, 1):
            queued.append((added[0], added[2]))
    return inserted, queued


def claim_tick(
    conn: sqlite3.Connection,
    flow_id: str,
    tick: float,
    rows: Sequence[tuple[Any, ...]],
    exclusive: bool,
) -> str:
    conn.execute("INSERT OR IGNORE INTO schedules (flow_id) VALUES (?)", (flow_id,))
    if (
        exclusive
        and conn.execute(
            "SELECT 1 FROM deliveries WHERE flow_id = ? AND source = 'schedule'"
            " AND state IN (0, 1) LIMIT 1",
            (flow_id,),
        ).fetchone()
    ):
        return "busy"
    moved = conn.execute(
        "UPDATE schedules SET last_tick = ? WHERE flow_id = ?"
        " AND (last_tick IS NULL OR last_tick < ?)",
        (tick, flow_id, tick),
    ).rowcount
    if moved != 1:
        return "taken"
    insert_all(conn, rows)
    return "claimed"


def set_snapshot(conn: sqlite3.Connection, flow_id: str, snapshot: bytes | None) -> None:
    conn.execute(
        "INSERT INTO schedules (flow_id, snapshot) VALUES (?, ?)"
        " ON CONFLICT (flow_id) DO UPDATE SET snapshot = excluded.snapshot",
        (flow_id, snapshot),
    )


WRITES: dict[str, Callable[..., Any]] = {
    fn.__name__: fn
    for fn in (
        create_flow,
        update_flow,
        delete_flow,
        dedupe_insert,
        tracked_insert,
        keep_answer,
        lease,
        replay,
        delete_deliveries,
        purge,
        import_deliveries,
        claim_tick,
        set_snapshot,
    )
}
ISOLATED = {"create_flow", "update_flow", "delete_flow"}
"""Writes that may fail on their own (a name taken): a savepoint keeps their neighbours."""


# one batch ---------------------------------------------------------------------------------
def run_batch(conn: sqlite3.Connection, ops: list[Op]) -> list[tuple[int, Any]]:
    """Run every op in one transaction; on a failed commit every op gets the error."""
    inserts = [row for _, kind, rows in ops if kind == "insert" for row in rows]
    try:
        if all(kind == "insert" for _, kind, _ in ops) and len(inserts) <= MULTI_ROW:
            # The common burst of accepts: one statement that commits itself (autocommit).
            insert_all(conn, inserts)
            return [(op_id, None) for op_id, _, _ in ops]
        conn.execute("BEGIN IMMEDIATE")
        insert_all(conn, inserts)
        finished = iter(finish_all(conn, [p for _, kind, p in ops if kind == "finish"]))
        results: list[tuple[int, Any]] = []
        for op_id, kind, payload in ops:
            if kind == "insert":
                results.append((op_id, None))
            elif kind == "finish":
                results.append((op_id, next(finished)))
            else:
                results.append((op_id, _run_op(conn, kind, payload)))
        conn.execute("COMMIT")
        return results
    except Exception as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        error = _translate(exc)
        return [(op_id, error) for op_id, _, _ in ops]


def _run_op(conn: sqlite3.Connection, name: str, args: tuple[Any, ...]) -> Any:
    fn = WRITES[name]
    if name not in ISOLATED:
        return fn(conn, *args)
    conn.execute("SAVEPOINT op")
    try:
        result = fn(conn, *args)
        conn.execute("RELEASE op")
        return result
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return _translate(exc)


def _code(exc: sqlite3.Error) -> int:
    """The primary result code (``SQLITE_FULL``: the disk is full), without its extension."""
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error) and _code(exc) == sqlite3.SQLITE_FULL:
        return StoreFull(f"SQLite write failed: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(f"SQLite write failed: {exc}")
    return exc


# the process -------------------------------------------------------------------------------
class Inbox:
    """Frames from the gateway: block for the first, then take what else is already there."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.closed = False

    def take(self, limit: int = BATCH) -> list[Op] | None:
        """The next group of ops, or None once the gateway closed its end."""
        ops: list[Op] = []
        while len(ops) < limit:
            payload = take_frame(self.buffer)
            if payload is not None:
                ops += pickle.loads(payload)  # noqa: S301 (our own gateway)
                continue
            if self.closed:
                break
            try:
                data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT if ops else 0)
            except BlockingIOError:
                break
            if not data:
                self.closed = True
                break
            self.buffer += data
        return ops or None


class Checkpoints(threading.Thread):
    """Copies committed WAL pages into the database file now and then (PASSIVE: it never
    blocks the writer), so a checkpoint is never a spike inside a commit.

    Under steady load such a checkpoint never quite catches up (frames keep arriving while it
    copies), and SQLite rewinds the WAL only after one that did: the WAL would grow without
    bound, and with it the disk traffic. So when the WAL is past ``REWIND_FRAMES``, the writer
    itself checkpoints the last few frames between two batches (``catch_up``), and its next
    commit starts the WAL from the beginning again.

    A WAL and the database file hold the same pages twice until the WAL is rewound. While the
    volume's free space is below twice the reserve (``tight``, looked at here each round),
    checkpoints are TRUNCATE, which empties the WAL file: here each round (for when the writer
    is idle) and by the writer after each batch. On a tight disk the data is held once, and the
    space a checkpoint needs is never taken from space freed by hand.
    """

    def __init__(self, conn: sqlite3.Connection, *, path: str, reserve: int) -> None:
        super().__init__(name="hookgate-sqlite-checkpoint", daemon=True)
        self.conn = conn
        self.directory = os.path.dirname(os.path.abspath(path))
        self.reserve = reserve
        self.stop = threading.Event()
        self.catch_up = threading.Event()
        self.tight = False
        self._look()

    def _look(self) -> None:
        with contextlib.suppress(OSError):
            volume = os.statvfs(self.directory)
            self.tight = volume.f_bavail * volume.f_frsize < 2 * self.reserve

    def run(self) -> None:
        while not self.stop.wait(CHECKPOINT_EVERY):
            self._look()
            if self.tight:
                truncate_wal(self.conn)
                continue
            with contextlib.suppress(sqlite3.Error):
                _, frames, _ = self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames >= REWIND_FRAMES:
                    self.catch_up.set()
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


def truncate_wal(conn: sqlite3.Connection) -> None:
    """Checkpoint everything and empty the WAL file; if a reader holds it up for longer than
    ``TRUNCATE_WAIT_MS``, what could be copied is, and the next batch tries again."""
    conn.execute(f"PRAGMA busy_timeout={TRUNCATE_WAIT_MS}")
    try:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")


def serve(sock: socket.socket, path: str, synchronous: str, reserve: int) -> None:
    conn = connect(path, synchronous)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    checkpoints = Checkpoints(connect(path, synchronous), path=path, reserve=reserve)
    checkpoints.start()
    inbox = Inbox(sock)
    try:
        while (ops := inbox.take()) is not None:
            started = time.perf_counter()
            results = run_batch(conn, ops)
            try:
                sock.sendall(frame((len(ops), time.perf_counter() - started, results)))
            except OSError:
                break  # the gateway is gone; what was committed stays committed
            if checkpoints.tight:
                truncate_wal(conn)
            elif checkpoints.catch_up.is_set():
                checkpoints.catch_up.clear()
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        conn.close()
        checkpoints.stop.set()
        checkpoints.join()


def main(argv: list[str]) -> None:
    # The gateway stops the writer by closing the socket (end of file ends `serve`), after its
    # last write: a SIGINT sent to the terminal's whole group must not cut that short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    isolation.make_undumpable()  # its memory holds what it writes: workers must not read it
    path, synchronous, fd, reserve = argv
    with socket.socket(fileno=int(fd)) as sock:
        serve(sock, path, synchronous, int(reserve))


if __name__ == "__main__":
    main(sys.argv[1:])
