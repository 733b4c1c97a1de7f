"""A polling worker for tests: counts runs through the snapshot Hookgate carries for it.

Each run appends ``{"scheduledAt", "snapshot", "at", "trigger"}`` as a JSON line to
``RECORD_FILE`` and answers ``{"snapshot": {"n": previous n + 1}}``, so run N+1 must receive
``{"n": N}``. ``POLL_SLEEP`` makes each run take that many seconds (to test overlap);
``POLL_ANSWER`` replaces the answer body with its text (to test garbage answers).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from hookgate.worker import Request, Response, serve

RECORD = os.environ["RECORD_FILE"]
SLEEP = float(os.environ.get("POLL_SLEEP", "0"))
ANSWER = os.environ.get("POLL_ANSWER")


async def handle(request: Request) -> Response:
    body = request.json()
    line = {
        "scheduledAt": body["scheduledAt"],
        "snapshot": body["snapshot"],
        "at": time.time(),
        "trigger": request.headers.get("x-hookgate-trigger"),
    }
    with open(RECORD, "a") as record:
        record.write(json.dumps(line) + "\n")
    if SLEEP:
        await asyncio.sleep(SLEEP)
    if ANSWER is not None:
        return Response(status=200, body=ANSWER.encode())
    previous = body["snapshot"]["n"] if isinstance(body["snapshot"], dict) else 0
    return Response.json({"snapshot": {"n": previous + 1}})


if __name__ == "__main__":
    serve(handle)
