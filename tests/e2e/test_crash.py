"""Crash tests: ``kill -9`` must never lose a request that got a 202, nor a leased delivery."""

from __future__ import annotations

import asyncio
import collections
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually, recorded

BLACKHOLE = """
flows:
  - name: orders
    mode: async
    worker: {command: ["false"]}
"""


@dataclass
class Outcome:
    """What one client saw: a status code (None: no answer) and the request id answered."""

    request_id: str
    status: int | None = None
    answered_id: str | None = None
    retry_after: str | None = None
    error: str | None = None


async def blast(
    url: str,
    *,
    total: int,
    connections: int,
    on_answer: Callable[[int], None] = lambda _answered: None,
    pause_after_failure: float = 0.02,
) -> list[Outcome]:
    """POST ``total`` small bodies over ``connections`` keep-alive connections.

    Each request carries its own unique ``X-Request-Id``, so what the gateway stored can be
    matched to what each client saw. ``on_answer`` is called with the number of answers so far.
    """
    run = uuid.uuid4().hex[:8]
    outcomes = [Outcome(f"{run}-{i:06d}") for i in range(total)]
    pending = iter(outcomes)
    answered = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            nonlocal answered
            for outcome in pending:
                body = b'{"n": %d, "pad": "%s"}' % (answered, b"x" * 64)
                try:
                    async with session.post(
                        url,
                        data=body,
                        headers={
                            "content-type": "application/json",
                            "x-request-id": outcome.request_id,
                        },
                    ) as response:
                        payload = await response.read()
                        outcome.status = response.status
                        outcome.retry_after = response.headers.get("retry-after")
                        if response.status == 202:
                            outcome.answered_id = (await response.json())["requestId"]
                        assert payload
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome.error = repr(exc)
                    await asyncio.sleep(pause_after_failure)
                    continue
                answered += 1
                on_answer(answered)

        await asyncio.gather(*(client() for _ in range(connections)))
    return outcomes


def stored_request_ids(gateway: GatewayProcess) -> collections.Counter[str]:
    """Every stored request id with how often it is stored, paging through the admin API."""
    counts: collections.Counter[str] = collections.Counter()
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"flow": "orders", "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = gateway.admin("GET", "/api/v1/deliveries", params=params)
        assert page.status_code == 200, page.text
        data = page.json()
        counts.update(item["requestId"] for item in data["items"])
        cursor = data["cursor"]
        if not cursor:
            return counts


async def test_kill_9_under_load_loses_no_accepted_request(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(BLACKHOLE)
    url = gateway.hook("orders")
    loop = asyncio.get_running_loop()
    restarts: list[asyncio.Future[GatewayProcess]] = []

    def kill_midway(answered: int) -> None:
        if answered == 5000:
            gateway.kill()  # SIGKILL: no flush, no goodbye
            restarts.append(loop.run_in_executor(None, gateway.start))

    outcomes = await blast(url, total=20_000, connections=64, on_answer=kill_midway)
    # The clients kept sending while the gateway was down and after it came back.
    assert len(restarts) == 1
    await restarts[0]

    accepted = [o for o in outcomes if o.status == 202]
    refused = [o for o in outcomes if o.status is not None and o.status != 202]
    unanswered = [o for o in outcomes if o.status is None]
    assert len(accepted) > 5000, "the gateway was killed before 5,000 answers"
    assert unanswered, "the kill happened after every request was answered"
    assert all(o.answered_id == o.request_id for o in accepted)

    stored = await asyncio.to_thread(stored_request_ids, gateway)
    sent = {o.request_id for o in outcomes}
    assert set(stored) <= sent, "stored requests nobody sent"
    assert [rid for rid, n in stored.items() if n > 1] == [], "stored more than once"
    lost = [o.request_id for o in accepted if o.request_id not in stored]
    assert lost == [], f"{len(lost)} requests got 202 and were lost, e.g. {lost[:5]}"
    wrongly = [o for o in refused if o.request_id in stored]
    assert wrongly == [], f"requests answered {wrongly[0].status} but stored"
    assert all(o.status == 503 and o.retry_after for o in refused), refused[:3]


SLOW_WORKER = f"""
flows:
  - name: orders
    mode: async
    worker:
      command: [{sys.executable}, {ROOT / "tests" / "workers" / "flaky.py"}]
      env: {{RECORD_FILE: "{{record}}", FLAKY_SLEEP: "1.5"}}
    concurrency: 4
    max_workers: 2
    timeout: 3s
    retry: {{max_attempts: 5, backoff: 100ms, max_backoff: 500ms}}
"""


def test_kill_9_with_leased_deliveries_delivers_all_after_restart(
    gateway_factory: Any, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    gateway: GatewayProcess = gateway_factory(SLOW_WORKER.replace("{record}", str(record)))
    url = gateway.hook("orders")
    sent = [f"leased-{i:02d}" for i in range(30)]
    for request_id in sent:
        answer = httpx.post(url, content=request_id.encode(), headers={"x-request-id": request_id})
        assert answer.status_code == 202

    # Wait until the workers hold some deliveries (recorded on receipt, before answering).
    eventually(lambda: len(recorded(record)) >= 4, timeout=20)
    leased = gateway.admin("GET", "/api/v1/deliveries", params={"status": "leased"}).json()
    assert leased["items"], "nothing was leased when the gateway was killed"
    gateway.kill()
    # Leased and received by a worker: in a worker's hands. A delivery leased but still on its
    # way (a busy machine delays the worker's read) is not, and is attempted once after all.
    received_before = {r["headers"]["x-request-id"] for r in recorded(record)}
    in_hand = {d["requestId"] for d in leased["items"]} & received_before
    assert in_hand, "no leased delivery had reached a worker when the gateway was killed"

    gateway.start()

    # Leases run for timeout + 5 s; after they expire every delivery is attempted again.
    def all_done() -> bool:
        page = gateway.admin("GET", "/api/v1/deliveries", params={"limit": 100}).json()
        return len(page["items"]) == 30 and all(d["status"] == "done" for d in page["items"])

    eventually(all_done, timeout=40, interval=0.2)
    received = collections.Counter(r["headers"]["x-request-id"] for r in recorded(record))
    assert set(received) == set(sent)
    # The deliveries that were in a worker's hands at the kill were attempted again.
    assert all(received[rid] >= 2 for rid in in_hand), received
