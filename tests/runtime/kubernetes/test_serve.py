"""``hookgate serve --runtime kubernetes`` end to end, on the emulated cluster.

The gateway is a real process configured by a kubeconfig, as outside a cluster, and may do
only what the Role shipped in deploy/kubernetes allows; the emulated kubelet runs each pod
as a real process on its own loopback address, so a request travels gateway → pod address
→ process → answer, and pods stop as on a node (preStop, SIGTERM, grace period).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.conftest import GatewayProcess, free_port
from tests.e2e.helpers import eventually

from hookgate.runtime.kubernetes.names import FLOW_ID_ANNOTATION

from .kubelet import NAMESPACE, Background, background

IMAGE = "registry.example/pod-name:1"
SLOW = 6  # seconds a delivery of the flow "slow" takes: longer than the pods' preStop
WORKER = Path(__file__).with_name("podworker.py")
RBAC = Path(__file__).parents[3] / "deploy" / "kubernetes" / "base" / "rbac.yaml"
TOKEN = "gateway-service-account"


def shipped_role() -> list[dict[str, Any]]:
    [role] = [d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "Role"]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


@pytest.fixture
def cluster() -> Iterator[Background]:
    with background({IMAGE: [sys.executable, str(WORKER)]}) as running:
        yield running


def flows(port: int) -> str:
    return f"""
flows:
  - name: web
    mode: sync
    replicas: 3
    worker: {{image: "{IMAGE}", port: {port}}}
  - name: jobs
    mode: async
    max_workers: 2
    worker: {{image: "{IMAGE}", port: {port}}}
  - name: slow
    mode: async
    max_workers: 1
    timeout: 20s
    worker: {{image: "{IMAGE}", port: {port}, env: {{DELAY: "{SLOW}"}}}}
  - name: quitter
    mode: async
    max_workers: 1
    concurrency: 1
    worker: {{image: "{IMAGE}", port: {port}, env: {{EXIT_AFTER: "2", EXIT_CODE: "0"}}}}
  - name: crasher
    mode: async
    max_workers: 1
    concurrency: 1
    retry: {{backoff: 100ms, max_backoff: 100ms}}
    worker: {{image: "{IMAGE}", port: {port}, env: {{EXIT_AFTER: "1", EXIT_CODE: "3"}}}}
"""


def serve(
    factory: Any,
    cluster: Background,
    config: str,
    directory: Path,
    *,
    name: str = "data",
    args: tuple[str, ...] = (),
) -> GatewayProcess:
    """``hookgate serve --runtime kubernetes`` held to the shipped Role."""
    assert cluster.cluster is not None
    cluster.cluster.emulator.authorize(shipped_role(), TOKEN)
    kubeconfig = cluster.kubeconfig(directory / f"{name}-kubeconfig", token=TOKEN)
    made: GatewayProcess = factory(
        config,
        name=name,
        env={"KUBECONFIG": str(kubeconfig), "HOOKGATE_NAMESPACE": NAMESPACE},
        args=["--runtime", "kubernetes", *args],
    )
    return made


@pytest.fixture
def gateway(cluster: Background, gateway_factory: Any, tmp_path: Path) -> GatewayProcess:
    """(The cluster is set up first so that it is torn down after the gateway has stopped.)"""
    return serve(gateway_factory, cluster, flows(free_port()), tmp_path)


def delivered(gateway: GatewayProcess, flow: str) -> list[dict[str, Any]]:
    listing = gateway.admin("GET", f"/api/v1/deliveries?flow={flow}&status=done&limit=50")
    items: list[dict[str, Any]] = listing.json()["items"]
    return items


def pods(gateway: GatewayProcess, name: str) -> int:
    ready: int = gateway.flow(name)["workers"]["ready"]
    return ready


def test_sync_requests_are_balanced_over_the_pods(gateway: GatewayProcess) -> None:
    eventually(lambda: pods(gateway, "web") == 3)
    url = gateway.hook("web")
    with httpx.Client(timeout=10) as client:
        answers = [client.post(url, content=b"x") for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["pod"] for a in answers}) == 3  # each pod, not one Service
    metrics = gateway.admin("GET", "/metrics").text  # pod starts are timed and counted
    assert 'hookgate_worker_starts_total{flow="web",result="ok"} 3.0' in metrics
    assert 'hookgate_cold_start_seconds_count{flow="web"} 3.0' in metrics


def test_async_requests_are_delivered_through_a_job(gateway: GatewayProcess) -> None:
    url = gateway.hook("jobs")
    with httpx.Client(timeout=10) as client:
        assert {client.post(url, content=b"x").status_code for _ in range(10)} == {202}

    eventually(lambda: len(delivered(gateway, "jobs")) == 10, timeout=60)
    workers = gateway.flow("jobs")["workers"]
    assert workers["jobs"] <= 1  # one Job at most, however many pods


def test_a_rollout_under_load_fails_no_request(gateway: GatewayProcess) -> None:
    eventually(lambda: pods(gateway, "web") == 3)
    url = gateway.hook("web")
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                answer = client.post(url, content=b"x")
                pod = answer.json()["pod"] if answer.status_code == 200 else ""
                results.append((answer.status_code, pod))

    threads = [threading.Thread(target=load) for _ in range(8)]
    started = time.monotonic()
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
    rate = len(results) / (time.monotonic() - started)
    print(f"\nrollout of 3 pods under {rate:.0f} req/s: {len(results)} requests")
    assert {code for code, _ in results} == {200}, [c for c, _ in results if c != 200][:5]
    assert len({pod for _, pod in results} - old) == 3


def test_a_pod_deleted_mid_delivery_loses_nothing(
    gateway: GatewayProcess, cluster: Background
) -> None:
    """As on an eviction: the pod finishes what it holds, and the Job replaces it."""
    url = gateway.hook("slow")
    with httpx.Client(timeout=10) as client:
        assert {client.post(url, content=b"x").status_code for _ in range(3)} == {202}
        eventually(lambda: len(in_flight(gateway, "slow")) == 3, timeout=30)
        [pod] = pods_of(cluster, gateway, "slow")
        assert cluster.cluster is not None
        cluster.run(cluster.cluster.kube.delete("Pod", pod))  # SIGTERM comes mid-delivery
        assert {client.post(url, content=b"x").status_code for _ in range(2)} == {202}

    eventually(lambda: len(delivered(gateway, "slow")) == 5, timeout=60)
    done = delivered(gateway, "slow")
    assert all(d["attempts"] == 1 for d in done), done  # the stopping pod finished its three
    assert len(pods_of(cluster, gateway, "slow")) == 1  # and another pod took the next two


def in_flight(gateway: GatewayProcess, flow: str) -> list[dict[str, Any]]:
    listing = gateway.admin("GET", f"/api/v1/deliveries?flow={flow}&status=leased&limit=50")
    items: list[dict[str, Any]] = listing.json()["items"]
    return items


def pods_of(cluster: Background, gateway: GatewayProcess, flow: str) -> list[str]:
    """Names of the flow's pods that are not being deleted."""
    assert cluster.cluster is not None
    flow_id = gateway.flow(flow)["id"]
    return [
        pod["metadata"]["name"]
        for pod in cluster.cluster.objects("pods")
        if pod["metadata"]["annotations"].get(FLOW_ID_ANNOTATION) == flow_id
        and not pod["metadata"].get("deletionTimestamp")
    ]


