"""How flows and deliveries look on the wire (admin API, CLI ``--json``): secrets masked by
the same rule as the console's (:mod:`hookgate.domain.redaction`)."""

from __future__ import annotations

import base64
from typing import Any

from hookgate.domain import redaction
from hookgate.domain.deliveries import Attempt, Delivery, rounds
from hookgate.domain.flows import Flow, to_builtins
from hookgate.runtime.base import WorkerStatus, flow_state


def flow_view(
    flow: Flow,
    *,
    public_url: str,
    workers: WorkerStatus | None = None,
    concurrency_limit: int | None = None,
) -> dict[str, Any]:
    """``concurrencyLimit``: the limit found (``auto``) or pinned, over the flow's ready
    workers; null before it has one."""
    view = {
        "id": flow.id,
        "name": flow.name,
        "mode": flow.mode.value,
        "status": flow.status.value if workers is None else flow_state(flow, workers),
        "url": f"{public_url}/hook/{flow.id}",
        "createdAt": flow.created_at,
        "updatedAt": flow.updated_at,
        "spec": redaction.spec(to_builtins(flow.spec)),
        "concurrencyLimit": concurrency_limit,
    }
    if workers is not None:
        view["workers"] = to_builtins(workers)
    return view


def body_view(body: bytes) -> dict[str, Any]:
    """UTF-8 bodies as text, anything else as base64, so binary survives JSON."""
    try:
        return {"body": body.decode("utf-8"), "bodyEncoding": "utf-8"}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode(), "bodyEncoding": "base64"}


def delivery_view(
    delivery: Delivery,
    *,
    flow_name: str | None = None,
    full: bool = False,
    attempts: list[Attempt] | None = None,
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": delivery.id,
        "requestId": delivery.request_id,
        "flowId": delivery.flow_id,
        "flow": flow_name,
        "status": delivery.state.label,
        "destination": delivery.destination if delivery.destination else None,
        "orderKey": delivery.order_key,
        "attempts": delivery.attempts,
        "receivedAt": delivery.received_at,
        "updatedAt": delivery.updated_at,
        "nextAttemptAt": delivery.next_at if delivery.state.label == "queued" else None,
        "lastError": delivery.last_error,
        "method": delivery.method,
        "path": delivery.path,
        "query": delivery.query,
        "source": delivery.source,
    }
    if full:
        view["headers"] = [list(pair) for pair in redaction.headers(delivery.headers)]
        view.update(body_view(delivery.body))
        view["size"] = len(delivery.body)
    if attempts is not None:
        ordered = sorted(attempts, key=lambda a: a.started_at)
        numbered = rounds([a.number for a in ordered])
        view["history"] = [
            {**to_builtins(a), "round": r} for a, r in zip(ordered, numbered, strict=True)
        ]
    return view
