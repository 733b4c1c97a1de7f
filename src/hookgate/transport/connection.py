"""One worker connection's wire: its socket protocol, httptools parser, back-pressure, timeouts."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterable
from typing import cast

import httptools

from hookgate.domain.forwarding import RESPONSE_HEAD, Reply
from hookgate.errors import WorkerFailed, WorkerTimeout

HIGH_WATER = 256 * 1024
"""Answer bytes buffered before the gateway stops reading from the worker (the caller is slow)."""
MAX_HEAD = 64 * 1024
MAX_HEADERS = 100


class Connection(asyncio.Protocol):
    """One connection to a worker, carrying one exchange at a time.

    The httptools callbacks fill in the answer; whoever reads it waits on ``waiter``, which is
    resolved at the end of ``data_received`` so a whole small answer costs one wake-up.
    """

    def __init__(self, pool: list[Connection], host: bytes) -> None:
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

    def release(self) -> None:
        """Back to its pool when the exchange finished cleanly, else closed."""
        if self.reusable():
            self.idle_since = time.monotonic()
            self.pool.append(self)
        else:
            self.drop()
