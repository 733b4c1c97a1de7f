"""The cluster store: PostgreSQL shared by several gateways, through a psycopg 3 pool.

Ingest and delivery outcomes are group-committed: a few tasks each take every write that is
waiting and send it as one statement (``unnest`` of arrays, its own transaction), resolving
each caller only after the commit; several groups are in flight at once. Leasing uses
``FOR UPDATE SKIP LOCKED`` so gateways never hand out the same delivery; every transition is
guarded by the state it leaves and by ``attempts`` (the lease token). Changes are announced with
``pg_notify`` inside the changing transaction, and ``watch()`` turns them into events.
A probe on a connection of its own asks the database every ``PROBE_EVERY`` whether it answers:
that is ``accepting`` (a pool busy with load is not an outage).
``psycopg`` is imported in this package and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from hookgate import logs
from hookgate.domain.deliveries import Attempt, Delivery, Progress, Request, State
from hookgate.domain.destinations import WORKERS, DeliveryRate
from hookgate.domain.flows import Flow
from hookgate.errors import StoreError, StoreUnavailable
from hookgate.store import rows as table
from hookgate.store.base import Accepted, Claim, DeliveryFilter, DeliveryRecord, Page, QueueStats
from hookgate.store.changes import Change, Changes
from hookgate.store.postgres import feed, reads, schema, statements, writes
from hookgate.store.postgres.database import Database
from hookgate.store.postgres.groups import (
    GROUPS_IN_FLIGHT,
    Finishing,
    Groups,
    Pending,
    insert_batch,
)
from hookgate.store.postgres.schema import SCHEMA_VERSION
from hookgate.store.postgres.statements import FINISH, LEASE, columns
from hookgate.store.shared import Acceptance, Outcomes, QueuedBytes, prefix_bounds, settle

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

_RECOUNT_EVERY = 5.0
log = logs.get("hookgate.store")


class PostgresStore(Outcomes):
    def __init__(
        self,
        url: str,
        *,
        max_queued_bytes: int,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
    ) -> None:
        self.db = Database(
            url,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        self.queued = QueuedBytes(max_queued_bytes)
        self.changes = Changes()
        self._health = Acceptance("postgresql")
        self._ingest: Groups[Pending] | None = None
        self._finishes: Groups[Finishing] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        await self.db.migrate()
        await self.db.open_pool()
        try:
            await self._recount()
            probe = await self.db.connect()
        except StoreError:
            await self.db.close_pool()
            raise
        self._ingest = Groups(self._commit, GROUPS_IN_FLIGHT)
        self._finishes = Groups(self._finish_group, GROUPS_IN_FLIGHT)
        self._tasks = [
            asyncio.create_task(self._recounter()),
            asyncio.create_task(self.db.probe(probe, self._health)),
            asyncio.create_task(self._follow()),
        ]

    async def close(self) -> None:
        self._closing = True
        for groups in (self._ingest, self._finishes):
            if groups is not None:
                await groups.close()
        self._ingest = self._finishes = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.db.close_pool()

    async def schema_version(self) -> int:
        """The version the database is at, for ``hookgate db status``."""
        async with await self.db.connect() as conn:
            return await schema.version(conn)

    # group commit ------------------------------------------------------------------------
    async def _commit(self, batch: list[Pending]) -> None:
        """Write a batch in one transaction; if one row is refused, write the rest one by one."""
        results: list[Accepted | BaseException]
        try:
            async with self.db.conn() as conn:
                results = list(await insert_batch(conn, batch))
        except StoreUnavailable as exc:
            results = [exc] * len(batch)
        except Exception as exc:
            if len(batch) > 1:
                for item in batch:
                    await self._commit([item])
                return
            message = (
                str(exc)
                if isinstance(exc, StoreError)
                else (f"PostgreSQL {self.db.where} refused the request: {exc}")
            )
            results = [StoreUnavailable(message)]
        for item, result in zip(batch, results, strict=True):
            settle(item.future, result)

    async def _recount(self) -> None:
        """The queued bytes of every gateway: each only sees its own enqueues and acks."""
        async with self.db.conn() as conn:
            self.queued.reset(await reads.queued_sizes(conn))

    async def _recounter(self) -> None:
        while True:
            await asyncio.sleep(_RECOUNT_EVERY)
            with contextlib.suppress(StoreError):
                await self._recount()

    @property
    def accepting(self) -> bool:
        return self._health.accepting

    # flows -------------------------------------------------------------------------------
    async def create_flow(self, flow: Flow) -> None:
        async with self.db.conn() as conn:
            await writes.create_flow(conn, flow)

    async def update_flow(self, flow: Flow) -> None:
        async with self.db.conn() as conn:
            await writes.update_flow(conn, flow)

    async def delete_flow(self, flow_id: str) -> None:
        async with self.db.conn() as conn:
            await writes.delete_flow(conn, flow_id)
        self.queued.forget(flow_id)

    async def list_flows(self) -> list[Flow]:
        async with self.db.conn() as conn:
            return await reads.list_flows(conn)

    async def get_flow(self, flow_id: str) -> Flow | None:
        async with self.db.conn() as conn:
            return await reads.get_flow(conn, flow_id)

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
        if self._ingest is None or self._closing:
            raise StoreUnavailable("the store is not open")
        if self._health.reason is not None:
            raise StoreUnavailable(self._health.reason)
        size = table.queued_size(request)
        self.queued.check(request.flow_id, size, max_queued)
        item = Pending(request, dedupe_key, dedupe_until, status_token)
        self._ingest.put(item)
        result = await item.future
        if not result.duplicate:
            self.queued.add(request.flow_id, size)
            self.changes.accepted(request)
        return result

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
        where = {"flow": flow_id, "to": destination, "now": now, "limit": limit}
        async with self.db.conn() as conn:
            cur = await conn.execute(LEASE, {**where, "until": now + lease_for})
            rows = await cur.fetchall()
        return sorted((table.full(row) for row in rows), key=lambda d: d.id)

    async def _finish(
        self, delivery: Delivery, attempt: Attempt, *, to: State, next_at: float | None = None
    ) -> bool:
        if self._finishes is None or self._closing:
            raise StoreUnavailable("the store is not open")
        _, *tried = table.attempt_row(delivery.id, attempt)
        ended = attempt.started_at + attempt.duration_ms / 1000
        move = (delivery.id, delivery.attempts, int(to), next_at, attempt.problem, ended)
        item = Finishing((*move, *tried, to is State.QUEUED))
        self._finishes.put(item)
        return await item.future

    async def _finish_group(self, group: list[Finishing]) -> None:
        """Every outcome of the group in one statement: guarded moves, their attempts and
        the wake-ups for retries."""
        try:
            async with self.db.conn() as conn:
                cur = await conn.execute(FINISH, columns(f.row for f in group))
                moved = {delivery_id for delivery_id, _notified in await cur.fetchall()}
        except Exception as exc:
            error = exc if isinstance(exc, StoreError) else StoreError(f"finishing failed: {exc}")
            for item in group:
                settle(item.future, error)
            return
        for item in group:
            settle(item.future, item.delivery_id in moved)

    async def keep_answer(self, delivery: Delivery, answer: bytes) -> bool:
        async with self.db.conn() as conn:
            return await writes.keep_answer(conn, delivery, answer)

    async def replay(self, ids: Sequence[str], *, now: float) -> int:
        if not ids:
            return 0
        return await self._replay(sql.SQL("id = ANY(%s)"), [list(ids)], now)

    async def replay_matching(self, where: DeliveryFilter, *, now: float) -> int:
        clause, params = statements.where_clause(where)
        return await self._replay(clause, params, now)

    async def _replay(self, clause: sql.Composable, params: list[Any], now: float) -> int:
        async with self.db.conn() as conn:
            sizes = await writes.replay(conn, clause, params, now)
        self.queued.add_all(sizes)
        self.changes.requeued(flow_id for flow_id, _ in sizes)
        return len(sizes)

    async def delete_deliveries(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with self.db.conn() as conn:
            count, freed = await writes.delete_deliveries(conn, ids)
        self.queued.add_all(freed, sign=-1)
        return count

    # reading -----------------------------------------------------------------------------
    async def get_delivery(self, delivery_id: str) -> Delivery:
        async with self.db.conn() as conn:
            return await reads.get_delivery(conn, delivery_id)

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        async with self.db.conn() as conn:
            return await reads.attempts(conn, delivery_id)

    async def progress(self, status_token: str) -> Progress | None:
        async with self.db.conn() as conn:
            return await reads.progress(conn, status_token)

    async def find_deliveries(self, ref: str, *, limit: int) -> list[Delivery]:
        async with self.db.conn() as conn:
            return await reads.find_deliveries(conn, ref, prefix_bounds(ref), limit)

    async def list_deliveries(
        self, where: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> Page:
        async with self.db.conn() as conn:
            return await reads.list_deliveries(conn, where, limit, cursor)

    async def queue_stats(self) -> dict[str, QueueStats]:
        async with self.db.conn() as conn:
            return await reads.queue_stats(conn)

    # hygiene -----------------------------------------------------------------------------
    async def purge(self, *, flow_id: str, done_before: float, limit: int = 1000) -> int:
        async with self.db.conn() as conn:
            return await writes.purge(conn, flow_id, done_before, limit)

    # moving between stores ---------------------------------------------------------------
    async def count_deliveries(self) -> dict[str, dict[State, int]]:
        async with self.db.conn() as conn:
            return await reads.count_deliveries(conn)

    async def export_deliveries(
        self, *, limit: int, cursor: str | None
    ) -> tuple[list[DeliveryRecord], str | None]:
        async with self.db.conn() as conn:
            return await reads.export_deliveries(conn, limit, cursor)

    async def import_deliveries(self, records: Sequence[DeliveryRecord]) -> int:
        async with self.db.conn() as conn:
            count, pending = await writes.import_deliveries(conn, records)
        self.queued.add_all([(d.flow_id, table.queued_size(d)) for d in pending])
        return count

    # polling triggers --------------------------------------------------------------------
    async def last_tick(self, flow_id: str) -> float | None:
        async with self.db.conn() as conn:
            return await reads.last_tick(conn, flow_id)

    async def claim_tick(
        self, flow_id: str, *, tick: float, request: Request | None, exclusive: bool
    ) -> Claim:
        async with self.db.conn() as conn:
            claim = await writes.claim_tick(conn, flow_id, tick, request, exclusive)
        if claim == "claimed" and request is not None:
            self.queued.add(flow_id, table.queued_size(request))
            self.changes.accepted(request)
        return claim

    async def snapshot(self, flow_id: str) -> bytes | None:
        async with self.db.conn() as conn:
            return await reads.snapshot(conn, flow_id)

    async def take_tokens(self, bucket: str, wanted: int, *, rate: DeliveryRate, now: float) -> int:
        async with self.db.conn() as conn:
            return await writes.take_tokens(conn, bucket, wanted, rate)

    async def set_snapshot(self, flow_id: str, snapshot: bytes | None) -> None:
        async with self.db.conn() as conn:
            await writes.set_snapshot(conn, flow_id, snapshot)

    async def _follow(self) -> None:
        """Announce what every gateway changes (``watch``), listening again when the feed is
        lost: ``Resynced`` then says that changes may have been missed meanwhile."""
        while not self._closing:
            try:
                async for change in self.watch():
                    self.changes.publish(change)
            except StoreError as exc:
                log.warning("lost the database's change feed; reconnecting", error=str(exc))
            await asyncio.sleep(1.0)

    async def watch(self) -> AsyncGenerator[Change, None]:
        """``FlowChanged`` when any gateway changed a flow, ``Queued`` when work arrived.

        The first change is ``Resynced``: from then on nothing is missed, so that is the
        moment to reload caches. Ends when the store closes; raises ``StoreUnavailable`` when the
        connection is lost: changes may have been missed, so watch again and reload on
        ``Resynced``.
        """
        async with await self.db.connect() as conn:
            try:
                async for event in feed.events(conn, lambda: self._closing):
                    yield event
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise StoreUnavailable(self.db.unreachable(exc)) from None
