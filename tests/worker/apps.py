"""Workers served by the SDK in tests: ``python -m hookgate.worker apps:<name>``."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hookgate.worker import Request, Response


def sync_handle(request: Request) -> Any:
    match request.path:
        case "/json":
            return {"hello": "world", "query": request.query}
        case "/none":
            return None
        case "/bytes":
            return b"\x00\xff"
        case "/text":
            return "plain text"
        case "/response":
            return Response(status=201, body="made", headers={"x-made": "yes"})
        case "/slow":
            Path(os.environ["MARK_FILE"]).touch()
            time.sleep(1)
            return "slow done"
        case "/boom":
            raise RuntimeError("boom")
        case "/wrong":
            return 42
    return {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": request.headers,
        "body": request.body.decode(),
        "json": request.json() if request.body else None,
        "flow": request.flow_id,
        "delivery": request.delivery_id,
        "attempt": request.attempt,
        "idempotency_key": request.idempotency_key,
    }


async def async_handle(request: Request) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"async": True, "path": request.path, "body": request.body.decode()}


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = f"raw asgi {scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def _hello(request: StarletteRequest) -> PlainTextResponse:
    return PlainTextResponse(f"starlette {request.path_params['name']}")


starlette_app = Starlette(routes=[Route("/hello/{name}", _hello)])


def two_arguments(first: object, second: object) -> None:
    """Neither a handler nor an ASGI app."""
