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
import collections
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import cast

import httptools

from hookgate.domain.forwarding import RESPONSE_HEAD, Outbound, Reply
from hookgate.errors import WorkerError, WorkerFailed, WorkerTimeout, WorkerUnreachable
from hookgate.runtime.base import Endpoint
from hookgate.transport.base import send_whole

CONNECT_TIMEOUT = 5.0
KEEP_IDLE = 1.5
"""Seconds an idle connection stays pooled: shorter than common servers keep theirs (gunicorn 2 s,
Node.js and uvicorn 5 s, the SDK 75 s), so a request never goes out on a connection the worker is
closing at that moment. Under load connections are reused within milliseconds."""
HIGH_WATER = 256 * 1024
"""Answer bytes buffered before the gateway stops reading from the worker (the caller is slow)."""
MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
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


class _Connection(asyncio.Protocol):
    """One connection to a worker, carrying one exchange at a time.

    The httptools callbacks fill in the answer; whoever reads it waits on ``waiter``, which is
    resolved at the end of ``data_received`` so a whole small answer costs one wake-up.
    """

    def __init__(self, pool: list[_Connection], host: bytes) -> None:
        self.pool = pool
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.write_paused = False
        self.pump: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.patience = 0.0
        self.deadline = 0.0
        self.watched = 0
        """``uploaded`` when the current wait began: an upload moving on is no silence."""
        self.answers: list[Reply] | None = None
        """While pipelined requests are answered: the answers so far, in order."""
        self.expected = 0
        self.keep = 0
        self._begin(head_only=False)

    def _begin(self, *, head_only: bool) -> None:
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.head_received = 0
        self.head_done = False
        self.keep_alive = False
        self.informational = False
        self.length: int | None = None
        self.chunked = False
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.reading_paused = False
        self.complete = False
        self.sent = False
        self.uploaded = 0
        self.error: BaseException | None = None

    # asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(WorkerFailed("invalid HTTP from the worker: unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            # A callback's own exception (a head too large) arrives as the parser error's context.
            cause = exc.__context__
            self._fail(
                cause
                if isinstance(cause, WorkerFailed)
                else WorkerFailed(f"invalid HTTP from the worker: {exc}")
            )
        if not self.head_done and self.answers is None:
            # httptools calls on_header only once a line ends: an endless one is caught here
            # (pipelined answers are bounded by their timeout: a read holds several).
            self.head_received += len(data)
            if self.head_received > MAX_HEAD + 4096:
                self._fail(WorkerFailed(f"the worker's answer head passed {MAX_HEAD} bytes"))
        self._wake()

    def eof_received(self) -> bool:
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._ended()
        if self in self.pool:
            self.pool.remove(self)
        self.resume_writing()  # a body waiting to be written learns the connection is gone

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    # httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:
            # An answer after the answer (a worker's error handler writing a second one): it
            # belongs to no request and must not reach the next one on this connection.
            raise WorkerFailed("the worker sent an answer nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if len(self.headers) >= MAX_HEADERS or self.head_size > MAX_HEAD:
            raise WorkerFailed(
                f"the worker's answer head passed {MAX_HEADERS} headers or {MAX_HEAD} bytes"
            )
        name = name.lower()
        if name == b"content-length":
            self.length = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            self.chunked = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            # 100 Continue, 103 Early Hints: the real answer follows.
            self.informational = True
            self.headers, self.head_size, self.length, self.chunked = [], 0, None, False
            return
        self.status = status
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the body ends
        if self.head_only:
            # A HEAD answer has no body whatever its Content-Length says; the next answer
            # needs a parser that does not expect one.
            self.complete = True
            self.parser = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes) -> None:
        if self.answers is not None:
            # Pipelined: only what the reply keeps is held; the rest is read and dropped.
            if self.buffered < self.keep:
                self.body.append(body[: self.keep - self.buffered])
                self.buffered += len(self.body[-1])
            return
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.complete = True
        if self.answers is not None:
            self._answered()

    def _answered(self) -> None:
        """One pipelined answer is in: note it, and get ready for the next unless it was the
        last (or the worker closes after it: those after it are never answered)."""
        assert self.answers is not None
        body = b"".join(self.body)
        self.answers.append(
            Reply(
                status=self.status,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.headers],
                head=body[:RESPONSE_HEAD],
                body=body,
            )
        )
        if len(self.answers) < self.expected and self.keep_alive:
            sent = self.sent
            self._begin(head_only=False)
            self.sent = sent

    # the exchange ------------------------------------------------------------------------
    def _ended(self) -> None:
        """EOF: it ends a close-delimited body; anywhere else the worker broke off."""
        if self.answers is not None and len(self.answers) < self.expected:
            self._fail(WorkerFailed("the worker closed the connection before answering"))
            return
        if self.complete or self.error is not None:
            return
        if self.head_done and self.length is None and not self.chunked:
            self.complete = True
        elif self.head_done:
            self._fail(WorkerFailed("the worker broke off its answer"))
        else:
            self._fail(WorkerFailed("the worker closed the connection without answering"))
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.drop()
        self._wake()

    def drop(self) -> None:
        """Close at once: what is still unsent (a worker that stopped reading) is discarded."""
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.head_done or self.error is not None or self.answers is not None:
            waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until something new arrived (head, body, the end, an error), or ``timeout`` passed
        with nothing moving either way: a long upload still going out is not a silent worker.

        One timer per connection, moved on only when it fires: a timer per wait would cost a
        timer set and cancelled for every request.
        """
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        self.patience = timeout
        self.deadline = loop.time() + timeout
        self.watched = self.uploaded
        if self.timer is None or self.timer.when() > self.deadline:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = loop.call_at(self.deadline, self._expire)
        try:
            await waiter
        finally:
            self.waiter = None
        if self.error is not None and not self.complete:  # a whole answer is still its reader's
            raise self.error

    def _expire(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done() or self.lost:
            return  # nobody waits: the next wait sets a timer again
        loop = asyncio.get_running_loop()
        if self.uploaded != self.watched:
            self.deadline = loop.time() + self.patience
            self.watched = self.uploaded
        if loop.time() < self.deadline:
            self.timer = loop.call_at(self.deadline, self._expire)
            return
        what = "sent nothing more of its answer" if self.head_done else "did not answer"
        self._fail(WorkerTimeout(f"the worker {what} within {self.patience:g}s"))

    async def send_body(self, body: AsyncIterable[bytes], *, chunked: bool) -> None:
        """Stream a request body; the caller's own failures reach whoever reads the answer."""
        assert self.transport is not None
        try:
            async for chunk in body:
                if self.lost or self.error is not None:
                    return
                if not chunk:
                    continue  # an empty chunk would read as the end of the body
                if chunked:
                    self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    self.transport.write(chunk)
                self.uploaded += len(chunk)
                if self.write_paused:
                    self.drained = asyncio.get_running_loop().create_future()
                    await self.drained
            if chunked and not self.lost:
                self.transport.write(b"0\r\n\r\n")
            self.sent = True
        except Exception as exc:
            self._fail(exc)

    def take(self) -> bytes:
        """The body buffered so far; reading resumes once the caller has caught up."""
        data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body.clear()
        self.buffered = 0
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return (
            self.complete and self.sent and self.error is None and not self.lost and self.keep_alive
        )


