"""Turn a plain ``handle(request)`` function into an ASGI app.

A sync handler runs in a thread so one slow call does not stop the worker from answering the
others that the gateway sends concurrently (up to the flow's ``concurrency``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, cast

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from hookgate.errors import ConfigError
from hookgate.worker.messages import Request, Response

Result: TypeAlias = Response | dict[str, Any] | str | bytes | None
Handler: TypeAlias = Callable[[Request], Result | Awaitable[Result]]

_JSON = {"content-type": "application/json"}
_TEXT = {"content-type": "text/plain; charset=utf-8"}
_BINARY = {"content-type": "application/octet-stream"}
_NO_BODY = frozenset({204, 304})  # RFC 9110 §8.6: these never carry Content-Length


class HandlerApp:
    """An ASGI app that answers every HTTP request by calling one handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            type(handler).__call__
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"a handler worker speaks HTTP only, not {scope['type']!r}")
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"].decode("latin-1"),
            headers=_headers(scope["headers"]),
            body=await _body(receive),
        )
        if self._is_async:
            result = await cast(Callable[[Request], Awaitable[Result]], self.handler)(request)
        else:
            returned = await asyncio.to_thread(self.handler, request)
            result = await returned if inspect.isawaitable(returned) else returned
        await _send(to_response(result), send)


def to_response(result: Result) -> Response:
    """The full answer for whatever a handler returned."""
    match result:
        case Response():
            return result
        case None:
            return Response(status=204)
        case dict():
            return Response(body=msgspec.json.encode(result), headers=_JSON)
        case str():
            return Response(body=result, headers=_TEXT)
        case bytes():
            return Response(body=result, headers=_BINARY)
    raise TypeError(
        f"a handler must return Response, dict, str, bytes or None, not {type(result).__name__}"
    )


def as_asgi(app_or_handler: ASGIApp | Handler) -> tuple[ASGIApp, bool]:
    """The ASGI app to serve and whether it is a wrapped handler, told apart by arity."""
    try:
        parameters = inspect.signature(app_or_handler).parameters.values()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot serve {app_or_handler!r}: it is not a function") from exc
    required = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(required) == 3:
        return cast(ASGIApp, app_or_handler), False
    if len(required) == 1:
        return HandlerApp(cast(Handler, app_or_handler)), True
    raise ConfigError(
        f"cannot serve {app_or_handler!r}: expected an ASGI app (scope, receive, send) "
        "or a handler (request)"
    )


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(response: Response, send: Send) -> None:
    body = response.body.encode() if isinstance(response.body, str) else response.body
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers.items()
        if name.lower() != "content-length"
    ]
    if response.status not in _NO_BODY:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown: a handler has nothing to set up."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
