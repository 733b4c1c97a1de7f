"""Finding a request by any of its ids (API and CLI), and pausing a flow: its URL keeps
accepting while deliveries wait, and resuming delivers each held request exactly once."""

from __future__ import annotations

import hashlib
import hmac
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from tests.cli.conftest import Cli
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually, on_postgres, recorded

SECRET = "find-me-secret"
FLAKY = f"[{sys.executable}, {ROOT / 'tests' / 'workers' / 'flaky.py'}]"


def flows(record: Path) -> str:
    return f"""
flows:
  - name: gh
    mode: async
    worker: {{command: ["false"]}}
    auth: [{{type: github, secret: env:GH_SECRET}}]
  - name: orders
    mode: async
    worker: {{command: {FLAKY}, env: {{RECORD_FILE: "{record}"}}}}
    idle_timeout: 1s
"""


def start(gateway_factory: Any, tmp_path: Path) -> GatewayProcess:
    gateway: GatewayProcess = gateway_factory(
        flows(tmp_path / "record.jsonl"), env={"GH_SECRET": SECRET}
    )
    return gateway


def github(gateway: GatewayProcess, delivery: str, body: bytes = b'{"zen": "ok"}') -> str:
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = httpx.post(
        gateway.hook("gh"),
        content=body,
        headers={"x-hub-signature-256": signature, "x-github-delivery": delivery},
    )
    assert answer.status_code == 202, answer.text
    request_id: str = answer.json()["requestId"]
    return request_id


def show(gateway: GatewayProcess, ref: str) -> httpx.Response:
    return gateway.admin("GET", f"/api/v1/deliveries/{ref}")


def test_a_request_is_found_by_request_id_provider_id_and_prefix(
    gateway_factory: Any, tmp_path: Path
) -> None:
    gateway = start(gateway_factory, tmp_path)
    cli = Cli(gateway)
    gateway.admin("POST", "/api/v1/flows/orders/pause")
    for n in (7, 8):
        headers = {"x-request-id": f"caller-000{n}"}
        assert httpx.post(gateway.hook("orders"), content=b"a", headers=headers).status_code == 202
    provider_id = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    from_github = github(gateway, provider_id)

    by_request = show(gateway, "caller-0007").json()
    assert (by_request["requestId"], by_request["body"]) == ("caller-0007", "a")
    assert cli.json("deliveries", "show", "caller-0007")["id"] == by_request["id"]

    by_provider = show(gateway, provider_id).json()
    assert by_provider["requestId"] == from_github
    assert by_provider["flow"] == "gh"
    assert cli.json("deliveries", "show", provider_id)["id"] == by_provider["id"]
    assert github(gateway, provider_id) == from_github  # a redelivery: the same request

    prefix = by_provider["id"][:24]
    assert show(gateway, prefix).json()["id"] == by_provider["id"]
    assert by_provider["id"] in cli.ok("deliveries", "show", prefix)
    assert show(gateway, provider_id[:8]).json()["id"] == by_provider["id"]

    ambiguous = show(gateway, "caller-00")
    assert ambiguous.status_code == 409
    assert (
        ambiguous.json()["error"] == "'caller-00' matches 2 deliveries: show one by its delivery id"
    )
    candidates = {d["requestId"]: d["id"] for d in ambiguous.json()["candidates"]}
    assert candidates.keys() == {"caller-0007", "caller-0008"}
    done = cli.run("deliveries", "show", "caller-00")
    assert done.returncode == 1
    assert "matches 2 deliveries" in done.stderr
    assert all(ref in done.stdout for ref in (*candidates, *candidates.values()))

    missing = show(gateway, "nobody-sent-this")
    assert missing.status_code == 404
    assert "no delivery with the id, request id or provider id" in missing.json()["error"]
    assert "a prefix needs 8 characters" in cli.fails("deliveries", "show", "abc")
    assert show(gateway, "a%00b").status_code == 400
    assert show(gateway, "x" * 257).status_code == 400

    queued = cli.json("deliveries", "replay", "caller-0007")  # held, not done: nothing to replay
    assert queued == {"replayed": 0}
    assert "matches 2 deliveries" in cli.fails("deliveries", "replay", "caller-00")


def test_a_paused_flow_accepts_and_holds_and_resume_delivers_each_request_once(
    gateway_factory: Any, tmp_path: Path
) -> None:
    gateway = start(gateway_factory, tmp_path)
    record = tmp_path / "record.jsonl"
    url = gateway.hook("orders")
    assert httpx.post(url, content=b"before").status_code == 202
    eventually(lambda: len(recorded(record)) == 1)

    paused = gateway.admin("POST", "/api/v1/flows/orders/pause").json()
    assert paused["status"] == "paused"
    assert httpx.head(url).status_code == 200
    sent = [httpx.post(url, content=f"held-{i}".encode()) for i in range(30)]
    assert [r.status_code for r in sent] == [202] * 30
    held = {r.json()["requestId"] for r in sent}

    def queued() -> int:
        items = gateway.admin(
            "GET", "/api/v1/deliveries", params={"flow": "orders", "status": "queued"}
        ).json()["items"]
        return len(items)

    assert queued() == 30
    time.sleep(1.5)  # what a running flow would have delivered by now stays queued
    assert len(recorded(record)) == 1
    assert queued() == 30
    assert gateway.flow("orders")["workers"]["desired"] == 0

    assert gateway.admin("POST", "/api/v1/flows/orders/resume").json()["status"] == "running"
    eventually(lambda: len(recorded(record)) >= 31, timeout=30)
    eventually(lambda: queued() == 0, timeout=30)
    bodies = Counter(line["body"] for line in recorded(record))
    assert bodies == Counter({b"before": 1, **{f"held-{i}".encode(): 1 for i in range(30)}})
    delivered = {line["headers"]["x-request-id"] for line in recorded(record)}
    assert held <= delivered


def test_a_flow_paused_on_one_gateway_holds_on_every_gateway_of_the_database(
    gateway_factory: Any, pg_url: str, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    one = on_postgres(gateway_factory, pg_url, "one", flows(record), env={"GH_SECRET": SECRET})
    two = on_postgres(gateway_factory, pg_url, "two")
    assert two.admin("POST", "/api/v1/flows/orders/pause").status_code == 200
    eventually(lambda: one.flow("orders")["status"] == "paused", timeout=5)
    flow_id = one.flow("orders")["id"]
    sent = [
        httpx.post(f"{gateway.base}/hook/{flow_id}", content=f"{name}-{i}".encode())
        for gateway, name in ((one, "one"), (two, "two"))
        for i in range(10)
    ]
    assert [r.status_code for r in sent] == [202] * 20
    time.sleep(1.5)  # what a running flow would have delivered by now stays queued
    assert recorded(record) == []

    assert one.admin("POST", "/api/v1/flows/orders/resume").status_code == 200
    eventually(lambda: len(recorded(record)) >= 20, timeout=30)

    def done() -> int:
        params = {"flow": "orders", "status": "done"}
        return len(two.admin("GET", "/api/v1/deliveries", params=params).json()["items"])

    eventually(lambda: done() == 20, timeout=30)
    expected = [f"{name}-{i}".encode() for name in ("one", "two") for i in range(10)]
    assert sorted(line["body"] for line in recorded(record)) == sorted(expected)
