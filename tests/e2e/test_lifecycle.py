"""``hookgate serve``: refusals with one clear message each, graceful SIGTERM, ``/metrics``."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import GatewayProcess
from tests.e2e.helpers import eventually
from tests.e2e.test_crash import blast, stored_request_ids

FLOWS = """
flows:
  - name: orders
    mode: async
    worker: {command: ["false"]}
    max_body: 100
"""


def refused(gateway: GatewayProcess) -> subprocess.CompletedProcess[str]:
    """Run ``hookgate serve`` expecting it to refuse to start."""
    done = subprocess.run(
        gateway.command(), env=gateway.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0, done.stdout + done.stderr
    return done


def test_a_port_in_use_is_one_clear_message(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS, start=False)
    for port_attr in ("port", "admin_port"):
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", getattr(gateway, port_attr)))
            squatter.listen()
            done = refused(gateway)
        address = f"127.0.0.1:{getattr(gateway, port_attr)}"
        assert address in done.stderr
        assert "in use" in done.stderr
        assert "Traceback" not in done.stderr
    # The refusals left the data directory usable.
    assert gateway.start().flow("orders")["status"] == "running"


@pytest.mark.parametrize("option", ["--listen", "--admin-listen"])
@pytest.mark.parametrize("value", ["127.0.0.1:http", "127.0.0.1:70000", "localhost:"])
def test_a_malformed_address_is_one_clear_message(
    gateway_factory: Any, option: str, value: str
) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS, start=False, args=[option, value])
    done = refused(gateway)
    assert option in done.stderr
    assert repr(value) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_data_dir_that_is_not_writable_is_one_clear_message(
    gateway_factory: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file")
    gateway: GatewayProcess = gateway_factory(FLOWS, start=False)
    gateway.data_dir = blocker / "data"
    done = refused(gateway)
    assert f"data directory {gateway.data_dir}" in done.stderr
    assert "not writable" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_malformed_flow_file_names_file_and_line(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS + "    concurrency: many\n", start=False)
    done = refused(gateway)
    assert f"{gateway.flows_file}:7: flow 'orders': field concurrency" in done.stderr
    assert "concurrency" in done.stderr
    assert "Traceback" not in done.stderr

    assert gateway.flows_file is not None
    gateway.flows_file.write_text("flows:\n  - name: [orders\n")
    done = refused(gateway)
    assert str(gateway.flows_file) in done.stderr
    assert "line 2" in done.stderr or f"{gateway.flows_file}:2" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_flow_file_is_one_clear_message(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS, start=False)
    assert gateway.flows_file is not None
    gateway.flows_file.unlink()
    done = refused(gateway)
    assert str(gateway.flows_file) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_second_gateway_on_the_same_data_dir_is_refused(gateway_factory: Any) -> None:
    first: GatewayProcess = gateway_factory(FLOWS)
    second = GatewayProcess(first.data_dir, flows=FLOWS)
    done = refused(second)
    assert f"another gateway is running on data directory {first.data_dir}" in done.stderr
    assert "Traceback" not in done.stderr
    # The first one is unharmed.
    assert httpx.post(first.hook("orders"), content=b"{}").status_code == 202


async def test_sigterm_exits_0_and_every_202_before_it_is_stored(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS)
    url = gateway.hook("orders")
    signalled: list[bool] = []

    def terminate(answered: int) -> None:
        if answered == 1500:
            gateway.signal(signal.SIGTERM)
            signalled.append(True)

    outcomes = await blast(url, total=3000, connections=32, on_answer=terminate)
    assert signalled
    assert gateway.process is not None
    assert await asyncio.to_thread(gateway.process.wait, 30) == 0
    await asyncio.to_thread(gateway.start)

    accepted = [o for o in outcomes if o.status == 202]
    assert len(accepted) >= 1500
    stored = await asyncio.to_thread(stored_request_ids, gateway)
    assert [o.request_id for o in accepted if stored[o.request_id] != 1] == []
    # While stopping, the gateway may refuse with 503 + Retry-After, and then stores nothing.
    refused = [o for o in outcomes if o.status not in (None, 202)]
    assert all(o.status == 503 and o.retry_after for o in refused), refused[:3]
    assert [o.request_id for o in refused if o.request_id in stored] == []
    assert max(stored.values()) == 1


def samples(gateway: GatewayProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = gateway.admin("GET", "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_count_requests_by_flow_and_status_and_show_queue_depth(
    gateway_factory: Any,
) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS)
    url = gateway.hook("orders")
    assert [httpx.post(url, content=b"{}").status_code for _ in range(3)] == [202] * 3
    assert httpx.post(url, content=b"x" * 101).status_code == 413
    assert httpx.post(gateway.base + "/hook/AAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert httpx.get(gateway.admin_base + "/metrics").status_code == 401
    assert httpx.get(gateway.base + "/metrics").status_code == 404

    found = samples(gateway)
    requests = {
        dict(labels)["status"]: value
        for (name, labels), value in found.items()
        if name == "hookgate_requests_total" and dict(labels).get("flow") == "orders"
    }
    assert requests == {"202": 3.0, "413": 1.0}
    latency = [
        value
        for (name, labels), value in found.items()
        if name == "hookgate_request_seconds_count" and dict(labels)["flow"] == "orders"
    ]
    assert latency == [4.0]

    def depth() -> float | None:
        key = ("hookgate_queue_depth", frozenset({("flow", "orders")}))
        return samples(gateway).get(key)

    assert eventually(lambda: depth() == 3.0, timeout=10)


def test_a_flow_file_this_runtime_cannot_run_is_refused(gateway_factory: Any) -> None:
    flows = FLOWS + "  - name: pods-only\n    mode: async\n    worker: {image: example/w:1}\n"
    gateway: GatewayProcess = gateway_factory(flows, start=False)
    done = refused(gateway)
    assert "flow 'pods-only'" in done.stderr
    assert "worker.command" in done.stderr
    assert "Traceback" not in done.stderr
    # Nothing of the file was applied: a later good start shows no half-applied flows.
    assert gateway.flows_file is not None
    gateway.flows_file.write_text(FLOWS.replace("orders", "other"))
    names = {f["name"] for f in gateway.start().admin("GET", "/api/v1/flows").json()["items"]}
    assert names == {"other"}
