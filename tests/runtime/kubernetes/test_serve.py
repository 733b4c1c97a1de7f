"""``hookgate serve --runtime kubernetes`` end to end, on the emulated cluster.

The gateway is a real process configured by a kubeconfig, as outside a cluster; the
emulated kubelet runs each pod as a real process on its own loopback address, so a request
travels gateway → pod address → process → answer, and pods stop as on a node (preStop,
SIGTERM, grace period).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import GatewayProcess, free_port
from tests.e2e.helpers import eventually

from .kubelet import NAMESPACE, Background, background

IMAGE = "registry.example/pod-name:1"
WORKER = Path(__file__).with_name("podworker.py")


@pytest.fixture
def cluster() -> Iterator[Background]:
    with background({IMAGE: [sys.executable, str(WORKER)]}) as running:
        yield running


@pytest.fixture
def gateway(cluster: Background, gateway_factory: Any, tmp_path: Path) -> GatewayProcess:
    """(The cluster is set up first so that it is torn down after the gateway has stopped.)"""
    port = free_port()
    flows = f"""
flows:
  - name: web
    mode: sync
    replicas: 2
    worker: {{image: "{IMAGE}", port: {port}}}
  - name: jobs
    mode: async
    max_workers: 2
    worker: {{image: "{IMAGE}", port: {port}}}
"""
    made: GatewayProcess = gateway_factory(
        flows,
        env={
            "KUBECONFIG": str(cluster.kubeconfig(tmp_path / "kubeconfig")),
            "HOOKGATE_NAMESPACE": NAMESPACE,
        },
        args=["--runtime", "kubernetes"],
    )
    return made


def pods(gateway: GatewayProcess, name: str) -> int:
    ready: int = gateway.flow(name)["workers"]["ready"]
    return ready


def test_sync_requests_are_balanced_over_the_pods(gateway: GatewayProcess) -> None:
    eventually(lambda: pods(gateway, "web") == 2)
    url = gateway.hook("web")
    with httpx.Client(timeout=10) as client:
        answers = [client.post(url, content=b"x") for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["pod"] for a in answers}) == 2  # each pod, not one Service


def test_async_requests_are_delivered_through_a_job(gateway: GatewayProcess) -> None:
    url = gateway.hook("jobs")
    with httpx.Client(timeout=10) as client:
        assert {client.post(url, content=b"x").status_code for _ in range(10)} == {202}

    def delivered() -> bool:
        listing = gateway.admin("GET", "/api/v1/deliveries?flow=jobs&status=done&limit=50")
        return len(listing.json()["items"]) == 10

    eventually(delivered, timeout=60)
    workers = gateway.flow("jobs")["workers"]
    assert workers["jobs"] <= 1  # one Job at most, however many pods


def test_a_rollout_under_load_fails_no_request(gateway: GatewayProcess) -> None:
    eventually(lambda: pods(gateway, "web") == 2)
    url = gateway.hook("web")
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                answer = client.post(url, content=b"x")
                pod = answer.json()["pod"] if answer.status_code == 200 else ""
                results.append((answer.status_code, pod))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: len(results) > 50)
        old = {pod for _, pod in results}
        spec = gateway.flow("web")["spec"]
        spec["worker"]["env"] = {"VERSION": "2"}
        assert gateway.admin("PUT", "/api/v1/flows/web", json=spec).json()["outcome"] == "updated"
        # New pods answer, and then only they do: the old ones stopped after their preStop.
        eventually(
            lambda: len(results) > 10 and not {p for _, p in results[-10:]} & old, timeout=60
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert {code for code, _ in results} == {200}, [c for c, _ in results if c != 200][:5]
    assert len({pod for _, pod in results} - old) == 2
