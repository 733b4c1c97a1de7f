"""The ``WorkerTransport`` protocol: a request to one worker, its answer (or an error).

``send`` is for async deliveries (the whole answer, failures as ``Reply.error``); ``stream`` is
for the sync proxy (bodies streamed both ways, failures raised as ``WorkerError``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Protocol

from hookgate.domain.forwarding import Outbound, Reply
from hookgate.runtime.base import Endpoint


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
