"""What the raw ASGI code paths share: the types, JSON answers, and reading a request body.

The ingress and the sync proxy both answer errors as ``{"error": ..., "requestId": ...}``
(design §3) and both may hold a caller's body; the body is read here under two bounds: the
flow's ``max_body``, and a memory budget shared by all connections beyond which the body is
spooled to an unlinked file in the data directory (so N stalled uploads cost disk, not RAM).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import msgspec

from hookgate.domain.deliveries import new_id
from hookgate.domain.limits import BODY_IN_MEMORY

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = (b"content-type", b"application/json")
CHUNK = 64 * 1024
RETRY_SOON = [(b"retry-after", b"1")]
"""A ``503``'s ``Retry-After`` when the gateway itself is briefly unable (store, slots)."""
CLOSE = [(b"connection", b"close")]
"""A ``413``'s: the connection ends after it (a lingering close, bounded), instead of reading
and dropping a body whose declared length has no bound, for as long as the caller trickles."""
_encode = msgspec.json.encode


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Headers | None = None,
    *,
    head: bool = False,
    content_type: bytes | None = None,
) -> None:
    """An answer with its length, JSON unless ``content_type`` says otherwise; ``head`` leaves
    the body out (a HEAD request)."""
    kind = JSON if content_type is None else (b"content-type", content_type)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [kind, (b"content-length", str(len(body)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def error(
    send: Send, status: int, message: str, request_id: str, headers: Headers | None = None
) -> int:
    """Every error body is ``{"error": ..., "requestId": ...}``; returns ``status``."""
    request_id = request_id or new_id()
    body = _encode({"error": message, "requestId": request_id})
    await respond(send, status, body, [(b"x-request-id", request_id.encode()), *(headers or ())])
    return status


class BodyTooLarge(Exception):
    """The body went past the flow's ``max_body``; reading stopped there."""


class CallerGone(Exception):
    """The caller disconnected before its body was read."""


class BodyBudget:
    """Request body bytes held in memory, across all connections of a listener."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


class SpooledBody:
    """A complete body that did not fit in memory: in an unlinked temporary file.

    Iterating it yields its chunks from the start (again for every iteration, so a request
    can be re-sent to another worker); ``close()`` frees the file.
    """

    def __init__(self, file: IO[bytes], size: int) -> None:
        self.file = file
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            yield chunk

    def read(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


Body = bytes | SpooledBody


class BodyReader:
    """Reads whole bodies under a shared memory budget, spooling the rest to ``spool_dir``."""

    def __init__(self, *, budget: BodyBudget, spool_dir: Path | None = None) -> None:
        self.budget = budget
        self.spool_dir = spool_dir

    async def read(self, receive: Receive, limit: int) -> Body:
        """The whole body; ``BodyTooLarge`` past ``limit``, ``CallerGone`` on a disconnect,
        ``OSError`` when it cannot be spooled (a full disk)."""
        message = await receive()
        if message["type"] == "http.disconnect":
            raise CallerGone
        first: bytes = message.get("body", b"")
        if len(first) > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return first
        return await self._rest(receive, limit, first)

    async def _rest(self, receive: Receive, limit: int, first: bytes) -> Body:
        chunks = [first]
        held = 0
        size = len(first)
        spool: IO[bytes] | None = None
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise CallerGone
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                if spool is not None:
                    spool.write(chunk)
                elif size <= BODY_IN_MEMORY and self.budget.take(len(chunk)):
                    held += len(chunk)
                    chunks.append(chunk)
                else:
                    spool = self._spool()
                    spool.writelines(chunks)
                    spool.write(chunk)
                    chunks.clear()
                    self.budget.give(held)
                    held = 0
                if not message.get("more_body", False):
                    break
        except BaseException:
            if spool is not None:
                spool.close()
            raise
        finally:
            self.budget.give(held)
        if spool is None:
            return b"".join(chunks)
        spool.flush()
        return SpooledBody(spool, size)

    def _spool(self) -> IO[bytes]:
        directory = self.spool_dir or Path(tempfile.gettempdir())
        return tempfile.TemporaryFile(dir=os.fspath(directory))


def content_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
