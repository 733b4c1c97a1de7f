"""The embedded store: one SQLite file in WAL mode, written by one writer process.

Every write goes to :mod:`hookgate.store.sqlite.writer`, a process of its own that owns the
write connection: it takes whatever is waiting, runs it in one transaction and commits once,
so one ``fsync`` (``synchronous=FULL``) covers a whole burst of accepts. Each caller's future
resolves only after that commit. The ops of one event-loop turn travel in one frame
(:mod:`~hookgate.store.sqlite.link`). Reads run here on their own connection in a thread
(:mod:`~hookgate.store.sqlite.reads`). ``sqlite3`` is imported in this package and nowhere else.

A full disk is not a state SQLite recovers from gracefully (a checkpoint or a delete needs
room too), so the store stops accepting while the data volume's free space is below
``disk_reserve``, and after any ``SQLITE_FULL``; a timer looks at the free space (one
``statvfs`` every ``SPACE_EVERY``) and accepting resumes by itself once there is room again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hookgate.domain.deliveries import Attempt, Delivery, Progress, Request, State
from hookgate.domain.destinations import WORKERS, DeliveryRate
from hookgate.domain.flows import Flow, encode
from hookgate.domain.pacing import TokenBucket
from hookgate.errors import StoreFull, StoreUnavailable
from hookgate.store import rows as table
from hookgate.store.base import Accepted, Claim, DeliveryFilter, DeliveryRecord, Page, QueueStats
from hookgate.store.changes import Changes, Committed
from hookgate.store.shared import Acceptance, Outcomes, QueuedBytes, prefix_bounds
from hookgate.store.sqlite import protocol as p
from hookgate.store.sqlite import reads
from hookgate.store.sqlite.link import Writer
from hookgate.store.sqlite.schema import SCHEMA_VERSION, connect, migrate

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

T = TypeVar("T")
SPACE_EVERY = 0.1
"""Seconds between two looks at the data volume's free space."""
MIN_MARGIN = 1 << 20


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
        self.changes = Changes()
        self._writer = Writer(self.path, self.synchronous, disk_reserve, self._health.stop)
        self._writer.on_commit = lambda ops, seconds: self.changes.publish(Committed(ops, seconds))
        self._closing = False
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hookgate-sqlite-read")
        self._read_conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path, self.synchronous)
            try:
                migrate(conn, self.path)
                self.queued.reset(reads.queued_sizes(conn))
            finally:
                conn.close()
            self._read_conn = connect(self.path, self.synchronous)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot create data directory for {self.path}: {exc}") from None
        await self._writer.start()
        self._check_space()

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
        process = self._writer.process
        return process.pid if process is not None else None

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
        await self._writer.close()
        if self._read_conn is not None:
            conn, self._read_conn = self._read_conn, None
            await asyncio.get_running_loop().run_in_executor(self._reads, conn.close)
        self._reads.shutdown(wait=True)

    # reading ---------------------------------------------------------------------------
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
        spec, status = encode(flow.spec), flow.status.value
        row = (flow.id, flow.name, spec, status, flow.created_at, flow.updated_at)
        await self._writer.write(p.CreateFlow(row))

    async def update_flow(self, flow: Flow) -> None:
        row = (flow.name, encode(flow.spec), flow.status.value, flow.updated_at, flow.id)
        await self._writer.write(p.UpdateFlow(row))

    async def delete_flow(self, flow_id: str) -> None:
        await self._writer.write(p.DeleteFlow(flow_id))
        self.queued.forget(flow_id)

    async def list_flows(self) -> list[Flow]:
        return await self._read(reads.list_flows)

    async def get_flow(self, flow_id: str) -> Flow | None:
        return await self._read(lambda conn: reads.get_flow(conn, flow_id))

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
            tracked = p.TrackedInsert(rows, dedupe_key, dedupe_until, status_token)
            seen, token = await self._writer.write(tracked)
            if seen:
                return Accepted(*seen, duplicate=True, status_token=token)
            self.queued.add(request.flow_id, size)
            self.changes.accepted(request)
            return Accepted(request.request_id, request.id, status_token=token)
        if dedupe_key is None:
            await self._writer.write(p.Insert(rows))
        elif seen := await self._writer.write(p.DedupeInsert(rows, dedupe_key, dedupe_until)):
            return Accepted(*seen, duplicate=True)
        self.queued.add(request.flow_id, size)
        self.changes.accepted(request)
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
        rows = await self._writer.write(p.Lease(flow_id, destination, limit, lease_for, now))
        return sorted((table.full(row) for row in rows), key=lambda d: d.id)

    async def _finish(
        self, delivery: Delivery, attempt: Attempt, *, to: State, next_at: float | None = None
    ) -> bool:
        ended = attempt.started_at + attempt.duration_ms / 1000
        move = (int(to), next_at, attempt.problem, ended, delivery.id, delivery.attempts)
        recorded = table.attempt_row(delivery.id, attempt)
        return await self._writer.write(p.Finish(move, recorded))

    async def keep_answer(self, delivery: Delivery, answer: bytes) -> bool:
        return await self._writer.write(p.KeepAnswer(delivery.id, delivery.attempts, answer))

    async def replay(self, ids: Sequence[str], *, now: float) -> int:
        marks = ",".join("?" * len(ids))
        return await self._replay(f"id IN ({marks})", list(ids), now) if ids else 0

    async def replay_matching(self, where: DeliveryFilter, *, now: float) -> int:
        clause, params = reads.where_clause(where)
        return await self._replay(clause, params, now)

    async def _replay(self, clause: str, params: list[Any], now: float) -> int:
        count, sizes = await self._writer.write(p.Replay(clause, params, now))
        self.queued.add_all(sizes)
        self.changes.requeued(flow_id for flow_id, _ in sizes)
        return count

    async def delete_deliveries(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        count, freed = await self._writer.write(p.DeleteDeliveries(list(ids)))
        self.queued.add_all(freed, sign=-1)
        return count

    # reading -----------------------------------------------------------------------------
    async def get_delivery(self, delivery_id: str) -> Delivery:
        return await self._read(lambda conn: reads.get_delivery(conn, delivery_id))

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        return await self._read(lambda conn: reads.attempts(conn, delivery_id))

    async def progress(self, status_token: str) -> Progress | None:
        return await self._read(lambda conn: reads.progress(conn, status_token))

    async def find_deliveries(self, ref: str, *, limit: int) -> list[Delivery]:
        bounds = prefix_bounds(ref)
        return await self._read(lambda conn: reads.find_deliveries(conn, ref, bounds, limit))

    async def list_deliveries(
        self, where: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> Page:
        return await self._read(lambda conn: reads.list_deliveries(conn, where, limit, cursor))

    async def queue_stats(self) -> dict[str, QueueStats]:
        return await self._read(reads.queue_stats)

    # hygiene -----------------------------------------------------------------------------
    async def purge(self, *, flow_id: str, done_before: float, limit: int = 1000) -> int:
        return await self._writer.write(p.Purge(flow_id, done_before, limit))

    # moving between stores ---------------------------------------------------------------
    async def count_deliveries(self) -> dict[str, dict[State, int]]:
        return await self._read(reads.count_deliveries)

    async def export_deliveries(
        self, *, limit: int, cursor: str | None
    ) -> tuple[list[DeliveryRecord], str | None]:
        return await self._read(lambda conn: reads.export_deliveries(conn, limit, cursor))

    async def import_deliveries(self, records: Sequence[DeliveryRecord]) -> int:
        rows = [
            (table.full_row(r.delivery), [table.attempt_row(r.delivery.id, a) for a in r.attempts])
            for r in records
        ]
        inserted, queued = await self._writer.write(p.ImportDeliveries(rows))
        self.queued.add_all(queued)
        return inserted

    # polling triggers --------------------------------------------------------------------
    async def last_tick(self, flow_id: str) -> float | None:
        return await self._read(lambda conn: reads.last_tick(conn, flow_id))

    async def claim_tick(
        self, flow_id: str, *, tick: float, request: Request | None, exclusive: bool
    ) -> Claim:
        rows = [] if request is None else table.inserted_rows(request)
        claim = await self._writer.write(p.ClaimTick(flow_id, tick, rows, exclusive))
        if claim == "claimed" and request is not None:
            self.queued.add(flow_id, table.queued_size(request))
            self.changes.accepted(request)
        return claim

    async def snapshot(self, flow_id: str) -> bytes | None:
        return await self._read(lambda conn: reads.snapshot(conn, flow_id))

    async def take_tokens(self, bucket: str, wanted: int, *, rate: DeliveryRate, now: float) -> int:
        """One gateway holds a SQLite store (the data directory's lock): buckets in memory."""
        pace = self._buckets.get(bucket)
        if pace is None:
            pace = self._buckets[bucket] = TokenBucket.of(rate)
        return pace.spend(wanted, rate, now)

    async def set_snapshot(self, flow_id: str, snapshot: bytes | None) -> None:
        await self._writer.write(p.SetSnapshot(flow_id, snapshot))
