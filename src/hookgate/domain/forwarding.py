"""What a worker receives: the caller's request minus hop-by-hop headers, plus Hookgate's.

Used by both the sync proxy and async deliveries, so a worker sees one shape (design §4).
Headers are bytes, as they come off the wire and go back onto it: the proxy forwards a request
without decoding and re-encoding every header.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterable
from typing import Any

from hookgate.domain.deliveries import POLL_SOURCE, Delivery

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
"""Meaningful for one connection only (RFC 9110 §7.6.1), requests and answers alike."""
RESET = frozenset({b"host", b"content-length", b"expect"})
"""What the hop to the worker sets again for the request it sends."""
ADDED = frozenset(
    {
        b"x-request-id",
        b"x-hookgate-flow",
        b"x-hookgate-delivery",
        b"x-hookgate-attempt",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }
)
DROPPED = HOP_BY_HOP | RESET | ADDED


def forward_headers(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    request_id: str,
    flow_id: str,
    client: str,
    proto: str = "http",
) -> Headers:
    """The caller's headers (hop-by-hop and ``Connection``-named ones removed) plus ours."""
    kept: Headers = []
    named: set[bytes] = set()
    host = prior = b""
    for name, value in headers:
        low = name.lower()
        if low not in DROPPED:
            kept.append((name, value))
        elif low == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
        elif low == b"host":
            host = host or value
        elif low == b"x-forwarded-for":
            prior = prior or value
    if named:
        kept = [(k, v) for k, v in kept if k.lower() not in named]
    kept += [(b"x-request-id", request_id.encode()), (b"x-hookgate-flow", flow_id.encode())]
    address = client.encode()
    forwarded_for = prior + b", " + address if prior and address else (address or prior)
    if forwarded_for:
        kept.append((b"x-forwarded-for", forwarded_for))
    kept.append((b"x-forwarded-proto", proto.encode()))
    if host:
        kept.append((b"x-forwarded-host", host))
    return kept


def delivery_headers(delivery: Delivery) -> Headers:
    """Async: Hookgate's ``Idempotency-Key`` (the delivery id) replaces a caller's own."""
    return [
        *forward_headers(
            [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in delivery.headers
                if k.lower() != "idempotency-key"
            ],
            request_id=delivery.request_id,
            flow_id=delivery.flow_id,
            client=delivery.source if delivery.source != POLL_SOURCE else "",
        ),
        (b"x-hookgate-delivery", delivery.id.encode()),
        (b"x-hookgate-attempt", str(delivery.attempts).encode()),
        (b"idempotency-key", delivery.idempotency_key.encode()),
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
        [(k.encode("latin-1"), v.encode("latin-1")) for k, v in delivery.headers],
        request_id=delivery.request_id,
        flow_id=delivery.flow_id,
        client=delivery.source,
    )
    return {
        "id": delivery.id,
        "data": data,
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in headers},
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
