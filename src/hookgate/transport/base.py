"""The ``WorkerTransport`` protocol: one request to one worker, one reply (or an error)."""

from __future__ import annotations

from typing import Protocol

import msgspec

from hookgate.runtime.base import Endpoint

RESPONSE_HEAD = 1024


class Outbound(msgspec.Struct, kw_only=True, frozen=True):
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


class Reply(msgspec.Struct, kw_only=True, frozen=True):
    """``status`` None means no HTTP answer; ``error`` then says why (timeout, refused…)."""

    status: int | None
    headers: list[tuple[str, str]] = []
    head: bytes = b""
    body: bytes = b""
    error: str | None = None

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class WorkerTransport(Protocol):
    async def send(
        self, endpoint: Endpoint, request: Outbound, *, timeout: float, keep_body: int = 0
    ) -> Reply:
        """Never raises for worker failures: they come back as a ``Reply`` with ``error``."""

    async def close(self) -> None: ...
