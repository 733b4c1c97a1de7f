"""A worker that answers with the name of its pod (``HOSTNAME``, as in a real pod).

``DELAY`` seconds of work before each answer make deliveries last long enough to be
caught by a pod's deletion. ``EXIT_AFTER`` = N makes the process end after N answers:
with ``EXIT_CODE`` 0 it exits cleanly once the N-th answer is sent (as an SDK that stops
when told to); with any other code it crashes on the next request, before answering.
"""

from __future__ import annotations

import asyncio
import os

from hookgate.worker import Request, Response, serve

DELAY = float(os.environ.get("DELAY", "0"))
EXIT_AFTER = int(os.environ.get("EXIT_AFTER", "0"))
EXIT_CODE = int(os.environ.get("EXIT_CODE", "0"))
answered = 0


async def handle(request: Request) -> Response:
    global answered
    if EXIT_AFTER and EXIT_CODE and answered == EXIT_AFTER:
        os._exit(EXIT_CODE)
    await asyncio.sleep(DELAY)
    answered += 1
    if EXIT_AFTER and not EXIT_CODE and answered == EXIT_AFTER:
        asyncio.get_running_loop().call_later(0.2, os._exit, 0)
    return Response.json({"pod": os.environ["HOSTNAME"], "attempt": request.attempt})


if __name__ == "__main__":
    serve(handle)
