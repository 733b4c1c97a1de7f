"""The ``WorkerTransport`` contract: what the gateway relies on to talk HTTP/1.1 to a worker."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest

from hookgate.domain.endpoints import Endpoint
from hookgate.errors import WorkerFailed, WorkerTimeout, WorkerUnreachable
from hookgate.transport import client
from hookgate.transport.base import Outbound, Upstream, WorkerTransport
from hookgate.transport.client import Http1Transport

IMPLEMENTATIONS: list[Callable[[], WorkerTransport]] = [Http1Transport]
"""One line per implementation of the protocol; every test below runs against each."""

MiB = 1024 * 1024


# The workers -------------------------------------------------------------------------------
# Real servers on loopback ports: a well-behaved one on h11 (which also checks that what the
# transport sends is valid HTTP/1.1) and raw-bytes ones that misbehave precisely.


Handler = Callable[["Worker", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Worker:
    """A worker on a loopback port: ``handler`` serves each connection it accepts."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self.endpoint = Endpoint(host, 0)
        self.connections = 0
        """Connections accepted so far."""
        self.ended = 0
        """Connections on which the worker saw the gateway close (EOF, or a reset mid-write)."""
        self.requests: list[Received] = []
        self.errors: list[Exception] = []
        """What went wrong inside the handler, connection resets aside."""
        self.writers: list[asyncio.StreamWriter] = []
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> Worker:
        self._server = await asyncio.start_server(self._connected, self.host, 0)
        port: int = self._server.sockets[0].getsockname()[1]
        self.endpoint = Endpoint(self.host, port)
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    def saw_eof(self) -> None:
        self.ended += 1
        self._changed.set()

    async def wait_ended(self, count: int, timeout: float = 2.0) -> None:
        """Until the gateway has closed ``count`` connections."""
        async with asyncio.timeout(timeout):
            while self.ended < count:
                self._changed.clear()
                await self._changed.wait()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(self, reader, writer)
        except ConnectionError:
            self.saw_eof()  # the gateway closed while the worker was still writing
        except (asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # stop(): the task must not end cancelled (asyncio logs that)
        except Exception as exc:
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)
            writer.close()


Serve = Callable[[Handler], Awaitable[Worker]]


@dataclass
class Received:
    """A request as the worker read it (names lower-cased)."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    pieces: list[bytes] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


Answer = Callable[[Received], tuple[int, list[tuple[str, str]], bytes]]


def _emit(connection: h11.Connection, *events: h11.Event) -> bytes:
    out = b""
    for event in events:
        data = connection.send(event)
        assert data is not None
        out += data
    return out


def h11_worker(answer: Answer) -> Handler:
    """A well-behaved keep-alive worker: reads each request whole, then sends ``answer``."""

    async def handle(
        worker: Worker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection = h11.Connection(h11.SERVER)
        request: Received | None = None
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                request = Received(
                    event.method.decode(),
                    event.target.decode("latin-1"),
                    [(k.decode(), v.decode("latin-1")) for k, v in event.headers],
                )
            elif isinstance(event, h11.Data):
                assert request is not None
                request.pieces.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                request.body = b"".join(request.pieces)
                worker.requests.append(request)
                status, headers, body = answer(request)
                headers = [*headers, ("content-length", str(len(body)))]
                writer.write(
                    _emit(
                        connection,
                        h11.Response(status_code=status, headers=headers),
                        h11.Data(data=body),
                        h11.EndOfMessage(),
                    )
                )
                await writer.drain()
                connection.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                worker.saw_eof()
                return
            else:
                raise AssertionError(f"unexpected {event!r}")

    return handle


def echo_target(request: Received) -> tuple[int, list[tuple[str, str]], bytes]:
    return 200, [], request.target.encode()


def head(status: int, *headers: tuple[str, str], reason: str = "Whatever") -> bytes:
    """An answer head in raw bytes, exactly as given."""
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """A request's head (its ``content-length`` body is read and dropped); None at EOF."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        assert not exc.partial, exc.partial
        return None
    for line in raw.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            await reader.readexactly(int(value))
    return raw


async def until_eof(worker: Worker, reader: asyncio.StreamReader) -> None:
    """Read nothing more of use: wait for the gateway to close the connection."""
    while await reader.read(65536):
        pass
    worker.saw_eof()


async def slow(pieces: int) -> AsyncIterator[bytes]:
    """An upload of ``pieces`` pieces of 100 bytes, one every 0.1 s."""
    for _ in range(pieces):
        await asyncio.sleep(0.1)
        yield b"x" * 100


def answers_once(answer: bytes) -> Handler:
    """A worker that reads one request, sends ``answer`` as it is, then waits for the EOF."""

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(answer)
        await w.drain()
        await until_eof(worker, reader)

    return handle


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


def outbound(target: str = "/", body: bytes = b"", method: str = "POST") -> Outbound:
    return Outbound(method=method, target=target, headers=[], body=body)


