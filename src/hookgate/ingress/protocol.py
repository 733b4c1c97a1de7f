"""uvicorn's httptools protocol with a bound on every phase of a connection (the "edge").

uvicorn arms its keep-alive timer only after a first response and reads heads and bodies for
as long as a caller keeps them coming. Here each connection is in one :class:`Phase`, and one
sweep a second closes the ones past their deadline (``domain/limits.py``):

* ``IDLE`` (new, or between requests) past ``keep_alive``: closed without a word;
* ``HEAD`` past ``head_timeout``, or a head over ``max_head_bytes``/``max_headers``: 408/431;
* ``BODY`` with no byte for ``body_timeout``, or under ``body_min_rate`` on average: 408
  (time during which the gateway itself stopped reading does not count against the caller);
* ``BUSY`` (the gateway answers): only a caller that stops reading the answer is closed;
* ``LINGER`` (answered before the request was read, e.g. 408, 431, 400): half-closed, what the
  caller still sends read and dropped until it closes, for ``LINGER`` seconds and
  ``LINGER_BYTES`` at most. Closing with unread bytes makes the kernel send a reset, which can
  destroy the answer before the caller reads it (nginx's lingering close, RFC 9112 §9.6).

Connections are capped per listener and per source address (an IPv6 client per /64); a
lingering connection still counts. At the cap, a lingering connection, else the one that has
waited longest without sending a complete head, is closed to make room (slow-drip clients go
first); only when every connection is busy does a newcomer get a fast ``503``.

This subclasses uvicorn's private ``HttpToolsProtocol``; the supported uvicorn range is pinned
in pyproject.toml and ``tests/ingress/test_protocol_compat.py`` fails loudly if it changes.
"""

from __future__ import annotations

import asyncio
import enum
import functools
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hookgate import logs
from hookgate.auth.limits import client_key
from hookgate.domain.deliveries import new_id
from hookgate.domain.limits import ListenerLimits

SWEEP_EVERY = 1.0
LINGER = 2.0
LINGER_BYTES = 4 * 1024 * 1024
REPORT_EVERY = 60.0

log = logs.get("hookgate.edge")


class Phase(enum.IntEnum):
    IDLE = 0
    HEAD = 1
    BODY = 2
    BUSY = 3
    LINGER = 4


class HeadTooLarge(Exception):
    pass


