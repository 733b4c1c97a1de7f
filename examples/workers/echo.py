"""Echo worker: answers every request with what it received, as JSON.

Works for sync flows (the caller sees the echo) and async flows (the delivery is acknowledged).
Two variables make it misbehave on purpose, for demos and tests:

* ``ECHO_STATUS`` — the status to answer with (default 200), e.g. 503 to watch retries;
* ``ECHO_DELAY`` — seconds to wait before answering, e.g. longer than the flow's ``timeout``.

Run it with ``PORT=8080 python echo.py`` or ``python -m hookgate.worker echo:handle``.
"""

from __future__ import annotations

import asyncio
import os

from hookgate.worker import Request, Response, serve

STATUS = int(os.environ.get("ECHO_STATUS", "200"))
DELAY = float(os.environ.get("ECHO_DELAY", "0"))


async def handle(request: Request) -> Response:
    if DELAY:
        await asyncio.sleep(DELAY)
    echo = {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": request.headers,
        "body": request.body.decode("utf-8", errors="replace"),
        "flow": request.flow_id,
        "delivery": request.delivery_id,
        "attempt": request.attempt,
    }
    return Response.json(echo, status=STATUS)


if __name__ == "__main__":
    serve(handle)
