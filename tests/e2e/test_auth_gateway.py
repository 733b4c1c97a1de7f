"""Security through the real gateway: signatures checked before storing, dedupe, rate limits."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
from tests.conftest import GatewayProcess

SECRET = "It's a Secret to Everybody"
FLOWS = """
flows:
  - name: gh
    mode: async
    worker: {command: ["false"]}
    auth: [{type: github, secret: env:GH_SECRET}]
  - name: limited
    mode: async
    worker: {command: ["false"]}
    rate_limit: {rate: 0.5, burst: 2}
    cors: {allow_origins: ["https://app.example"], allow_methods: [POST]}
"""


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def start(gateway_factory: Any) -> GatewayProcess:
    gateway: GatewayProcess = gateway_factory(FLOWS, env={"GH_SECRET": SECRET})
    return gateway


def stored_count(gateway: GatewayProcess, flow: str) -> int:
    return len(gateway.admin("GET", "/api/v1/deliveries", params={"flow": flow}).json()["items"])


def test_signed_request_is_accepted_and_forgeries_get_one_uniform_401(
    gateway_factory: Any,
) -> None:
    gateway = start(gateway_factory)
    url = gateway.hook("gh")
    body = b'{"action": "opened"}'
    good = httpx.post(url, content=body, headers={"x-hub-signature-256": sign(body)})
    assert good.status_code == 202
    forged = [
        httpx.post(url, content=body + b" ", headers={"x-hub-signature-256": sign(body)}),
        httpx.post(url, content=body, headers={"x-hub-signature-256": sign(body, "wrong")}),
        httpx.post(url, content=body),
        httpx.post(url, content=body, headers={"x-hub-signature-256": "sha256=zz"}),
        httpx.head(url),
    ]
    assert [r.status_code for r in forged] == [401] * 5
    assert {r.json()["error"] for r in forged[:4]} == {"unauthorized"}
    assert stored_count(gateway, "gh") == 1
    metrics = gateway.admin("GET", "/metrics").text
    assert 'hookgate_auth_failures_total{flow="gh",reason="github:bad-signature"} 2.0' in metrics
    assert 'reason="github:missing-signature"' in metrics
    logs = gateway.logs()
    assert "github:bad-signature" in logs
    assert SECRET not in logs
    assert sign(body) not in logs


def test_duplicate_delivery_id_gets_the_first_answer_even_after_restart(
    gateway_factory: Any,
) -> None:
    gateway = start(gateway_factory)
    url = gateway.hook("gh")
    body = b'{"n": 1}'
    headers = {"x-hub-signature-256": sign(body), "x-github-delivery": "d-42"}
    first = httpx.post(url, content=body, headers=headers)
    again = httpx.post(url, content=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["requestId"] == first.json()["requestId"]
    gateway.stop()
    gateway.start()
    after = httpx.post(url, content=body, headers=headers)
    assert after.json()["requestId"] == first.json()["requestId"]
    assert stored_count(gateway, "gh") == 1


def test_rate_limit_answers_429_with_retry_after(gateway_factory: Any) -> None:
    gateway = start(gateway_factory)
    url = gateway.hook("limited")
    codes = [httpx.post(url, content=b"x") for _ in range(3)]
    assert [r.status_code for r in codes] == [202, 202, 429]
    assert int(codes[2].headers["retry-after"]) >= 1
    assert codes[2].json()["error"] == "rate limit exceeded"
    assert stored_count(gateway, "limited") == 2


def test_cors_only_as_the_flow_configures_it(gateway_factory: Any) -> None:
    gateway = start(gateway_factory)
    url = gateway.hook("limited")
    preflight = httpx.options(
        url, headers={"origin": "https://app.example", "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-methods"] == "POST"
    accepted = httpx.post(url, content=b"x", headers={"origin": "https://app.example"})
    assert accepted.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.post(url, content=b"x", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    gh = httpx.options(gateway.hook("gh"), headers={"origin": "https://app.example"})
    assert "access-control-allow-origin" not in gh.headers


def test_flow_whose_secret_is_missing_is_refused_with_the_variable_named(
    gateway_factory: Any,
) -> None:
    gateway = start(gateway_factory)
    spec = {
        "name": "nosecret",
        "mode": "async",
        "worker": {"command": ["false"]},
        "auth": [{"type": "github", "secret": "env:NOT_SET_ANYWHERE"}],
    }
    answer = gateway.admin("POST", "/api/v1/flows", json=spec)
    assert answer.status_code == 422
    assert "NOT_SET_ANYWHERE" in answer.json()["error"]
    assert gateway.admin("GET", "/api/v1/flows/nosecret").status_code == 404


def test_cors_preflight_from_a_strange_origin_or_method_is_refused_not_stored(
    gateway_factory: Any,
) -> None:
    gateway = start(gateway_factory)
    url = gateway.hook("limited")
    for origin, method in (("https://evil.example", "POST"), ("https://app.example", "DELETE")):
        answer = httpx.options(
            url, headers={"origin": origin, "access-control-request-method": method}
        )
        assert answer.status_code == 403
        assert "access-control-allow-origin" not in answer.headers
    assert stored_count(gateway, "limited") == 0
