"""Async flows end to end: real gateway, real worker processes started on demand."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually, recorded

FLAKY = ROOT / "tests" / "workers" / "flaky.py"


def flow_file(record: Path, *, name: str = "orders", extra: str = "", env: str = "") -> str:
    return f"""
flows:
  - name: {name}
    mode: async
    worker:
      command: [{sys.executable}, {FLAKY}]
      env: {{RECORD_FILE: "{record}"{env}}}
    idle_timeout: 1s
    timeout: 3s
    retry: {{max_attempts: 3, backoff: 100ms, max_backoff: 200ms}}
{extra}
"""


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "record.jsonl"


def delivery(gateway: GatewayProcess, request_id: str) -> dict[str, Any]:
    items = gateway.admin("GET", "/api/v1/deliveries", params={"limit": 1000}).json()["items"]
    (match,) = [d for d in items if d["requestId"] == request_id]
    detail: dict[str, Any] = gateway.admin("GET", f"/api/v1/deliveries/{match['id']}").json()
    return detail


def settled(gateway: GatewayProcess, request_id: str, status: str) -> dict[str, Any]:
    return eventually(lambda: (d := delivery(gateway, request_id)) and d["status"] == status and d)


def test_request_is_delivered_in_the_shape_of_the_contract(
    gateway_factory: Any, record: Path
) -> None:
    gateway: GatewayProcess = gateway_factory(flow_file(record))
    body = b'{"id": 7}'
    answer = httpx.post(
        gateway.hook("orders") + "/a/b?x=1",
        content=body,
        headers={
            "content-type": "application/json",
            "x-custom": "kept",
            "connection": "keep-alive, x-drop",
            "x-drop": "gone",
        },
    )
    assert answer.status_code == 202
    request_id = answer.json()["requestId"]
    done = settled(gateway, request_id, "done")
    (got,) = eventually(lambda: recorded(record))
    assert got["method"] == "POST"
    assert got["path"] == "/a/b"
    assert got["query"] == "x=1"
    assert got["body"] == body
    headers = got["headers"]
    assert headers["x-custom"] == "kept"
    assert "x-drop" not in headers
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"] == request_id
    assert headers["x-hookgate-flow"] == gateway.flow("orders")["id"]
    assert headers["x-hookgate-delivery"] == done["id"]
    assert headers["x-hookgate-attempt"] == "1"
    assert headers["idempotency-key"] == done["id"]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert len(done["history"]) == 1
    assert done["history"][0]["status_code"] == 200


def test_500_then_200_gives_two_attempts_with_the_same_idempotency_key(
    gateway_factory: Any, record: Path
) -> None:
    gateway: GatewayProcess = gateway_factory(flow_file(record))
    answer = httpx.post(gateway.hook("orders") + "?status=500&fail_attempts=1", content=b"x")
    request_id = answer.json()["requestId"]
    done = settled(gateway, request_id, "done")
    assert [a["status_code"] for a in done["history"]] == [500, 200]
    calls = recorded(record)
    assert [c["headers"]["x-hookgate-attempt"] for c in calls] == ["1", "2"]
    assert {c["headers"]["idempotency-key"] for c in calls} == {done["id"]}


def test_400_is_dead_at_once(gateway_factory: Any, record: Path) -> None:
    gateway: GatewayProcess = gateway_factory(flow_file(record))
    request_id = httpx.post(gateway.hook("orders") + "?status=400").json()["requestId"]
    dead = settled(gateway, request_id, "dead")
    assert [a["status_code"] for a in dead["history"]] == [400]
    assert dead["lastError"].startswith("HTTP 400: {")  # and the worker's answer


def test_max_attempts_then_dead_then_fixed_worker_and_replay_delivers(
    gateway_factory: Any, record: Path
) -> None:
    gateway: GatewayProcess = gateway_factory(flow_file(record, env=", FLAKY_STATUS: '503'"))
    request_id = httpx.post(gateway.hook("orders"), content=b"retry me").json()["requestId"]
    dead = settled(gateway, request_id, "dead")
    assert [a["status_code"] for a in dead["history"]] == [503, 503, 503]
    dead_list = gateway.admin("GET", "/api/v1/deliveries", params={"status": "dead"}).json()
    assert [d["id"] for d in dead_list["items"]] == [dead["id"]]

    fixed = gateway.flow("orders")["spec"]
    fixed["worker"]["env"]["FLAKY_STATUS"] = "200"
    assert gateway.admin("PUT", "/api/v1/flows/orders", json=fixed).json()["outcome"] == "updated"
    # Workers of the old spec may still be finishing; the next ones start with the new spec.
    eventually(lambda: gateway.flow("orders")["workers"]["ready"] == 0)
    replayed = gateway.admin("POST", "/api/v1/deliveries/replay", json={"ids": [dead["id"]]})
    assert replayed.json() == {"replayed": 1}
    done = settled(gateway, request_id, "done")
    assert [a["status_code"] for a in done["history"]] == [503, 503, 503, 200]
    assert [a["number"] for a in done["history"]] == [1, 2, 3, 1]
    assert recorded(record)[-1]["body"] == b"retry me"


def test_bulk_replay_by_flow_and_status(gateway_factory: Any, record: Path) -> None:
    gateway: GatewayProcess = gateway_factory(flow_file(record, env=", FLAKY_STATUS: '410'"))
    ids = [httpx.post(gateway.hook("orders")).json()["requestId"] for _ in range(3)]
    for request_id in ids:
        settled(gateway, request_id, "dead")
    fixed = gateway.flow("orders")["spec"]
    fixed["worker"]["env"]["FLAKY_STATUS"] = "200"
    gateway.admin("PUT", "/api/v1/flows/orders", json=fixed)
    eventually(lambda: gateway.flow("orders")["workers"]["ready"] == 0)
    replayed = gateway.admin(
        "POST", "/api/v1/deliveries/replay", json={"flow": "orders", "status": "dead"}
    )
    assert replayed.json() == {"replayed": 3}
    for request_id in ids:
        assert [a["status_code"] for a in settled(gateway, request_id, "done")["history"]] == [
            410,
            200,
        ]


def test_retry_after_is_honoured(gateway_factory: Any, record: Path) -> None:
    gateway: GatewayProcess = gateway_factory(
        flow_file(
            record, extra="    retry: {max_attempts: 3, backoff: 10ms, max_backoff: 10s}"
        ).replace("    retry: {max_attempts: 3, backoff: 100ms, max_backoff: 200ms}\n", "")
    )
    request_id = httpx.post(
        gateway.hook("orders") + "?status=429&retry_after=2&fail_attempts=1"
    ).json()["requestId"]
    done = settled(gateway, request_id, "done")
    first, second = done["history"]
    assert second["started_at"] - first["started_at"] >= 2.0


def test_worker_killed_mid_delivery_is_redelivered(gateway_factory: Any, record: Path) -> None:
    gateway: GatewayProcess = gateway_factory(flow_file(record))
    request_id = httpx.post(gateway.hook("orders") + "?action=crash&fail_attempts=1").json()[
        "requestId"
    ]
    done = settled(gateway, request_id, "done")
    assert len(done["history"]) == 2
    assert done["history"][0]["status_code"] is None
    pids = {c["pid"] for c in recorded(record)}
    assert len(pids) == 2


def test_idle_workers_are_stopped_and_restarted_on_demand(
    gateway_factory: Any, record: Path
) -> None:
    gateway: GatewayProcess = gateway_factory(flow_file(record))
    assert gateway.flow("orders")["workers"]["ready"] == 0
    first = httpx.post(gateway.hook("orders")).json()["requestId"]
    settled(gateway, first, "done")
    pid = recorded(record)[0]["pid"]
    eventually(lambda: gateway.flow("orders")["workers"]["ready"] == 0, timeout=10)
    eventually(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), timeout=10)
    second = httpx.post(gateway.hook("orders")).json()["requestId"]
    settled(gateway, second, "done")
    assert recorded(record)[1]["pid"] != pid


def _zombie(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    except OSError:
        return True


def test_worker_that_cannot_start_is_reported_and_nothing_is_lost(
    gateway_factory: Any, record: Path
) -> None:
    flows = """
