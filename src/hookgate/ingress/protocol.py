"""uvicorn's httptools protocol with bounded request heads: too many or too large → 431.

httptools buffers a request head without limit; this stops reading a head once its raw bytes
or its header count pass the bound, answers ``431`` and closes the connection, so a caller
cannot make the gateway hold an endless head in memory.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hookgate.domain.deliveries import new_id

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100


class HeadTooLarge(Exception):
    pass


class HeadHolder:
    """The transport as one response sees it: the head waits for the first body write (or
    the end of this loop turn), so a small answer leaves in one ``send()``, not two.

    On loopback a ``send()`` costs as much as the rest of an accepted request's Python work.
    """

    __slots__ = ("held", "loop", "started", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
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
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_head = True
        self.head_bytes = 0
        self.header_count = 0
        self.refused = False

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES and not self._head_ends_within(data):
                self._refuse()
                return
        super().data_received(data)

    def _head_ends_within(self, data: bytes) -> bool:
        """Whether the head ends in this chunk early enough (what follows may be body)."""
        end = data.find(b"\r\n\r\n")
        return end >= 0 and self.head_bytes - len(data) + end <= MAX_HEAD_BYTES

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            self._refuse()
            raise HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        super().on_headers_complete()
        self.cycle.transport = HeadHolder(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True
        self.head_bytes = 0
        self.header_count = 0

    def send_400_response(self, msg: str) -> None:
        if not self.refused:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self.refused = True
        self.logger.warning("request head too large: answered 431")
        body = msgspec.json.encode(
            {"error": "request header fields too large", "requestId": new_id()}
        )
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.close()
