"""One URL, sync or async as the caller prefers (design §3, RFC 7240), the sync → async
fallback and the status URL, end to end: a real gateway, real workers, real sockets."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually, recorded

FLAKY = ROOT / "tests" / "workers" / "flaky.py"


def flows(record: Path, *, extra: str = "") -> str:
    worker = f"{{command: [{sys.executable}, {FLAKY}], env: {{RECORD_FILE: '{record}'}}}}"
    return f"""
flows:
  - name: api
    mode: sync
    worker: {worker}
    timeout: 1s
    retry: {{backoff: 100ms}}
  - name: slow-api
    mode: sync
    worker: {worker}
    timeout: 1s
    fallback: async
    retry: {{backoff: 100ms}}
  - name: events
    mode: async
    worker: {worker}
    timeout: 5s
    max_wait: 10s
    retry: {{backoff: 100ms}}
{extra}
"""


def ready(gateway: GatewayProcess, name: str) -> None:
    eventually(lambda: gateway.flow(name)["workers"]["ready"] == 1)


def followed(gateway: GatewayProcess, answer: httpx.Response) -> dict[str, Any]:
    """The status URL of a ``202`` followed until the delivery is done."""
    assert answer.status_code == 202, answer.text
    location = answer.headers["location"]
    assert location.startswith("/hook/-/status/")

    def done() -> dict[str, Any] | None:
        status = httpx.get(gateway.base + location)
        assert status.status_code == 200, status.text
        document: dict[str, Any] = status.json()
        assert document["requestId"] == answer.json()["requestId"]
        assert document["status"] in {"queued", "running", "failed", "done"}
        return document if document["status"] == "done" else None

    return eventually(done)


def test_respond_async_on_a_sync_flow_stores_and_delivers_it(
    gateway_factory: Any, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    gateway: GatewayProcess = gateway_factory(flows(record))
    ready(gateway, "api")
    answer = httpx.post(
        gateway.hook("api") + "/orders?status=201",
        content=b'{"n": 1}',
        headers={"prefer": "respond-async", "x-request-id": "rid-async-1"},
    )
    assert answer.headers["preference-applied"] == "respond-async"
    assert answer.json() == {"requestId": "rid-async-1", "status": "accepted"}
    document = followed(gateway, answer)
    assert document["attempts"] == 1
    response = document["response"]
    assert response["status"] == 201
    assert ["content-type", "application/json"] in response["headers"]
    assert '"path": "/orders"' in response["body"] and '"attempt": 1' in response["body"]
    [delivered] = recorded(record)
    assert delivered["body"] == b'{"n": 1}'
    assert delivered["headers"]["x-hookgate-attempt"] == "1"
    assert delivered["headers"]["idempotency-key"] == delivered["headers"]["x-hookgate-delivery"]


def test_prefer_wait_answered_in_time_returns_the_workers_answer(
    gateway_factory: Any, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    gateway: GatewayProcess = gateway_factory(flows(record))
    answer = httpx.post(
        gateway.hook("events") + "/made?status=201",
        content=b"x",
        headers={"prefer": "wait=8"},
        timeout=20,
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["path"] == "/made"
    assert "location" not in answer.headers
    request_id = answer.headers["x-request-id"]

    def stored() -> dict[str, Any] | None:
        [delivery] = gateway.admin("GET", "/api/v1/deliveries").json()["items"]
        return delivery if delivery["status"] == "done" else None

    delivery = eventually(stored)
    assert (delivery["requestId"], delivery["attempts"]) == (request_id, 1)
    assert len(recorded(record)) == 1


def test_prefer_wait_not_answered_in_time_gives_the_status_url(
    gateway_factory: Any, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    gateway: GatewayProcess = gateway_factory(flows(record))
    answer = httpx.post(
        gateway.hook("events") + "/late?sleep=2",
        content=b"x",
        headers={"prefer": "respond-async, wait=1"},
        timeout=20,
    )
    assert answer.headers["preference-applied"] == "respond-async"
    document = followed(gateway, answer)
    assert document["attempts"] == 1
    assert document["response"]["status"] == 200
    assert '"path": "/late"' in document["response"]["body"]
    assert len(recorded(record)) == 1


def test_fallback_async_turns_a_timeout_into_a_stored_delivery(
    gateway_factory: Any, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    gateway: GatewayProcess = gateway_factory(flows(record))
    ready(gateway, "slow-api")
    # The worker sleeps past the 1s timeout on its first try and on the first delivery attempt.
    answer = httpx.post(
        gateway.hook("slow-api") + "/work?sleep=3&fail_attempts=1",
        content=b"payload",
        timeout=20,
    )
    assert "preference-applied" not in answer.headers
    document = followed(gateway, answer)
    assert document["attempts"] == 2
    assert '"attempt": 2' in document["response"]["body"]
    tries = recorded(record)
    assert [t["body"] for t in tries] == [b"payload"] * 3
    keys = {t["headers"]["idempotency-key"] for t in tries}
    assert len(keys) == 1, "the sync try and every delivery attempt carry one Idempotency-Key"
    assert "x-hookgate-attempt" not in tries[0]["headers"]


def test_a_sync_flow_without_fallback_still_gives_504(gateway_factory: Any, tmp_path: Path) -> None:
    gateway: GatewayProcess = gateway_factory(flows(tmp_path / "record.jsonl"))
    ready(gateway, "api")
    answer = httpx.post(gateway.hook("api") + "?sleep=2", content=b"x", timeout=20)
    assert answer.status_code == 504


def test_a_wrong_or_truncated_status_token_is_the_uniform_404(
    gateway_factory: Any, tmp_path: Path
) -> None:
    gateway: GatewayProcess = gateway_factory(flows(tmp_path / "record.jsonl"))
    ready(gateway, "api")
    answer = httpx.post(gateway.hook("api"), content=b"x", headers={"prefer": "respond-async"})
    location = answer.headers["location"]
    token = location.removeprefix("/hook/-/status/")
    assert len(token) >= 32  # 192 random bits
    assert token not in answer.json()["requestId"]
    assert httpx.get(gateway.base + location).status_code == 200

    unknown_flow = httpx.post(gateway.base + "/hook/" + "A" * 22)
    for wrong in (
        location[:-1],
        location[:-8],
        "/hook/-/status/",
        "/hook/-/status/" + token[::-1],
        "/hook/-/status/" + token + "x",
        location.replace("/status/", "/statu/"),
    ):
        missed = httpx.get(gateway.base + wrong)
        assert missed.status_code == unknown_flow.status_code == 404, wrong
        assert missed.json().keys() == unknown_flow.json().keys()
        assert missed.json()["error"] == unknown_flow.json()["error"]
    assert httpx.post(gateway.base + location).status_code == 404


def test_accept_answers_with_200_and_a_fixed_body_or_the_request_id(
    gateway_factory: Any, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    worker = f"{{command: [{sys.executable}, {FLAKY}], env: {{RECORD_FILE: '{record}'}}}}"
    extra = f"""
  - name: fixed
    mode: async
    worker: {worker}
    accept: {{status: 200, body: "OK", headers: {{content-type: text/plain}}}}
  - name: templated
    mode: async
    worker: {worker}
    accept:
      status: 200
      body: '{{"ok": true, "id": "{{requestId}}"}}'
      headers: {{x-provider: ack}}
  - name: empty
    mode: async
    worker: {worker}
    accept: {{status: 204}}
