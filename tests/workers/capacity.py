"""A worker with a known capacity: ``CAPACITY`` requests are served at once, in ``SERVICE``
seconds each; more wait inside the worker (their latency grows, its throughput does not).

``OVERLOAD=429`` (or 503) instead answers that status, with ``Retry-After: 1``, to every
request beyond ``CAPACITY`` in flight. Each answer reports the most requests it ever had in
flight at once, so a test can see what the gateway sent it.
"""

from __future__ import annotations

import asyncio
import os

from hookgate.worker import serve

CAPACITY = int(os.environ.get("CAPACITY", "4"))
SERVICE = float(os.environ.get("SERVICE", "0.02"))
OVERLOAD = int(os.environ.get("OVERLOAD", "0"))
gate = asyncio.Semaphore(CAPACITY)
inflight = 0
most = 0


async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    global inflight, most
    inflight += 1
    most = max(most, inflight)
    try:
        if OVERLOAD and inflight > CAPACITY:
            await _answer(send, OVERLOAD, [(b"retry-after", b"1")])
            return
        async with gate:
            await asyncio.sleep(SERVICE)
        await _answer(send, 200, [])
    finally:
        inflight -= 1


async def _answer(send: object, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    body = f'{{"most": {most}}}'.encode()
    await send({"type": "http.response.start", "status": status, "headers": headers})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


if __name__ == "__main__":
    serve(app)
