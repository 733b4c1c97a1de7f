"""The accept path's CPU per request, in one process: the ingress's ASGI app and a SQLite
store (with its real writer process), no sockets, no HTTP parsing.

The wrk scenarios measure the whole listener on a machine whose speed moves from run to run
(this VM's nginx ceiling moved from 82k to 118k req/s in one hour); this one counts only the gateway
process's CPU per accepted request, which moves far less, so two trees can be compared by
running it in each, alternately:

    PYTHONPATH=src python -m bench.accept_cpu [REQUESTS]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from typing import Any

import msgspec

from hookgate.domain.flowfile import spec_from_object
from hookgate.ingress import Ingress
from hookgate.ingress.guards import Guards
from hookgate.metrics import Metrics
from hookgate.registry import FlowRegistry
from hookgate.store.open import open_store

BODY = msgspec.json.encode({"d": "x" * 990})
CALLERS = 64


async def measure(requests: int) -> tuple[int, float, float]:
    """Accepted requests, CPU µs per request in this process, and requests per second."""
    store = open_store(
        f"sqlite://{tempfile.mkdtemp()}/hookgate.db", max_queued_bytes=1 << 40, synchronous="NORMAL"
    )
    await store.open()
    registry = FlowRegistry(store)
    await registry.load()
    flow = await registry.create(
        spec_from_object({"name": "bench", "mode": "async", "worker": {"command": ["none"]}})
    )
    ingress = Ingress(registry=registry, store=store, metrics=Metrics(), guards=Guards())
    path = f"/hook/{flow.id}"
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def caller(count: int) -> None:
        for _ in range(count):
            await ingress(scope, receive, send)

    await asyncio.gather(*(caller(20) for _ in range(CALLERS)))  # warm up
    statuses.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(requests // CALLERS) for _ in range(CALLERS)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await store.close()
    if set(statuses) != {202}:
        raise SystemExit(f"not every request was accepted: {sorted(set(statuses))}")
    return len(statuses), 1e6 * cpu / len(statuses), len(statuses) / wall


def main() -> None:
    accepted, cpu_us, rate = asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
    print(f"{accepted:,} accepted: {cpu_us:.1f} µs of CPU per request (gateway), {rate:,.0f}/s")


if __name__ == "__main__":
    main()