async def get(
    transport: WorkerTransport, endpoint: Endpoint, target: str = "/", *, timeout: float = 2.0
) -> Upstream:
    return await transport.stream(
        endpoint, method="GET", target=target, headers=[], body=b"", timeout=timeout
    )


async def fetch(transport: WorkerTransport, endpoint: Endpoint, target: str = "/") -> bytes:
    """A whole GET exchange: the answer's body."""
    upstream = await get(transport, endpoint, target)
    try:
        return await upstream.read()
    finally:
        upstream.close()


# Fixtures ----------------------------------------------------------------------------------


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda make: getattr(make, "__name__", repr(make)))
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[WorkerTransport]:
    make: Callable[[], WorkerTransport] = request.param
    transport = make()
    try:
        yield transport
    finally:
        await transport.close()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    workers: list[Worker] = []

    async def start(handler: Handler) -> Worker:
        worker = await Worker(handler).start()
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            await worker.stop()
    # A handler's own check failing, or h11 refusing what the transport sent, fails the test.
    assert [w.errors for w in workers if w.errors] == []


@pytest.fixture
def refused() -> Iterator[Endpoint]:
    """A port bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield Endpoint("127.0.0.1", sock.getsockname()[1])


# 1. A small answer, and the request as the worker got it -------------------------------------


async def test_a_small_answer_comes_back_and_the_request_arrives_as_sent(
    transport: WorkerTransport, serve: Serve
) -> None:
    def answer(request: Received) -> tuple[int, list[tuple[str, str]], bytes]:
        return 201, [("Content-Type", "text/plain"), ("X-Thing", "A b")], b"hello"

    worker = await serve(h11_worker(answer))
    upstream = await transport.stream(
        worker.endpoint,
        method="POST",
        target="/orders/7?x=1&y=a%20b",
        headers=[(b"X-Custom", b"v"), (b"x-request-id", b"rid-1")],
        body=b"payload",
        timeout=2,
    )
    try:
        assert upstream.status == 201
        assert upstream.headers == [
            (b"content-type", b"text/plain"),
            (b"x-thing", b"A b"),
            (b"content-length", b"5"),
        ]
        assert upstream.length == 5
        assert await upstream.read() == b"hello"
    finally:
        upstream.close()

    (request,) = worker.requests
    assert request.method == "POST"
    assert request.target == "/orders/7?x=1&y=a%20b"
    assert request.values("host") == [f"127.0.0.1:{worker.endpoint.port}"]
    assert request.values("content-length") == ["7"]
    assert request.values("transfer-encoding") == []
    assert request.values("x-custom") == ["v"]
    assert request.values("x-request-id") == ["rid-1"]
    assert request.body == b"payload"
    assert worker.errors == []


async def test_an_ipv6_worker_gets_a_bracketed_host(transport: WorkerTransport) -> None:
    """A pod address on an IPv6 cluster: ``Host: [::1]:port`` (RFC 9110 §7.2), not ``::1:port``."""
    try:
        worker = await Worker(h11_worker(lambda _request: (200, [], b"ok")), host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        reply = await transport.send(worker.endpoint, outbound(method="GET"), timeout=2)
        assert reply.status == 200
        (received,) = worker.requests
        assert received.values("host") == [f"[::1]:{worker.endpoint.port}"]
    finally:
        await worker.stop()
    assert worker.errors == []


async def test_send_returns_the_whole_small_answer(
    transport: WorkerTransport, serve: Serve
) -> None:
    def answer(request: Received) -> tuple[int, list[tuple[str, str]], bytes]:
        return 202, [("X-Thing", "1")], b"got " + request.body

    worker = await serve(h11_worker(answer))
    request = Outbound(
        method="PUT",
        target="/hook?id=1",
        headers=[(b"content-type", b"application/json")],
        body=b'{"a":1}',
    )
    reply = await transport.send(worker.endpoint, request, timeout=2, keep_body=100)

    assert reply.error is None
    assert reply.status == 202
    assert reply.headers == [("x-thing", "1"), ("content-length", "11")]
    assert reply.header("X-Thing") == "1"
    assert reply.head == reply.body == b'got {"a":1}'
    (received,) = worker.requests
    assert (received.method, received.target) == ("PUT", "/hook?id=1")
    assert received.values("content-type") == ["application/json"]
    assert received.values("content-length") == ["7"]
    assert received.values("host") == [f"127.0.0.1:{worker.endpoint.port}"]
    assert received.body == b'{"a":1}'


# 2. Keep-alive -------------------------------------------------------------------------------


async def test_sequential_exchanges_share_one_connection(
    transport: WorkerTransport, serve: Serve
) -> None:
    worker = await serve(h11_worker(echo_target))
    for i in range(3):
        assert await fetch(transport, worker.endpoint, f"/read/{i}") == f"/read/{i}".encode()
    upstream = await get(transport, worker.endpoint, "/chunks")
    try:
        assert b"".join([chunk async for chunk in upstream.chunks()]) == b"/chunks"
    finally:
        upstream.close()
    reply = await transport.send(worker.endpoint, outbound("/send"), timeout=2, keep_body=100)
    assert reply.body == b"/send"

    assert worker.connections == 1
    assert len(worker.requests) == 5
    assert worker.errors == []


async def test_an_answer_closed_before_its_end_is_not_reused(
    transport: WorkerTransport, serve: Serve
) -> None:
    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if worker.connections == 1:
            # Half the body now; on this connection the rest would pass for the next answer.
            w.write(head(200, ("content-length", "10")) + b"abcde")
            await w.drain()
            await until_eof(worker, reader)
            return
        w.write(head(200, ("content-length", "5")) + b"fresh")
        await w.drain()
        await until_eof(worker, reader)

    worker = await serve(handle)
    upstream = await get(transport, worker.endpoint)
    try:
        assert await upstream.read(5) == b"abcde"
    finally:
        upstream.close()
    await worker.wait_ended(1)  # the gateway dropped it
    assert await fetch(transport, worker.endpoint) == b"fresh"
    assert worker.connections == 2


async def test_an_unread_answer_does_not_leak_into_the_next_one(
    transport: WorkerTransport, serve: Serve
) -> None:
    worker = await serve(h11_worker(echo_target))
    upstream = await get(transport, worker.endpoint, "/first")
    upstream.close()  # not a byte of the body read
    assert await fetch(transport, worker.endpoint, "/second") == b"/second"
    assert worker.connections <= 2


async def test_an_answer_with_connection_close_is_not_reused(
    transport: WorkerTransport, serve: Serve
) -> None:
    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(head(200, ("content-length", "2"), ("connection", "close")) + b"ok")
        await w.drain()
        await until_eof(worker, reader)  # the gateway must close it even if the worker does not

    worker = await serve(handle)
    assert await fetch(transport, worker.endpoint) == b"ok"
    assert await fetch(transport, worker.endpoint) == b"ok"
    assert worker.connections == 2
    await worker.wait_ended(2)


async def test_concurrent_exchanges_each_get_their_own_answer(
    transport: WorkerTransport, serve: Serve
) -> None:
    worker = await serve(h11_worker(echo_target))

    async def one(i: int) -> bytes:
        reply = await transport.send(worker.endpoint, outbound(f"/{i}"), timeout=2, keep_body=100)
        return reply.body

    bodies = await asyncio.gather(*(one(i) for i in range(20)))
    assert bodies == [f"/{i}".encode() for i in range(20)]
    opened = worker.connections
    assert 1 <= opened <= 20
    for i in range(5):
        assert await fetch(transport, worker.endpoint, f"/again/{i}") == f"/again/{i}".encode()
    assert worker.connections == opened  # pooled connections served these
    assert worker.errors == []


async def test_close_ends_the_idle_connections(transport: WorkerTransport, serve: Serve) -> None:
    worker = await serve(h11_worker(echo_target))
    assert await fetch(transport, worker.endpoint) == b"/"
    assert worker.ended == 0
    await transport.close()
    await worker.wait_ended(1)


# 3. A pooled connection the worker closed ------------------------------------------------


def answer_once_then_close(closed: asyncio.Event) -> Handler:
    """Keep-alive announced, yet the connection is closed once idle (a worker's idle timeout)."""

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(head(200, ("content-length", "2")) + b"ok")
        await w.drain()
        w.close()
        await w.wait_closed()
        closed.set()

    return handle


async def test_a_pooled_connection_the_worker_closed_is_replaced(
    transport: WorkerTransport, serve: Serve
) -> None:
    closed = asyncio.Event()
    worker = await serve(answer_once_then_close(closed))
    assert await fetch(transport, worker.endpoint) == b"ok"
    await closed.wait()
    await asyncio.sleep(0.05)  # the gateway's loop has had the time to see the FIN
    assert await fetch(transport, worker.endpoint) == b"ok"
    assert worker.connections == 2


async def test_a_get_on_a_connection_the_worker_just_closed_is_sent_again(
    transport: WorkerTransport, serve: Serve
) -> None:
    """No grace at all: each answer announces keep-alive, then the worker closes at once, so a
    reused connection may be gone as the request leaves. An idempotent request gets through."""
    closed = asyncio.Event()
    worker = await serve(answer_once_then_close(closed))
    for _ in range(20):
        assert await fetch(transport, worker.endpoint) == b"ok"


@pytest.mark.parametrize("delay", [0.0, 0.05], ids=["same-write", "later"])
async def test_an_answer_after_the_answer_never_reaches_the_next_request(
    transport: WorkerTransport, serve: Serve, delay: float
) -> None:
    """A worker that writes a second answer (an error handler after the real one): the stray
    one is not taken for the answer to whatever is sent next on that connection."""
    first = head(200, ("content-length", "2")) + b"ok"
    stray = head(500, ("content-length", "5")) + b"stray"

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            if worker.connections == 1 and not delay:
                w.write(first + stray)
            elif worker.connections == 1:
                w.write(first)
                await w.drain()
                await asyncio.sleep(delay)
                w.write(stray)
            else:
                w.write(head(200, ("content-length", "5")) + b"fresh")
            await w.drain()

    worker = await serve(handle)
    assert await fetch(transport, worker.endpoint) == b"ok"
    await asyncio.sleep(delay + 0.05)
    upstream = await get(transport, worker.endpoint)
    try:
        assert (upstream.status, await upstream.read()) == (200, b"fresh")
    finally:
        upstream.close()
    assert worker.connections == 2


async def test_a_target_that_could_split_the_request_is_never_sent(
    transport: WorkerTransport, serve: Serve
) -> None:
    worker = await serve(h11_worker(echo_target))
    for target in ("/x\r\nX-Injected: yes", "/a b", "/\u20ac", "x"):
        with pytest.raises(WorkerFailed, match="request target"):
            await get(transport, worker.endpoint, target)
        reply = await transport.send(worker.endpoint, outbound(target), timeout=2)
        assert reply.status is None
        assert reply.error is not None
        assert "request target" in reply.error
    assert worker.requests == []


# 4-5. Streamed answers -------------------------------------------------------------------


async def test_a_chunked_answer_is_streamed_as_it_comes(
    transport: WorkerTransport, serve: Serve
) -> None:
    more = asyncio.Event()
    served = 0

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal served
        while await read_request(reader) is not None:
            served += 1
            if served == 1:
                w.write(head(200, ("transfer-encoding", "chunked")) + b"5\r\nfirst\r\n")
                await w.drain()
                await more.wait()
                w.write(b"6\r\nsecond\r\n0\r\n\r\n")
            else:
                w.write(head(200, ("content-length", "4")) + b"next")
            await w.drain()

    worker = await serve(handle)
    upstream = await get(transport, worker.endpoint)
    try:
        assert upstream.status == 200
        assert upstream.length is None
        chunks = upstream.chunks()
        async with asyncio.timeout(2):
            assert await anext(chunks) == b"first"  # before the worker sends the rest
        more.set()
        assert b"".join([chunk async for chunk in chunks]) == b"second"
    finally:
        upstream.close()
    assert await fetch(transport, worker.endpoint) == b"next"
    assert worker.connections == 1  # a chunked answer read to its end leaves a reusable connection


@pytest.mark.parametrize("connection", ["close", None], ids=["connection-close", "no-header"])
async def test_a_close_delimited_answer_is_read_to_eof(
    transport: WorkerTransport, serve: Serve, connection: str | None
) -> None:
    go = asyncio.Event()

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        extra = [("connection", connection)] if connection else []
        w.write(head(200, ("content-type", "text/plain"), *extra) + b"part one, ")
        await w.drain()
        if worker.connections == 1:
            await go.wait()
        w.write(b"part two")
        await w.drain()
        # returning closes the connection: that ends the body

    worker = await serve(handle)
    upstream = await get(transport, worker.endpoint)
    try:
        assert upstream.status == 200
        assert upstream.length is None
        go.set()
        assert await upstream.read() == b"part one, part two"
    finally:
        upstream.close()
    assert await fetch(transport, worker.endpoint) == b"part one, part two"
    assert worker.connections == 2


# 6-8. Streamed request bodies ------------------------------------------------------------


def count_body(request: Received) -> tuple[int, list[tuple[str, str]], bytes]:
    return 200, [], str(len(request.body)).encode()


PARTS = [b"first,", b"x" * 300_000, b",last"]
WHOLE = b"".join(PARTS)


async def upload(
    transport: WorkerTransport,
    endpoint: Endpoint,
    body: AsyncIterator[bytes],
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    timeout: float = 2,
) -> tuple[int, bytes]:
    """A whole POST exchange with a streamed body: the answer's status and body."""
    upstream = await transport.stream(
        endpoint, method="POST", target="/upload", headers=headers or [], body=body, timeout=timeout
    )
    try:
        return upstream.status, await upstream.read()
    finally:
        upstream.close()


async def test_a_streamed_body_arrives_chunked_and_whole(
    transport: WorkerTransport, serve: Serve
) -> None:
    worker = await serve(h11_worker(count_body))
    headers = [(b"content-type", b"application/octet-stream")]
    answer = await upload(transport, worker.endpoint, pieces(*PARTS), headers=headers)
    assert answer == (200, str(len(WHOLE)).encode())
    (request,) = worker.requests
    assert request.values("transfer-encoding") == ["chunked"]
    assert request.values("content-length") == []
    assert request.values("host") == [f"127.0.0.1:{worker.endpoint.port}"]
    assert request.body == WHOLE
    assert await fetch(transport, worker.endpoint) == b"0"
    assert worker.connections == 1
    assert worker.errors == []


async def test_a_streamed_body_with_a_content_length_arrives_unchunked(
    transport: WorkerTransport, serve: Serve
) -> None:
    worker = await serve(h11_worker(count_body))
    headers = [(b"Content-Length", str(len(WHOLE)).encode())]
    answer = await upload(transport, worker.endpoint, pieces(*PARTS), headers=headers)
    assert answer == (200, str(len(WHOLE)).encode())
    (request,) = worker.requests
    assert request.values("content-length") == [str(len(WHOLE))]
    assert request.values("transfer-encoding") == []
    assert request.body == WHOLE
    assert worker.errors == []


async def test_an_empty_piece_of_a_streamed_body_does_not_end_it(
    transport: WorkerTransport, serve: Serve
) -> None:
    worker = await serve(h11_worker(count_body))
    assert await upload(transport, worker.endpoint, pieces(b"abc", b"", b"def")) == (200, b"6")
    assert [r.body for r in worker.requests] == [b"abcdef"]
    assert worker.errors == []


async def test_a_slow_upload_longer_than_the_timeout_is_not_a_timeout(
    transport: WorkerTransport, serve: Serve
) -> None:
    """The timeout bounds the worker's silence, not the caller's upload."""
    worker = await serve(h11_worker(count_body))
    start = time.monotonic()
    assert await upload(transport, worker.endpoint, slow(8), timeout=0.3) == (200, b"800")
    assert time.monotonic() - start >= 0.8


async def test_a_worker_silent_after_a_slow_upload_times_out(
    transport: WorkerTransport, serve: Serve
) -> None:
    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await until_eof(worker, reader)  # reads it all, never answers

    worker = await serve(handle)
    start = time.monotonic()
    with pytest.raises(WorkerTimeout):
        await transport.stream(
            worker.endpoint, method="POST", target="/", headers=[], body=slow(3), timeout=0.3
        )
    assert 0.3 <= time.monotonic() - start < 3
    await worker.wait_ended(1)


class CallerGone(Exception):
    """What the proxy's body iterator raises when the caller hangs up."""


@pytest.mark.parametrize("sent", [0, 3], ids=["before-any-chunk", "after-3-chunks"])
async def test_the_body_iterators_own_exception_comes_out_of_stream(
    transport: WorkerTransport, serve: Serve, sent: int
) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(sent):
            yield b"x" * 1000
            await asyncio.sleep(0)
        raise CallerGone("the caller hung up")

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        raw = await read_request(reader)
        assert raw is not None
        if b"transfer-encoding: chunked" in raw:
            await until_eof(worker, reader)  # never answers a cut-off upload
        else:
            w.write(head(200, ("content-length", "2")) + b"ok")
            await w.drain()
            await until_eof(worker, reader)

    worker = await serve(handle)
    start = time.monotonic()
    with pytest.raises(CallerGone, match="the caller hung up"):
        await transport.stream(
            worker.endpoint, method="POST", target="/", headers=[], body=body(), timeout=2
        )
    assert time.monotonic() - start < 1
    await worker.wait_ended(1)  # the half-sent request's connection is dropped
    assert await fetch(transport, worker.endpoint) == b"ok"
    assert worker.connections == 2


async def test_an_early_answer_to_an_unread_streamed_body_does_not_hang(
    transport: WorkerTransport, serve: Serve
) -> None:
    pulled = 0
    hold = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 65536

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the head only: the body is never read
        w.write(head(413, ("content-length", "9"), ("connection", "close")) + b"too large")
        await w.drain()
        await hold.wait()

    worker = await serve(handle)
    start = time.monotonic()
    async with asyncio.timeout(3):
        upstream = await transport.stream(
            worker.endpoint, method="POST", target="/", headers=[], body=endless(), timeout=2
        )
        try:
            assert upstream.status == 413
            assert await upstream.read() == b"too large"
        finally:
            upstream.close()
    assert time.monotonic() - start < 1.5
    await asyncio.sleep(0.05)
    settled = pulled
    await asyncio.sleep(0.05)
    assert pulled == settled  # the upload stopped with the exchange
    hold.set()


# 9-13. Failures ----------------------------------------------------------------------------


async def test_a_worker_that_stops_reading_an_upload_is_cut_off_at_the_timeout(
    transport: WorkerTransport, serve: Serve
) -> None:
    """What the worker never read is dropped with the connection, not kept until it reads."""
    stop = asyncio.Event()

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await stop.wait()  # never reads the body, never answers
        await until_eof(worker, reader)

    async def big() -> AsyncIterator[bytes]:
        for _ in range(256):
            yield b"x" * MiB

    worker = await serve(handle)
    with pytest.raises(WorkerTimeout):
        await transport.stream(
            worker.endpoint, method="POST", target="/", headers=[], body=big(), timeout=0.3
        )
    stop.set()
    await worker.wait_ended(1)


async def test_a_refused_port_is_unreachable(transport: WorkerTransport, refused: Endpoint) -> None:
    with pytest.raises(WorkerUnreachable, match="refused"):
        await get(transport, refused)
    reply = await transport.send(refused, outbound(), timeout=2)
    assert reply.status is None
    assert reply.error is not None
    assert "refused" in reply.error.lower()


async def silent_first(
    worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    """The first connection never answers; later ones answer at once."""
    first = worker.connections == 1
    while await read_request(reader) is not None:
        if first:
            break
        w.write(head(200, ("content-length", "5")) + b"fresh")
        await w.drain()
    await until_eof(worker, reader)


async def test_a_silent_worker_times_out(transport: WorkerTransport, serve: Serve) -> None:
    worker = await serve(silent_first)
    start = time.monotonic()
    with pytest.raises(WorkerTimeout):
        await get(transport, worker.endpoint, timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.29 <= elapsed < 3
    await worker.wait_ended(1)  # the timed-out connection is dropped, not pooled
    assert await fetch(transport, worker.endpoint) == b"fresh"


@pytest.mark.parametrize("reading", ["read", "chunks"])
async def test_a_stall_mid_body_times_out(
    transport: WorkerTransport, serve: Serve, reading: str
) -> None:
    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(head(200, ("content-length", "10")) + b"abc")
        await w.drain()
        await until_eof(worker, reader)

    worker = await serve(handle)
    upstream = await get(transport, worker.endpoint, timeout=0.3)
    try:
        start = time.monotonic()
        with pytest.raises(WorkerTimeout):
            if reading == "read":
                await upstream.read()
            else:
                async for _ in upstream.chunks():
                    pass
        assert 0.29 <= time.monotonic() - start < 3
    finally:
        upstream.close()
    await worker.wait_ended(1)


async def test_send_to_a_silent_worker_reports_the_timeout(
    transport: WorkerTransport, serve: Serve
) -> None:
    worker = await serve(silent_first)
    start = time.monotonic()
    reply = await transport.send(worker.endpoint, outbound(), timeout=0.3)
    assert 0.29 <= time.monotonic() - start < 3
    assert reply.status is None
    assert reply.error is not None
    assert "0.3s" in reply.error


async def test_send_bounds_the_whole_exchange(transport: WorkerTransport, serve: Serve) -> None:
    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(head(200, ("content-length", "5000")))
        while True:  # a byte at a time, each well within the timeout, never done
            w.write(b"x")
            await w.drain()
            await asyncio.sleep(0.1)

    worker = await serve(handle)
    start = time.monotonic()
    reply = await transport.send(worker.endpoint, outbound(), timeout=0.5, keep_body=5000)
    assert 0.49 <= time.monotonic() - start < 1.5
    assert reply.status is None
    assert reply.error is not None
    assert "0.5s" in reply.error


async def test_a_worker_closing_without_answering_failed(
    transport: WorkerTransport, serve: Serve
) -> None:
    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)  # then close

    worker = await serve(handle)
    start = time.monotonic()
    with pytest.raises(WorkerFailed):
        await get(transport, worker.endpoint)
    reply = await transport.send(worker.endpoint, outbound(), timeout=2)
    assert time.monotonic() - start < 1
    assert reply.status is None
    assert reply.error


@pytest.mark.parametrize("reading", ["read", "chunks"])
@pytest.mark.parametrize("when", ["while-reading", "between-reads"])
async def test_a_worker_breaking_off_mid_body_failed_at_once(
    transport: WorkerTransport, serve: Serve, reading: str, when: str
) -> None:
    go = asyncio.Event()
    closed = asyncio.Event()

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(head(200, ("content-length", "100")) + b"x" * 10)
        await w.drain()
        await go.wait()
        w.close()
        await w.wait_closed()
        closed.set()

    worker = await serve(handle)
    upstream = await get(transport, worker.endpoint, timeout=1.5)
    try:
        if when == "between-reads":
            # The worker breaks off while the caller is busy elsewhere (say, sending the
            # previous piece to a slow client); the next read must report it at once.
            go.set()
            await closed.wait()
            await asyncio.sleep(0.05)
        else:
            asyncio.get_running_loop().call_later(0.05, go.set)
        start = time.monotonic()
        with pytest.raises(WorkerFailed, match="broke off"):
            if reading == "read":
                await upstream.read()
            else:
                async for _ in upstream.chunks():
                    pass
        assert time.monotonic() - start < 0.5  # not the 1.5 s timeout
    finally:
        upstream.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 abc\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        head(200, ("transfer-encoding", "chunked")) + b"zz\r\nnot a chunk\r\n",
    ],
    ids=["bad-status", "not-http", "bad-chunk"],
)
async def test_invalid_http_is_worker_failed(
    transport: WorkerTransport, serve: Serve, answer: bytes
) -> None:
    worker = await serve(answers_once(answer))
    start = time.monotonic()
    with pytest.raises(WorkerFailed, match="invalid HTTP"):
        upstream = await get(transport, worker.endpoint)
        try:
            await upstream.read()
        finally:
            upstream.close()
    assert time.monotonic() - start < 1
    await worker.wait_ended(1)


