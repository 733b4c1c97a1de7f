"""The memory store's tables: rows kept in insertion order, indexes beside them, and the
conversions between a stored row and what callers get (always copies: a caller that changes
what it got never changes the store)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from hookgate.domain.deliveries import Attempt, Delivery, Progress, Request, State
from hookgate.domain.flows import Flow, encode
from hookgate.domain.pacing import TokenBucket
from hookgate.errors import FlowConflict, FlowNotFound
from hookgate.store import rows as table
from hookgate.store.base import DeliveryFilter, Page, QueueStats

LIVE = (State.QUEUED, State.LEASED)


@dataclass(slots=True)
class Row:
    seq: int
    delivery: Delivery
    answer: bytes | None = None
    tried: list[Attempt] = field(default_factory=list)

    @property
    def lane(self) -> tuple[str, str]:
        return self.delivery.flow_id, self.delivery.destination


class Dedupe(msgspec.Struct):
    request_id: str
    delivery_id: str
    expires_at: float


class StoredFlow(msgspec.Struct):
    """A flow as the ``flows`` table holds it: the spec encoded, as SQL stores it."""

    name: str
    spec: bytes
    status: str
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, flow: Flow) -> StoredFlow:
        spec, status = encode(flow.spec), flow.status.value
        return cls(flow.name, spec, status, flow.created_at, flow.updated_at)

    def flow(self, flow_id: str) -> Flow:
        return table.flow((flow_id, self.spec, self.status, self.created_at, self.updated_at))


class Schedule(msgspec.Struct):
    last_tick: float | None = None
    snapshot: bytes | None = None


class Tables:
    """What a memory database holds. Deliveries are kept in insertion (``seq``) order."""

    def __init__(self) -> None:
        self.flows: dict[str, StoredFlow] = {}
        self.rows: dict[str, Row] = {}
        self.live: dict[tuple[str, str], dict[str, Row]] = {}
        """Queued and leased rows per (flow, destination): what leasing looks at."""
        self.tokens: dict[str, str] = {}
        self.dedupe: dict[tuple[str, str], Dedupe] = {}
        self.schedules: dict[str, Schedule] = {}
        self.buckets: dict[str, TokenBucket] = {}
        """Delivery rate limits, per ``flow id/destination`` (``Store.take_tokens``)."""
        self.seq = itertools.count(1)

    def add_flow(self, flow: Flow) -> None:
        if flow.id in self.flows or any(f.name == flow.name for f in self.flows.values()):
            raise FlowConflict(f"a flow named {flow.name!r} exists already")
        self.flows[flow.id] = StoredFlow.of(flow)

    def replace_flow(self, flow: Flow) -> None:
        if any(f.name == flow.name and i != flow.id for i, f in self.flows.items()):
            raise FlowConflict(f"a flow named {flow.name!r} exists already")
        if flow.id not in self.flows:
            raise FlowNotFound(f"no flow with id {flow.id}")
        stored = StoredFlow.of(flow)
        stored.created_at = self.flows[flow.id].created_at  # as in SQL, an update keeps it
        self.flows[flow.id] = stored

    def drop_flow(self, flow_id: str) -> None:
        """The flow and everything it holds."""
        if self.flows.pop(flow_id, None) is None:
            raise FlowNotFound(f"no flow with id {flow_id}")
        for row in [r for r in self.rows.values() if r.delivery.flow_id == flow_id]:
            self.remove(row)
        for key in [k for k in self.dedupe if k[0] == flow_id]:
            del self.dedupe[key]
        self.schedules.pop(flow_id, None)

    def insert(self, delivery: Delivery, attempts: Iterable[Attempt] = ()) -> Row:
        row = Row(next(self.seq), delivery, None, [copy_attempt(a) for a in attempts])
        self.rows[delivery.id] = row
        if delivery.status_token is not None:
            self.tokens[delivery.status_token] = delivery.id
        self.moved(row)
        return row

    def moved(self, row: Row) -> None:
        """Keep ``live`` in step with the row's state."""
        lane = self.live.setdefault(row.lane, {})
        if row.delivery.state in LIVE:
            lane[row.delivery.id] = row
        else:
            lane.pop(row.delivery.id, None)

    def remove(self, row: Row) -> None:
        del self.rows[row.delivery.id]
        self.live.get(row.lane, {}).pop(row.delivery.id, None)
        token = row.delivery.status_token
        if token is not None and self.tokens.get(token) == row.delivery.id:
            del self.tokens[token]

    def due(self, flow_id: str, destination: str, *, limit: int, now: float) -> list[Row]:
        """What ``lease`` takes (as the SQL stores' ``_LEASE``): due rows of the lane, oldest
        first, a keyed one only at the head of its key's line; an expired lease again."""
        lane = sorted(self.live.get((flow_id, destination), {}).values(), key=lambda r: r.seq)
        taken: list[Row] = []
        keys: set[str] = set()  # keys with an older queued or leased delivery: theirs wait
        for row in lane:
            if len(taken) >= limit:
                break
            d = row.delivery
            if d.state is State.QUEUED:
                due = d.next_at <= now and (d.order_key is None or d.order_key not in keys)
            else:
                due = d.lease_until is not None and d.lease_until < now
            if due:
                taken.append(row)
            if d.order_key is not None:
                keys.add(d.order_key)
        return taken

    def named(self, match: Callable[[str], bool]) -> list[Row]:
        """Rows whose delivery id, request id or dedupe key ``match``es, each once."""
        rows = {
            r.delivery.id: r
            for r in self.rows.values()
            if match(r.delivery.id) or match(r.delivery.request_id)
        }
        for (_, key), seen in self.dedupe.items():
            if match(key) and (row := self.rows.get(seen.delivery_id)) is not None:
                rows[row.delivery.id] = row
        return list(rows.values())

    def progress(self, status_token: str) -> Progress | None:
        found = self.tokens.get(status_token)
        if found is None:
            return None
        row = self.rows[found]
        d = row.delivery
        return Progress(
            request_id=d.request_id,
            flow_id=d.flow_id,
            state=d.state,
            attempts=d.attempts,
            last_error=d.last_error,
            answer=row.answer if d.state is State.DONE else None,
        )

    def page(self, where: DeliveryFilter, *, limit: int, cursor: str | None) -> Page:
        """Newest first, continuing below the cursor (a ``seq``)."""
        match, before = matches(where), int(cursor) if cursor is not None else None
        rows: list[Row] = []
        for row in reversed(self.rows.values()):
            if (before is None or row.seq < before) and match(row.delivery):
                rows.append(row)
                if len(rows) > limit:
                    break
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            [summary(r.delivery) for r in rows], str(rows[-1].seq) if more and rows else None
        )

    def queue_stats(self) -> dict[str, QueueStats]:
        counted: dict[str, list[Delivery]] = {}
        for lane in self.live.values():
            for row in lane.values():
                counted.setdefault(row.delivery.flow_id, []).append(row.delivery)
        return {flow_id: queue_stats_of(ds) for flow_id, ds in counted.items()}

    def purge(self, flow_id: str, done_before: float, limit: int) -> int:
        over = (State.DONE, State.FILTERED)
        rows = [
            r
            for r in self.rows.values()
            if r.delivery.flow_id == flow_id
            and r.delivery.state in over
            and r.delivery.updated_at < done_before
        ][:limit]
        for row in rows:
            self.remove(row)
        wall = time.time()
        for key in [k for k, v in self.dedupe.items() if k[0] == flow_id and v.expires_at < wall]:
            del self.dedupe[key]
        return len(rows)

    def queued_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for lane in self.live.values():
            for row in lane.values():
                flow_id = row.delivery.flow_id
                sizes[flow_id] = sizes.get(flow_id, 0) + table.queued_size(row.delivery)
        return sizes


