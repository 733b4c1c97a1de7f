"""A flow's id is its URL: generated once, kept through restarts, stop/start, edits, re-applies."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import ROOT, GatewayProcess

FLOWS = """
flows:
  - name: orders
    mode: async
    worker: {command: ["false"]}
  - name: contacts
    mode: async
    worker: {command: ["false"]}
"""


def cli(gateway: GatewayProcess, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "hookgate", "--admin-url", gateway.admin_base, *args, "--json"],
        env=gateway.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ids(gateway: GatewayProcess) -> dict[str, str]:
    items = gateway.admin("GET", "/api/v1/flows").json()["items"]
    return {f["name"]: f["id"] for f in items}


def accepts(gateway: GatewayProcess, flow_id: str) -> bool:
    return httpx.post(f"{gateway.base}/hook/{flow_id}", content=b"{}").status_code == 202


def test_ids_are_22_url_safe_characters_of_128_bits(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS)
    found = ids(gateway)
    assert len(set(found.values())) == 2
    for flow_id in found.values():
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", flow_id)
        assert len(base64.urlsafe_b64decode(flow_id + "==")) == 16
        assert gateway.flow(flow_id)["url"] == f"{gateway.base}/hook/{flow_id}"


def test_ids_survive_restart_kill_and_stop_start(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS)
    before = ids(gateway)

    assert gateway.stop() == 0
    gateway.start()
    assert ids(gateway) == before
    gateway.kill()
    gateway.start()
    assert ids(gateway) == before

    assert gateway.admin("POST", "/api/v1/flows/orders/stop").status_code == 200
    assert not accepts(gateway, before["orders"])
    assert gateway.admin("POST", f"/api/v1/flows/{before['orders']}/start").status_code == 200
    assert ids(gateway) == before
    assert accepts(gateway, before["orders"])


def test_ids_survive_edits_and_reapplies(gateway_factory: Any, tmp_path: Path) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS)
    before = ids(gateway)

    spec = gateway.flow("orders")["spec"]
    spec["timeout"] = 12
    edited = gateway.admin("PUT", "/api/v1/flows/orders", json=spec)
    assert edited.json()["outcome"] == "updated"
    assert edited.json()["id"] == before["orders"]

    flow_file = tmp_path / "flows.yaml"
    flow_file.write_text(FLOWS)
    outcomes = {i["name"]: i for i in cli(gateway, "flows", "apply", "-f", str(flow_file))["items"]}
    assert outcomes["orders"]["outcome"] == "updated"  # back to the file's timeout
    assert outcomes["contacts"]["outcome"] == "unchanged"
    assert {name: item["id"] for name, item in outcomes.items()} == before

    flow_file.write_text(
        FLOWS.replace('["false"]}\n  - name: contacts', '["true"]}\n  - name: contacts')
    )
    outcomes = {i["name"]: i for i in cli(gateway, "flows", "apply", "-f", str(flow_file))["items"]}
    assert outcomes["orders"]["outcome"] == "updated"
    assert {name: item["id"] for name, item in outcomes.items()} == before
    assert gateway.flow("orders")["spec"]["worker"]["command"] == ["true"]

    # The flow file given to `serve --config` is re-applied at every start: ids stay.
    assert gateway.stop() == 0
    gateway.start()
    assert ids(gateway) == before
    assert accepts(gateway, before["orders"])


def test_a_deleted_and_recreated_flow_gets_a_new_id(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS)
    before = ids(gateway)
    spec = gateway.flow("orders")["spec"]
    assert gateway.admin("DELETE", "/api/v1/flows/orders").status_code == 200
    assert not accepts(gateway, before["orders"])
    created = gateway.admin("POST", "/api/v1/flows", json=spec)
    assert created.status_code == 201
    new_id = created.json()["id"]
    assert new_id != before["orders"]
    assert accepts(gateway, new_id)
    assert not accepts(gateway, before["orders"])
    # The old id stays dead after a restart too.
    gateway.stop()
    gateway.start()
    assert ids(gateway)["orders"] == new_id
    assert not accepts(gateway, before["orders"])
