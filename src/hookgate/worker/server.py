"""Serve a worker on ``$PORT`` the way the gateway expects (design §4).

uvicorn already drains in-flight requests on SIGTERM, but afterwards re-raises the signal so the
process dies *by* SIGTERM. Hookgate's local runtime reads a non-zero exit as a crash, so
:func:`serve` absorbs that re-raised signal and returns: a stopped worker exits 0.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from hookgate.errors import ConfigError
from hookgate.worker.adapter import Handler, as_asgi

KEEP_ALIVE = 75
"""Seconds an idle connection stays open: longer than the gateway pool keeps it, so the gateway
closes first and never sends on a connection the worker is closing."""


def serve(
    app_or_handler: ASGIApp | Handler, *, port: int | None = None, host: str | None = None
) -> None:
    """Serve an ASGI app or a ``handle(request)`` function until SIGTERM/SIGINT.

    ``port`` defaults to ``$PORT``; ``host`` to :func:`resolve_host`.
    """
    app, is_handler = as_asgi(app_or_handler)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host or resolve_host(),
            port=resolve_port(port),
            loop="uvloop",
            http="httptools",
            lifespan="on" if is_handler else "auto",
            access_log=False,
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE,
        )
    )
    with _absorb_stop_signals(server):
        server.run()


def resolve_host() -> str:
    """``$HOST``; else all interfaces inside a Kubernetes pod, where the kubelet probes and the
    Service reach the pod's own IP; else loopback, where only the local gateway calls."""
    if host := os.environ.get("HOST"):
        return host
    return "0.0.0.0" if "KUBERNETES_SERVICE_HOST" in os.environ else "127.0.0.1"


def resolve_port(port: int | None) -> int:
    """The explicit port, else ``$PORT``; a clear ``ConfigError`` when neither is usable."""
    if port is None:
        raw = os.environ.get("PORT")
        if not raw:
            raise ConfigError("no port to listen on: set $PORT or pass port=")
        if not raw.isdigit():
            raise ConfigError(f"$PORT must be a port number, not {raw!r}")
        port = int(raw)
    if not 1 <= port <= 65535:
        raise ConfigError(f"port must be between 1 and 65535, not {port}")
    return port


@contextmanager
def _absorb_stop_signals(server: uvicorn.Server) -> Iterator[None]:
    """While uvicorn runs its own handlers are active; before and after, a stop signal asks the
    server to exit (if it is not running yet) instead of killing the process."""

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, stop) for sig in stop_signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
