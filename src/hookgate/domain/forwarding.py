"""What a worker receives: the caller's request minus hop-by-hop headers, plus Hookgate's.

Used by both the sync proxy and async deliveries, so a worker sees one shape (design §4).
Headers are bytes, as they come off the wire and go back onto it: the proxy forwards a request
without decoding and re-encoding every header.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

import msgspec

from hookgate.domain import oih, qs
from hookgate.domain.deliveries import POLL_SOURCE, Delivery
from hookgate.domain.schedule import with_snapshot

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
RESPONSE_HEAD = 1024
"""The bytes of an answer's body an attempt keeps (``Reply.head``): usually its reason."""


class Outbound(msgspec.Struct, kw_only=True, frozen=True):
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Reply(msgspec.Struct, kw_only=True, frozen=True):
    """``status`` None means no HTTP answer; ``error`` then says why (timeout, refused…)."""

    status: int | None
    headers: list[tuple[str, str]] = []
    head: bytes = b""
    body: bytes = b""
    error: str | None = None
    timed_out: bool = False

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


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


def outbound(delivery: Delivery, shape: str = "raw", snapshot: bytes | None = None) -> Outbound:
    """What a delivery sends: the stored request as it came (``raw``), the OIH envelope as
    JSON (``envelope``), or a poll run's body with the last snapshot."""
    headers = delivery_headers(delivery)
    if delivery.source == POLL_SOURCE:
        body = with_snapshot(delivery.body, snapshot)
        return Outbound(method="POST", target="/", headers=headers, body=body)
    if shape == "envelope":
        keep = [
            (k, v)
            for k, v in headers
            if k.startswith((b"x-hookgate-", b"idempotency-key", b"x-request-id"))
        ]
        return Outbound(
            method="POST",
            target="/",
            headers=[*keep, (b"content-type", b"application/json")],
            body=msgspec.json.encode(envelope(delivery)),
        )
    target = delivery.path + (f"?{delivery.query}" if delivery.query else "")
    return Outbound(method=delivery.method, target=target, headers=headers, body=delivery.body)


def envelope(delivery: Delivery) -> dict[str, Any]:
    """The message the Open Integration Hub webhooks service publishes (``delivery: envelope``).

    Field by field as OIH builds it (docs/workers.md has the table and the sources); a body
    OIH would answer 400 or drop travels whole as the attachment ``payload.<ext>``, since
    Hookgate has already accepted it.
    """
    content_type = next((v for k, v in delivery.headers if k.lower() == "content-type"), "")
    query = qs.parse_qs(delivery.query)
    data: Any = query
    attachments: dict[str, Any] = {}
    if delivery.method != "GET":
        data, attachments = _body(delivery.body, content_type)
    headers = forward_headers(
        [(k.encode("latin-1"), v.encode("latin-1")) for k, v in delivery.headers],
        request_id=delivery.request_id,
        flow_id=delivery.flow_id,
        client=delivery.source,
    )
    path = f"/hook/{delivery.flow_id}" + ("" if delivery.path == "/" else delivery.path)
    url = path + (f"?{delivery.query}" if delivery.query else "")
    return {
        "id": delivery.id,
        "attachments": attachments,
        "data": data,
        "headers": oih.node_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
        "metadata": {"externalExecId": delivery.request_id},
        "url": url,
        "method": delivery.method,
        "originalUrl": url,
        "query": query,
        "params": {},
        "pathSuffix": path,
        "passthrough": {},
    }


XML = re.compile(r"^(text/xml|application/([\w!#$%&*`\-.^~]+\+)?xml)$", re.IGNORECASE)
"""express-xml-bodyparser's test, on the content type up to its first ``;`` (not trimmed)."""
TEXT_ATTACHED = frozenset({"text/csv", "text/yaml", "text/html", "text/javascript"})
RAW_ATTACHED = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/excel",
        "application/x-excel",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/bmp",
    }
)
"""The types OIH's body parser turns into the attachment ``payload.<ext>`` (and ``data: {}``)."""
EXTENSIONS = {
    "application/json": "json",
    "application/octet-stream": "bin",
    "application/pdf": "pdf",
    "application/xml": "xml",
    "application/zip": "zip",
    "image/bmp": "bmp",
    "image/gif": "gif",
    "image/jpeg": "jpeg",
    "image/png": "png",
    "text/csv": "csv",
    "text/html": "html",
    "text/plain": "txt",
    "text/xml": "xml",
    "text/yaml": "yaml",
}
"""mime-types 2.1.13's ``extension()``; for a type it does not know it answers ``false``."""


def _body(body: bytes, content_type: str) -> tuple[Any, dict[str, Any]]:
    """``data`` and ``attachments`` for a body, by the first of OIH's parsers that takes it."""
    if not body:
        return {}, {}
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind in ("application/json", "text/plain"):
            return oih.parse_json(body), {}
        if kind == "application/x-www-form-urlencoded":
            text = body.decode("utf-8", "replace")
            return qs.parse_qs(text, qs.form_options(text)), {}
        if XML.match(content_type.split(";")[0]):
            return oih.parse_xml(body), {}
        if kind == "multipart/form-data":
            parts = oih.parse_multipart(body, content_type)
            files = {
                part.filename or part.name: _attachment(part.data, part.content_type)
                for part in oih.multipart_files(parts)
            }
            return qs.parse_qs_fields(oih.multipart_fields(parts)), files
    except ValueError:
        pass
    name = f"payload.{EXTENSIONS.get(kind, 'false')}"
    return {}, {name: _attachment(body, content_type or None)}


def _attachment(data: bytes, content_type: str | None) -> dict[str, Any]:
    """OIH's attachment entry; the content travels inline as a ``data:`` URL."""
    kind = (content_type or "").split(";")[0].strip().lower() or "application/octet-stream"
    entry: dict[str, Any] = {} if content_type is None else {"content-type": content_type}
    entry["size"] = len(data)
    entry["url"] = f"data:{kind};base64,{base64.b64encode(data).decode()}"
    return entry
