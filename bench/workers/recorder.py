"""A Python SDK worker that answers 200 at once and records every delivery it receives.

Each request appends ``<unix time> <delivery id> <attempt>`` to the file named by
``$BENCH_RECORD``. One short ``O_APPEND`` write is atomic, so every worker process of a flow can
share the file; the harness reads it to time drains and cold starts and to find duplicates.
"""

from __future__ import annotations

import os
import time

from hookgate.worker import Request, serve

_RECORD = os.open(os.environ["BENCH_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


async def handle(request: Request) -> bytes:
    line = f"{time.time():.6f} {request.delivery_id} {request.attempt}\n"
    os.write(_RECORD, line.encode())
    return b"ok"


if __name__ == "__main__":
    serve(handle)
