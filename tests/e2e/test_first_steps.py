"""Small things a newcomer meets: the admin API while starting, `flows run`, the favicon."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
from tests.conftest import ROOT, TOKEN, GatewayProcess, free_port
from tests.console.conftest import sign_in
from tests.e2e.helpers import eventually

FLOWS = f"""
flows:
  - name: orders
    mode: async
    worker: {{command: [{sys.executable}, {ROOT / "examples" / "workers" / "orders.py"}]}}
"""


def test_the_admin_api_answers_503_with_retry_after_until_the_flows_are_loaded(
    gateway_factory: Any,
) -> None:
    # A PostgreSQL nobody listens on: the gateway serves, but waits for its store.
    database = f"postgresql://postgres@127.0.0.1:{free_port()}/hookgate"
    gateway: GatewayProcess = gateway_factory(start=False, args=["--database", database])
    process = subprocess.Popen(
        gateway.command(),
        env=gateway.env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway.process = process

    def answer() -> httpx.Response | None:
        try:
            return gateway.admin("GET", "/api/v1/flows")
        except httpx.TransportError:
            return None

    response = eventually(answer)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "not loaded yet" in response.json()["error"]
    assert gateway.admin("GET", "/api/v1/flows/orders").status_code == 503  # not a 404


def test_flows_run_refuses_a_flow_without_schedule_unless_forced(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS)
    refused = gateway.admin("POST", "/api/v1/flows/orders/run")
    assert refused.status_code == 422
    assert "has no schedule" in refused.json()["error"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hookgate", "--admin-url", gateway.admin_base, *args],
            env={**gateway.env, "HOOKGATE_ADMIN_TOKEN": TOKEN},
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = cli("flows", "run", "orders")
    assert done.returncode != 0
    assert "--force" in done.stderr and "Traceback" not in done.stderr
    forced = cli("flows", "run", "orders", "--force", "-o", "name")
    assert forced.returncode == 0, forced.stderr
    delivery_id = forced.stdout.strip()
    assert gateway.admin("GET", f"/api/v1/deliveries/{delivery_id}").json()["source"] == "schedule"


def test_console_pages_have_a_favicon(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS)
    with httpx.Client(base_url=gateway.admin_base, timeout=10) as client:
        sign_in(client)
        page = client.get("/console/flows").text
        assert '<link rel="icon" type="image/svg+xml" href="/console/static/favicon.svg">' in page
        icon = client.get("/console/static/favicon.svg")
        assert icon.status_code == 200
        assert icon.headers["content-type"].startswith("image/svg+xml")
