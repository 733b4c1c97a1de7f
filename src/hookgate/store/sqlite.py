"""The embedded store: one SQLite file in WAL mode, written by one writer process.

Every write goes to :mod:`hookgate.store.sqlite_writer`, a process of its own that owns the
write connection: it takes whatever is waiting, runs it in one transaction and commits once,
so one ``fsync`` (``synchronous=FULL``) covers a whole burst of accepts. Each caller's future
resolves only after that commit. The ops of one event-loop turn travel in one frame. Reads
run here on their own connection in a thread (WAL readers never block the writer).
``sqlite3`` is imported in these two modules and nowhere else.

A full disk is not a state SQLite recovers from gracefully (a checkpoint or a delete needs
room too), so the store stops accepting while the data volume's free space is below
``disk_reserve``, and after any ``SQLITE_FULL``; a timer looks at the free space (one
``statvfs`` every ``SPACE_EVERY``) and accepting resumes by itself once there is room again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hookgate import isolation, logs
from hookgate.domain.deliveries import Attempt, Delivery, Progress, Request, State
from hookgate.domain.destinations import WORKERS, DeliveryRate
from hookgate.domain.flows import Flow, encode
from hookgate.domain.pacing import TokenBucket
from hookgate.errors import DeliveryNotFound, StoreFull, StoreUnavailable
from hookgate.store import rows as table
from hookgate.store.base import (
    Acceptance,
    Accepted,
    Claim,
    DeliveryFilter,
    DeliveryRecord,
    Outcomes,
    Page,
    QueuedBytes,
    QueueStats,
    find_sql,
    prefix_bounds,
    settle,
)
from hookgate.store.sqlite_writer import SCHEMA_VERSION, connect, frame, migrate, take_frame

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

T = TypeVar("T")
RESTART_DELAY = 0.5
SPACE_EVERY = 0.1
"""Seconds between two looks at the data volume's free space."""
MIN_MARGIN = 1 << 20
log = logs.get("hookgate.store")


