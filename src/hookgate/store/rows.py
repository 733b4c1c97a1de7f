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
    """A delivery from the ``SUMMARY`` columns (no headers, no body), or the first of more."""
    (
        delivery_id,
        request_id,
        flow_id,
        state,
        attempts,
        next_at,
        received_at,
        lease_until,
        last_error,
        updated_at,
        method,
        path,
        query,
        source,
        destination,
        order_key,
        *_,
    ) = row
    return Delivery(
        id=delivery_id,
        request_id=request_id,
        flow_id=flow_id,
        state=State(state),
        attempts=attempts,
        next_at=next_at,
        received_at=received_at,
        lease_until=lease_until,
        last_error=last_error,
        updated_at=updated_at,
        method=method,
        path=path,
        query=query,
        source=source,
        destination=destination,
        order_key=order_key,
    )


def full(row: Sequence[Any]) -> Delivery:
    """A delivery from the ``FULL`` columns."""
    delivery = summary(row)
    *_, headers, body, status_token = row
    delivery.headers = _headers.decode(headers)
    delivery.body = bytes(body)
    delivery.status_token = status_token
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
    request_id, flow_id, state, attempts, last_error, answer = row
    return Progress(
        request_id=request_id,
        flow_id=flow_id,
        state=State(state),
        attempts=attempts,
        last_error=last_error,
        answer=None if answer is None else bytes(answer),
    )


def flow(row: Sequence[Any]) -> Flow:
    """A flow from ``id, spec, status, created_at, updated_at``."""
    flow_id, spec, status, created_at, updated_at = row
    return Flow(
        id=flow_id,
        spec=_spec.decode(spec),
        status=Status(status),
        created_at=created_at,
        updated_at=updated_at,
    )


def attempt(row: Sequence[Any]) -> Attempt:
    """An attempt from the ``ATTEMPT`` columns."""
    number, started_at, duration_ms, status_code, error, response = row
    return Attempt(
        number=number,
        started_at=started_at,
        duration_ms=duration_ms,
        status_code=status_code,
        error=error,
        response=response,
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
