"""A flow whose worker cannot start says so everywhere, and its deliveries do not wait forever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import ROOT, TOKEN, GatewayProcess
from tests.console.conftest import sign_in
from tests.e2e.helpers import eventually

MISSING = "hookgate-test-no-such-program"
FLOWS = f"""
flows:
  - name: broken
    mode: async
    worker: {{command: [{MISSING}, worker.js]}}
    retry: {{max_attempts: 3, backoff: 100ms, max_backoff: 200ms}}
"""


def cli(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "hookgate", "--admin-url", gateway.admin_base, *args],
        env={**env, "HOOKGATE_ADMIN_TOKEN": TOKEN, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def failing_metric(gateway: GatewayProcess) -> float | None:
    text = gateway.admin("GET", "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hookgate_flow_failing" and sample.labels["flow"] == "broken":
                return sample.value
    return None


def test_a_flow_whose_command_is_missing_is_failing_and_its_delivery_goes_dead(
    gateway_factory: Any, tmp_path: Path
) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS)
    # Applying such a flow warns at once: the program is not on the gateway's PATH.
    flow_file = tmp_path / "broken.yaml"
    flow_file.write_text(FLOWS)
    applied = cli(gateway, "flows", "apply", "-f", str(flow_file))
    assert applied.returncode == 0, applied.stderr
    assert f"warning: flow 'broken': worker command {MISSING!r} is not found" in applied.stderr

    accepted = httpx.post(gateway.hook("broken"), content=b'{"n": 1}', timeout=10)
    assert accepted.status_code == 202

    def dead() -> list[dict[str, Any]]:
        page = gateway.admin("GET", "/api/v1/deliveries?flow=broken&status=dead").json()
        items: list[dict[str, Any]] = page["items"]
        return items

    [delivery] = eventually(dead, timeout=30)
    assert delivery["attempts"] == 3
    full = gateway.admin("GET", f"/api/v1/deliveries/{delivery['id']}").json()
    assert [a["number"] for a in full["history"]] == [1, 2, 3]
    for attempt in full["history"]:
        assert attempt["status_code"] is None
        assert f"cannot start {MISSING!r}: no such executable" in attempt["error"]

    # Replayed, it goes through a second round of attempts, numbered from 1 again.
    replayed = gateway.admin("POST", "/api/v1/deliveries/replay", json={"ids": [delivery["id"]]})
    assert replayed.json()["replayed"] == 1

    def second_round() -> list[dict[str, Any]] | None:
        history = gateway.admin("GET", f"/api/v1/deliveries/{delivery['id']}").json()["history"]
        return history if len(history) == 6 else None

    history = eventually(second_round, timeout=30)
    assert [(a["round"], a["number"]) for a in history] == [
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 1),
        (2, 2),
        (2, 3),
    ]

    # The API: failing, with the start error and when it happened.
    flow = gateway.flow("broken")
    assert flow["status"] == "failing"
    assert "no such executable" in flow["workers"]["last_error"]
    assert flow["workers"]["last_error_at"] >= flow["createdAt"]

    # The CLI: in the table and in `flows show`.
    listed = cli(gateway, "flows", "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if line.startswith("broken")]
    assert "failing" in row.split()
    shown = cli(gateway, "flows", "show", "broken")
    assert "failing" in shown.stdout
    assert "no such executable" in shown.stdout

    # The console: the badge on the flows page and on the flow's page.
    with httpx.Client(base_url=gateway.admin_base, timeout=10) as console:
        sign_in(console)
        assert '<span class="badge failing" data-field="status">failing</span>' in (
            console.get("/console/flows").text
        )
        page = console.get("/console/flows/broken").text
        assert '<span class="badge failing">failing</span>' in page
        assert "no such executable" in page
        shown = console.get(f"/console/deliveries/{delivery['id']}").text
        assert shown.count("Replayed: round 2") == 1

    # /metrics: one gauge an alert can watch.
    assert eventually(lambda: failing_metric(gateway) == 1.0)