"""
    gateway: GatewayProcess = gateway_factory(flows(record, extra=extra))
    fixed = httpx.post(gateway.hook("fixed"), content=b"1")
    assert (fixed.status_code, fixed.text) == (200, "OK")
    assert fixed.headers["content-type"] == "text/plain"
    templated = httpx.post(gateway.hook("templated"), content=b"2", headers={"x-request-id": "r-9"})
    assert templated.status_code == 200
    assert templated.json() == {"ok": True, "id": "r-9"}
    assert templated.headers["x-provider"] == "ack"
    assert templated.headers["x-request-id"] == "r-9"
    generated = httpx.post(gateway.hook("templated"), content=b"3")
    assert generated.json()["id"] == generated.headers["x-request-id"]
    empty = httpx.post(gateway.hook("empty"), content=b"4")
    assert (empty.status_code, empty.content) == (204, b"")
    eventually(lambda: len(recorded(record)) == 4)


def test_prefer_wait_returns_only_a_final_answer(gateway_factory: Any, tmp_path: Path) -> None:
    """A refusal for good comes back as is; a retryable failure would mislead the caller (the
    request is retried): it gets the status URL instead."""
    record = tmp_path / "record.jsonl"
    gateway: GatewayProcess = gateway_factory(flows(record))
    refused = httpx.post(
        gateway.hook("events") + "/bad?status=400", headers={"prefer": "wait=8"}, timeout=20
    )
    assert refused.status_code == 400
    assert refused.json()["path"] == "/bad"

    retried = httpx.post(
        gateway.hook("events") + "/busy?status=503&fail_attempts=1",
        headers={"prefer": "wait=8"},
        timeout=20,
    )
    document = followed(gateway, retried)
    assert (document["attempts"], document["response"]["status"]) == (2, 200)


def test_a_sync_flows_stored_request_is_delivered_after_a_restart(
    gateway_factory: Any, tmp_path: Path
) -> None:
    worker = f"{{command: [{sys.executable}, {FLAKY}]}}"
    gateway: GatewayProcess = gateway_factory(
        f"""
flows:
  - name: api
    mode: sync
    worker: {worker}
    retry: {{backoff: 5s, max_backoff: 5s}}
"""
    )
    ready(gateway, "api")
    answer = httpx.post(
        gateway.hook("api") + "?status=503&fail_attempts=1", headers={"prefer": "respond-async"}
    )
    location = gateway.base + answer.headers["location"]
    eventually(lambda: httpx.get(location).json()["status"] == "failed")
    gateway.stop()
    gateway.start()
    document = followed(gateway, answer)
    assert (document["attempts"], document["response"]["status"]) == (2, 200)
