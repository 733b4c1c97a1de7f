"""Against a real cluster, when ``HOOKGATE_TEST_KUBECONFIG`` names a kubeconfig.

Each test works in a fresh namespace that it deletes afterwards; the kubeconfig's user
needs to create namespaces. Otherwise every test here is skipped, with the reason shown
by ``pytest -rs``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from hookgate.runtime.kubernetes import names
from hookgate.runtime.kubernetes.client import connect
from hookgate.runtime.kubernetes.runtime import KubernetesRuntime

from .conftest import eventually, make_flow

KUBECONFIG = os.environ.get("HOOKGATE_TEST_KUBECONFIG")
WORKER_IMAGE = "nginxinc/nginx-unprivileged:stable-alpine"  # non-root, serves :8080

pytestmark = [
    pytest.mark.kubernetes_cluster,
    pytest.mark.skipif(
        not KUBECONFIG,
        reason="real-cluster tests skipped: set HOOKGATE_TEST_KUBECONFIG to a kubeconfig",
    ),
]


@pytest.fixture
async def live() -> AsyncIterator[KubernetesRuntime]:
    namespace = f"hookgate-test-{secrets.token_hex(3)}"
    client = connect(kubeconfig=KUBECONFIG)
    await client.create(Namespace(metadata=ObjectMeta(name=namespace)))
    runtime = KubernetesRuntime(namespace=namespace, client=client, identity="test")
    try:
        await runtime.start()
        yield runtime
    finally:
        await runtime.close()
        await client.delete(Namespace, namespace)
        await client.close()


async def test_sync_flow_becomes_ready_and_is_removed(live: KubernetesRuntime) -> None:
    flow = make_flow("live-sync", worker={"image": WORKER_IMAGE, "port": 8080})
    await live.scale(flow, 1)
    [endpoint] = await eventually(lambda: live.endpoints(flow.id), timeout=180)
    [pod] = await live.kube.list("Pod", labels={names.FLOW_LABEL: names.flow_key(flow.id)})
    assert (endpoint.host, endpoint.port) == (pod["status"]["podIP"], 8080)
    assert live.status(flow.id).ready == 1

    await live.remove(flow.id)
    assert await live.kube.get("Service", names.base_name(flow)) is None
    assert await live.kube.get("Deployment", names.base_name(flow)) is None


async def test_unpullable_image_is_reported(live: KubernetesRuntime) -> None:
    flow = make_flow("live-bad", worker={"image": "registry.invalid/hookgate/nope:1"})
    await live.scale(flow, 1)
    error = await eventually(lambda: live.status(flow.id).last_error, timeout=180)
    assert "ErrImagePull" in error or "ImagePullBackOff" in error


async def test_a_deleted_job_pod_is_replaced_and_the_job_runs_on(live: KubernetesRuntime) -> None:
    """An eviction deletes the pod; the Job (``completions`` at the maximum) replaces it."""
    flow = make_flow("live-evict", "async", worker={"image": WORKER_IMAGE, "port": 8080})
    await live.scale(flow, 1)
    [first] = await eventually(lambda: live.endpoints(flow.id), timeout=180)
    [pod] = await live.kube.list("Pod", labels={names.FLOW_LABEL: names.flow_key(flow.id)})
    await live.kube.delete("Pod", pod["metadata"]["name"])
    await eventually(
        lambda: [e for e in live.endpoints(flow.id) if e.host != first.host], timeout=180
    )
    assert live.status(flow.id).jobs == 1


async def test_async_job_runs_on_demand(live: KubernetesRuntime) -> None:
    flow = make_flow("live-async", "async", worker={"image": WORKER_IMAGE, "port": 8080})
    await live.scale(flow, 1)
    await eventually(lambda: live.endpoints(flow.id), timeout=180)
    await live.scale(flow, 0)
    assert live.reconciler.observed.objects(names.flow_key(flow.id), "Job") == {}
