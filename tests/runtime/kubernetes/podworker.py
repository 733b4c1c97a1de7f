"""A worker that answers with the name of its pod (``HOSTNAME``, as in a real pod).

``DELAY`` seconds of work before each answer make deliveries last long enough to be
caught by a pod's deletion.
"""

from __future__ import annotations

import asyncio
import os

from hookgate.worker import Request, Response, serve

DELAY = float(os.environ.get("DELAY", "0"))


async def handle(request: Request) -> Response:
    await asyncio.sleep(DELAY)
    return Response.json({"pod": os.environ["HOSTNAME"], "attempt": request.attempt})


if __name__ == "__main__":
    serve(handle)