def many_headers(count: int) -> bytes:
    """An answer head with ``count`` headers in all (its content-length included)."""
    return head(200, *[(f"x-h{i}", "v") for i in range(count - 1)], ("content-length", "2"))


@pytest.mark.parametrize(
    "answer",
    [
        many_headers(101),
        many_headers(200),
        head(200, ("x-big", "a" * 100 * 1024), ("content-length", "2")),
        head(200, *[(f"x-h{i}", "a" * 2048) for i in range(50)], ("content-length", "2")),
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * MiB,  # and never ends
    ],
    ids=["101-headers", "200-headers", "one-100KiB-header", "50-2KiB-headers", "endless-header"],
)
async def test_an_oversized_answer_head_is_worker_failed(
    transport: WorkerTransport, serve: Serve, answer: bytes
) -> None:
    worker = await serve(answers_once(answer))
    start = time.monotonic()
    with pytest.raises(WorkerFailed):
        upstream = await get(transport, worker.endpoint, timeout=1.5)
        upstream.close()
    assert time.monotonic() - start < 1  # as soon as the limit is passed, not at the timeout
    await worker.wait_ended(1)


@pytest.mark.parametrize(
    "answer",
    [many_headers(100), head(200, ("x-big", "a" * 60 * 1024), ("content-length", "2"))],
    ids=["100-headers", "one-60KiB-header"],
)
async def test_an_answer_head_within_the_limits_is_accepted(
    transport: WorkerTransport, serve: Serve, answer: bytes
) -> None:
    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(answer + b"ok")
        await w.drain()

    worker = await serve(handle)
    upstream = await get(transport, worker.endpoint)
    try:
        assert upstream.status == 200
        assert await upstream.read() == b"ok"
    finally:
        upstream.close()


