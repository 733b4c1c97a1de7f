"""The ``WorkerTransport`` protocol: a request to one worker, its answer (or an error).

``send`` is for async deliveries (the whole answer, failures as ``Reply.error``); ``stream`` is
for the sync proxy (bodies streamed both ways, failures raised as ``WorkerError``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Protocol

from hookgate.domain.endpoints import Endpoint
from hookgate.domain.forwarding import RESPONSE_HEAD, Outbound, Reply
from hookgate.errors import WorkerError


class Upstream(Protocol):
    """A worker's answer being received: status and headers now, the body as it comes.

    Reading raises ``WorkerTimeout`` when the worker stalls past the timeout and
    ``WorkerFailed`` when it breaks off; ``close()`` always follows, read to the end or not.
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    """Names lower-cased, in the order the worker sent them."""

    @property
    def length(self) -> int | None:
        """The declared body size, None for a streamed (chunked or close-delimited) answer."""

    async def read(self, limit: int | None = None) -> bytes:
        """The body, or its first ``limit`` bytes."""

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class WorkerTransport(Protocol):
    async def send(
        self, endpoint: Endpoint, request: Outbound, *, timeout: float, keep_body: int = 0
    ) -> Reply:
        """Never raises for worker failures: they come back as a ``Reply`` with ``error``."""

    def pipelining(self, endpoint: Endpoint) -> bool:
        """Whether ``send_many`` would pipeline to the endpoint now."""

    async def send_many(
        self,
        endpoint: Endpoint,
        requests: Sequence[Outbound],
        *,
        timeout: float,
        keep_body: int = 0,
    ) -> list[Reply]:
        """Like ``send`` for each request, in order; the transport may pipeline them on one
        connection (one write for all) while the worker answers them fast."""

    async def stream(
        self,
        endpoint: Endpoint,
        *,
        method: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
        timeout: float,
    ) -> Upstream:
        """Return once the answer's head is in; ``WorkerUnreachable`` if nothing could be sent,
        ``WorkerTimeout``/``WorkerFailed`` otherwise. A body iterator's own exception (the
        caller hung up) propagates as it is."""

    async def close(self) -> None: ...


async def send_whole(
    transport: WorkerTransport,
    endpoint: Endpoint,
    request: Outbound,
    *,
    timeout: float,
    keep_body: int,
) -> Reply:
    """``send`` built on ``stream``, for every transport: the whole exchange within
    ``timeout``, the answer's head and the first ``keep_body`` bytes kept, failures as
    ``Reply.error``."""
    try:
        async with asyncio.timeout(timeout):
            upstream = await transport.stream(
                endpoint,
                method=request.method,
                target=request.target,
                headers=request.headers,
                body=request.body,
                timeout=timeout,
            )
            try:
                body = await upstream.read(max(RESPONSE_HEAD, keep_body))
            finally:
                upstream.close()
    except TimeoutError:
        return Reply(status=None, error=f"no answer within {timeout:g}s", timed_out=True)
    except WorkerError as exc:
        return Reply(status=None, error=str(exc))
    return Reply(
        status=upstream.status,
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.headers],
        head=body[:RESPONSE_HEAD],
        body=body[:keep_body],
    )
