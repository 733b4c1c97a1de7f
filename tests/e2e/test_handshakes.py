"""Provider handshakes through a real gateway: answered by the gateway itself, never stored
as a delivery, never starting (async) or reaching (sync) a worker; counted and shown on the
live event stream."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier
from tests.conftest import ROOT, TOKEN, GatewayProcess

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
APP_SECRET = "meta-app-secret"
MARK = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"


def flows(marker: Path) -> str:
    marking = json.dumps({"command": [sys.executable, "-c", MARK, str(marker)]})
    echo = json.dumps({"command": [sys.executable, str(ROOT / "examples/workers/echo.py")]})
    return f"""
flows:
  - name: meta
    mode: async
    worker: {marking}
    auth: [{{type: meta, secret: env:META_SECRET, verify_token: env:META_VERIFY}}]
  - name: slack
    mode: sync
    worker: {echo}
    auth: [{{type: slack, secret: env:SLACK_SECRET}}]
"""


def start(gateway_factory: Any, marker: Path) -> GatewayProcess:
    env = {"META_SECRET": APP_SECRET, "META_VERIFY": "meatyhamhock", "SLACK_SECRET": SLACK_SECRET}
    gateway: GatewayProcess = gateway_factory(flows(marker), env=env)
    return gateway


def deliveries(gateway: GatewayProcess) -> list[Any]:
    items: list[Any] = gateway.admin("GET", "/api/v1/deliveries").json()["items"]
    return items


def slack_signed(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {"x-slack-request-timestamp": timestamp, "x-slack-signature": signature}


def test_handshakes_are_answered_by_the_gateway_and_never_reach_a_worker(
    gateway_factory: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "worker-started"
    gateway = start(gateway_factory, marker)
    meta, slack = gateway.hook("meta"), gateway.hook("slack")
    query = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}

    answered = httpx.get(meta, params={**query, "hub.verify_token": "meatyhamhock"})
    assert (answered.status_code, answered.text) == (200, "1158201444")
    assert answered.headers["content-type"].startswith("text/plain")
    refused = httpx.get(meta, params={**query, "hub.verify_token": "guess"})
    assert refused.status_code == 403
    assert refused.json()["error"] == "handshake refused"
    body = b'{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"c-42","type":"url_verification"}'
    headers = slack_signed(body)
    verified = httpx.post(slack, content=body, headers=headers)
    assert (verified.status_code, verified.text) == (200, "c-42")
    forged = httpx.post(
        slack, content=body, headers={**headers, "x-slack-signature": "v0=" + "0" * 64}
    )
    assert forged.status_code == 401

    assert deliveries(gateway) == []
    assert not marker.exists()
    metrics = gateway.admin("GET", "/metrics").text
    assert (
        'hookgate_handshakes_total{flow="meta",outcome="answered",provider="meta"} 1.0' in metrics
    )
    assert (
        'hookgate_handshakes_total{flow="meta",outcome="bad-credentials",provider="meta"} 1.0'
        in metrics
    )
    assert (
        'hookgate_handshakes_total{flow="slack",outcome="answered",provider="slack"} 1.0' in metrics
    )
    assert (
        'hookgate_handshakes_total{flow="slack",outcome="bad-signature",provider="slack"} 1.0'
        in metrics
    )
    assert 'hookgate_worker_starts_total{flow="meta"' not in metrics
    assert "meatyhamhock" not in gateway.logs()

    # The same flows' signed notifications do reach their workers: the handshakes were kept
    # from doing so, not unable to.
    callback = b'{"type":"event_callback","event":{"type":"app_mention"}}'
    echoed = httpx.post(slack, content=callback, headers=slack_signed(callback), timeout=20)
    assert echoed.status_code == 200
    assert echoed.json()["body"] == callback.decode()
    event = b'{"object":"page","entry":[]}'
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), event, hashlib.sha256).hexdigest()
    assert (
        httpx.post(meta, content=event, headers={"x-hub-signature-256": signature}).status_code
        == 202
    )
    assert len(deliveries(gateway)) == 1
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()


def test_handshakes_are_published_on_the_live_event_stream(
    gateway_factory: Any, tmp_path: Path
) -> None:
    gateway = start(gateway_factory, tmp_path / "worker-started")
    flow = gateway.flow("meta")
    url = f"{gateway.admin_base}/api/v1/events"
    auth = {"authorization": f"Bearer {TOKEN}"}
    with httpx.stream("GET", url, params={"flow": flow["id"]}, headers=auth, timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: subscribed"
        params = {"hub.mode": "subscribe", "hub.challenge": "7", "hub.verify_token": "meatyhamhock"}
        answer = httpx.get(gateway.hook("meta"), params=params, headers={"x-request-id": "hs-1"})
        assert answer.status_code == 200
        handshake = next(
            event
            for event in (json.loads(line[5:]) for line in lines if line.startswith("data:"))
            if event.get("kind") == "handshake"
        )
    assert (handshake["provider"], handshake["outcome"], handshake["status"]) == (
        "meta",
        "answered",
        200,
    )
    assert handshake["requestId"] == "hs-1" and handshake["flowId"] == flow["id"]


EVERY = """
  - name: {name}
    mode: async
    worker: {worker}
    auth: [{auth}]