# 14-16. Particular answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n",
    ],
    ids=["100-continue", "103-early-hints", "two-interim"],
)
@pytest.mark.parametrize("split", [False, True], ids=["one-write", "two-writes"])
async def test_informational_answers_are_passed_over(
    transport: WorkerTransport, serve: Serve, interim: bytes, split: bool
) -> None:
    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            final = head(200, ("x-final", "1"), ("content-length", "4")) + b"real"
            if split:
                w.write(interim)
                await w.drain()
                await asyncio.sleep(0.01)
                w.write(final)
            else:
                w.write(interim + final)
            await w.drain()

    worker = await serve(handle)
    upstream = await get(transport, worker.endpoint)
    try:
        assert upstream.status == 200
        assert upstream.headers == [(b"x-final", b"1"), (b"content-length", b"4")]
        assert upstream.length == 4
        assert await upstream.read() == b"real"
    finally:
        upstream.close()
    assert await fetch(transport, worker.endpoint) == b"real"
    assert worker.connections == 1


@pytest.mark.parametrize(
    "framing",
    [("content-length", "5"), ("transfer-encoding", "chunked")],
    ids=["content-length", "chunked"],
)
async def test_a_head_answer_has_no_body(
    transport: WorkerTransport, serve: Serve, framing: tuple[str, str]
) -> None:
    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while (raw := await read_request(reader)) is not None:
            if raw.startswith(b"HEAD "):
                w.write(head(200, ("content-type", "text/plain"), framing))
            else:
                w.write(head(200, ("content-length", "5")) + b"hello")
            await w.drain()

    worker = await serve(handle)
    start = time.monotonic()
    upstream = await transport.stream(
        worker.endpoint, method="HEAD", target="/", headers=[], body=b"", timeout=2
    )
    try:
        assert upstream.status == 200
        assert upstream.length == 0
        assert (b"content-type", b"text/plain") in upstream.headers
        assert await upstream.read() == b""
        assert [chunk async for chunk in upstream.chunks()] == []
    finally:
        upstream.close()
    assert time.monotonic() - start < 1
    assert await fetch(transport, worker.endpoint) == b"hello"
    assert worker.connections == 1


