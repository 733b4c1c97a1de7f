"""The embedded store: one SQLite file in WAL mode, one writer thread, group commit.

Every write goes through one thread that owns the write connection. It takes whatever is
waiting (up to ``BATCH``), runs it in one transaction and commits once, so one ``fsync``
(``synchronous=FULL``) covers a whole burst of accepts; each caller's future resolves only
after that commit. Reads run on their own connection in a second thread (WAL readers never
block the writer). ``sqlite3`` is imported here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from hookgate.domain.deliveries import Attempt, Delivery, Request, State
from hookgate.domain.flows import Flow, encode
from hookgate.errors import (
    DeliveryNotFound,
    FlowConflict,
    FlowNotFound,
    SchemaMismatch,
    StoreFull,
    StoreUnavailable,
)
from hookgate.store import rows as table
from hookgate.store.base import Accepted, Claim, DeliveryFilter, DeliveryRecord, Page, QueueStats

T = TypeVar("T")
BATCH = 2048
CHECKPOINT_EVERY = 0.25
MULTI_ROW = 512  # 512 rows x 12 columns stays below SQLite's 32,766 bound variables
SCHEMA_VERSION = 2


class _Op:
    """A write waiting for the writer thread; ``run`` executes inside the batch transaction."""

    __slots__ = ("fn", "future", "isolated", "result")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        future: asyncio.Future[Any],
        *,
        isolated: bool = False,
    ):
        self.fn = fn
        self.future = future
        self.isolated = isolated
        self.result: Any = None


class _Insert(_Op):
    """A plain enqueue: batched with its neighbours into one ``executemany``."""

    __slots__ = ("row",)

    def __init__(self, row: tuple[Any, ...], future: asyncio.Future[Any], result: Accepted):
        super().__init__(lambda _c: None, future)
        self.row = row
        self.result = result


class _Finish(_Op):
    """LEASED -> DONE/QUEUED/DEAD with its attempt: batched into one guarded UPDATE ... FROM
    VALUES and one INSERT of the attempts, so a burst of outcomes is a handful of statements."""

    __slots__ = ("attempt", "move")

    def __init__(
        self, move: tuple[Any, ...], attempt: tuple[Any, ...], future: asyncio.Future[Any]
    ) -> None:
        super().__init__(lambda _c: None, future)
        self.move = move
        self.attempt = attempt


_MOVE = (
    "UPDATE deliveries SET state = v.column1, next_at = coalesce(v.column2, deliveries.next_at),"
    " lease_until = NULL, last_error = v.column3, updated_at = v.column4"
    " FROM (VALUES {}) AS v"
    " WHERE deliveries.id = v.column5 AND deliveries.state = 1 AND deliveries.attempts = v.column6"
    " RETURNING deliveries.id"
)
_ATTEMPTS = "INSERT INTO attempts VALUES {}"


def _finish_all(conn: sqlite3.Connection, finishes: list[_Finish]) -> None:
    """Each move is guarded by its lease (``attempts``); only moved ones get their attempt."""
    for start in range(0, len(finishes), MULTI_ROW):
        chunk = finishes[start : start + MULTI_ROW]
        moved = {
            row[0]
            for row in conn.execute(
                _MOVE.format(",".join(["(?,?,?,?,?,?)"] * len(chunk))),
                [value for op in chunk for value in op.move],
            )
        }
        for op in chunk:
            op.result = op.move[4] in moved
        recorded = [op.attempt for op in chunk if op.result]
        if recorded:
            conn.execute(
                _ATTEMPTS.format(",".join(["(?,?,?,?,?,?,?)"] * len(recorded))),
                [value for row in recorded for value in row],
            )


_INSERT_HEAD = f"INSERT INTO deliveries ({table.INSERTED}) VALUES "
_INSERT = _INSERT_HEAD + "(?,?,?,?,?,?,?,?,?,?,?,?)"


@functools.cache
def _insert_many(rows: int) -> str:
    return _INSERT_HEAD + ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?)"] * rows)


def _insert_all(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert with as few statements as possible: one per ``MULTI_ROW`` rows.

    One statement is one ``sqlite3_step``, i.e. one GIL release and re-acquire for the
    writer thread; row by row, the busy event loop would make it wait for the GIL per row.
    """
    for start in range(0, len(rows), MULTI_ROW):
        chunk = rows[start : start + MULTI_ROW]
        conn.execute(_insert_many(len(chunk)), [value for row in chunk for value in row])


