"""The memory transport: a request handed straight to a worker's ASGI app, no socket between.

The twin of ``Http1Transport`` for in-process tests: it keeps the ``WorkerTransport`` contract
(answer head first, the body as the app sends it, ``WorkerTimeout`` on a stall,
``WorkerFailed`` when the app breaks off, ``WorkerUnreachable`` when nothing listens there, a
body iterator's own exception as it is) on the ``Network`` of a ``MemoryRuntime``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from typing import Any

from hookgate.domain.endpoints import Endpoint
from hookgate.domain.forwarding import Outbound, Reply
from hookgate.errors import WorkerFailed, WorkerTimeout, WorkerUnreachable
from hookgate.runtime.memory import App, Network
from hookgate.transport.base import send_whole

_END = b""


class MemoryUpstream:
    """An app's answer: the head once sent, then its body chunks through a queue."""

    def __init__(
        self,
        start: dict[str, Any],
        chunks: asyncio.Queue[bytes | BaseException],
        task: asyncio.Task[None],
        timeout: float,
    ) -> None:
        self.status: int = start["status"]
        self.headers = [(bytes(k).lower(), bytes(v)) for k, v in start.get("headers", [])]
        self._chunks = chunks
        self._task = task
        self._timeout = timeout
        self._ended = False

    @property
    def length(self) -> int | None:
        declared = next((v for k, v in self.headers if k == b"content-length"), None)
        return None if declared is None else int(declared)

    async def _next(self) -> bytes:
        if self._ended:
            return _END
        try:
            chunk = await asyncio.wait_for(self._chunks.get(), self._timeout)
        except TimeoutError:
            raise WorkerTimeout(f"the worker sent nothing within {self._timeout:g}s") from None
        if isinstance(chunk, BaseException):
            raise WorkerFailed("the worker broke off its answer") from chunk
        self._ended = chunk is _END
        return chunk

    async def read(self, limit: int | None = None) -> bytes:
        parts: list[bytes] = []
        size = 0
        while limit is None or size < limit:
            chunk = await self._next()
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        body = b"".join(parts)
        return body if limit is None else body[:limit]

    async def chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self._next():
            yield chunk

    def close(self) -> None:
        self._task.cancel()


class MemoryTransport:
    def __init__(self, network: Network) -> None:
        self.network = network
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(
        self, endpoint: Endpoint, request: Outbound, *, timeout: float, keep_body: int = 0
    ) -> Reply:
        return await send_whole(self, endpoint, request, timeout=timeout, keep_body=keep_body)

    def pipelining(self, endpoint: Endpoint) -> bool:
        """No connections to pipeline on: an app is called per request."""
        return False

    async def send_many(
        self,
        endpoint: Endpoint,
        requests: Sequence[Outbound],
        *,
        timeout: float,
        keep_body: int = 0,
    ) -> list[Reply]:
        return [
            await self.send(endpoint, r, timeout=timeout, keep_body=keep_body) for r in requests
        ]

    async def stream(
        self,
        endpoint: Endpoint,
        *,
        method: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
        timeout: float,
    ) -> MemoryUpstream:
        app = self.network.app(endpoint)
        if app is None:
            raise WorkerUnreachable(f"connection refused: nothing listens on {endpoint.host}")
        loop = asyncio.get_running_loop()
        head: asyncio.Future[dict[str, Any]] = loop.create_future()
        chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        task = asyncio.create_task(
            _call(app, _scope(endpoint, method, target, headers), _pieces(body), head, chunks)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            start = await asyncio.wait_for(asyncio.shield(head), timeout)
        except TimeoutError:
            task.cancel()
            raise WorkerTimeout(f"the worker did not answer within {timeout:g}s") from None
        except BaseException:
            task.cancel()
            raise
        return MemoryUpstream(start, chunks, task, timeout)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _scope(
    endpoint: Endpoint, method: str, target: str, headers: Sequence[tuple[bytes, bytes]]
) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in headers],
        "server": (endpoint.host, endpoint.port),
        "client": ("gateway.memory", 0),
        "state": {},
    }


async def _pieces(body: bytes | AsyncIterable[bytes]) -> AsyncGenerator[bytes]:
    if isinstance(body, bytes):
        yield body
        return
    async for piece in body:
        if piece:
            yield piece


async def _call(
    app: App,
    scope: dict[str, Any],
    body: AsyncGenerator[bytes],
    head: asyncio.Future[dict[str, Any]],
    chunks: asyncio.Queue[bytes | BaseException],
) -> None:
    """Run the app for one exchange: its ``receive`` reads ``body``, its ``send`` fills
    ``head`` and ``chunks``; the body iterator's own exception goes to whoever awaits ``head``."""
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if finished.is_set():
            await asyncio.Future()  # nothing more until the exchange is dropped
        try:
            piece = await anext(body)
        except StopAsyncIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        except Exception as exc:
            if not head.done():
                head.set_exception(exc)
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": piece, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and not head.done():
            head.set_result(message)
        elif message["type"] == "http.response.body":
            if message.get("body"):
                chunks.put_nowait(bytes(message["body"]))
            if not message.get("more_body", False):
                finished.set()
                chunks.put_nowait(_END)

    try:
        await app(scope, receive, send)
    except Exception as exc:
        failure = WorkerFailed("the worker closed the connection without answering")
        if not head.done():
            head.set_exception(failure)
        elif not finished.is_set():
            chunks.put_nowait(exc)
        return
    if not head.done():
        head.set_exception(WorkerFailed("the worker closed the connection without answering"))
    elif not finished.is_set():
        chunks.put_nowait(WorkerFailed("the worker broke off its answer"))
    with contextlib.suppress(Exception):
        await body.aclose()