async def test_send_keeps_the_asked_prefix_of_the_body(
    transport: WorkerTransport, serve: Serve
) -> None:
    big = (bytes(range(256)) * 20)[:5000]

    def answer(request: Received) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [], b"tiny" if request.target == "/tiny" else big

    worker = await serve(h11_worker(answer))
    reply = await transport.send(worker.endpoint, outbound(), timeout=2, keep_body=2000)
    assert reply.status == 200
    assert reply.body == big[:2000]
    assert reply.head == big[:1024]

    reply = await transport.send(worker.endpoint, outbound(), timeout=2)
    assert reply.body == b""
    assert reply.head == big[:1024]

    reply = await transport.send(worker.endpoint, outbound("/tiny"), timeout=2, keep_body=2000)
    assert reply.head == reply.body == b"tiny"


# 17. Back-pressure ---------------------------------------------------------------------------


BIG = 64 * MiB


async def test_a_big_answer_is_read_with_back_pressure(
    transport: WorkerTransport, serve: Serve
) -> None:
    """While the caller does not read, the worker's own writes back up (nothing is slurped
    into the gateway's memory), and everything arrives once it reads on."""
    started = asyncio.Event()

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(reader)
        w.write(head(200, ("content-length", str(BIG))))
        piece = b"x" * MiB
        for _ in range(BIG // MiB):
            w.write(piece)  # no drain: the transport buffers what the socket does not take
        started.set()
        await until_eof(worker, reader)

    worker = await serve(handle)
    upstream = await get(transport, worker.endpoint)
    try:
        assert upstream.length == BIG
        chunks = upstream.chunks()
        consumed = 0
        while consumed < MiB:
            consumed += len(await anext(chunks))
        await started.wait()
        await asyncio.sleep(0.2)  # the caller is slow: the gateway must stop reading meanwhile
        writer = worker.writers[0]
        sent = BIG - writer.transport.get_write_buffer_size()
        # What left the worker is what the caller read plus what socket buffers hold.
        assert sent - consumed < BIG // 2, (sent, consumed)
        async for chunk in chunks:
            consumed += len(chunk)
            await asyncio.sleep(0)
        assert consumed == BIG
    finally:
        upstream.close()


# 9. Several deliveries at once (send_many) ---------------------------------------------------


@pytest.fixture(autouse=True)
def patient_pipelining(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' loopback exchanges, on a machine loaded by the rest of the suite, can take
    longer than the 2 ms that lets a worker be pipelined to; 40 ms still tells a worker that
    takes 50 ms per request (below) from a fast one."""
    monkeypatch.setattr(client, "PIPELINE_GAP", 0.04)


async def quick(transport: WorkerTransport, worker: Worker) -> None:
    """One exchange first: a worker is pipelined to only once it has answered fast."""
    assert (await transport.send(worker.endpoint, outbound("/quick"), timeout=2)).status == 200


async def test_send_many_answers_each_request_in_order_on_one_connection(
    transport: WorkerTransport, serve: Serve
) -> None:
    worker = await serve(h11_worker(echo_target))
    await quick(transport, worker)
    requests = [outbound(f"/{i}", body=b"x" * i) for i in range(8)]
    replies = await transport.send_many(worker.endpoint, requests, timeout=2, keep_body=100)
    assert [r.body for r in replies] == [f"/{i}".encode() for i in range(8)]
    assert [r.status for r in replies] == [200] * 8
    received = [(r.target, r.body) for r in worker.requests[1:]]
    assert received == [(f"/{i}", b"x" * i) for i in range(8)]
    assert worker.connections == 1  # pipelined: all eight on the one pooled connection
    again = await transport.send_many(worker.endpoint, requests[:2], timeout=2, keep_body=100)
    assert [r.body for r in again] == [b"/0", b"/1"]
    assert worker.connections == 1  # and it went back to the pool


async def test_send_many_to_a_worker_not_yet_seen_answering_fast_goes_side_by_side(
    transport: WorkerTransport, serve: Serve
) -> None:
    worker = await serve(h11_worker(echo_target))
    replies = await transport.send_many(worker.endpoint, [outbound()] * 4, timeout=2)
    assert [r.status for r in replies] == [200] * 4
    assert worker.connections == 4


def answers(count: int, *last: tuple[str, str]) -> Handler:
    """A worker that answers the first request of a connection, then ``count`` more (the last
    of them with the headers ``last``), then reads on without answering."""

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for i in range(count + 1):
            await read_request(reader)
            w.write(head(200, ("content-length", "2"), *(last if i == count else ())) + b"ok")
        await w.drain()
        await until_eof(worker, reader)

    return handle


@pytest.mark.parametrize(
    ("handler", "answered", "timed_out"),
    [(answers(1, ("connection", "close")), 1, False), (answers(2), 2, True)],
    ids=["connection-close", "silent"],
)
async def test_requests_of_a_batch_left_unanswered_come_back_as_errors(
    transport: WorkerTransport, serve: Serve, handler: Handler, answered: int, timed_out: bool
) -> None:
    """At-least-once: an unanswered delivery is a failed attempt (retried), never a success,
    and the connection that lost track is not reused."""
    worker = await serve(handler)
    await quick(transport, worker)
    replies = await transport.send_many(worker.endpoint, [outbound()] * 4, timeout=0.3)
    assert [r.status for r in replies] == [200] * answered + [None] * (4 - answered)
    assert all(r.error for r in replies[answered:])
    assert [r.timed_out for r in replies[answered:]] == [timed_out] * (4 - answered)
    await worker.wait_ended(1)


async def test_a_worker_answering_a_batch_slowly_one_by_one_gets_requests_side_by_side(
    transport: WorkerTransport, serve: Serve
) -> None:
    """Pipelined requests are served one after the other: a worker that answers at once and
    then takes its time per request (here 50 ms) gets its batches side by side again."""

    async def handle(worker: Worker, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            if len(worker.requests) > 0:
                await asyncio.sleep(0.05)
            worker.requests.append(Received("POST", "/", []))
            w.write(head(200, ("content-length", "0")))
        worker.saw_eof()

    worker = await serve(handle)
    await quick(transport, worker)
    for _ in range(8):
        replies = await transport.send_many(worker.endpoint, [outbound()] * 3, timeout=5)
        assert [r.status for r in replies] == [200] * 3
        if worker.connections > 1:
            break
    assert worker.connections > 1
