"""The memory store's tables: rows kept in insertion order, indexes beside them, and the
conversions between a stored row and what callers get (always copies: a caller that changes
what it got never changes the store)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from hookgate.domain.deliveries import Attempt, Delivery, Request, State
from hookgate.domain.flows import Flow
from hookgate.domain.pacing import TokenBucket
from hookgate.store import rows as table
from hookgate.store.base import DeliveryFilter, QueueStats

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


class Schedule(msgspec.Struct):
    last_tick: float | None = None
    snapshot: bytes | None = None


class Tables:
    """What a memory database holds. Deliveries are kept in insertion (``seq``) order."""

    def __init__(self) -> None:
        self.flows: dict[str, tuple[str, bytes, str, float, float]] = {}
        self.rows: dict[str, Row] = {}
        self.live: dict[tuple[str, str], dict[str, Row]] = {}
        """Queued and leased rows per (flow, destination): what leasing looks at."""
        self.tokens: dict[str, str] = {}
        self.dedupe: dict[tuple[str, str], Dedupe] = {}
        self.schedules: dict[str, Schedule] = {}
        self.buckets: dict[str, TokenBucket] = {}
        """Delivery rate limits, per ``flow id/destination`` (``Store.take_tokens``)."""
        self.seq = itertools.count(1)

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
        made(r.id, r.due_at, r.destination, r.order_key, State.QUEUED)
        for r in request.deliveries()
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


def stored_flow(flow_id: str, row: tuple[str, bytes, str, float, float]) -> Flow:
    _, spec, status, created_at, updated_at = row
    return table.flow((flow_id, spec, status, created_at, updated_at))


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
