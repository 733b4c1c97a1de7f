"""The public listener over a real socket: every status code of design §3."""

from __future__ import annotations

import base64
import socket
from typing import Any

import httpx
import pytest
from tests.conftest import GatewayProcess

FLOWS = """
flows:
  - name: orders
    mode: async
    worker: {command: ["false"]}
    max_body: 1KB
  - name: parked
    mode: async
    worker: {command: ["false"]}
"""


@pytest.fixture
def gateway(gateway_factory: Any) -> GatewayProcess:
    gw: GatewayProcess = gateway_factory(FLOWS)
    return gw


def stored(gateway: GatewayProcess, request_id: str) -> dict[str, Any]:
    items = gateway.admin("GET", "/api/v1/deliveries", params={"limit": 1000}).json()["items"]
    matches = [d for d in items if d["requestId"] == request_id]
    assert len(matches) == 1, f"{request_id} stored {len(matches)} times"
    detail: dict[str, Any] = gateway.admin("GET", f"/api/v1/deliveries/{matches[0]['id']}").json()
    return detail


def test_accept_answers_202_with_request_id_and_stores_exact_bytes(gateway: GatewayProcess) -> None:
    body = b'{"order": 1, "note": "caf\xc3\xa9"}'
    response = httpx.post(
        gateway.hook("orders") + "/sub/path?x=1&y=2",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 202
    data = response.json()
    assert data["status"] == "accepted"
    assert response.headers["x-request-id"] == data["requestId"]
    delivery = stored(gateway, data["requestId"])
    assert delivery["body"].encode() == body
    assert delivery["path"] == "/sub/path"
    assert delivery["query"] == "x=1&y=2"
    assert delivery["method"] == "POST"
    assert ["content-type", "application/json"] in delivery["headers"]


def test_client_request_id_is_kept(gateway: GatewayProcess) -> None:
    response = httpx.put(gateway.hook("orders"), content=b"x", headers={"x-request-id": "abc-123"})
    assert response.status_code == 202
    assert response.json()["requestId"] == "abc-123"
    assert response.headers["x-request-id"] == "abc-123"
    assert stored(gateway, "abc-123")["method"] == "PUT"


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/x-www-form-urlencoded", b"a=1&b=%C3%A9"),
        (
            "multipart/form-data; boundary=XyZ",
            b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n'
            b"\x00\x01\xff\r\n--XyZ--\r\n",
        ),
        ("application/xml", b'<?xml version="1.0"?><a>\xe2\x82\xac</a>'),
        ("text/plain", b"  spaces and\r\nCRLF  "),
        ("application/octet-stream", bytes(range(256))),
    ],
)
def test_any_content_type_is_stored_byte_for_byte(
    gateway: GatewayProcess, content_type: str, body: bytes
) -> None:
    response = httpx.post(
        gateway.hook("orders"), content=body, headers={"content-type": content_type}
    )
    assert response.status_code == 202
    delivery = stored(gateway, response.json()["requestId"])
    raw = (
        base64.b64decode(delivery["body"])
        if delivery["bodyEncoding"] == "base64"
        else delivery["body"].encode()
    )
    assert raw == body


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH", "OPTIONS"])
def test_any_method_is_accepted(gateway: GatewayProcess, method: str) -> None:
    response = httpx.request(method, gateway.hook("orders") + "?q=1")
    assert response.status_code == 202
    assert stored(gateway, response.json()["requestId"])["method"] == method


def test_head_says_whether_the_flow_runs(gateway: GatewayProcess) -> None:
    url = gateway.hook("orders")
    assert httpx.head(url).status_code == 200
    gateway.admin("POST", "/api/v1/flows/orders/stop")
    assert httpx.head(url).status_code == 404
    gateway.admin("POST", "/api/v1/flows/orders/start")
    assert httpx.head(url).status_code == 200
    assert httpx.head(gateway.base + "/hook/AAAAAAAAAAAAAAAAAAAAAA").status_code == 404