def _settle(ops: list[_Op], error: BaseException | None) -> None:
    for op in ops:
        if op.future.done():
            continue
        failure = error or (op.result if isinstance(op.result, BaseException) else None)
        if failure is not None:
            op.future.set_exception(failure)
        else:
            op.future.set_result(op.result)


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
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
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class SQLiteStore:
    def __init__(self, path: str, *, max_queued_bytes: int, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA", "OFF"}:
            raise ValueError(f"synchronous must be FULL, NORMAL, EXTRA or OFF, not {synchronous}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.max_queued_bytes = max_queued_bytes
        self.queued_bytes = 0
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookgate-sqlite-read")
        self._read_conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Called from the writer thread after each commit with (operations, seconds).
        self.on_commit: Callable[[int, float], None] = lambda _ops, _seconds: None

    # lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(self.path, self.synchronous)
            self._migrate(conn)
            self.queued_bytes = conn.execute(
                "SELECT coalesce(sum(length(body)), 0) FROM deliveries WHERE state IN (0, 1)"
            ).fetchone()[0]
            # Checkpoints run beside the writer, not inside one of its commits (a latency spike).
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._read_conn = _connect(self.path, self.synchronous)
            checkpoints = _connect(self.path, self.synchronous)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot create data directory for {self.path}: {exc}") from None
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="hookgate-sqlite-writer", daemon=True
        )
        self._writer.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(checkpoints,),
            name="hookgate-sqlite-checkpoint",
            daemon=True,
        )
        self._checkpointer.start()

    def _checkpoint_loop(self, conn: sqlite3.Connection) -> None:
        """Copy committed WAL pages into the database file now and then (PASSIVE: it never
        blocks the writer), so the WAL stays small."""
        try:
            while not self._closing.wait(CHECKPOINT_EVERY):
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaMismatch(
                f"{self.path} has schema version {version}, newer than this Hookgate "
                f"({SCHEMA_VERSION}); upgrade Hookgate or use a copy of the data directory"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            script = resources.files("hookgate.store").joinpath(f"schema/sqlite-{step:04d}.sql")
            conn.executescript(
                f"BEGIN IMMEDIATE; {script.read_text()}; PRAGMA user_version={step}; COMMIT;"
            )

    async def schema_version(self) -> int:
        return int(await self._read(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]))

    async def close(self) -> None:
        if self._writer is not None:
            self._ops.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._checkpointer is not None:
            self._closing.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._read_conn is not None:
            conn, self._read_conn = self._read_conn, None
            await asyncio.get_running_loop().run_in_executor(self._reads, conn.close)
        self._reads.shutdown(wait=True)

    # the writer thread -------------------------------------------------------------------
    def _write_loop(self, conn: sqlite3.Connection) -> None:
        assert self._loop is not None
        while True:
            first = self._ops.get()
            if first is None:
                break
            ops = [first]
            stop = False
            while len(ops) < BATCH:
                try:
                    nxt = self._ops.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                ops.append(nxt)
            error = self._run_batch(conn, ops)
            try:
                self._loop.call_soon_threadsafe(_settle, ops, error)
            except RuntimeError:
                break
            if stop:
                break
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, ops: list[_Op]) -> BaseException | None:
        started = time.perf_counter()
        rows = [op.row for op in ops if isinstance(op, _Insert)]
        try:
            if len(rows) == len(ops) and len(rows) <= MULTI_ROW:
                # The common burst of accepts: one statement that commits itself (autocommit).
                _insert_all(conn, rows)
                self.on_commit(len(ops), time.perf_counter() - started)
                return None
            conn.execute("BEGIN IMMEDIATE")
            if rows:
                _insert_all(conn, rows)
            finishes = [op for op in ops if isinstance(op, _Finish)]
            if finishes:
                _finish_all(conn, finishes)
            for op in ops:
                if not isinstance(op, (_Insert, _Finish)):
                    self._run_op(conn, op)
            conn.execute("COMMIT")
            self.on_commit(len(ops), time.perf_counter() - started)
            return None
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return _translate(exc)

    @staticmethod
    def _run_op(conn: sqlite3.Connection, op: _Op) -> None:
        """Ops that may fail on their own (a flow name taken) run in a savepoint, so their
        failure does not undo their neighbours'; queue transitions need none."""
        if not op.isolated:
            op.result = op.fn(conn)
            return
        conn.execute("SAVEPOINT op")
        try:
            op.result = op.fn(conn)
            conn.execute("RELEASE op")
        except Exception as exc:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            op.result = _translate(exc)

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, isolated: bool = False) -> T:
        if self._loop is None or self._writer is None:
            raise StoreUnavailable("the store is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._ops.put(_Op(fn, future, isolated=isolated))
        return await future

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._read_conn
        if conn is None:
            raise StoreUnavailable("the store is not open")

        def run() -> T:
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite read failed: {exc}") from None

        return await asyncio.get_running_loop().run_in_executor(self._reads, run)

    # flows -------------------------------------------------------------------------------
    async def create_flow(self, flow: Flow) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO flows (id, name, spec, status, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?)",
                    (
                        flow.id,
                        flow.name,
                        encode(flow.spec),
                        flow.status.value,
                        flow.created_at,
                        flow.updated_at,
                    ),
                )
            except sqlite3.IntegrityError:
                raise FlowConflict(f"a flow named {flow.name!r} exists already") from None

        await self._write(run, isolated=True)

    async def update_flow(self, flow: Flow) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                cur = conn.execute(
                    "UPDATE flows SET name = ?, spec = ?, status = ?, updated_at = ? WHERE id = ?",
                    (flow.name, encode(flow.spec), flow.status.value, flow.updated_at, flow.id),
                )
            except sqlite3.IntegrityError:
                raise FlowConflict(f"a flow named {flow.name!r} exists already") from None
            if cur.rowcount != 1:
                raise FlowNotFound(f"no flow with id {flow.id}")

        await self._write(run, isolated=True)

    async def delete_flow(self, flow_id: str) -> None:
        def run(conn: sqlite3.Connection) -> int:
            if conn.execute("DELETE FROM flows WHERE id = ?", (flow_id,)).rowcount != 1:
                raise FlowNotFound(f"no flow with id {flow_id}")
            freed = conn.execute(
                "SELECT coalesce(sum(length(body)), 0) FROM deliveries"
                " WHERE flow_id = ? AND state IN (0, 1)",
                (flow_id,),
            ).fetchone()[0]
            conn.execute(
                "DELETE FROM attempts WHERE delivery_id IN"
                " (SELECT id FROM deliveries WHERE flow_id = ?)",
                (flow_id,),
            )
            conn.execute("DELETE FROM deliveries WHERE flow_id = ?", (flow_id,))
            conn.execute("DELETE FROM dedupe WHERE flow_id = ?", (flow_id,))
            conn.execute("DELETE FROM schedules WHERE flow_id = ?", (flow_id,))
            return int(freed)

        self.queued_bytes -= await self._write(run, isolated=True)

    async def list_flows(self) -> list[Flow]:
        def run(conn: sqlite3.Connection) -> list[Flow]:
            rows = conn.execute(
                "SELECT id, spec, status, created_at, updated_at FROM flows ORDER BY name"
            )
            return [table.flow(row) for row in rows]

        return await self._read(run)

    # ingest ------------------------------------------------------------------------------
    async def enqueue(
        self, request: Request, *, dedupe_key: str | None = None, dedupe_until: float = 0.0
    ) -> Accepted:
        size = len(request.body)
        if self.queued_bytes + size > self.max_queued_bytes:
            raise StoreFull(
                f"the queue holds {self.queued_bytes} bytes, its bound is {self.max_queued_bytes}"
            )
        if self._loop is None or self._writer is None:
            raise StoreUnavailable("the store is not open")
        future: asyncio.Future[Accepted] = self._loop.create_future()
        accepted = Accepted(request.request_id, request.id)
        if dedupe_key is None:
            self._ops.put(_Insert(table.inserted_row(request), future, accepted))
        else:
            self._ops.put(_Op(self._dedupe_insert(request, dedupe_key, dedupe_until), future))
        result = await future
        if not result.duplicate:
            self.queued_bytes += size
        return result

    @staticmethod
    def _dedupe_insert(
        request: Request, key: str, until: float
    ) -> Callable[[sqlite3.Connection], Accepted]:
        def run(conn: sqlite3.Connection) -> Accepted:
            seen = conn.execute(
                "SELECT request_id, delivery_id FROM dedupe"
                " WHERE flow_id = ? AND key = ? AND expires_at > ?",
                (request.flow_id, key, request.received_at),
            ).fetchone()
            if seen is not None:
                return Accepted(seen[0], seen[1], duplicate=True)
            conn.execute(
                "INSERT OR REPLACE INTO dedupe VALUES (?,?,?,?,?)",
                (request.flow_id, key, request.request_id, request.id, until),
            )
            conn.execute(_INSERT, table.inserted_row(request))
            return Accepted(request.request_id, request.id)

        return run

    # the queue ---------------------------------------------------------------------------
    async def lease(
        self, flow_id: str, *, limit: int, lease_for: float, now: float
    ) -> list[Delivery]:
        def run(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                f"UPDATE deliveries SET state = 1, attempts = attempts + 1, lease_until = ?,"
                f" updated_at = ? WHERE seq IN ("
                f"  SELECT seq FROM deliveries WHERE flow_id = ? AND state = 0 AND next_at <= ?"
                f"  UNION ALL"
                f"  SELECT seq FROM deliveries WHERE flow_id = ? AND state = 1 AND lease_until < ?"
                f"  ORDER BY 1 LIMIT ?"
                f") RETURNING {table.FULL}",
                (now + lease_for, now, flow_id, now, flow_id, now, limit),
            ).fetchall()
            return sorted((table.full(row) for row in rows), key=lambda d: d.id)

        return await self._write(run)

    async def _finish(
        self, delivery: Delivery, attempt: Attempt, *, to: State, next_at: float | None = None
    ) -> bool:
        if self._loop is None or self._writer is None:
            raise StoreUnavailable("the store is not open")
        future: asyncio.Future[bool] = self._loop.create_future()
        ended = attempt.started_at + attempt.duration_ms / 1000
        self._ops.put(
            _Finish(
                (int(to), next_at, attempt.problem, ended, delivery.id, delivery.attempts),
                (
                    delivery.id,
                    attempt.number,
                    attempt.started_at,
                    attempt.duration_ms,
                    attempt.status_code,
                    attempt.error,
                    attempt.response,
                ),
                future,
            )
        )
        return await future

    async def complete(self, delivery: Delivery, attempt: Attempt) -> bool:
        done = await self._finish(delivery, attempt, to=State.DONE)
        if done:
            self.queued_bytes -= len(delivery.body)
        return done

    async def retry(self, delivery: Delivery, attempt: Attempt, *, next_at: float) -> bool:
        return await self._finish(delivery, attempt, to=State.QUEUED, next_at=next_at)

    async def bury(self, delivery: Delivery, attempt: Attempt) -> bool:
        buried = await self._finish(delivery, attempt, to=State.DEAD)
        if buried:
            self.queued_bytes -= len(delivery.body)
        return buried

    async def replay(self, ids: Sequence[str], *, now: float) -> int:
        marks = ",".join("?" * len(ids))
        return await self._replay(f"id IN ({marks})", list(ids), now) if ids else 0

    async def replay_matching(self, where: DeliveryFilter, *, now: float) -> int:
        clause, params = _where(where)
        return await self._replay(clause, params, now)

    async def _replay(self, clause: str, params: list[Any], now: float) -> int:
        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            rows = conn.execute(
                f"UPDATE deliveries SET state = 0, attempts = 0, next_at = ?, lease_until = NULL,"
                f" updated_at = ? WHERE ({clause}) AND state IN (2, 3) RETURNING length(body)",
                [now, now, *params],
            ).fetchall()
            return len(rows), sum(row[0] for row in rows)

        count, size = await self._write(run)
        self.queued_bytes += size
        return count

    async def delete_deliveries(self, ids: Sequence[str]) -> int:
        marks = ",".join("?" * len(ids))

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            rows = conn.execute(
                f"DELETE FROM deliveries WHERE id IN ({marks}) RETURNING state, length(body)",
                list(ids),
            ).fetchall()
            conn.execute(f"DELETE FROM attempts WHERE delivery_id IN ({marks})", list(ids))
            return len(rows), sum(size for state, size in rows if state in (0, 1))

        if not ids:
            return 0
        count, freed = await self._write(run)
        self.queued_bytes -= freed
        return count

    # reading -----------------------------------------------------------------------------
    async def get_delivery(self, delivery_id: str) -> Delivery:
        def run(conn: sqlite3.Connection) -> Delivery:
            row = conn.execute(
                f"SELECT {table.FULL} FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if row is None:
                raise DeliveryNotFound(f"no delivery {delivery_id} (unknown, or purged)")
            return table.full(row)

        return await self._read(run)

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        def run(conn: sqlite3.Connection) -> list[Attempt]:
            rows = conn.execute(
                f"SELECT {table.ATTEMPT} FROM attempts WHERE delivery_id = ? ORDER BY rowid",
                (delivery_id,),
            )
            return [table.attempt(r) for r in rows]

        return await self._read(run)

    async def list_deliveries(
        self, where: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> Page:
        clause, params = _where(where)
        if cursor is not None:
            clause += " AND seq < ?"
            params.append(int(cursor))

        def run(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(
                f"SELECT seq, {table.SUMMARY} FROM deliveries WHERE {clause}"
                " ORDER BY seq DESC LIMIT ?",
                [*params, limit + 1],
            ).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            return Page(
                [table.summary(row[1:]) for row in rows],
                str(rows[-1][0]) if more and rows else None,
            )

        return await self._read(run)

    async def queue_stats(self) -> dict[str, QueueStats]:
        def run(conn: sqlite3.Connection) -> dict[str, QueueStats]:
            rows = conn.execute(
                "SELECT flow_id, sum(state = 0), sum(state = 1), min(received_at),"
                " min(CASE WHEN state = 0 THEN next_at ELSE lease_until END)"
                " FROM deliveries WHERE state IN (0, 1) GROUP BY flow_id"
            )
            return {r[0]: QueueStats(r[1], r[2], r[3], r[4]) for r in rows}

        return await self._read(run)

    # hygiene -----------------------------------------------------------------------------
    async def purge(self, *, flow_id: str, done_before: float, limit: int = 1000) -> int:
        def run(conn: sqlite3.Connection) -> int:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM deliveries WHERE flow_id = ? AND state = 2 AND updated_at < ?"
                    " LIMIT ?",
                    (flow_id, done_before, limit),
                )
            ]
            marks = ",".join("?" * len(ids))
            conn.execute(f"DELETE FROM attempts WHERE delivery_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM deliveries WHERE id IN ({marks})", ids)
            conn.execute(
                "DELETE FROM dedupe WHERE flow_id = ? AND expires_at < ?", (flow_id, time.time())
            )
            return len(ids)

        return await self._write(run)

    # moving between stores ---------------------------------------------------------------
    async def count_deliveries(self) -> dict[str, dict[State, int]]:
        def run(conn: sqlite3.Connection) -> dict[str, dict[State, int]]:
            counts: dict[str, dict[State, int]] = {}
            for flow_id, state, count in conn.execute(
                "SELECT flow_id, state, count(*) FROM deliveries GROUP BY flow_id, state"
            ):
                counts.setdefault(flow_id, {})[State(state)] = count
            return counts

        return await self._read(run)

    async def export_deliveries(
        self, *, limit: int, cursor: str | None
    ) -> tuple[list[DeliveryRecord], str | None]:
        def run(conn: sqlite3.Connection) -> tuple[list[DeliveryRecord], str | None]:
            rows = conn.execute(
                f"SELECT seq, {table.FULL} FROM deliveries WHERE seq > ? ORDER BY seq LIMIT ?",
                (int(cursor or 0), limit),
            ).fetchall()
            ids = [row[1] for row in rows]
            history: dict[str, list[Attempt]] = {}
            for r in conn.execute(
                f"SELECT delivery_id, {table.ATTEMPT} FROM attempts"
                f" WHERE delivery_id IN ({','.join('?' * len(ids))})"
                " ORDER BY rowid",
                ids,
            ):
                history.setdefault(r[0], []).append(table.attempt(r[1:]))
            records = [DeliveryRecord(table.full(row[1:]), history.get(row[1], [])) for row in rows]
            return records, str(rows[-1][0]) if len(rows) == limit else None

        return await self._read(run)

    async def import_deliveries(self, records: Sequence[DeliveryRecord]) -> int:
        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            inserted = queued = 0
            for record in records:
                d = record.delivery
                cur = conn.execute(
                    f"INSERT INTO deliveries ({table.FULL}) VALUES ({','.join('?' * 16)})"
                    " ON CONFLICT (id) DO NOTHING",
                    table.full_row(d),
                )
                if cur.rowcount != 1:
                    continue
                conn.executemany(
                    "INSERT INTO attempts VALUES (?,?,?,?,?,?,?)",
                    [
                        (
                            d.id,
                            a.number,
                            a.started_at,
                            a.duration_ms,
                            a.status_code,
                            a.error,
                            a.response,
                        )
                        for a in record.attempts
                    ],
                )
                inserted += 1
                if d.state in (State.QUEUED, State.LEASED):
                    queued += len(d.body)
            return inserted, queued

        inserted, queued = await self._write(run)
        self.queued_bytes += queued
        return inserted

    # polling triggers --------------------------------------------------------------------
    async def last_tick(self, flow_id: str) -> float | None:
        def run(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT last_tick FROM schedules WHERE flow_id = ?", (flow_id,)
            ).fetchone()
            return None if row is None else row[0]

        return await self._read(run)

    async def claim_tick(
        self, flow_id: str, *, tick: float, request: Request | None, exclusive: bool
    ) -> Claim:
        def run(conn: sqlite3.Connection) -> Claim:
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
            if request is not None:
                conn.execute(_INSERT, table.inserted_row(request))
            return "claimed"

        claim = await self._write(run)
        if claim == "claimed" and request is not None:
            self.queued_bytes += len(request.body)
        return claim

    async def snapshot(self, flow_id: str) -> bytes | None:
        def run(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT snapshot FROM schedules WHERE flow_id = ?", (flow_id,)
            ).fetchone()
            return None if row is None or row[0] is None else bytes(row[0])

        return await self._read(run)

    async def set_snapshot(self, flow_id: str, snapshot: bytes | None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO schedules (flow_id, snapshot) VALUES (?, ?)"
                " ON CONFLICT (flow_id) DO UPDATE SET snapshot = excluded.snapshot",
                (flow_id, snapshot),
            )

        await self._write(run)


def _where(where: DeliveryFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = ["1"]
    params: list[Any] = []
    if where.flow_id is not None:
        clauses.append("flow_id = ?")
        params.append(where.flow_id)
    if where.state is not None:
        clauses.append("state = ?")
        params.append(int(where.state))
    if where.since is not None:
        clauses.append("received_at >= ?")
        params.append(where.since)
    if where.until is not None:
        clauses.append("received_at < ?")
        params.append(where.until)
    return " AND ".join(clauses), params


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(f"SQLite write failed: {exc}")
    return exc
