"""Several gateway processes on one real PostgreSQL database, and the moves around it.

Each test gets a fresh database (dropped afterwards) on the PostgreSQL of this machine; with
``CI=true`` an unreachable server is a failure, otherwise these tests are skipped.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from tests.conftest import ROOT, GatewayProcess, free_port
from tests.e2e.helpers import eventually, on_postgres, recorded

FLAKY = ROOT / "tests" / "workers" / "flaky.py"


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "record.jsonl"


def flow_file(record: Path, *, name: str = "orders") -> str:
    # timeout 2s: a dead gateway's leases expire after 2 + 5 s.
    return f"""
flows:
  - name: {name}
    mode: async
    worker:
      command: [{sys.executable}, {FLAKY}]
      env: {{RECORD_FILE: "{record}"}}
    concurrency: 8
    max_workers: 2
    idle_timeout: 2s
    timeout: 2s
    retry: {{max_attempts: 20, backoff: 100ms, max_backoff: 500ms}}
"""


@dataclass
class Outcome:
    request_id: str
    status: int | None = None
    retry_after: str | None = None
    error: str | None = None


async def send(
    urls: list[str],
    *,
    total: int | None = None,
    until: Callable[[], bool] = lambda: False,
    connections: int = 8,
    on_answer: Callable[[int], None] = lambda _n: None,
) -> list[Outcome]:
    """POST small bodies round-robin to ``urls``, each with its own ``X-Request-Id``.

    Stops after ``total`` requests, or when ``until()`` turns true.
    """
    run = uuid.uuid4().hex[:8]
    outcomes: list[Outcome] = []
    answered = 0
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def client() -> None:
            nonlocal answered
            while not until() and (total is None or len(outcomes) < total):
                outcome = Outcome(f"{run}-{len(outcomes):06d}")
                url = urls[len(outcomes) % len(urls)]
                outcomes.append(outcome)
                try:
                    async with session.post(
                        url, data=outcome.request_id, headers={"x-request-id": outcome.request_id}
                    ) as response:
                        await response.read()
                        outcome.status = response.status
                        outcome.retry_after = response.headers.get("retry-after")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome.error = repr(exc)
                    await asyncio.sleep(0.02)
                    continue
                answered += 1
                on_answer(answered)

        await asyncio.gather(*(client() for _ in range(connections)))
    return outcomes


def accepted(outcomes: list[Outcome]) -> set[str]:
    return {o.request_id for o in outcomes if o.status == 202}


def delivered(record: Path) -> dict[str, collections.Counter[str]]:
    """Per request id: how often each attempt of its delivery reached a worker."""
    seen: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for item in recorded(record):
        headers = item["headers"]
        seen[headers["x-request-id"]][headers["x-hookgate-attempt"]] += 1
    return seen


def stored(gateway: GatewayProcess) -> dict[str, str]:
    """Every stored request id with its delivery's status, paging through the admin API."""
    found: dict[str, str] = {}
    params: dict[str, Any] = {"limit": 1000}
    while True:
        answer = gateway.admin("GET", "/api/v1/deliveries", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        found.update((d["requestId"], d["status"]) for d in page["items"])
        if not page["cursor"]:
            return found
        params["cursor"] = page["cursor"]


def states(gateway: GatewayProcess) -> collections.Counter[str]:
    return collections.Counter(stored(gateway).values())


def wait_done(gateway: GatewayProcess, request_ids: set[str], *, timeout: float) -> None:
    """Until every one of ``request_ids`` is stored and done; else fail showing where they are."""
    deadline = time.monotonic() + timeout
    while True:
        held = stored(gateway)
        undone = collections.Counter(held.get(rid, "missing") for rid in request_ids)
        del undone["done"]
        if not undone:
            return
        assert time.monotonic() < deadline, f"not done: {undone}\n{gateway.logs()[-3000:]}"
        time.sleep(0.1)


def wait_all_done(gateway: GatewayProcess, count: int, *, timeout: float) -> None:
    """Until the store holds ``count`` deliveries, all done; else fail showing what it holds."""
    deadline = time.monotonic() + timeout
    while (now := states(gateway)) != {"done": count}:
        assert time.monotonic() < deadline, f"expected {count} done deliveries, found {now}"
        time.sleep(0.1)


def delivery_ids(record: Path) -> collections.Counter[str]:
    return collections.Counter(r["headers"]["x-hookgate-delivery"] for r in recorded(record))


# two gateways, one queue -------------------------------------------------------------------
async def test_two_gateways_deliver_every_accepted_request_once_and_survive_kill_9(
    pg_url: str, gateway_factory: Any, record: Path
) -> None:
    one = on_postgres(gateway_factory, pg_url, "one", flow_file(record))
    two = on_postgres(gateway_factory, pg_url, "two", flow_file(record))
    assert one.flow("orders")["id"] == two.flow("orders")["id"]
    hooks = [one.hook("orders"), two.hook("orders")]

    first = await send(hooks, total=200)
    assert len(accepted(first)) == 200, collections.Counter(o.status for o in first)
    await asyncio.to_thread(wait_all_done, two, 200, timeout=30)
    assert set(delivered(record)) == accepted(first)
    assert set(delivery_ids(record).values()) == {1}, "a delivery was made twice"

    # Slow deliveries, so the killed gateway holds some when it dies; clients keep sending.
    loop = asyncio.get_running_loop()
    killed: list[asyncio.Future[None]] = []

    def kill_midway(answered: int) -> None:
        if answered == 100:
            killed.append(loop.run_in_executor(None, one.kill))

    slow = [hook + "?sleep=0.5" for hook in hooks]
    second = await send(slow, total=300, on_answer=kill_midway)
    await killed[0]
    assert any(o.error for o in second), "the kill happened after every request was answered"
    everything = accepted(first) | accepted(second)
    # The survivor takes the dead gateway's leases over once they expire (timeout + 5 s);
    # the restarted gateway stops the workers the dead one left behind and helps.
    await asyncio.to_thread(one.start)
    await asyncio.to_thread(wait_done, two, everything, timeout=40)
    # A request stored just before the kill may have lost its answer: stored, not 202.
    held = stored(two)
    assert set(held) <= {o.request_id for o in first + second}
    await asyncio.to_thread(wait_done, two, set(held), timeout=10)
    seen = delivered(record)
    assert set(seen) == set(held)
    twice = {rid: c for rid, c in seen.items() if max(c.values()) > 1}
    assert twice == {}, "the same attempt of a delivery was handed out twice"
    in_hand = {rid for rid, c in seen.items() if len(c) > 1}
    assert in_hand, "no delivery was in the killed gateway's hands"
    assert in_hand <= {o.request_id for o in second}


# Flow changes reach another gateway by LISTEN/NOTIFY alone (no periodic reload), so any
# deadline tells that apart; a generous one keeps a loaded machine from failing the test.
REACH = 10.0


async def test_flow_changes_on_one_gateway_reach_the_other(
    pg_url: str, gateway_factory: Any, record: Path
) -> None:
    one = on_postgres(gateway_factory, pg_url, "one")
    two = on_postgres(gateway_factory, pg_url, "two")
    spec = {
        "name": "billing",
        "mode": "async",
        "worker": {"command": [sys.executable, str(FLAKY)], "env": {"RECORD_FILE": str(record)}},
    }
    created = one.admin("POST", "/api/v1/flows", json=spec)
    assert created.status_code == 201, created.text
    on_two = f"{two.base}/hook/{created.json()['id']}"
    on_one = f"{one.base}/hook/{created.json()['id']}"

    def status(url: str) -> int:
        return httpx.post(url, content=b"x").status_code

    eventually(lambda: status(on_two) == 202, timeout=5)
    assert two.flow("billing")["id"] == created.json()["id"]

    assert status(on_one) == 202
    assert two.admin("POST", "/api/v1/flows/billing/stop").status_code == 200
    eventually(lambda: status(on_one) == 404, timeout=REACH)

    assert one.admin("POST", "/api/v1/flows/billing/start").status_code == 200
    eventually(lambda: status(on_two) == 202, timeout=REACH)

    renamed = one.admin("PUT", "/api/v1/flows/billing", json={**spec, "name": "invoices"})
    assert renamed.status_code == 200, renamed.text
    eventually(lambda: two.admin("GET", "/api/v1/flows/invoices").status_code == 200, timeout=REACH)
    assert two.admin("GET", "/api/v1/flows/billing").status_code == 404
    assert status(on_two) == 202  # the same URL: the id did not change

    assert two.admin("DELETE", "/api/v1/flows/invoices").status_code == 200
    eventually(lambda: status(on_one) == 404, timeout=REACH)
    assert one.admin("GET", "/api/v1/flows/invoices").status_code == 404


# the database goes away --------------------------------------------------------------------
def restart_postgres() -> None:
    """Restart the machine's cluster like a crash (``-m immediate``): no waiting for clients.

    A fast shutdown waits for every client to go, which on a shared machine can take a minute;
    whatever happens, the cluster is left running.
    """
    (version,) = os.listdir("/etc/postgresql")
    tool = ["pg_ctlcluster", "--skip-systemctl-redirect"]
    try:
        subprocess.run(
            [*tool, "-m", "immediate", version, "main", "restart"], check=True, capture_output=True
        )
    finally:
        if subprocess.run([*tool, version, "main", "status"], capture_output=True).returncode:
            subprocess.run([*tool, version, "main", "start"], check=True, capture_output=True)


@pytest.mark.skipif(
    shutil.which("pg_ctlcluster") is None or os.geteuid() != 0,
    reason="restarting PostgreSQL needs pg_ctlcluster and root",
)
@pytest.mark.postgres_alone
async def test_postgres_restart_under_load_keeps_every_2xx_and_recovers(
    pg_url: str, gateway_factory: Any, record: Path
) -> None:
    gateway = on_postgres(gateway_factory, pg_url, "gw", flow_file(record))
    loop = asyncio.get_running_loop()
    restarted: list[asyncio.Future[None]] = []
    after_restart = 0

    def restart_midway(answered: int) -> None:
        nonlocal after_restart
        if answered == 200:
            restarted.append(loop.run_in_executor(None, restart_postgres))
        elif restarted and restarted[0].done():
            after_restart += 1

    outcomes = await send(
        [gateway.hook("orders")], until=lambda: after_restart >= 200, on_answer=restart_midway
    )
    await restarted[0]
    assert gateway.process is not None and gateway.process.poll() is None

    statuses = collections.Counter(o.status for o in outcomes)
    assert set(statuses) <= {202, 503}, statuses
    assert [o for o in outcomes if o.error] == [], "the gateway stopped answering"
    assert all(o.retry_after for o in outcomes if o.status == 503)
    # Recovered without a restart: the last answers are accepted again.
    assert all(o.status == 202 for o in outcomes[-50:])

    everything = accepted(outcomes)
    await asyncio.to_thread(wait_done, gateway, everything, timeout=30)
    assert set(delivered(record)) >= everything


class Forwarder:
    """A TCP port forwarded to PostgreSQL: the database 'comes back' at an address."""

    def __init__(self, port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", port))
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", 5432))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        return


def test_a_gateway_started_before_its_database_waits_unready_then_serves(
    pg_url: str, gateway_factory: Any, record: Path
) -> None:
    port = free_port()
    unreachable = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    gateway = on_postgres(gateway_factory, unreachable, "early", flow_file(record), start=False)
    with gateway.log.open("ab") as out:
        gateway.process = subprocess.Popen(
            gateway.command(), env=gateway.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def alive() -> bool:
        try:
            return httpx.get(gateway.base + "/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    eventually(alive, timeout=15)
    assert httpx.get(gateway.base + "/readyz").status_code == 503
    hook = httpx.post(f"{gateway.base}/hook/{'0' * 22}", content=b"x")
    assert hook.status_code == 503
    assert hook.headers["retry-after"]
    eventually(lambda: "database unavailable; retrying" in gateway.logs(), timeout=5)
    assert gateway.process.poll() is None, gateway.logs()

    forwarder = Forwarder(port)
    try:
        eventually(lambda: httpx.get(gateway.base + "/readyz").status_code == 200, timeout=20)
        answer = httpx.post(gateway.hook("orders"), content=b"now stored")
        assert answer.status_code == 202
        request_id = answer.json()["requestId"]
        eventually(lambda: request_id in delivered(record), timeout=15)
        gateway.stop()
    finally:
        forwarder.close()


# moving from SQLite ------------------------------------------------------------------------
def hookgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookgate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_db_copy_moves_to_postgres_and_the_urls_stay(
    pg_url: str, gateway_factory: Any, record: Path
) -> None:
    # The workers of the SQLite gateway cannot start, so what it accepts stays queued.
    old = gateway_factory(flow_file(record), name="old", env={"FLAKY_EXIT_CODE": "3"})
    flow_id = old.flow("orders")["id"]
    hook_path = f"/hook/{flow_id}/sub?x=1"
    sent = []
    for i in range(20):
        answer = httpx.post(old.base + hook_path, content=b"body %d" % i)
        assert answer.status_code == 202
        sent.append(answer.json()["requestId"])
    source = f"sqlite://{old.data_dir / 'hookgate.db'}"

    busy = hookgate("db", "copy", "--from", source, "--to", pg_url)
    assert busy.returncode == 1
    assert "a gateway is running on data directory" in " ".join(busy.stderr.split())
    old.stop()

    moved = hookgate("db", "copy", "--from", source, "--to", pg_url)
    assert moved.returncode == 0, moved.stderr
    assert "copied 1 flows (0 overwritten) and 20 deliveries" in moved.stdout

    new = on_postgres(gateway_factory, pg_url, "new")
    assert new.flow("orders")["id"] == flow_id
    eventually(lambda: set(delivered(record)) == set(sent), timeout=20)
    later = httpx.post(new.base + hook_path, content=b"after the move")
    assert later.status_code == 202
    eventually(lambda: len(delivered(record)) == 21, timeout=10)
    bodies = {r["body"] for r in recorded(record)}
    assert bodies == {b"body %d" % i for i in range(20)} | {b"after the move"}
    assert {r["path"] for r in recorded(record)} == {"/sub"}
    wait_all_done(new, 21, timeout=10)
