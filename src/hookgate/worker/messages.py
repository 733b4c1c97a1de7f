"""The request a handler receives and the response it may return.

They are small frozen values so a handler can be tested by constructing a ``Request`` by hand,
with no server and no ASGI in sight.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP request as the worker received it.

    ``headers`` has lower-case names; repeated headers are joined with ``", "`` (RFC 9110 §5.3).
    ``query`` is the raw query string without ``?``; ``body`` is the exact bytes sent, which is
    what signatures are computed over.
    """

    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = {}
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` when it is not JSON."""
        return msgspec.json.decode(self.body)

    @property
    def delivery_id(self) -> str | None:
        """The async delivery id; the same on every attempt of one delivery."""
        return self.headers.get("x-hookgate-delivery")

    @property
    def attempt(self) -> int | None:
        """1 for the first attempt of an async delivery, 2 for the first retry, …"""
        value = self.headers.get("x-hookgate-attempt", "")
        return int(value) if value.isdigit() else None

    @property
    def idempotency_key(self) -> str | None:
        """Constant across attempts: store it to make the handler's effect happen once."""
        return self.headers.get("idempotency-key")

    @property
    def flow_id(self) -> str | None:
        """The flow this worker serves: from the request, else from the worker's environment."""
        return self.headers.get("x-hookgate-flow") or os.environ.get("HOOKGATE_FLOW_ID")


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """A full answer; return a ``dict``, ``str``, ``bytes`` or ``None`` for the common cases."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = {}

    @classmethod
    def json(
        cls, data: Any, *, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        """A JSON answer with any status, e.g. ``Response.json({"error": "…"}, status=409)``."""
        return cls(
            status=status,
            body=msgspec.json.encode(data),
            headers={"content-type": "application/json", **(headers or {})},
        )