class HeadHolder:
    """The transport as one response sees it: the head waits for the first body write (or
    the end of this loop turn), so a small answer leaves in one ``send()``, not two.

    On loopback a ``send()`` costs as much as the rest of an accepted request's Python work.
    """

    __slots__ = ("held", "loop", "on_close", "started", "transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        on_close: Callable[[], None],
    ) -> None:
        self.transport = transport
        self.loop = loop
        self.on_close = on_close
        self.held: bytes | None = None
        self.started = False

    def write(self, data: bytes) -> None:
        if not self.started:
            self.started = True
            self.held = data
            self.loop.call_soon(self.flush)
            return
        if self.held is not None:
            data, self.held = self.held + data, None
        self.transport.write(data)

    def flush(self) -> None:
        if self.held is not None:
            if not self.transport.is_closing():
                self.transport.write(self.held)
            self.held = None

    def close(self) -> None:
        self.flush()
        self.on_close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class Edge:
    """One listener's connections: its limits, counts by address, and the deadline sweep.

    ``on_close`` is told the reason whenever the edge closes or refuses a connection (for a
    metric); a summary is logged at most once a minute, never a line per connection.
    """

    def __init__(
        self,
        limits: ListenerLimits,
        *,
        name: str,
        trusted: Callable[[str], bool] = lambda _address: False,
        on_close: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self.limits = limits
        self.name = name
        self.trusted = trusted
        self.on_close = on_close
        self.open: set[EdgeProtocol] = set()
        self.by_address: dict[str, int] = {}
        # Connections with no complete request head, longest-waiting first: the ones to close
        # when the listener is full, after the lingering ones (answered, only draining).
        self.waiting: dict[EdgeProtocol, None] = {}
        self.lingering: dict[EdgeProtocol, None] = {}
        self._closed: Counter[str] = Counter()
        self._sweeper: asyncio.TimerHandle | None = None
        self._reported = 0.0

    def protocol(self) -> Any:
        """The protocol factory uvicorn calls once per connection."""
        return functools.partial(EdgeProtocol, edge=self)

    def admit(self, conn: EdgeProtocol) -> str | None:
        """None when ``conn`` may stay, else why it is refused."""
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(SWEEP_EVERY, self.sweep, conn.loop)
        if not self.trusted(conn.peer):
            if self.by_address.get(conn.address, 0) >= self.limits.max_connections_per_ip:
                return "per_address"
            conn.counted = True
            self.by_address[conn.address] = self.by_address.get(conn.address, 0) + 1
        if len(self.open) >= self.limits.max_connections:
            victims = self.lingering or self.waiting
            if not victims:
                self.release(conn)
                return "over_capacity"
            next(iter(victims)).drop("evicted")
        self.open.add(conn)
        return None

    def release(self, conn: EdgeProtocol) -> None:
        self.open.discard(conn)
        self.waiting.pop(conn, None)
        self.lingering.pop(conn, None)
        if conn.counted:
            conn.counted = False
            left = self.by_address[conn.address] - 1
            if left:
                self.by_address[conn.address] = left
            else:
                del self.by_address[conn.address]

    def closed(self, reason: str) -> None:
        self._closed[reason] += 1
        self.on_close(reason)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for conn in list(self.open):
            conn.check(now)
        if self._closed and now - self._reported >= REPORT_EVERY:
            log.warning("closed or refused connections", listener=self.name, **self._closed)
            self._closed.clear()
            self._reported = now
        self._sweeper = loop.call_later(SWEEP_EVERY, self.sweep, loop) if self.open else None


class EdgeProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, edge: Edge, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.edge = edge
        self.limits = edge.limits
        self.peer = ""
        self.address = ""
        self.counted = False
        self.phase = Phase.IDLE
        self.since = 0.0
        self.progress_at = 0.0
        self.body_bytes = 0
        self.checked_at = 0.0
        self.write_stalled_at: float | None = None
        self.head_bytes = 0
        self.header_count = 0
        self.lingered = 0
        self.refused = False

    # connection ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.peer = self.client[0] if self.client else ""
        self.address = client_key(self.peer)
        refusal = self.edge.admit(self)
        if refusal is not None:
            self.refused = True
            self.edge.closed(refusal)
            self._answer(
                503, "too many connections, retry later", b"retry-after: 1\r\n", linger=False
            )
            return
        self._idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.edge.release(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            if self.phase is Phase.LINGER:
                self.lingered += len(data)
                if self.lingered > LINGER_BYTES:
                    self.transport.close()
            return
        if self.phase is Phase.HEAD or self.phase is Phase.IDLE:
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_head_bytes and not self._head_ends_within(data):
                self._refuse_head()
                return
        super().data_received(data)

    def _head_ends_within(self, data: bytes) -> bool:
        """Whether the head ends in this chunk early enough (what follows may be body)."""
        end = data.find(b"\r\n\r\n")
        return end >= 0 and self.head_bytes - len(data) + end <= self.limits.max_head_bytes

    # parser callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.phase = Phase.HEAD
        self.since = self.loop.time()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.limits.max_headers:
            self._refuse_head()
            raise HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.edge.waiting.pop(self, None)
        self.phase = Phase.BODY
        self.since = self.progress_at = self.checked_at = self.loop.time()
        self.body_bytes = 0
        super().on_headers_complete()
        holder = HeadHolder(self.transport, self.loop, self._close)
        self.cycle.transport = holder  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        self.progress_at = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.phase = Phase.BUSY
        self.head_bytes = 0
        self.header_count = 0
        if self.cycle.response_complete and not self.transport.is_closing():
            # Answered before its body ended (a 413, a 404) and kept alive: nothing more will
            # be written, so the connection now waits for a next request, under keep_alive.
            self._idle()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if self.phase is Phase.LINGER:
            self._unset_keepalive_if_required()  # uvicorn's timer would cut the linger short
        elif not pipelined and self.phase is Phase.BUSY and not self.transport.is_closing():
            self._idle()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that do not parse, but with a lingering close: the rest of
        what the caller sent is still unread."""
        if not self.refused:
            self.refused = True
            self._answer(400, "invalid HTTP request")

    def _close(self) -> None:
        """uvicorn closing after an answer (``connection: close``, HTTP/1.0, an error): with a
        lingering close when the request body was not read to its end."""
        if self.phase is Phase.BODY:
            self.refused = True
            self._linger()
        else:
            self.transport.close()

    # deadlines -----------------------------------------------------------------------------
    def _idle(self) -> None:
        self.phase = Phase.IDLE
        self.since = self.loop.time()
        self.edge.waiting.pop(self, None)
        self.edge.waiting[self] = None

    def check(self, now: float) -> None:
        """Called by the sweep: close this connection if it is past its phase's deadline."""
        limits = self.limits
        if self.phase is Phase.IDLE:
            if now - self.since > limits.keep_alive:
                self.drop("idle")
        elif self.phase is Phase.HEAD:
            if now - self.since > limits.head_timeout:
                self._timed_out("head_timeout", "request head not received in time")
        elif self.phase is Phase.LINGER:
            if now - self.since > LINGER:
                self.transport.close()
        elif self.phase is Phase.BODY:
            if self.flow.read_paused:
                # The gateway is not reading (back-pressure): that time is not the caller's.
                self.since += now - self.checked_at
                self.progress_at = now
            elapsed = now - self.since
            if now - self.progress_at > limits.body_timeout or (
                elapsed > limits.body_timeout and self.body_bytes < limits.body_min_rate * elapsed
            ):
                self._timed_out("body_timeout", "request body not received in time")
        elif self.flow.write_paused:
            if self.write_stalled_at is None:
                self.write_stalled_at = now
            elif now - self.write_stalled_at > limits.body_timeout:
                self.drop("slow_reader")
        else:
            self.write_stalled_at = None
        self.checked_at = now

    def drop(self, reason: str) -> None:
        self.edge.release(self)
        self.edge.closed(reason)
        self.refused = True
        self.transport.close()

    def _timed_out(self, reason: str, message: str) -> None:
        self.edge.closed(reason)
        self.refused = True
        if self.cycle is not None and self.cycle.response_started and self.phase is Phase.BODY:
            self.edge.release(self)
            self.transport.close()
            return
        self._answer(408, message)

    def _refuse_head(self) -> None:
        self.refused = True
        self.edge.closed("head_too_large")
        self._answer(431, "request header fields too large")

    def _answer(
        self, status: int, message: str, extra: bytes = b"", *, linger: bool = True
    ) -> None:
        """A JSON error written straight to the socket, then the connection closed, by a
        lingering close unless ``linger`` is false (a refused newcomer is not kept open)."""
        body = msgspec.json.encode({"error": message, "requestId": new_id()})
        reason = HTTPStatus(status).phrase.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"%scontent-length: %d\r\n\r\n%s" % (status, reason, extra, len(body), body)
        )
        if linger:
            self._linger()
        else:
            self.transport.close()

    def _linger(self) -> None:
        """Half-close, then read and drop (never keep) what the caller still sends until it
        closes; the sweep closes the connection after ``LINGER`` seconds, ``data_received``
        after ``LINGER_BYTES``. The connection still counts against the caps until closed."""
        if self.transport.is_closing() or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.phase = Phase.LINGER
        self.since = self.loop.time()
        self.lingered = 0
        self.edge.waiting.pop(self, None)
        if self in self.edge.open:
            self.edge.lingering[self] = None
        self.transport.write_eof()
        self.flow.resume_reading()