class _WriterLink(asyncio.Protocol):
    """The gateway's end of the writer's socket: result frames in, loss reported."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.buffer = bytearray()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (payload := take_frame(self.buffer)) is not None:
            self.store._settle(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.store._writer_lost(self)


class SQLiteStore(Outcomes):
    def __init__(
        self,
        path: str,
        *,
        max_queued_bytes: int,
        synchronous: str = "FULL",
        disk_reserve: int = 0,
    ) -> None:
        if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA", "OFF"}:
            raise ValueError(f"synchronous must be FULL, NORMAL, EXTRA or OFF, not {synchronous}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.queued = QueuedBytes(max_queued_bytes)
        self._buckets: dict[str, TokenBucket] = {}
        self.disk_reserve = disk_reserve
        self._health = Acceptance("sqlite")
        self._room = self._measured = 0
        self._margin = max(disk_reserve // 16, MIN_MARGIN)
        """Room above the reserve below which the store counts as full, and resumes above."""
        self._space_timer: asyncio.TimerHandle | None = None
        self._ids = itertools.count()
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._pending: list[tuple[int, str, Any]] = []
        self._link: _WriterLink | None = None
        self._transport: asyncio.Transport | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._closing = False
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookgate-sqlite-read")
        self._read_conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Called after each commit with (operations, seconds spent in the writer).
        self.on_commit: Callable[[int, float], None] = lambda _ops, _seconds: None

    # lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path, self.synchronous)
            try:
                migrate(conn, self.path)
                self.queued.reset(
                    dict(
                        conn.execute(
                            f"SELECT flow_id, sum({table.QUEUED_SIZE}) FROM deliveries"
                            " WHERE state IN (0, 1) GROUP BY flow_id"
                        )
                    )
                )
            finally:
                conn.close()
            self._read_conn = connect(self.path, self.synchronous)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot create data directory for {self.path}: {exc}") from None
        await self._start_writer()
        self._check_space()

    async def _start_writer(self) -> None:
        assert self._loop is not None
        ours, theirs = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hookgate.store.sqlite_writer",
                self.path,
                self.synchronous,
                str(theirs.fileno()),
                str(self.disk_reserve),
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=isolation.inherited_environment(),  # it needs none of the gateway's secrets
                # Its own session: Ctrl-C at a terminal (or `timeout`) signals the whole
                # foreground group, and the writer must outlive the gateway's shutdown, which
                # stops it by closing the socket once the last write is flushed.
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise StoreUnavailable(f"cannot start the SQLite writer process: {exc}") from None
        finally:
            theirs.close()
        link = _WriterLink(self)
        transport, _ = await self._loop.create_unix_connection(lambda: link, sock=ours)
        self._link, self._transport = link, transport
        if self._pending:
            self._flush()

    def _writer_lost(self, link: _WriterLink) -> None:
        """Every op the writer had not answered fails (it may or may not have committed, so
        callers answer 503, never 2xx); a new writer starts unless the store is closing."""
        if link is not self._link:
            return
        self._link = self._transport = None
        lost = StoreUnavailable("the SQLite writer process exited; retry")
        for future in self._futures.values():
            if not future.done():
                future.set_exception(lost)
        self._futures.clear()
        self._pending.clear()
        if not self._closing and self._loop is not None:
            code = self._process.returncode if self._process else None
            log.error("SQLite writer process exited; restarting", exit_code=code)
            self._loop.call_later(RESTART_DELAY, self._restart)

    def _restart(self) -> None:
        if not self._closing and self._link is None and self._loop is not None:
            task = self._loop.create_task(self._start_writer())
            task.add_done_callback(self._restarted)

    def _restarted(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("cannot restart the SQLite writer process", error=str(exc))
            assert self._loop is not None
            self._loop.call_later(RESTART_DELAY, self._restart)

    # room on the disk ---------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        return self._health.accepting

    def _check_space(self) -> None:
        """Stop accepting at the reserve; resume a margin above it (so it does not flap),
        which also ends a stop caused by ``SQLITE_FULL``. Then look again in a moment."""
        try:
            volume = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError as exc:
            self._room = self._measured = 0
            self._health.stop(f"cannot read the data volume's free space: {exc.strerror}")
        else:
            self._room = self._measured = volume.f_bavail * volume.f_frsize - self.disk_reserve
            if self._room <= 0:
                self._health.stop(self._no_room())
            elif self._room >= self._margin:
                self._health.resume()
        if not self._closing and self._loop is not None:
            self._space_timer = self._loop.call_later(SPACE_EVERY, self._check_space)

    def _no_room(self) -> str:
        return (
            f"the data volume is down to its reserve (HOOKGATE_DISK_RESERVE) of"
            f" {self.disk_reserve} bytes; {max(self._measured, 0)} bytes above it"
        )

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid (it is restarted if it dies)."""
        return self._process.pid if self._process is not None else None

    async def schema_version(self) -> int:
        def read() -> int:
            try:
                with contextlib.closing(
                    sqlite3.connect(Path(self.path).resolve().as_uri() + "?mode=ro", uri=True)
                ) as conn:
                    return int(conn.execute("PRAGMA user_version").fetchone()[0])
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot read {self.path}: {exc}") from None

        return await asyncio.to_thread(read)

    async def close(self) -> None:
        self._closing = True
        if self._space_timer is not None:
            self._space_timer.cancel()
        if self._transport is not None and self._link is not None:
            link = self._link
            if self._pending:
                self._flush()
            self._transport.write_eof()
            await link.lost
        if self._process is not None:
            await self._process.wait()
            self._process = None
        if self._read_conn is not None:
            conn, self._read_conn = self._read_conn, None
            await asyncio.get_running_loop().run_in_executor(self._reads, conn.close)
        self._reads.shutdown(wait=True)

    # talking to the writer ---------------------------------------------------------------
    def _submit(self, kind: str, payload: Any) -> asyncio.Future[Any]:
        """Queue an op for this loop turn's frame; the future resolves after its commit."""
        if self._loop is None or self._closing:
            raise StoreUnavailable("the store is not open")
        if self._link is None:
            raise StoreUnavailable("the SQLite writer process is restarting; retry")
        op_id = next(self._ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._futures[op_id] = future
        self._pending.append((op_id, kind, payload))
        if len(self._pending) == 1:
            self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        if self._pending and self._transport is not None:
            self._transport.write(frame(self._pending))
            self._pending = []

    def _settle(self, payload: bytes) -> None:
        count, seconds, results = pickle.loads(payload)  # noqa: S301 (our own writer)
        self.on_commit(count, seconds)
        for op_id, value in results:
            if isinstance(value, StoreFull):
                self._health.stop(str(value))
            if (future := self._futures.pop(op_id, None)) is not None:
                settle(future, value)

    async def _write(self, name: str, *args: Any) -> Any:
        return await self._submit(name, args)

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
        row = (
            flow.id,
            flow.name,
            encode(flow.spec),
            flow.status.value,
            flow.created_at,
            flow.updated_at,
        )
        await self._write("create_flow", row)

    async def update_flow(self, flow: Flow) -> None:
        row = (flow.name, encode(flow.spec), flow.status.value, flow.updated_at, flow.id)
        await self._write("update_flow", row)

    async def delete_flow(self, flow_id: str) -> None:
        await self._write("delete_flow", flow_id)
        self.queued.forget(flow_id)

    async def list_flows(self) -> list[Flow]:
        def run(conn: sqlite3.Connection) -> list[Flow]:
            rows = conn.execute(
                "SELECT id, spec, status, created_at, updated_at FROM flows ORDER BY name"
            )
            return [table.flow(row) for row in rows]

        return await self._read(run)

    async def get_flow(self, flow_id: str) -> Flow | None:
        def run(conn: sqlite3.Connection) -> Flow | None:
            row = conn.execute(
                "SELECT id, spec, status, created_at, updated_at FROM flows WHERE id = ?",
                (flow_id,),
            ).fetchone()
            return None if row is None else table.flow(row)

        return await self._read(run)

    # ingest ------------------------------------------------------------------------------
    async def enqueue(
        self,
        request: Request,
        *,
        dedupe_key: str | None = None,
        dedupe_until: float = 0.0,
        max_queued: int | None = None,
        status_token: str | None = None,
    ) -> Accepted:
        if self._health.reason is not None:
            raise StoreFull(self._health.reason)
        size = table.queued_size(request)
        self.queued.check(request.flow_id, size, max_queued)
        if 2 * size > self._room:
            # Refused for now; full (until a margin is free again) only if the disk says so.
            if self._measured < self._margin:
                self._health.stop(self._no_room())
            raise StoreFull(f"no room for {size} bytes above the disk reserve; retry")
        # Until the next look at the disk, what is accepted counts as taken from the room,
        # twice: once in the WAL, once in the database file the checkpoint copies it to.
        self._room -= 2 * size
        rows = table.inserted_rows(request)
        if status_token is not None:
            seen, token = await self._write(
                "tracked_insert", rows, dedupe_key, dedupe_until, status_token
            )
            if seen:
                return Accepted(seen[0], seen[1], duplicate=True, status_token=token)
            self.queued.add(request.flow_id, size)
            return Accepted(request.request_id, request.id, status_token=token)
        if dedupe_key is None:
            await self._submit("insert", rows)
        elif seen := await self._write("dedupe_insert", rows, dedupe_key, dedupe_until):
            return Accepted(seen[0], seen[1], duplicate=True)
        self.queued.add(request.flow_id, size)
        return Accepted(request.request_id, request.id)

    # the queue ---------------------------------------------------------------------------
    async def lease(
        self,
        flow_id: str,
        *,
        destination: str = WORKERS,
        limit: int,
        lease_for: float,
        now: float,
    ) -> list[Delivery]:
        rows = await self._write("lease", flow_id, destination, limit, lease_for, now)
        return sorted((table.full(row) for row in rows), key=lambda d: d.id)

    async def _finish(
        self, delivery: Delivery, attempt: Attempt, *, to: State, next_at: float | None = None
    ) -> bool:
        ended = attempt.started_at + attempt.duration_ms / 1000
        move = (int(to), next_at, attempt.problem, ended, delivery.id, delivery.attempts)
        recorded = table.attempt_row(delivery.id, attempt)
        return bool(await self._submit("finish", (move, recorded)))

    async def keep_answer(self, delivery: Delivery, answer: bytes) -> bool:
        return bool(await self._write("keep_answer", delivery.id, delivery.attempts, answer))

    async def replay(self, ids: Sequence[str], *, now: float) -> int:
        marks = ",".join("?" * len(ids))
        return await self._replay(f"id IN ({marks})", list(ids), now) if ids else 0

    async def replay_matching(self, where: DeliveryFilter, *, now: float) -> int:
        clause, params = _where(where)
        return await self._replay(clause, params, now)

    async def _replay(self, clause: str, params: list[Any], now: float) -> int:
        count, sizes = await self._write("replay", clause, params, now)
        self.queued.add_all(sizes)
        return int(count)

    async def delete_deliveries(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        count, freed = await self._write("delete_deliveries", list(ids))
        self.queued.add_all(freed, sign=-1)
        return int(count)

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

    async def progress(self, status_token: str) -> Progress | None:
        def run(conn: sqlite3.Connection) -> Progress | None:
            row = conn.execute(
                f"SELECT {table.PROGRESS} FROM deliveries WHERE status_token = ?",
                (status_token,),
            ).fetchone()
            return None if row is None else table.progress(row)

        return await self._read(run)

    async def find_deliveries(self, ref: str, *, limit: int) -> list[Delivery]:
        bounds = prefix_bounds(ref)

        def run(conn: sqlite3.Connection) -> list[Delivery]:
            params = {"low": ref, "limit": limit}
            found = conn.execute(_FIND_EXACT, params).fetchall()
            if not found and bounds is not None:
                params["low"], params["high"] = bounds
                found = conn.execute(_FIND_PREFIX, params).fetchall()
            return [table.summary(row) for row in found]

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
            # `state <> 2` lets SQLite use the partial index deliveries_state: without it the
            # whole table is scanned (180 ms with a million done deliveries, 0.4 ms with it).
            rows = conn.execute(
                "SELECT flow_id, sum(state = 0), sum(state = 1), min(received_at),"
                " min(CASE WHEN state = 0 THEN next_at ELSE lease_until END)"
                " FROM deliveries WHERE state IN (0, 1) AND state <> 2 GROUP BY flow_id"
            )
            return {r[0]: QueueStats(r[1], r[2], r[3], r[4]) for r in rows}

        return await self._read(run)

    # hygiene -----------------------------------------------------------------------------
    async def purge(self, *, flow_id: str, done_before: float, limit: int = 1000) -> int:
        return int(await self._write("purge", flow_id, done_before, limit))

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
        rows = [
            (table.full_row(r.delivery), [table.attempt_row(r.delivery.id, a) for a in r.attempts])
            for r in records
        ]
        inserted, queued = await self._write("import_deliveries", rows)
        self.queued.add_all(queued)
        return int(inserted)

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
        rows = [] if request is None else table.inserted_rows(request)
        claim: Claim = await self._write("claim_tick", flow_id, tick, rows, exclusive)
        if claim == "claimed" and request is not None:
            self.queued.add(flow_id, table.queued_size(request))
        return claim

    async def snapshot(self, flow_id: str) -> bytes | None:
        def run(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT snapshot FROM schedules WHERE flow_id = ?", (flow_id,)
            ).fetchone()
            return None if row is None or row[0] is None else bytes(row[0])

        return await self._read(run)

    async def take_tokens(self, bucket: str, wanted: int, *, rate: DeliveryRate, now: float) -> int:
        """One gateway holds a SQLite store (the data directory's lock): buckets in memory."""
        pace = self._buckets.get(bucket)
        if pace is None:
            pace = self._buckets[bucket] = TokenBucket.of(rate)
        return pace.spend(wanted, rate, now)

    async def set_snapshot(self, flow_id: str, snapshot: bytes | None) -> None:
        await self._write("set_snapshot", flow_id, snapshot)


_FIND_EXACT = find_sql(table.SUMMARY, "{col} = :low", ":limit")
_FIND_PREFIX = find_sql(table.SUMMARY, "{col} >= :low AND {col} < :high", ":limit")


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
