"""The worker transport: keep-alive HTTP/1.1 connections per endpoint, answers parsed by httptools.

Why not aiohttp (design §7's first choice): on a proxied 1 KB request the gateway spent half its
CPU in aiohttp's client (URL objects, multidicts, payload registry, two writes, a stream reader),
which kept sync flows at a quarter of a worker's own rate. This client does what a gateway needs
and nothing more: a small request leaves in one ``write()``, the answer is parsed in C by
httptools (the parser uvicorn uses), and a small answer that arrives in one read is handed over
without another turn of the event loop. Bodies still stream both ways, with back-pressure.

Each wait (for the answer's head, then for each piece of its body) is bounded by ``timeout``;
:class:`Http1Upstream` raises :class:`WorkerTimeout` past it, :class:`WorkerFailed` when the worker
breaks off or speaks invalid HTTP, and :class:`WorkerUnreachable` when it refuses the connection.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from hookgate.domain.endpoints import Endpoint
from hookgate.domain.forwarding import RESPONSE_HEAD, Outbound, Reply
from hookgate.errors import WorkerError, WorkerFailed, WorkerTimeout
from hookgate.transport.base import send_whole
from hookgate.transport.connection import Connection
from hookgate.transport.pool import Pools

PIPELINE_GAP = 0.002
"""Pipelining is for workers that answer faster than this: one exchange at least must have (a
busy gateway's own delays make most exchanges look slower), and those that answer pipelined
requests further apart than this, time after time, get them side by side again."""
SERIAL_FOR = 2.0
STRIKES = 4
"""How long such a worker gets its requests side by side before pipelining is tried again."""

Headers = Sequence[tuple[bytes, bytes]]
Body = bytes | AsyncIterable[bytes]

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_TARGET = re.compile(r"/[\x21-\x7e\x80-\xff]*")


def _target(target: str) -> bytes:
    """The request target as sent: no spaces, controls or line breaks can split the request."""
    if _TARGET.fullmatch(target) is None:
        raise WorkerFailed(f"the request target {target[:80]!r} is not one HTTP can carry")
    return target.encode("latin-1")


class Http1Upstream:
    """A worker's answer being received: status and headers now, the body as it comes."""

    def __init__(self, connection: Connection, timeout: float) -> None:
        self._connection = connection
        self._timeout = timeout
        self.status = connection.status
        self.headers = connection.headers
        self._closed = False

    @property
    def length(self) -> int | None:
        """The declared body size, None for a streamed (chunked or close-delimited) answer."""
        connection = self._connection
        return 0 if connection.head_only else None if connection.chunked else connection.length

    async def read(self, limit: int | None = None) -> bytes:
        """The body, or its first ``limit`` bytes (the rest is dropped with the connection)."""
        connection = self._connection
        parts: list[bytes] = []
        size = 0
        while True:
            if connection.body:
                part = connection.take()
                parts.append(part)
                size += len(part)
                if limit is not None and size >= limit:
                    return b"".join(parts)[:limit]
            if connection.complete:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await connection.wait(self._timeout)

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            if connection.body:
                yield connection.take()
            elif connection.complete:
                return
            else:
                await connection.wait(self._timeout)

    def close(self) -> None:
        """Give the connection back when the exchange finished cleanly, else drop it."""
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if connection.pump is not None and not connection.pump.done():
            connection.pump.cancel()
        connection.release()


class Http1Transport:
    """The ``WorkerTransport`` over pooled connections, pipelining to workers that answer fast."""

    def __init__(self) -> None:
        self._pools = Pools()
        self._serial: dict[tuple[str, int], float] = {}
        """Endpoints that answered a pipeline slowly, until when they get requests side by side."""
        self._quick: dict[tuple[str, int], float] = {}
        """The fastest exchange seen per endpoint: one below ``PIPELINE_GAP`` lets it pipeline."""
        self._slow: dict[tuple[str, int], int] = {}
        """Pipelines answered slowly in a row, per endpoint (one can be a hiccup of the machine)."""

    async def send(
        self, endpoint: Endpoint, request: Outbound, *, timeout: float, keep_body: int = 0
    ) -> Reply:
        """One delivery: the whole exchange within ``timeout``; failures come back as ``error``."""
        started = time.monotonic()
        reply = await send_whole(self, endpoint, request, timeout=timeout, keep_body=keep_body)
        if reply.status is not None:
            took, key = time.monotonic() - started, (endpoint.host, endpoint.port)
            if took < self._quick.get(key, timeout):
                self._quick[key] = took
        return reply

    def pipelining(self, endpoint: Endpoint) -> bool:
        """Whether ``send_many`` pipelines to the endpoint now (it has answered fast)."""
        key = (endpoint.host, endpoint.port)
        return (
            self._quick.get(key, PIPELINE_GAP + 1) <= PIPELINE_GAP
            and self._serial.get(key, 0.0) <= time.monotonic()
        )

    async def send_many(
        self,
        endpoint: Endpoint,
        requests: Sequence[Outbound],
        *,
        timeout: float,
        keep_body: int = 0,
    ) -> list[Reply]:
        """Several deliveries; to a worker known to answer fast, pipelined on one connection
        (RFC 9112 §9.3.2): written in one ``write()`` and answered in order, so a batch costs
        one system call each way instead of one per request. Pipelined requests are served
        one after the other, so other workers get them side by side, each on its own
        connection, as ``send`` does.

        The whole pipelined exchange is bounded by ``timeout``, as one ``send`` is (a delivery
        never outlives its lease); requests left unanswered when the connection fails or the
        time is up get an error ``Reply`` (a failed attempt: retried, at least once).
        """
        key = (endpoint.host, endpoint.port)
        if (
            len(requests) == 1
            or not self.pipelining(endpoint)
            or any(r.method == "HEAD" for r in requests)
        ):
            return list(
                await asyncio.gather(
                    *(
                        self.send(endpoint, r, timeout=timeout, keep_body=keep_body)
                        for r in requests
                    )
                )
            )
        try:
            connection, _ = await self._pools.connect(endpoint)
        except WorkerError as exc:
            return [Reply(status=None, error=str(exc))] * len(requests)
        connection._begin(head_only=False)
        connection.answers, connection.expected = [], len(requests)
        connection.keep = max(RESPONSE_HEAD, keep_body)
        answers = connection.answers
        try:
            error = await self._pipeline(connection, key, requests, timeout)
        finally:
            connection.answers = None
        if error is None:
            connection.release()
        else:
            connection.drop()
        unanswered = error or Reply(status=None, error="the worker did not answer")
        return [
            Reply(status=a.status, headers=a.headers, head=a.head, body=a.body[:keep_body])
            for a in answers
        ] + [unanswered] * (len(requests) - len(answers))

    async def _pipeline(
        self,
        connection: Connection,
        key: tuple[str, int],
        requests: Sequence[Outbound],
        timeout: float,
    ) -> Reply | None:
        """Write the requests, wait for their answers; the failure, if any, as a ``Reply``."""
        transport = connection.transport
        assert transport is not None and connection.answers is not None
        answers = connection.answers
        try:
            async with asyncio.timeout(timeout):
                transport.write(b"".join(_head(r, connection.host) + r.body for r in requests))
                connection.sent = True
                sent = first = time.monotonic()
                while len(answers) < len(requests):
                    if connection.complete and not connection.keep_alive:
                        raise WorkerFailed("the worker closed the connection before answering")
                    await connection.wait(timeout)
                    first = first if first > sent or not answers else time.monotonic()
        except (TimeoutError, WorkerTimeout):
            self._side_by_side(key)
            return Reply(status=None, error=f"no answer within {timeout:g}s", timed_out=True)
        except WorkerError as exc:
            return Reply(status=None, error=str(exc))
        except BaseException:
            transport.abort()
            raise
        gap = (time.monotonic() - first) / (len(requests) - 1)
        if gap <= PIPELINE_GAP or gap <= (first - sent) / 2:
            self._slow.pop(key, None)
        elif (strikes := self._slow.get(key, 0) + 1) < STRIKES:
            self._slow[key] = strikes
        else:
            # Answered one by one, each taking about as long as the first, time after time:
            # the worker serves requests slowly and needs them side by side.
            self._side_by_side(key)
        return None

    def _side_by_side(self, key: tuple[str, int]) -> None:
        """No pipelining to the endpoint for a while, and then only once it answers fast."""
        self._slow.pop(key, None)
        self._quick.pop(key, None)
        self._serial[key] = time.monotonic() + SERIAL_FOR

    async def stream(
        self,
        endpoint: Endpoint,
        *,
        method: str,
        target: str,
        headers: Headers,
        body: Body,
        timeout: float,
    ) -> Http1Upstream:
        """Send a request (a body iterator is streamed) and return once the answer's head is in.

        An exception raised by the body iterator (the caller hung up, say) propagates as is.
        """
        request_line = method.encode() + b" " + _target(target) + b" HTTP/1.1"
        fields = [name + b": " + value for name, value in headers]
        # A streamed body without a declared length goes out chunked.
        chunked = not isinstance(body, bytes) and not any(
            name.lower() == b"content-length" for name, _ in headers
        )
        connection, reused = await self._pools.connect(endpoint)
        try:
            return await self._exchange(connection, request_line, fields, body, chunked, timeout)
        except WorkerFailed:
            # A pooled connection the worker closed just as the request went out (RFC 9112
            # §9.3.1): an idempotent request that got no byte back is sent once more.
            if not (reused and connection.head_received == 0 and method in IDEMPOTENT):
                raise
            if not isinstance(body, bytes):
                raise
        connection, _ = await self._pools.connect(endpoint, fresh=True)
        return await self._exchange(connection, request_line, fields, body, chunked, timeout)

    async def _exchange(
        self,
        connection: Connection,
        request_line: bytes,
        fields: list[bytes],
        body: Body,
        chunked: bool,
        timeout: float,
    ) -> Http1Upstream:
        transport = connection.transport
        assert transport is not None
        connection._begin(head_only=request_line.startswith(b"HEAD "))
        lines = [request_line, b"host: " + connection.host, *fields]
        try:
            if isinstance(body, bytes):
                lines.append(b"content-length: %d\r\n\r\n" % len(body))
                # One write: on loopback each write is a system call.
                transport.write(b"\r\n".join(lines) + body)
                connection.sent = True
            else:
                lines.append(b"transfer-encoding: chunked\r\n\r\n" if chunked else b"\r\n")
                transport.write(b"\r\n".join(lines))
                connection.pump = asyncio.create_task(connection.send_body(body, chunked=chunked))
            while not connection.head_done:
                await connection.wait(timeout)
        except BaseException:
            if connection.pump is not None:
                connection.pump.cancel()
            transport.abort()
            raise
        return Http1Upstream(connection, timeout)

    async def close(self) -> None:
        await self._pools.close()


def _head(request: Outbound, host: bytes) -> bytes:
    """The request line and headers of a request whose body is ``request.body``."""
    lines = [
        request.method.encode() + b" " + _target(request.target) + b" HTTP/1.1",
        b"host: " + host,
        *[name + b": " + value for name, value in request.headers],
        b"content-length: %d\r\n\r\n" % len(request.body),
    ]
    return b"\r\n".join(lines)
