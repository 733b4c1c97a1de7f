"""Idle connections to workers, per endpoint: apart from the client so reuse rules stand alone."""

from __future__ import annotations

import asyncio
import time

from hookgate.domain.endpoints import Endpoint
from hookgate.errors import WorkerUnreachable
from hookgate.transport.connection import Connection

CONNECT_TIMEOUT = 5.0
KEEP_IDLE = 1.5
"""Seconds an idle connection stays pooled: shorter than common servers keep theirs (gunicorn 2 s,
Node.js and uvicorn 5 s, the SDK 75 s), so a request never goes out on a connection the worker is
closing at that moment. Under load connections are reused within milliseconds."""


class Pools:
    """Pooled connections per endpoint; idle ones are reused last-in first-out."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, int], list[Connection]] = {}

    async def connect(self, endpoint: Endpoint, *, fresh: bool = False) -> tuple[Connection, bool]:
        """A pooled connection (the newest; those idle too long are closed), else a new one;
        and whether it was pooled."""
        key = (endpoint.host, endpoint.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = []
        stale = time.monotonic() - KEEP_IDLE
        while pool and pool[0].idle_since < stale:
            pool.pop(0).drop()
        while pool and not fresh:
            connection = pool.pop()
            transport = connection.transport
            if not connection.lost and transport is not None and not transport.is_closing():
                return connection, True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, protocol = await loop.create_connection(
                    lambda: Connection(pool, _authority(endpoint).encode()),
                    endpoint.host,
                    endpoint.port,
                )
        except TimeoutError:
            raise WorkerUnreachable(f"no connection within {CONNECT_TIMEOUT:g}s") from None
        except OSError as exc:
            raise WorkerUnreachable(f"connection refused: {exc.strerror or exc}") from None
        return protocol, False

    async def close(self) -> None:
        for pool in self._pools.values():
            for connection in list(pool):
                if connection.transport is not None:
                    connection.transport.close()
        self._pools.clear()


def _authority(endpoint: Endpoint) -> str:
    """The ``Host`` of a request to ``endpoint``; an IPv6 address in brackets (RFC 9110 §7.2)."""
    if ":" in endpoint.host:
        return f"[{endpoint.host}]:{endpoint.port}"
    return f"{endpoint.host}:{endpoint.port}"
