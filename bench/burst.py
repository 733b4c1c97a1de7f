"""Issue #3's burst: 50,000 requests to a flow with ``max_workers: 4``, all delivered, none twice.

Run: ``python -m bench.burst [--requests N]``. Prints the accept time, the drain time (last
delivery after the last accept), duplicates, and how long until the workers were stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import record
from bench.gateway import Gateway, flow, recorder

CONNECTIONS = 64
IDLE = 2.0


async def send(url: str, count: int) -> int:
    """POST ``count`` 1 KB bodies over ``CONNECTIONS`` connections; the number of 202s."""
    body = b'{"k":"' + b"x" * 1000 + b'"}'
    accepted = 0
    queue: asyncio.Queue[None] = asyncio.Queue()
    for _ in range(count):
        queue.put_nowait(None)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while not queue.empty():
            queue.get_nowait()
            async with session.post(url, data=body) as response:
                accepted += response.status == 202

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(CONNECTIONS)))
    return accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        record_file = work / "record.txt"
        spec = flow(
            "burst",
            worker=recorder(record_file),
            max_workers=4,
            concurrency=16,
            idle_timeout=f"{IDLE}s",
        )
        with Gateway(workdir=work, flows=[spec]) as gateway:
            url = gateway.hook_url("burst")
            started = time.time()
            accepted = asyncio.run(send(url, args.requests))
            accepted_at = time.time()
            while len(record.read(record_file)) < accepted:
                time.sleep(0.2)
                if time.time() - accepted_at > 300:
                    raise SystemExit("not all accepted requests were delivered within 300 s")
            deliveries = record.read(record_file)
            last = max(d.at for d in deliveries)
            workers = {}
            while (workers := gateway.call("GET", "/api/v1/flows/burst")["workers"])["ready"]:
                time.sleep(0.2)
            stopped = time.time()
        print(f"requests sent            {args.requests:>10,}")
        print(f"accepted (202)           {accepted:>10,} in {accepted_at - started:.1f} s")
        print(
            f"delivered                {len(deliveries):>10,}, duplicates "
            f"{record.duplicates(deliveries)}"
        )
        print(
            f"last delivery            {last - started:>10.1f} s after the first request "
            f"({last - accepted_at:.1f} s after the last accept)"
        )
        print(
            f"workers stopped          {stopped - last:>10.1f} s after the last delivery "
            f"(idle_timeout {IDLE:g} s); restarts {workers['restarts']}"
        )


if __name__ == "__main__":
    main()