def copy_attempt(attempt: Attempt) -> Attempt:
    return msgspec.structs.replace(attempt)


def full(delivery: Delivery) -> Delivery:
    """A copy the caller may change without changing the store."""
    return msgspec.structs.replace(delivery, headers=list(delivery.headers))


def summary(delivery: Delivery) -> Delivery:
    return msgspec.structs.replace(delivery, headers=[], body=b"", status_token=None)


def new_deliveries(request: Request) -> list[Delivery]:
    """What ``rows.inserted_rows`` stores, as deliveries: one per route."""
    at = request.received_at

    def made(id_: str, due: float, destination: str, key: str | None, state: State) -> Delivery:
        return Delivery(
            id=id_,
            request_id=request.request_id,
            flow_id=request.flow_id,
            state=state,
            attempts=0,
            next_at=due,
            received_at=at,
            method=request.method,
            path=request.path,
            query=request.query,
            headers=list(request.headers),
            body=request.body,
            source=request.source,
            updated_at=at,
            destination=destination,
            order_key=key,
        )

    return [
        made(r.id, r.due_at, r.destination, r.order_key, State.QUEUED) for r in request.deliveries()
    ]


def matches(where: DeliveryFilter) -> Callable[[Delivery], bool]:
    def match(d: Delivery) -> bool:
        return (
            (where.flow_id is None or d.flow_id == where.flow_id)
            and (where.state is None or d.state is where.state)
            and (where.since is None or d.received_at >= where.since)
            and (where.until is None or d.received_at < where.until)
        )

    return match


def queue_stats_of(deliveries: list[Delivery]) -> QueueStats:
    queued = [d for d in deliveries if d.state is State.QUEUED]
    due = [d.next_at for d in queued] + [
        d.lease_until for d in deliveries if d.state is State.LEASED and d.lease_until is not None
    ]
    return QueueStats(
        depth=len(queued),
        leased=len(deliveries) - len(queued),
        oldest_received_at=min(d.received_at for d in deliveries),
        next_due_at=min(due) if due else None,
    )