"""
PROVIDERS = {
    "graph": "{type: msgraph, secret: env:S}",
    "zoom": "{type: zoom, secret: env:S}",
    "dropbox": "{type: dropbox, secret: env:S}",
    "x": "{type: x, secret: env:S}",
    "okta": "{type: okta, secret: env:S}",
}


def test_every_provider_handshake_is_answered_over_http(
    gateway_factory: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "worker-started"
    worker = json.dumps({"command": [sys.executable, "-c", MARK, str(marker)]})
    text = "flows:" + "".join(
        EVERY.format(name=name, worker=worker, auth=auth) for name, auth in PROVIDERS.items()
    )
    secret = "shared-secret-for-every-provider"
    gateway: GatewayProcess = gateway_factory(text, env={"S": secret})

    def mac(message: bytes) -> bytes:
        return hmac.new(secret.encode(), message, hashlib.sha256).digest()

    graph = httpx.post(gateway.hook("graph"), params={"validationToken": "Validation: ok?"})
    assert (graph.status_code, graph.text) == (200, "Validation: ok?")

    body = b'{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}'
    ts = str(int(time.time()))
    signature = "v0=" + mac(f"v0:{ts}:".encode() + body).hex()
    zoom_headers = {"x-zm-request-timestamp": ts, "x-zm-signature": signature}
    zoom = httpx.post(gateway.hook("zoom"), content=body, headers=zoom_headers)
    assert zoom.json() == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": mac(b"qgg8vlvZRS6UYooatFL8Aw").hex(),
    }

    dropbox = httpx.get(gateway.hook("dropbox"), params={"challenge": "abc123"})
    assert (dropbox.status_code, dropbox.text) == (200, "abc123")
    assert dropbox.headers["x-content-type-options"] == "nosniff"

    x = httpx.get(gateway.hook("x"), params={"crc_token": "M2RkODJkZmMtYjlkYi00NmQ4"})
    expected = "sha256=" + base64.b64encode(mac(b"M2RkODJkZmMtYjlkYi00NmQ4")).decode()
    assert x.json() == {"response_token": expected}

    challenge = {"x-okta-verification-challenge": "Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg"}
    okta = httpx.get(gateway.hook("okta"), headers={**challenge, "authorization": secret})
    assert okta.json() == {"verification": "Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg"}
    assert httpx.get(gateway.hook("okta"), headers=challenge).status_code == 401

    assert deliveries(gateway) == []
    assert not marker.exists()
    metrics = gateway.admin("GET", "/metrics").text
    providers = {"graph": "msgraph", "zoom": "zoom", "dropbox": "dropbox", "x": "x", "okta": "okta"}
    for name, provider in providers.items():
        assert f'flow="{name}",outcome="answered",provider="{provider}"}} 1.0' in metrics