def test_unknown_stopped_and_deleted_flows_look_the_same(gateway: GatewayProcess) -> None:
    stopped = gateway.hook("parked")
    gateway.admin("POST", "/api/v1/flows/parked/stop")
    deleted = gateway.hook("orders")
    assert gateway.admin("DELETE", "/api/v1/flows/orders").status_code == 200
    unknown = gateway.base + "/hook/AAAAAAAAAAAAAAAAAAAAAA"
    answers = [httpx.post(url, content=b"{}") for url in (stopped, deleted, unknown)]
    assert {r.status_code for r in answers} == {404}
    assert {tuple(sorted(r.json())) for r in answers} == {("error", "requestId")}
    assert {r.json()["error"] for r in answers} == {"not found"}
    assert {r.headers["content-type"] for r in answers} == {"application/json"}


def test_the_hook_prefix_is_matched_as_sent_not_decoded(gateway: GatewayProcess) -> None:
    """``/%68ook/…`` decodes to ``/hook/…``; taken as one it would let an encoded CR/LF in the
    sub-path reach the worker decoded, splitting the request the gateway sends."""
    flow_id = gateway.flow("orders")["id"]
    with httpx.Client() as client:
        sneaky = client.build_request(
            "POST", gateway.base + f"/%68ook/{flow_id}/x%0D%0AX-Injected:%20yes", content=b"{}"
        )
        assert client.send(sneaky).status_code == 404
    assert httpx.post(gateway.hook("orders") + "/x%0D%0Ay", content=b"{}").status_code == 202


def test_body_over_max_body_is_413_with_content_length(gateway: GatewayProcess) -> None:
    response = httpx.post(gateway.hook("orders"), content=b"x" * 1001)
    assert response.status_code == 413
    assert "requestId" in response.json()
    assert httpx.post(gateway.hook("orders"), content=b"x" * 1000).status_code == 202


def test_chunked_body_over_max_body_is_413_without_reading_it_all(
    gateway: GatewayProcess,
) -> None:
    def chunks() -> Any:
        for _ in range(10_000):
            yield b"y" * 500

    response = httpx.post(gateway.hook("orders"), content=chunks())
    assert response.status_code == 413
    assert response.json()["error"].startswith("body larger than 1000 bytes")


def test_health_and_readiness(gateway: GatewayProcess) -> None:
    assert httpx.get(gateway.base + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gateway.base + "/readyz").status_code == 200


def test_public_listener_serves_no_admin_api_and_admin_needs_a_token(
    gateway: GatewayProcess,
) -> None:
    assert httpx.get(gateway.base + "/api/v1/flows").status_code == 404
    assert httpx.get(gateway.base + "/metrics").status_code == 404
    assert httpx.get(gateway.admin_base + "/api/v1/flows").status_code == 401
    wrong = httpx.get(
        gateway.admin_base + "/api/v1/flows", headers={"authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert gateway.admin("GET", "/api/v1/flows").status_code == 200


def test_full_queue_answers_503_with_retry_after(gateway_factory: Any) -> None:
    # The flow may hold a quarter of the bound, 1000 bytes: one request of 500 body bytes
    # (plus about 170 of headers and 256 for its row), not two.
    gateway: GatewayProcess = gateway_factory(FLOWS, env={"HOOKGATE_MAX_QUEUED_BYTES": "4000"})
    url = gateway.hook("orders")
    assert httpx.post(url, content=b"a" * 500).status_code == 202
    full = httpx.post(url, content=b"b" * 20)
    assert full.status_code == 503
    assert full.headers["retry-after"]
    assert full.json()["error"] == "queue full, retry later"
    assert len(gateway.admin("GET", "/api/v1/deliveries").json()["items"]) == 1


def test_garbage_http_gets_400_and_the_gateway_keeps_serving(gateway: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = sock.recv(1000)
    assert answer.startswith(b"HTTP/1.1 400")
    assert httpx.post(gateway.hook("orders"), content=b"ok").status_code == 202
