"""What a worker receives: the caller's request minus hop-by-hop headers, plus Hookgate's.

Used by both the sync proxy and async deliveries, so a worker sees one shape (design §4).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterable
from typing import Any

from hookgate.domain.deliveries import POLL_SOURCE, Delivery

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
ADDED = frozenset(
    {
        "x-request-id",
        "x-hookgate-flow",
        "x-hookgate-delivery",
        "x-hookgate-attempt",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)


def forward_headers(
    headers: Iterable[tuple[str, str]],
    *,
    request_id: str,
    flow_id: str,
    client: str,
    proto: str = "http",
) -> list[tuple[str, str]]:
    """The caller's headers (hop-by-hop and ``Connection``-named ones removed) plus ours."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    host = next((v for k, v in pairs if k.lower() == "host"), "")
    prior = next((v for k, v in pairs if k.lower() == "x-forwarded-for"), "")
    kept = [
        (k, v)
        for k, v in pairs
        if (low := k.lower()) not in HOP_BY_HOP and low not in named and low not in ADDED
    ]
    kept += [("x-request-id", request_id), ("x-hookgate-flow", flow_id)]
    forwarded_for = f"{prior}, {client}" if prior and client else (client or prior)
    if forwarded_for:
        kept.append(("x-forwarded-for", forwarded_for))
    kept.append(("x-forwarded-proto", proto))
    if host:
        kept.append(("x-forwarded-host", host))
    return kept


def delivery_headers(delivery: Delivery) -> list[tuple[str, str]]:
    """Async: Hookgate's ``Idempotency-Key`` (the delivery id) replaces a caller's own."""
    return [
        *forward_headers(
            [(k, v) for k, v in delivery.headers if k.lower() != "idempotency-key"],
            request_id=delivery.request_id,
            flow_id=delivery.flow_id,
            client=delivery.source if delivery.source != POLL_SOURCE else "",
        ),
        ("x-hookgate-delivery", delivery.id),
        ("x-hookgate-attempt", str(delivery.attempts)),
        ("idempotency-key", delivery.idempotency_key),
    ]


def envelope(delivery: Delivery, *, flow_name: str) -> dict[str, Any]:
    """The Open Integration Hub message shape (``delivery: envelope``).

    ``data`` is the parsed JSON or form body (the query for GET), or ``{"raw": text}``; a body
    that is not UTF-8 text travels whole, base64-encoded, as the one attachment.
    """
    content_type = next((v for k, v in delivery.headers if k.lower() == "content-type"), "")
    kind = content_type.split(";")[0].strip().lower()
    query = dict(urllib.parse.parse_qsl(delivery.query, keep_blank_values=True))
    attachments: list[dict[str, Any]] = []
    data: Any = query
    if delivery.body and delivery.method not in ("GET", "HEAD"):
        try:
            text = delivery.body.decode("utf-8")
        except UnicodeDecodeError:
            data = {}
            attachments.append(
                {
                    "contentType": content_type or "application/octet-stream",
                    "size": len(delivery.body),
                    "encoding": "base64",
                    "content": base64.b64encode(delivery.body).decode(),
                }
            )
        else:
            data = _parsed(kind, text)
    headers = forward_headers(
        delivery.headers,
        request_id=delivery.request_id,
        flow_id=delivery.flow_id,
        client=delivery.source,
    )
    return {
        "id": delivery.id,
        "data": data,
        "headers": dict(headers),
        "query": query,
        "method": delivery.method,
        "url": delivery.path + (f"?{delivery.query}" if delivery.query else ""),
        "pathSuffix": delivery.path,
        "params": query,
        "metadata": {
            "source": {"name": flow_name, "type": "webhook", "externalExecId": delivery.request_id}
        },
        "attachments": attachments,
    }


def _parsed(kind: str, text: str) -> Any:
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return json.loads(text)
        except ValueError:
            return {"raw": text}
    if kind == "application/x-www-form-urlencoded":
        return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
    return {"raw": text}
