"""``edge``: the public listener under hostile clients, with the default limits.

Two cases, both on the defaults a user gets (issue #15's numbers):

* **slow drips at the cap.** The gateway runs under ``prlimit --nofile=1024:1024`` (the usual
  default limit), so its public connection cap is derived from it (576). ``DRIPS`` connections
  from 40 loopback addresses each send part of a request head and then one byte every 5 s;
  one that is closed is opened again at once, so the listener stays full. Meanwhile a normal
  client POSTs 1 KB to an async flow, each request on a new connection, one after another.
  Reported: the normal client's success share and latency (connect to answer).
* **stalled bodies.** ``STALLED`` connections each send 9 MB of a 10 MB body to an async flow
  and stop. Reported: the RSS growth of the gateway and its store process while they hang,
  and the seconds until the last of them was closed (default: 10 s without progress → 408).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import threading
import time

from bench.context import Context
from bench.errors import BenchFailure
from bench.gateway import Gateway, flow
from bench.procs import Meter, rss_bytes, store_processes
from bench.results import Errors, Row, percentiles
from bench.scenarios import Outcome

DRIPS = 800
ADDRESSES = 40
DRIP_EVERY = 5.0
STALLED = 40
STALL_BYTES = 9 * 1000**2
DECLARED = 10 * 1000**2
FILE_LIMIT = 1024
SPEC = flow("edge", max_body="10MB")
MB = 1024**2


def run(ctx: Context) -> Outcome:
    work = ctx.workdir("edge")
    prefix = ["prlimit", f"--nofile={FILE_LIMIT}:{FILE_LIMIT}"]
    with Gateway(workdir=work, flows=[SPEC], prefix=prefix) as gateway:
        path = "/hook/" + gateway.flow_id("edge")
        drips = slow_drips(ctx, gateway, path)
        stalled = stalled_bodies(gateway, path)
        gateway.service.check_alive()
    return Outcome(
        rows=[drips, stalled],
        settings={
            "flow": SPEC,
            "limits": "defaults (HOOKGATE_* limits unset)",
            "file_limit": FILE_LIMIT,
            "drips": DRIPS,
            "drip_addresses": ADDRESSES,
            "drip_every_s": DRIP_EVERY,
            "stalled_bodies": STALLED,
            "stalled_bytes": STALL_BYTES,
        },
    )


def slow_drips(ctx: Context, gateway: Gateway, path: str) -> Row:
    stop = threading.Event()
    opened = [0]
    dripper = threading.Thread(
        target=lambda: asyncio.run(_drip_all(gateway.port, stop, opened)), daemon=True
    )
    dripper.start()
    time.sleep(ctx.timing.warmup_s + 2)  # the listener fills up
    latencies: list[float] = []
    failures = 0
    meter = Meter(gateway.pid).start()
    deadline = time.monotonic() + ctx.timing.measure_s
    body = b"x" * 1024
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
            conn.request("POST", path, body=body)
            status = conn.getresponse().status
            conn.close()
        except OSError:
            status = 0
        if status == 202:
            latencies.append((time.perf_counter() - started) * 1000)
        else:
            failures += 1
    usage = meter.stop()
    stop.set()
    dripper.join()
    total = len(latencies) + failures
    if not latencies:
        raise BenchFailure("the normal client got no answer at all while the drips ran")
    latency = percentiles(latencies)
    share = 100 * len(latencies) / total
    row = Row(
        case=f"normal client, new connection per request, listener full of {DRIPS} slow drips",
        rate=round(len(latencies) / ctx.timing.measure_s, 1),
        latency=latency,
        errors=Errors(http=failures),
        usage=usage,
        note=(
            f"{share:.1f} % answered 202, p50 {latency.p50_ms:.2f} ms, "
            f"p99 {latency.p99_ms:.2f} ms; {opened[0]} drip connections opened in all"
        ),
        extra={"success_pct": round(share, 2), "drip_connections_opened": opened[0]},
    )
    ctx.console.print(row.note)
    return row


async def _drip_all(port: int, stop: threading.Event, opened: list[int]) -> None:
    async def drip(index: int) -> None:
        source = f"127.0.2.{index % ADDRESSES + 1}"
        while not stop.is_set():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            except OSError:
                await asyncio.sleep(0.5)
                continue
            opened[0] += 1
            try:
                writer.write(b"POST /hook/x HTTP/1.1\r\nhost: x\r\nx-drip: ")
                while not stop.is_set() and not writer.is_closing():
                    await asyncio.sleep(DRIP_EVERY)
                    writer.write(b"a")
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

    await asyncio.gather(*(drip(i) for i in range(DRIPS)))


def stalled_bodies(gateway: Gateway, path: str) -> Row:
    pids = [gateway.pid, *store_processes(gateway.pid)]
    before = sum(rss_bytes(p) for p in pids)
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {DECLARED}\r\n\r\n".encode()
    chunk = b"x" * 65536
    socks = []
    for _ in range(STALLED):
        conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=60)
        conn.connect()
        assert conn.sock is not None
        conn.sock.sendall(head)
        socks.append(conn.sock)
    sent = 0
    while sent < STALL_BYTES:
        for sock in socks:
            sock.sendall(chunk)
        sent += len(chunk)
    stalled_at = time.monotonic()
    peak = before
    closed_after: list[float] = []
    open_socks = list(socks)
    while open_socks and time.monotonic() - stalled_at < 60:
        peak = max(peak, sum(rss_bytes(p) for p in pids))
        for sock in list(open_socks):
            sock.settimeout(0.01)
            with contextlib.suppress(TimeoutError):
                data = sock.recv(65536)
                if not data or b"\r\n\r\n" in data:
                    closed_after.append(time.monotonic() - stalled_at)
                    open_socks.remove(sock)
        time.sleep(0.05)
    for sock in socks:
        sock.close()
    if open_socks:
        raise BenchFailure(f"{len(open_socks)} stalled bodies still open after 60 s")
    growth = (peak - before) / MB
    row = Row(
        case=f"{STALLED} bodies stalled at 9 of 10 MB: gateway RSS growth",
        unit="MB",
        rate=round(growth, 1),
        note=(
            f"RSS +{growth:.1f} MB while {STALLED} x 9 MB hung; all closed (408) within "
            f"{max(closed_after):.1f} s of stalling"
        ),
        extra={
            "rss_growth_mb": round(growth, 1),
            "closed_within_s": round(max(closed_after), 2),
        },
    )
    return row