flows:
  - name: broken
    mode: async
    worker: {command: [/nonexistent/worker]}
"""
    gateway: GatewayProcess = gateway_factory(flows)
    request_id = httpx.post(gateway.hook("broken"), content=b"keep me").json()["requestId"]
    error = eventually(lambda: gateway.flow("broken")["workers"]["last_error"])
    assert "/nonexistent/worker" in error
    assert delivery(gateway, request_id)["status"] == "queued"
    assert delivery(gateway, request_id)["body"] == "keep me"


def test_envelope_delivery_posts_the_oih_message(gateway_factory: Any, record: Path) -> None:
    """A form POST with repeated and nested keys reaches the worker as OIH's webhooks service
    would have published it, every field (docs/workers.md, the field table)."""
    gateway: GatewayProcess = gateway_factory(flow_file(record, extra="    delivery: envelope"))
    hook = gateway.hook("orders")
    flow_id = hook.rpartition("/")[2]
    host = hook.split("/")[2]
    answer = httpx.post(
        hook + "/x?a=1&a=2&n[k]=v",
        content=b"tag=a&tag=b&order[id]=7&order[items][]=x&name=Ren%C3%A9",
        headers=[
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept-encoding", "identity"),
            ("user-agent", "oih-test"),
            ("x-tag", "one"),
            ("x-tag", "two"),
        ],
    )
    request_id = answer.json()["requestId"]
    delivery_id = settled(gateway, request_id, "done")["id"]
    (got,) = recorded(record)
    assert (got["method"], got["path"]) == ("POST", "/")
    url = f"/hook/{flow_id}/x?a=1&a=2&n[k]=v"
    assert json.loads(got["body"]) == {
        "id": delivery_id,
        "attachments": {},
        "data": {"tag": ["a", "b"], "order": {"id": "7", "items": ["x"]}, "name": "René"},
        "headers": {
            "accept": "*/*",
            "accept-encoding": "identity",
            "user-agent": "oih-test",
            "content-type": "application/x-www-form-urlencoded",
            "x-tag": "one, two",
            "x-request-id": request_id,
            "x-hookgate-flow": flow_id,
            "x-forwarded-for": "127.0.0.1",
            "x-forwarded-proto": "http",
            "x-forwarded-host": host,
        },
        "metadata": {"externalExecId": request_id},
        "url": url,
        "method": "POST",
        "originalUrl": url,
        "query": {"a": ["1", "2"], "n": {"k": "v"}},
        "params": {},
        "pathSuffix": f"/hook/{flow_id}/x",
        "passthrough": {},
    }
