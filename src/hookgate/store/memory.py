"""The memory store: the ``Store`` protocol in plain dicts, for tests and throwaway demos.

It keeps the semantics of the SQLite and PostgreSQL stores exactly (it passes the same
``tests/store/test_contract.py``): guarded transitions with ``attempts`` as the lease token,
oldest-first leasing per destination with per-key order, dedupe windows, status tokens, the
queue bounds. Nothing survives the process: ``hookgate serve --database memory://`` is a demo
whose queue is gone after a restart.

Two ``MemoryStore`` objects on one ``Tables`` are two gateways on one database (or one gateway
reopened); each operation runs whole between two awaits, as a transaction would.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

from hookgate.domain.deliveries import POLL_SOURCE, Attempt, Delivery, Progress, Request, State
from hookgate.domain.destinations import WORKERS, DeliveryRate
from hookgate.domain.flows import Flow
from hookgate.domain.pacing import TokenBucket
from hookgate.errors import (
    DeliveryNotFound,
    StoreFull,
    StoreUnavailable,
)
from hookgate.store import rows as table
from hookgate.store.base import Accepted, Claim, DeliveryFilter, DeliveryRecord, Page, QueueStats
from hookgate.store.changes import Changes
from hookgate.store.memory_tables import (
    LIVE,
    Dedupe,
    Row,
    Schedule,
    Tables,
    copy_attempt,
    full,
    matches,
    new_deliveries,
    summary,
)
from hookgate.store.shared import Acceptance, QueuedBytes, prefix_bounds

SCHEMA_VERSION = 0
"""No schema: nothing to migrate."""


class MemoryStore:
    def __init__(self, *, max_queued_bytes: int, tables: Tables | None = None) -> None:
        self.tables = tables if tables is not None else Tables()
        self.queued = QueuedBytes(max_queued_bytes)
        self.changes = Changes()
        self.acceptance = Acceptance("memory")
        """Always accepting, unless a test stops it (``acceptance.stop(reason)``)."""
        self._open = False

    # lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        self.queued.reset(self.tables.queued_sizes())
        self._open = True

    async def close(self) -> None:
        self._open = False

    @property
    def accepting(self) -> bool:
        return self.acceptance.accepting

    async def schema_version(self) -> int:
        return SCHEMA_VERSION

    async def _turn(self) -> Tables:
        """Give other tasks the turn a database round trip would, then the tables."""
        if not self._open:
            raise StoreUnavailable("the store is not open")
        await asyncio.sleep(0)
        if not self._open:
            raise StoreUnavailable("the store is not open")
        return self.tables

    # flows -------------------------------------------------------------------------------
    async def create_flow(self, flow: Flow) -> None:
        (await self._turn()).add_flow(flow)

    async def update_flow(self, flow: Flow) -> None:
        (await self._turn()).replace_flow(flow)

    async def delete_flow(self, flow_id: str) -> None:
        (await self._turn()).drop_flow(flow_id)
        self.queued.forget(flow_id)

    async def list_flows(self) -> list[Flow]:
        t = await self._turn()
        return [f.flow(i) for i, f in sorted(t.flows.items(), key=lambda item: item[1].name)]

    async def get_flow(self, flow_id: str) -> Flow | None:
        t = await self._turn()
        found = t.flows.get(flow_id)
        return None if found is None else found.flow(flow_id)

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
        t = await self._turn()
        if self.acceptance.reason is not None:
            raise StoreFull(self.acceptance.reason)
        size = table.queued_size(request)
        self.queued.check(request.flow_id, size, max_queued)
        made = new_deliveries(request)
        seen: Dedupe | None = None
        if dedupe_key is not None:
            seen = t.dedupe.get((request.flow_id, dedupe_key))
            if seen is not None and seen.expires_at <= request.received_at:
                seen = None
            if seen is None:
                entry = Dedupe(request.request_id, made[0].id, dedupe_until)
                t.dedupe[(request.flow_id, dedupe_key)] = entry
        if seen is None:
            for delivery in made:
                t.insert(delivery)
            self.queued.add(request.flow_id, size)
            self.changes.accepted(request)
        token = None
        if status_token is not None:
            row = t.rows.get(made[0].id if seen is None else seen.delivery_id)
            if row is not None:
                if row.delivery.status_token is None:
                    row.delivery.status_token = status_token
                    t.tokens[status_token] = row.delivery.id
                token = row.delivery.status_token
        if seen is not None:
            return Accepted(seen.request_id, seen.delivery_id, duplicate=True, status_token=token)
        return Accepted(request.request_id, request.id, status_token=token)

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
        t = await self._turn()
        taken = t.due(flow_id, destination, limit=limit, now=now)
        for row in taken:
            d = row.delivery
            d.state, d.attempts, d.lease_until, d.updated_at = (
                State.LEASED,
                d.attempts + 1,
                now + lease_for,
                now,
            )
        return sorted((full(row.delivery) for row in taken), key=lambda d: d.id)

    async def _finish(
        self, delivery: Delivery, attempt: Attempt, *, to: State, next_at: float | None = None
    ) -> bool:
        t = await self._turn()
        row = self._held(t, delivery)
        if row is None:
            return False
        d = row.delivery
        d.state, d.lease_until, d.last_error = to, None, attempt.problem
        d.updated_at = attempt.started_at + attempt.duration_ms / 1000
        if next_at is not None:
            d.next_at = next_at
        row.tried.append(copy_attempt(attempt))
        t.moved(row)
        if to is not State.QUEUED:
            self.queued.add(d.flow_id, -table.queued_size(d))
        return True

    @staticmethod
    def _held(t: Tables, delivery: Delivery) -> Row | None:
        """The row, if ``delivery`` is its current lease."""
        row = t.rows.get(delivery.id)
        if row is None or row.delivery.state is not State.LEASED:
            return None
        return row if row.delivery.attempts == delivery.attempts else None

    async def complete(self, delivery: Delivery, attempt: Attempt) -> bool:
        return await self._finish(delivery, attempt, to=State.DONE)

    async def filter_out(self, delivery: Delivery, attempt: Attempt) -> bool:
        return await self._finish(delivery, attempt, to=State.FILTERED)

    async def retry(self, delivery: Delivery, attempt: Attempt, *, next_at: float) -> bool:
        return await self._finish(delivery, attempt, to=State.QUEUED, next_at=next_at)

    async def bury(self, delivery: Delivery, attempt: Attempt) -> bool:
        return await self._finish(delivery, attempt, to=State.DEAD)

    async def keep_answer(self, delivery: Delivery, answer: bytes) -> bool:
        row = self._held(await self._turn(), delivery)
        if row is not None:
            row.answer = answer
        return row is not None

    async def replay(self, ids: Sequence[str], *, now: float) -> int:
        t = await self._turn()
        return self._replay(t, [t.rows[i] for i in dict.fromkeys(ids) if i in t.rows], now)

    async def replay_matching(self, where: DeliveryFilter, *, now: float) -> int:
        t = await self._turn()
        match = matches(where)
        return self._replay(t, [r for r in t.rows.values() if match(r.delivery)], now)

    def _replay(self, t: Tables, rows: list[Row], now: float) -> int:
        flows: list[str] = []
        for row in rows:
            d = row.delivery
            if d.state not in (State.DONE, State.DEAD):
                continue
            d.state, d.attempts, d.next_at, d.lease_until, d.updated_at = (
                State.QUEUED,
                0,
                now,
                None,
                now,
            )
            t.moved(row)
            self.queued.add(d.flow_id, table.queued_size(d))
            flows.append(d.flow_id)
        self.changes.requeued(flows)
        return len(flows)

    async def delete_deliveries(self, ids: Sequence[str]) -> int:
        t = await self._turn()
        rows = [t.rows[i] for i in dict.fromkeys(ids) if i in t.rows]
        for row in rows:
            if row.delivery.state in LIVE:
                self.queued.add(row.delivery.flow_id, -table.queued_size(row.delivery))
            t.remove(row)
        return len(rows)

    # reading -----------------------------------------------------------------------------
    async def get_delivery(self, delivery_id: str) -> Delivery:
        row = (await self._turn()).rows.get(delivery_id)
        if row is None:
            raise DeliveryNotFound(f"no delivery {delivery_id} (unknown, or purged)")
        return full(row.delivery)

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        row = (await self._turn()).rows.get(delivery_id)
        return [] if row is None else [copy_attempt(a) for a in row.tried]

    async def progress(self, status_token: str) -> Progress | None:
        return (await self._turn()).progress(status_token)

    async def find_deliveries(self, ref: str, *, limit: int) -> list[Delivery]:
        t = await self._turn()
        found = t.named(lambda value: value == ref)
        bounds = prefix_bounds(ref)
        if not found and bounds is not None:
            low, high = bounds
            found = t.named(lambda value: low <= value < high)
        rows = sorted(found, key=lambda r: r.seq, reverse=True)[:limit]
        return [summary(r.delivery) for r in rows]

    async def list_deliveries(
        self, where: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> Page:
        return (await self._turn()).page(where, limit=limit, cursor=cursor)

    async def queue_stats(self) -> dict[str, QueueStats]:
        return (await self._turn()).queue_stats()

    # hygiene -----------------------------------------------------------------------------
    async def purge(self, *, flow_id: str, done_before: float, limit: int = 1000) -> int:
        return (await self._turn()).purge(flow_id, done_before, limit)

    # moving between stores ---------------------------------------------------------------
    async def count_deliveries(self) -> dict[str, dict[State, int]]:
        counts: dict[str, dict[State, int]] = {}
        for row in (await self._turn()).rows.values():
            by_state = counts.setdefault(row.delivery.flow_id, {})
            by_state[row.delivery.state] = by_state.get(row.delivery.state, 0) + 1
        return counts

    async def export_deliveries(
        self, *, limit: int, cursor: str | None
    ) -> tuple[list[DeliveryRecord], str | None]:
        t = await self._turn()
        after = int(cursor or 0)
        rows = list(itertools.islice((r for r in t.rows.values() if r.seq > after), limit))
        records = [
            DeliveryRecord(full(r.delivery), [copy_attempt(a) for a in r.tried]) for r in rows
        ]
        return records, str(rows[-1].seq) if rows and len(rows) == limit else None

    async def import_deliveries(self, records: Sequence[DeliveryRecord]) -> int:
        t = await self._turn()
        inserted = 0
        for record in records:
            if record.delivery.id in t.rows:
                continue
            row = t.insert(full(record.delivery), record.attempts)
            inserted += 1
            if row.delivery.state in LIVE:
                self.queued.add(row.delivery.flow_id, table.queued_size(row.delivery))
        return inserted

    # polling triggers --------------------------------------------------------------------
    async def last_tick(self, flow_id: str) -> float | None:
        schedule = (await self._turn()).schedules.get(flow_id)
        return None if schedule is None else schedule.last_tick

    async def claim_tick(
        self, flow_id: str, *, tick: float, request: Request | None, exclusive: bool
    ) -> Claim:
        t = await self._turn()
        schedule = t.schedules.setdefault(flow_id, Schedule())
        if exclusive and any(
            row.delivery.source == POLL_SOURCE
            for (flow, _), lane in t.live.items()
            if flow == flow_id
            for row in lane.values()
        ):
            return "busy"
        if schedule.last_tick is not None and schedule.last_tick >= tick:
            return "taken"
        schedule.last_tick = tick
        if request is not None:
            for delivery in new_deliveries(request):
                t.insert(delivery)
            self.queued.add(flow_id, table.queued_size(request))
            self.changes.accepted(request)
        return "claimed"

    async def snapshot(self, flow_id: str) -> bytes | None:
        schedule = (await self._turn()).schedules.get(flow_id)
        return None if schedule is None else schedule.snapshot

    async def take_tokens(self, bucket: str, wanted: int, *, rate: DeliveryRate, now: float) -> int:
        pace = self.tables.buckets.get(bucket)
        if pace is None:
            pace = self.tables.buckets[bucket] = TokenBucket.of(rate)
        return pace.spend(wanted, rate, now)

    async def set_snapshot(self, flow_id: str, snapshot: bytes | None) -> None:
        (await self._turn()).schedules.setdefault(flow_id, Schedule()).snapshot = snapshot
