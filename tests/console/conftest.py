"""A real gateway for the console tests, and a signed-in HTTP client for it."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import ROOT, TOKEN, GatewayProcess

FLAKY = ROOT / "tests" / "workers" / "flaky.py"


def flows_yaml(*, status: int = 400) -> str:
    """``orders`` (async, bearer-protected) whose worker answers ``status``; ``quotes`` (sync)."""
    return f"""
flows:
  - name: orders
    mode: async
    worker: {{command: [{sys.executable}, {FLAKY}], env: {{FLAKY_STATUS: "{status}"}}}}
    idle_timeout: 2s
    auth: [{{type: bearer, token: "env:ORDERS_TOKEN"}}]
  - name: quotes
    mode: sync
    worker: {{command: [{sys.executable}, {FLAKY}]}}
"""


ORDERS_TOKEN = "orders-secret-token"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        tmp_path_factory.mktemp("console") / "data",
        flows=flows_yaml(),
        env={"ORDERS_TOKEN": ORDERS_TOKEN},
    ).start()
    yield gw
    gw.stop()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: httpx.Client, token: str = TOKEN) -> httpx.Response:
    form = client.get("/console/signin")
    return client.post(
        "/console/signin", data={"csrf": csrf_of(form.text), "token": token, "next": ""}
    )


@pytest.fixture
def browser_client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """A cookie-keeping client, signed in, that does not follow redirects."""
    with httpx.Client(base_url=gateway.admin_base, timeout=10) as client:
        assert sign_in(client).status_code == 303
        yield client


def post_order(gateway: GatewayProcess, body: Any = b'{"order": 1}', **kwargs: Any) -> str:
    response = httpx.post(
        gateway.hook("orders"),
        content=body,
        headers={"authorization": f"Bearer {ORDERS_TOKEN}", **kwargs.pop("headers", {})},
        timeout=10,
        **kwargs,
    )
    assert response.status_code == 202, response.text
    request_id: str = response.json()["requestId"]
    return request_id