class Http1Upstream:
    """A worker's answer being received: status and headers now, the body as it comes."""

    def __init__(self, connection: _Connection, timeout: float) -> None:
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
        if connection.reusable():
            connection.idle_since = time.monotonic()
            connection.pool.append(connection)
        else:
            connection.drop()


class Http1Transport:
    """Pooled connections per endpoint; idle ones are reused last-in first-out."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, int], list[_Connection]] = {}
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
            connection, _ = await self._connect(endpoint)
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
        if error is None and connection.reusable():
            connection.idle_since = time.monotonic()
            connection.pool.append(connection)
        else:
            connection.drop()
        unanswered = error or Reply(status=None, error="the worker did not answer")
        return [
            Reply(status=a.status, headers=a.headers, head=a.head, body=a.body[:keep_body])
            for a in answers
        ] + [unanswered] * (len(requests) - len(answers))

    async def _pipeline(
        self,
        connection: _Connection,
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
        connection, reused = await self._connect(endpoint)
        try:
            return await self._exchange(connection, request_line, fields, body, chunked, timeout)
        except WorkerFailed:
            # A pooled connection the worker closed just as the request went out (RFC 9112
            # §9.3.1): an idempotent request that got no byte back is sent once more.
            if not (reused and connection.head_received == 0 and method in IDEMPOTENT):
                raise
            if not isinstance(body, bytes):
                raise
        connection, _ = await self._connect(endpoint, fresh=True)
        return await self._exchange(connection, request_line, fields, body, chunked, timeout)

    async def _exchange(
        self,
        connection: _Connection,
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

    async def _connect(
        self, endpoint: Endpoint, *, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        """A pooled connection (the newest; those idle too long are closed), else a new one;
        and whether it was pooled."""
        key = (endpoint.host, endpoint.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = []
        stale = time.monotonic() - KEEP_IDLE
        while pool and pool[0].idle_since < stale:
            pool.pop(0).drop()
        while pool and not fresh:
            connection = pool.pop()
            transport = connection.transport
            if not connection.lost and transport is not None and not transport.is_closing():
                return connection, True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(pool, _authority(endpoint).encode()),
                    endpoint.host,
                    endpoint.port,
                )
        except TimeoutError:
            raise WorkerUnreachable(f"no connection within {CONNECT_TIMEOUT:g}s") from None
        except OSError as exc:
            raise WorkerUnreachable(f"connection refused: {exc.strerror or exc}") from None
        return protocol, False

    async def close(self) -> None:
        for pool in self._pools.values():
            for connection in list(pool):
                if connection.transport is not None:
                    connection.transport.close()
        self._pools.clear()


def _head(request: Outbound, host: bytes) -> bytes:
    """The request line and headers of a request whose body is ``request.body``."""
    lines = [
        request.method.encode() + b" " + _target(request.target) + b" HTTP/1.1",
        b"host: " + host,
        *[name + b": " + value for name, value in request.headers],
        b"content-length: %d\r\n\r\n" % len(request.body),
    ]
    return b"\r\n".join(lines)


def _authority(endpoint: Endpoint) -> str:
    """The ``Host`` of a request to ``endpoint``; an IPv6 address in brackets (RFC 9110 §7.2)."""
    if ":" in endpoint.host:
        return f"[{endpoint.host}]:{endpoint.port}"
    return f"{endpoint.host}:{endpoint.port}"
