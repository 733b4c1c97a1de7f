"""The admin listener's HTTP edges: the bearer check, errors as JSON, one route per path."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hookgate import logs
from hookgate.admin.schedule import Handler
from hookgate.errors import (
    ConfigError,
    DeliveryNotFound,
    FlowConflict,
    FlowNotFound,
    HookgateError,
    StoreError,
    StoreFull,
)

STORE_DOWN = "the store cannot be used now; retry later (the gateway's log says why)"

log = logs.get("hookgate.admin")


class Bearer:
    """Admit only ``Authorization: Bearer <token>``; the token is kept hashed, compared in
    constant time, and a miss says nothing about why."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        open_paths: frozenset[str],
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.digest = hashlib.sha256(token.encode()).digest()
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes

    def _open(self, path: str) -> bool:
        return path in self.open_paths or any(
            path == prefix or path.startswith(prefix + "/") for prefix in self.open_prefixes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._open(scope["path"]):
            presented = b""
            for name, value in scope["headers"]:
                if name == b"authorization" and value[:7].lower() == b"bearer ":
                    presented = value[7:].strip()
            if not hmac.compare_digest(hashlib.sha256(presented).digest(), self.digest):
                response = JSONResponse(
                    {"error": "missing or wrong admin token"},
                    status_code=401,
                    headers={"www-authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def json_errors(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Map the error tree to HTTP: every error is JSON with a precise message."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ConfigError as exc:
            return _error(422, str(exc))
        except (FlowNotFound, DeliveryNotFound) as exc:
            return _error(404, str(exc))
        except FlowConflict as exc:
            return _error(409, str(exc))
        except StoreFull as exc:
            return _error(503, str(exc))
        except StoreError as exc:
            # The driver's message names the database's host, port and name: log it only.
            log.warning("admin request failed in the store", path=request.url.path, error=str(exc))
            return _error(503, STORE_DOWN)
        except ValueError as exc:
            return _error(400, f"invalid request: {exc}")
        except HookgateError as exc:
            return _error(500, str(exc))

    return wrapped


def resource(path: str, handlers: dict[str, Handler]) -> Route:
    """One route per path, so a wrong method's 405 names every method of the path in Allow."""

    async def dispatch(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, dispatch, methods=list(handlers))


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods answer JSON too, like every other admin error."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
