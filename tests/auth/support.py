"""Helpers: ``auth:`` entries as a flow file has them, and a guard called like the ingress does."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import msgspec

from hookgate.auth import Answer, Guard, Rejection, Request
from hookgate.domain.auth import AuthMethod
from hookgate.domain.units import dec_hook

HeaderItems = Iterable[tuple[str, str | bytes]]


def methods(entries: list[dict[str, Any]]) -> list[AuthMethod]:
    return msgspec.convert(entries, list[AuthMethod], dec_hook=dec_hook)


def raw_headers(items: HeaderItems) -> list[tuple[bytes, bytes]]:
    """ASGI raw headers: lower-case byte names, byte values, in order, duplicates kept."""
    return [
        (name.lower().encode(), value if isinstance(value, bytes) else value.encode("latin-1"))
        for name, value in items
    ]


def check(
    guard: Guard,
    headers: HeaderItems = (),
    body: bytes = b"",
    *,
    now: float | None = None,
    client: str | None = "203.0.113.7",
    method: str = "POST",
    path: str = "/hook/abc",
    query: str = "",
) -> Rejection | None:
    return guard.check(
        Request(
            method=method,
            path=path,
            query=query,
            headers=raw_headers(headers),
            body=body,
            client=client,
            now=time.time() if now is None else now,
        )
    )


def handshake(
    guard: Guard,
    headers: HeaderItems = (),
    body: bytes = b"",
    *,
    method: str = "POST",
    query: str = "",
    now: float | None = None,
) -> Answer | None:
    return guard.handshake(
        Request(
            method=method,
            path="/hook/abc",
            query=query,
            headers=raw_headers(headers),
            body=body,
            client="203.0.113.7",
            now=time.time() if now is None else now,
        )
    )
