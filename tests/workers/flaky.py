"""A worker that misbehaves on request, so tests can drive every failure the gateway must survive.

Run it as ``PORT=N python tests/workers/flaky.py``. It is a plain asyncio server that parses HTTP
with h11, because some failures (garbage bytes, a connection closed without an answer) cannot be
produced from inside an ASGI app.

Per-request knobs — a query parameter on any path, else the environment variable, else the default:

=================  =====================  ==================================================
query              env                    effect
=================  =====================  ==================================================
``status=N``       ``FLAKY_STATUS``       answer with status N (default 200)
``sleep=S``        ``FLAKY_SLEEP``        wait S seconds (float) before acting (default 0)
``action=A``       ``FLAKY_ACTION``       ``answer`` (default); ``close``: close the connection
                                          without answering; ``garbage``: send bytes that are
                                          not HTTP, then close; ``crash``: ``os._exit(1)``;
                                          ``endless-head``: a status line, then header
                                          bytes that never end
``retry_after=S``  ``FLAKY_RETRY_AFTER``  add ``Retry-After: S`` to the answer
``fail_attempts``  ``FLAKY_FAIL_ATTEMPTS`` misbehave (all of the above) only while
                                          ``X-Hookgate-Attempt`` ≤ K (a missing header counts
                                          as 1); later attempts get a plain 200. Because the
                                          attempt comes from the request, this survives a crash.
=================  =====================  ==================================================

Process knobs (environment only):

* ``RECORD_FILE`` — append one JSON line per received request *before* acting on it:
  ``{method, path, query, headers, body (base64), pid}``. Lines are written with one
  ``O_APPEND`` write each, so several workers may share one file; count lines to count deliveries.
* ``FLAKY_START_DELAY`` — seconds to wait before opening the port (a slow or never-ready worker).
* ``FLAKY_EXIT_CODE`` — exit at once with this code, never opening the port.
* ``FLAKY_IGNORE_SIGTERM=1`` — ignore SIGTERM, so only SIGKILL stops it.

Otherwise SIGTERM stops accepting, lets in-flight requests finish and exits 0. A plain answer is
JSON: ``{"pid": ..., "path": ..., "attempt": ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
from typing import Any
from urllib.parse import parse_qsl

import h11

GARBAGE = b"\x00\x01 this is not HTTP \xff\r\n\r\n"


class Flaky:
    def __init__(self) -> None:
        self.busy = 0
        self.record_file = os.environ.get("RECORD_FILE")

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while (received := await _read_request(conn, reader)) is not None:
                self.busy += 1
                try:
                    if not await self.respond(conn, writer, *received):
                        return
                finally:
                    self.busy -= 1
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, ConnectionError):
            return
        finally:
            writer.close()

    async def respond(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request, body: bytes
    ) -> bool:
        """Act on one request; False when the connection must not be used again."""
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self.record(request.method.decode(), path, query, headers, body)

        params = dict(parse_qsl(query))
        attempt_header = headers.get("x-hookgate-attempt", "1")
        attempt = int(attempt_header) if attempt_header.isdigit() else 1
        fail_attempts = _knob(params, "fail_attempts", "FLAKY_FAIL_ATTEMPTS", "")
        if fail_attempts and attempt > int(fail_attempts):
            params = {"status": "200", "sleep": "0", "action": "answer", "retry_after": ""}

        await asyncio.sleep(float(_knob(params, "sleep", "FLAKY_SLEEP", "0")))
        action = _knob(params, "action", "FLAKY_ACTION", "answer")
        if action == "crash":
            os._exit(1)
        if action == "close":
            return False
        if action == "garbage":
            writer.write(GARBAGE)
            await writer.drain()
            return False
        if action == "endless-head":
            writer.write(b"HTTP/1.1 200 OK\r\nx-endless: ")
            while True:
                writer.write(b"a" * 65536)
                await writer.drain()

        payload = json.dumps({"pid": os.getpid(), "path": path, "attempt": attempt}).encode()
        answer_headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(payload))),
        ]
        if retry_after := _knob(params, "retry_after", "FLAKY_RETRY_AFTER", ""):
            answer_headers.append(("retry-after", retry_after))
        status = int(_knob(params, "status", "FLAKY_STATUS", "200"))
        for event in (
            h11.Response(status_code=status, headers=answer_headers),
            h11.Data(data=payload),
            h11.EndOfMessage(),
        ):
            writer.write(conn.send(event) or b"")
        await writer.drain()
        return True

    def record(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> None:
        if not self.record_file:
            return
        line = {
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "body": base64.b64encode(body).decode(),
            "pid": os.getpid(),
        }
        fd = os.open(self.record_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)


def _knob(params: dict[str, str], name: str, env: str, default: str) -> str:
    return params.get(name) or os.environ.get(env) or default


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request, bytes] | None:
    """The next full request on the connection, or None when the client closed it."""
    request: h11.Request | None = None
    chunks: list[bytes] = []
    while True:
        event: Any = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            return request, b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def main() -> int:
    if exit_code := os.environ.get("FLAKY_EXIT_CODE"):
        return int(exit_code)
    await asyncio.sleep(float(os.environ.get("FLAKY_START_DELAY", "0")))
    flaky = Flaky()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    on_term = (lambda: None) if os.environ.get("FLAKY_IGNORE_SIGTERM") == "1" else stopping.set
    loop.add_signal_handler(signal.SIGTERM, on_term)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    server = await asyncio.start_server(
        flaky.connection, os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])
    )
    await stopping.wait()
    server.close()
    while flaky.busy:
        await asyncio.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
