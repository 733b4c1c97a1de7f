"""Store health through a real gateway: a full disk, the queue bounds, a database gone away.

What a caller and an operator see: 503 and never a 202 for a request that was not stored,
``/readyz`` false while nothing can be stored, one log line when accepting stops and one when it
resumes, and recovery without a restart.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import PG_SERVER, GatewayProcess, free_port
from tests.e2e.helpers import eventually, on_postgres

from hookgate.domain.deliveries import Request
from hookgate.store.rows import queued_size

STOPPED = "store stopped accepting requests"
RESUMED = "store accepting requests again"

PARKED = """
flows:
  - name: orders
    mode: async
    worker: {command: ["false"]}
    max_body: 100KB
  - name: small
    mode: async
    worker: {command: ["false"]}
    max_body: 10KB
    max_queued: 20KB
"""


def readyz(gateway: GatewayProcess) -> int:
    return httpx.get(gateway.base + "/readyz").status_code


def accepting_gauge(gateway: GatewayProcess) -> str:
    lines = gateway.admin("GET", "/metrics").text.splitlines()
    [line] = [line for line in lines if line.startswith("hookgate_store_accepting ")]
    return line.split()[1]


def stored_ids(gateway: GatewayProcess) -> set[str]:
    page = gateway.admin("GET", "/api/v1/deliveries", params={"limit": 1000}).json()
    assert page["cursor"] is None
    return {item["requestId"] for item in page["items"]}


def post_until_refused(url: str, body: bytes, **kwargs: Any) -> tuple[list[str], httpx.Response]:
    """Post until the first non-202; the request ids accepted, and the refusal."""
    accepted: list[str] = []
    with httpx.Client(timeout=30) as client:
        for _ in range(2000):
            answer = client.post(url, content=body, **kwargs)
            if answer.status_code != 202:
                return accepted, answer
            accepted.append(answer.json()["requestId"])
    raise AssertionError("2000 requests were all accepted")


def assert_queue_full(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "queue full, retry later"
    assert answer.headers["retry-after"] == "5"


# a full disk ---------------------------------------------------------------------------------
def test_a_full_volume_answers_503_until_space_is_freed_then_accepts_again(
    small_volume: Path, tmp_path: Path
) -> None:
    """20 MB volume, 4 MB of it a file to delete later, an 8 MiB reserve: the gateway stops
    accepting before the disk is full, and starts again by itself once the file is gone."""
    ballast = small_volume / "ballast"
    ballast.write_bytes(b"\0" * (4 << 20))
    gateway = GatewayProcess(
        small_volume / "data", flows=PARKED, env={"HOOKGATE_DISK_RESERVE": "8MiB"}
    )
    gateway.log = tmp_path / "gateway.log"  # not on the volume that is filled
    gateway.start()
    client = httpx.Client(timeout=30)
    try:
        url = gateway.hook("orders")
        assert accepting_gauge(gateway) == "1.0"
        accepted: list[str] = []

        def full() -> bool:
            answer = client.post(url, content=b"x" * 64_000)
            if answer.status_code == 202:
                accepted.append(answer.json()["requestId"])
            else:
                assert_queue_full(answer)
            return client.get(gateway.base + "/readyz").status_code == 503

        eventually(full, interval=0)
        assert len(accepted) > 10
        assert accepting_gauge(gateway) == "0.0"
        for _ in range(20):
            assert_queue_full(client.post(url, content=b"y" * 64_000))
        assert set(accepted) <= stored_ids(gateway)  # every 202 is stored
        assert gateway.logs().count(STOPPED) == 1
        assert "HOOKGATE_DISK_RESERVE" in next(
            line for line in gateway.logs().splitlines() if STOPPED in line
        )

        ballast.unlink()
        eventually(lambda: readyz(gateway) == 200)
        again = client.post(url, content=b"z" * 64_000)
        assert again.status_code == 202, again.text
        assert again.json()["requestId"] in stored_ids(gateway)
        assert accepting_gauge(gateway) == "1.0"
        logs = gateway.logs()
        assert (logs.count(STOPPED), logs.count(RESUMED)) == (1, 1)
    finally:
        client.close()
        gateway.stop()


# the queue bounds ----------------------------------------------------------------------------
def size_of(gateway: GatewayProcess, request_id: str) -> int:
    """What one stored request counts against the bounds, from what the gateway stored."""
    [item] = [
        d
        for d in gateway.admin("GET", "/api/v1/deliveries").json()["items"]
        if d["requestId"] == request_id
    ]
    d = gateway.admin("GET", f"/api/v1/deliveries/{item['id']}").json()
    request = Request(
        id=d["id"],
        request_id=request_id,
        flow_id="",
        method=d["method"],
        path=d["path"],
        query=d["query"],
        headers=[(k, v) for k, v in d["headers"]],
        body=d["body"].encode(),
        source="",
        received_at=0.0,
    )
    return queued_size(request)


def test_headers_count_against_the_queue_bound(gateway_factory: Any) -> None:
    """Empty bodies under a 50 KB header fill a 1 MB bound after 1 MB / (their size)."""
    flows = PARKED.replace("max_body: 100KB", "max_body: 100KB\n    max_queued: 1MB")
    gateway: GatewayProcess = gateway_factory(flows, env={"HOOKGATE_MAX_QUEUED_BYTES": "1MB"})
    padded = {"x-pad": "p" * 50_000}
    accepted, refused = post_until_refused(gateway.hook("orders"), b"", headers=padded)
    assert_queue_full(refused)
    size = size_of(gateway, accepted[0])
    assert size > 50_000
    assert len(accepted) == 1_000_000 // size
    assert set(accepted) == stored_ids(gateway)
    assert readyz(gateway) == 200  # a full queue is not an unhealthy store


def test_a_flow_over_its_own_bound_gets_503_while_another_is_accepted(
    gateway_factory: Any,
) -> None:
    gateway: GatewayProcess = gateway_factory(PARKED)
    accepted, refused = post_until_refused(gateway.hook("small"), b"s" * 5000)
    assert_queue_full(refused)
    assert len(accepted) == 20_000 // size_of(gateway, accepted[0])
    assert httpx.post(gateway.hook("orders"), content=b"o" * 5000).status_code == 202
    assert_queue_full(httpx.post(gateway.hook("small"), content=b"s" * 5000))
    assert readyz(gateway) == 200


# PostgreSQL gone away ------------------------------------------------------------------------
class Relay:
    """A TCP relay to the shared PostgreSQL that a test can cut and restore: the database goes
    away for one gateway only, and the server itself is never touched."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and break every open one."""
        with self._lock:
            if self._listener is not None:
                # shutdown() wakes the thread blocked in accept(); close() alone would not.
                self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def relay() -> Iterator[Relay]:
    host, _, port = PG_SERVER.rpartition("@")[2].partition(":")
    opened = Relay((host, int(port)))
    opened.open()
    yield opened
    opened.cut()


def test_readyz_is_false_while_postgresql_is_unreachable_and_true_again_after(
    gateway_factory: Any, pg_url: str, relay: Relay
) -> None:
    database = pg_url.rpartition("/")[2]
    via_relay = f"postgresql://postgres@127.0.0.1:{relay.port}/{database}"
    gateway = on_postgres(gateway_factory, via_relay, "pg", PARKED)
    url = gateway.hook("orders")
    assert httpx.post(url, content=b"before").status_code == 202

    relay.cut()
    eventually(lambda: readyz(gateway) == 503)
    refused = httpx.post(url, content=b"during", timeout=30)
    assert refused.status_code == 503
    assert refused.json()["error"] == "cannot store the request now, retry later"
    assert accepting_gauge(gateway) == "0.0"

    relay.open()
    eventually(lambda: readyz(gateway) == 200)
    after = httpx.post(url, content=b"after", timeout=30)
    assert after.status_code == 202, after.text  # the outage's broken connections are gone
    logs = gateway.logs()
    assert (logs.count(STOPPED), logs.count(RESUMED)) == (1, 1)
    assert "cannot reach PostgreSQL" in next(line for line in logs.splitlines() if STOPPED in line)
