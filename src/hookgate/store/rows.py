"""Rows as both stores write and read them: one column order, one converter each way.

The SQL dialects differ, the tables do not, so the mapping between a row and a ``Request``,
``Delivery`` or ``Flow`` lives here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from hookgate.domain.deliveries import Attempt, Delivery, Progress, Request, Route, State
from hookgate.domain.flows import Flow, FlowSpec, Status
from hookgate.domain.units import dec_hook
from hookgate.store.columns import ATTEMPT as ATTEMPT
from hookgate.store.columns import FULL as FULL
from hookgate.store.columns import FULL_COUNT as FULL_COUNT
from hookgate.store.columns import INSERTED as INSERTED
from hookgate.store.columns import INSERTED_COUNT as INSERTED_COUNT
from hookgate.store.columns import PROGRESS as PROGRESS
from hookgate.store.columns import QUEUED_SIZE as QUEUED_SIZE
from hookgate.store.columns import ROW_OVERHEAD
from hookgate.store.columns import SUMMARY as SUMMARY

_headers = msgspec.json.Decoder(list[tuple[str, str]])


def queued_size(item: Request | Delivery) -> int:
    """What a request counts against the queue bounds: its head and body as stored, plus a
    fixed overhead per row (``QUEUED_SIZE`` is the same rule in SQL). Headers count as well as
    the body: a 50 KB header on an empty body takes the disk a 50 KB body would. A request
    counts once per delivery it becomes (one per destination)."""
    size = (
        len(item.method)
        + len(item.path)
        + len(item.query)
        + len(msgspec.json.encode(item.headers))
        + len(item.body)
        + ROW_OVERHEAD
    )
    return size * len(item.deliveries()) if isinstance(item, Request) else size


_spec = msgspec.json.Decoder(FlowSpec, dec_hook=dec_hook)


def summary(row: Sequence[Any]) -> Delivery:
    """A delivery from the ``SUMMARY`` columns (no headers, no body)."""
    return Delivery(
        id=row[0],
        request_id=row[1],
        flow_id=row[2],
        state=State(row[3]),
        attempts=row[4],
        next_at=row[5],
        received_at=row[6],
        lease_until=row[7],
        last_error=row[8],
        updated_at=row[9],
        method=row[10],
        path=row[11],
        query=row[12],
        source=row[13],
        destination=row[14],
        order_key=row[15],
    )


def full(row: Sequence[Any]) -> Delivery:
    """A delivery from the ``FULL`` columns."""
    delivery = summary(row)
    delivery.headers = _headers.decode(row[16])
    delivery.body = bytes(row[17])
    delivery.status_token = row[18]
    return delivery


def full_row(d: Delivery) -> tuple[Any, ...]:
    """The ``FULL`` columns of a delivery, e.g. one copied from another store."""
    return (
        d.id,
        d.request_id,
        d.flow_id,
        int(d.state),
        d.attempts,
        d.next_at,
        d.received_at,
        d.lease_until,
        d.last_error,
        d.updated_at,
        d.method,
        d.path,
        d.query,
        d.source,
        d.destination,
        d.order_key,
        msgspec.json.encode(d.headers),
        d.body,
        d.status_token,
    )


def _lane(route: Route) -> tuple[str, str | None, int]:
    return route.destination, route.order_key, int(State.QUEUED)


def inserted_rows(request: Request) -> list[tuple[Any, ...]]:
    """The ``INSERTED`` columns of a newly accepted request: one row per delivery (route),
    queued and due when its route says."""
    at = request.received_at
    head = (
        request.method,
        request.path,
        request.query,
        msgspec.json.encode(request.headers),
        request.body,
        request.source,
    )
    return [
        (r.id, request.request_id, request.flow_id, r.due_at, at, at, *head, *_lane(r))
        for r in request.deliveries()
    ]


def progress(row: Sequence[Any]) -> Progress:
    """A status URL's delivery from the ``PROGRESS`` columns."""
    return Progress(
        request_id=row[0],
        flow_id=row[1],
        state=State(row[2]),
        attempts=row[3],
        last_error=row[4],
        answer=None if row[5] is None else bytes(row[5]),
    )


def flow(row: Sequence[Any]) -> Flow:
    """A flow from ``id, spec, status, created_at, updated_at``."""
    return Flow(
        id=row[0],
        spec=_spec.decode(row[1]),
        status=Status(row[2]),
        created_at=row[3],
        updated_at=row[4],
    )


def attempt(row: Sequence[Any]) -> Attempt:
    """An attempt from the ``ATTEMPT`` columns."""
    return Attempt(
        number=row[0],
        started_at=row[1],
        duration_ms=row[2],
        status_code=row[3],
        error=row[4],
        response=row[5],
    )


def attempt_row(delivery_id: str, a: Attempt) -> tuple[Any, ...]:
    """The columns of the ``attempts`` table for one attempt."""
    return (
        delivery_id,
        a.number,
        a.started_at,
        a.duration_ms,
        a.status_code,
        a.error,
        a.response,
    )