def test_the_shipped_role_is_all_the_gateway_needs(gateway: GatewayProcess) -> None:
    eventually(lambda: pods(gateway, "web") == 3)
    assert "Forbidden" not in gateway.logs()
    assert gateway.flow("web")["workers"]["last_error"] is None


def test_two_replicas_one_leader_and_a_leader_change(
    cluster: Background, pg_url: str, gateway_factory: Any, tmp_path: Path
) -> None:
    config = flows(free_port())
    one = serve(gateway_factory, cluster, config, tmp_path, name="one", args=("--database", pg_url))
    two = serve(gateway_factory, cluster, config, tmp_path, name="two", args=("--database", pg_url))
    assert one.process is not None and two.process is not None
    first, second = f"-{one.process.pid}", f"-{two.process.pid}"  # identities: <host>-<pid>
    assert holder(cluster).endswith(first)
    eventually(lambda: pods(two, "web") == 3)  # the follower watches, and serves too
    with httpx.Client(timeout=10) as client:
        assert client.post(two.hook("web"), content=b"x").status_code == 200

    one.stop()  # releases the Lease; the other replica takes over at its next try
    eventually(lambda: holder(cluster).endswith(second), timeout=30)
    before = set(pods_of(cluster, two, "web"))
    spec = two.flow("web")["spec"]
    spec["worker"]["env"] = {"VERSION": "2"}
    assert two.admin("PUT", "/api/v1/flows/web", json=spec).json()["outcome"] == "updated"

    def rolled_out() -> bool:  # the new leader wrote the change: new pods answer
        with httpx.Client(timeout=10) as client:
            answer = client.post(two.hook("web"), content=b"x")
        return answer.status_code == 200 and answer.json()["pod"] not in before

    eventually(rolled_out, timeout=60)


def holder(cluster: Background) -> str:
    assert cluster.cluster is not None
    [lease] = cluster.cluster.objects("leases")
    identity: str = lease["spec"].get("holderIdentity") or ""
    return identity


def test_pods_that_exit_0_are_replaced_while_work_waits(
    gateway: GatewayProcess, cluster: Background
) -> None:
    """Each pod stops cleanly after two deliveries; the Job (``completions``) replaces it."""
    url = gateway.hook("quitter")
    flow_id = gateway.flow("quitter")["id"]

    def succeeded() -> int:
        assert cluster.cluster is not None
        return sum(
            pod["metadata"]["annotations"].get(FLOW_ID_ANNOTATION) == flow_id
            and pod["status"]["phase"] == "Succeeded"
            for pod in cluster.cluster.objects("pods")
        )

    with httpx.Client(timeout=10) as client:
        for round in (1, 2, 3):  # each round needs a new pod: the last one has exited 0
            assert {client.post(url, content=b"x").status_code for _ in range(2)} == {202}
            eventually(lambda: len(delivered(gateway, "quitter")) == 2 * round, timeout=30)  # noqa: B023
            eventually(lambda: succeeded() == round, timeout=30)  # noqa: B023
            # The gateway has seen the pod go (its watch can lag the cluster on a loaded
            # machine): a request sent before that would meet a closed port and cost an attempt.
            eventually(lambda: gateway.flow("quitter")["workers"]["ready"] == 0, timeout=30)
    assert all(d["attempts"] == 1 for d in delivered(gateway, "quitter"))


def test_a_crash_costs_the_delivery_an_attempt_not_the_flow_its_job(
    gateway: GatewayProcess,
) -> None:
    """The worker crashes on every second request; each delivery gets through on a retry."""
    url = gateway.hook("crasher")
    with httpx.Client(timeout=10) as client:
        assert {client.post(url, content=b"x").status_code for _ in range(3)} == {202}
    eventually(lambda: len(delivered(gateway, "crasher")) == 3, timeout=60)
    done = delivered(gateway, "crasher")
    assert any(d["attempts"] > 1 for d in done), done  # crashes cost attempts, nothing more
    workers = gateway.flow("crasher")["workers"]
    assert workers["restarts"] >= 2 and workers["jobs"] == 1
    assert "exit code 3" in (workers["last_exit"] or "")
