"""``cold-start``: no worker running → time until the Python example worker has the delivery.

The worker (:mod:`bench.workers.recorder`) stamps each delivery on arrival; the time is taken
from just before the POST. Between tries the flow's ``idle_timeout`` stops the worker, and the
next try waits until no worker process of the gateway is left.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from bench import record
from bench.context import Context
from bench.errors import BenchFailure
from bench.gateway import Gateway, flow, recorder
from bench.results import Errors, Row, percentiles
from bench.scenarios import Outcome

try:
    import psutil
except ImportError:
    psutil = None  # type: ignore[assignment]

WORKER_MODULE = "bench.workers.recorder"
SETTLE_S = 0.3


def run(ctx: Context) -> Outcome:
    if psutil is None:
        raise BenchFailure("cold-start needs psutil to see worker processes: pip install psutil")
    work = ctx.workdir("cold-start")
    record_file = work / "deliveries.log"
    spec = flow("bench", worker=recorder(record_file), max_workers=1, idle_timeout="1s")
    cold: list[float] = []
    accepted: list[float] = []
    with Gateway(workdir=work, flows=[spec]) as gateway, httpx.Client(timeout=10) as client:
        url = gateway.hook_url("bench")
        for attempt in range(ctx.timing.cold_starts):
            wait_no_worker(gateway.pid, timeout=30)
            seen = len(record.read(record_file))
            sent = time.time()
            answer = client.post(
                url, content=f'{{"try":{attempt}}}', headers={"Content-Type": "application/json"}
            )
            accepted.append((time.time() - sent) * 1000)
            if answer.status_code != 202:
                raise BenchFailure(f"POST answered {answer.status_code}: {answer.text[:200]}")
            cold.append((first_delivery(record_file, after=seen, timeout=30) - sent) * 1000)
    row = Row(
        case="no worker → first delivery received",
        unit="",
        latency=percentiles(cold),
        errors=Errors(),
        note=f"{len(cold)} tries; the 202 came after {percentiles(accepted).p50_ms:.1f} ms (p50)",
        extra={"tries": len(cold), "accept_p50_ms": percentiles(accepted).p50_ms},
    )
    return Outcome(rows=[row], settings={"flow": spec})


def wait_no_worker(gateway_pid: int, *, timeout: float) -> None:
    """Until the gateway has no worker process left, not even an unreaped one, and has had
    :data:`SETTLE_S` to notice: a try measures a cold start, not a stop still under way."""
    deadline = time.monotonic() + timeout
    while worker_running(gateway_pid):
        if time.monotonic() > deadline:
            raise BenchFailure(f"the idle worker was not stopped within {timeout:.0f} s")
        time.sleep(0.05)
    time.sleep(SETTLE_S)


def worker_running(gateway_pid: int) -> bool:
    assert psutil is not None
    for child in psutil.Process(gateway_pid).children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or WORKER_MODULE in " ".join(child.cmdline()):
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def first_delivery(record_file: Path, *, after: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = record.read(record_file)
        if len(received) > after:
            return received[after].at
        time.sleep(0.002)
    raise BenchFailure(f"no delivery reached the worker within {timeout:.0f} s")
