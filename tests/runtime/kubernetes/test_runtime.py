"""KubernetesRuntime against the kmock API emulator: objects, on-demand Jobs, drift, removal."""

from __future__ import annotations

from typing import Any

import httpx

from hookgate.domain.endpoints import Endpoint
from hookgate.runtime.kubernetes import names
from hookgate.runtime.kubernetes.client import Kube, kubeconfig_for
from hookgate.runtime.kubernetes.runtime import KubernetesRuntime

from .conftest import (
    NAMESPACE,
    TERMINATING,
    Emulator,
    eventually,
    make_flow,
    names_of,
    stored,
    writes,
)


def env_of(obj: dict[str, Any]) -> dict[str, str]:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container["env"]}


async def test_sync_flow_gets_a_service_and_a_deployment(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    flow = make_flow(
        "shop-orders",
        replicas=2,
        concurrency=4,
        worker={
            "image": "registry.example/orders:1.4",
            "port": 9000,
            "readiness_path": "/ready",
            "env": {"LOG_LEVEL": "info"},
        },
    )
    await runtime.scale(flow, 2)

    name = names.base_name(flow)
    service = stored(cluster, "services", name)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 9000, "protocol": "TCP"}
    ]
    assert service["spec"]["selector"][names.FLOW_LABEL] == names.flow_key(flow.id)
    deployment = stored(cluster, "deployments", name)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/orders:1.4"
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 9000}
    assert env_of(deployment) == {
        "LOG_LEVEL": "info",
        "PORT": "9000",
        "HOOKGATE_FLOW_ID": flow.id,
        "HOOKGATE_MODE": "sync",
    }
    assert names_of(cluster, "jobs") == set()


async def add_pod(
    runtime: KubernetesRuntime,
    flow: Any,
    name: str,
    *,
    ready: bool = True,
    waiting: dict[str, str] | None = None,
    restarts: int = 0,
    ip: str = "10.0.0.1",
) -> None:
    """A pod of the flow as the kubelet would report it (the emulator runs no pods)."""
    state = {"waiting": waiting} if waiting else {"running": {}}
    await runtime.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "labels": names.labels(flow, instance="hookgate"),
                "annotations": {names.FLOW_ID_ANNOTATION: flow.id},
            },
            "spec": {"containers": [{"name": "worker", "image": flow.spec.worker.image}]},
            "status": {
                "phase": "Running" if not waiting else "Pending",
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [
                    {
                        "name": "worker",
                        "ready": ready,
                        "restartCount": restarts,
                        "image": "x",
                        "imageID": "",
                        "state": state,
                    }
                ],
            },
        }
    )


async def test_objects_carry_labels_hash_and_a_non_root_pod(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    flow = make_flow(
        "labels",
        worker={
            "image": "img:1",
            "image_pull_secrets": ["regcred"],
            "service_account": "worker",
            "node_selector": {"pool": "flows"},
            "resources": {"limits": {"memory": "256Mi"}},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        },
    )
    await runtime.scale(flow, 1)

    deployment = stored(cluster, "deployments", names.base_name(flow))
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "labels"
    assert labels["app.kubernetes.io/instance"] == "hookgate"
    assert labels["app.kubernetes.io/component"] == "sync-worker"
    assert labels["app.kubernetes.io/managed-by"] == "hookgate"
    assert labels[names.FLOW_LABEL] == names.flow_key(flow.id)
    assert len(deployment["metadata"]["annotations"][names.SPEC_HASH_ANNOTATION]) == 16
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "worker"
    assert pod["nodeSelector"] == {"pool": "flows"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert pod["containers"][0]["resources"] == {"limits": {"memory": "256Mi"}}
    assert pod["containers"][0]["readinessProbe"]["tcpSocket"] == {"port": 8080}


async def test_async_job_exists_only_while_work_is_wanted(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    flow = make_flow("shop-events", "async", max_workers=4)
    await runtime.scale(flow, 0)
    assert names_of(cluster, "services") == {names.base_name(flow)}
    assert names_of(cluster, "jobs") == set()
    assert names_of(cluster, "deployments") == set()

    await runtime.scale(flow, 3)
    [job_name] = names_of(cluster, "jobs")
    job = stored(cluster, "jobs", job_name)
    assert job["spec"]["parallelism"] == 3
    # Pods that exit (0 or not) are replaced, crashes never fail the Job, no deadline.
    assert job["spec"]["completions"] == job["spec"]["backoffLimit"] == 2**31 - 1
    assert "activeDeadlineSeconds" not in job["spec"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert env_of(job)["HOOKGATE_MODE"] == "async"

    await runtime.scale(flow, 10)  # more demand: same Job, parallelism capped at max_workers
    assert names_of(cluster, "jobs") == {job_name}
    assert stored(cluster, "jobs", job_name)["spec"]["parallelism"] == 4

    await runtime.scale(flow, 0)
    assert names_of(cluster, "jobs") == set()
    [delete] = [r for r in cluster if r.method == "DELETE"]
    assert delete.params["propagationPolicy"] == "Background"
    assert names_of(cluster, "services") == {names.base_name(flow)}


async def test_a_finished_job_is_replaced_when_work_waits_again(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    flow = make_flow("batch", "async")
    await runtime.scale(flow, 1)
    [job_name] = names_of(cluster, "jobs")
    created = len(writes(cluster))
    await runtime.scale(flow, 1)
    assert len(writes(cluster)) == created  # an active Job is never created twice

    await runtime.kube.merge(
        "Job", job_name, {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    )
    # The watch reports the finished Job; work still waits, so a fresh Job replaces it.
    await eventually(lambda: any(r.method == "DELETE" for r in cluster))
    fresh = await eventually(lambda: stored(cluster, "jobs", job_name))
    assert "status" not in fresh
    assert fresh["spec"]["parallelism"] == 1


async def test_changed_flow_rolls_out_a_new_deployment_spec(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    flow = make_flow("rollout")
    await runtime.scale(flow, 1)
    name = names.base_name(flow)
    before = stored(cluster, "deployments", name)["metadata"]["annotations"]

    flow.spec.worker.image = "registry.example/rollout:2"
    await runtime.scale(flow, 1)

    after = stored(cluster, "deployments", name)
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/rollout:2"
    )
    assert (
        after["metadata"]["annotations"][names.SPEC_HASH_ANNOTATION]
        != (before[names.SPEC_HASH_ANNOTATION])
    )


async def test_drift_is_repaired(runtime: KubernetesRuntime, cluster: Emulator) -> None:
    flow = make_flow("drift", replicas=2)
    await runtime.scale(flow, 2)
    name = names.base_name(flow)

    await runtime.kube.delete("Service", name)
    await eventually(lambda: stored(cluster, "services", name))

    await runtime.kube.merge("Deployment", name, {"spec": {"replicas": 7}})  # kubectl scale
    await eventually(lambda: stored(cluster, "deployments", name)["spec"]["replicas"] == 2)


async def test_remove_deletes_everything_of_the_flow(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    sync, other = make_flow("gone"), make_flow("stays")
    batch = make_flow("gone-too", "async")
    await runtime.scale(sync, 1)
    await runtime.scale(other, 1)
    await runtime.scale(batch, 2)

    await runtime.remove(sync.id)
    await runtime.remove(batch.id)

    assert names_of(cluster, "services") == {names.base_name(other)}
    assert names_of(cluster, "deployments") == {names.base_name(other)}
    assert names_of(cluster, "jobs") == set()


async def test_endpoints_follow_ready_pods(runtime: KubernetesRuntime, cluster: Emulator) -> None:
    flow = make_flow("ready", concurrency=5, replicas=2)
    await runtime.scale(flow, 2)
    assert runtime.endpoints(flow.id) == []

    await add_pod(runtime, flow, "ready-a", ip="10.0.0.7")
    await add_pod(runtime, flow, "ready-b", ready=False, ip="10.0.0.8")
    status = await eventually(lambda: (s := runtime.status(flow.id)).starting and s)
    assert (status.desired, status.ready, status.starting) == (2, 1, 1)
    # One endpoint per ready pod, at the pod's address and worker port, with its own slots.
    assert runtime.endpoints(flow.id) == [Endpoint("10.0.0.7", 8080, 5)]

    await add_pod(runtime, flow, "ready-b", ip="10.0.0.8")
    await eventually(lambda: len(runtime.endpoints(flow.id)) == 2)
    # Deletion requested: the pod is terminating and gets no new request.
    await runtime.kube.merge("Pod", "ready-a", TERMINATING)
    await eventually(lambda: runtime.endpoints(flow.id) == [Endpoint("10.0.0.8", 8080, 5)])


async def test_status_names_image_pull_errors(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    flow = make_flow("badimage")
    await runtime.scale(flow, 1)
    await add_pod(
        runtime,
        flow,
        "badimage-x",
        ready=False,
        waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope:1"'},
    )
    error = await eventually(lambda: runtime.status(flow.id).last_error)
    assert "ImagePullBackOff" in error
    assert "nope:1" in error
    assert runtime.endpoints(flow.id) == []


async def test_status_names_a_failed_job(runtime: KubernetesRuntime, cluster: Emulator) -> None:
    flow = make_flow("failing", "async")
    await runtime.scale(flow, 1)
    [job_name] = names_of(cluster, "jobs")
    await runtime.kube.merge(
        "Job",
        job_name,
        {
            "status": {
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ]
            }
        },
    )
    error = await eventually(lambda: runtime.status(flow.id).last_error)
    assert "BackoffLimitExceeded" in error


async def test_api_refusals_are_reported_with_their_reason_and_retried(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    cluster.refuse_writes(
        "deployments",
        403,
        "Forbidden",
        'deployments.apps is forbidden: User "system:serviceaccount:flows:hookgate" cannot patch',
    )
    flow = make_flow("forbidden")
    await runtime.scale(flow, 1)  # does not raise: the reconciler owns the retries
    error = runtime.status(flow.id).last_error
    assert error is not None
    assert "Forbidden (403)" in error
    assert "cannot patch" in error

    cluster.refusals.clear()  # RBAC fixed: the retry with backoff gets through
    await eventually(lambda: stored(cluster, "deployments", names.base_name(flow)))
    assert runtime.status(flow.id).last_error is None


async def test_flows_without_an_image_are_reported(runtime: KubernetesRuntime) -> None:
    flow = make_flow("local-only", worker={"command": ["python", "-m", "w"]})
    await runtime.scale(flow, 1)
    assert "worker.image" in (runtime.status(flow.id).last_error or "")


async def test_flow_objects_are_owned_by_the_gateway_deployment(
    make_runtime: Any, cluster: Emulator
) -> None:
    gateway = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hookgate", "namespace": NAMESPACE, "uid": "4f1b-gateway-uid"},
        "spec": {
            "selector": {"matchLabels": {"app": "hookgate"}},
            "template": {
                "metadata": {"labels": {"app": "hookgate"}},
                "spec": {"containers": [{"name": "hookgate", "image": "hookgate:1"}]},
            },
        },
    }
    setup = kubeconfig_for(str(cluster.url))
    try:
        await Kube(setup, namespace=NAMESPACE).create(gateway)
    finally:
        await setup.close()
    runtime: KubernetesRuntime = await make_runtime(identity="owned", owner="Deployment/hookgate")
    flow = make_flow("owned", "async", worker={"image": "registry.example/o:1"})
    await runtime.scale(flow, 1)
    name = names.base_name(flow)
    service = stored(cluster, "services", name)
    jobs = [n for n in names_of(cluster, "jobs") if n.startswith(name)]
    assert jobs
    for obj in (service, stored(cluster, "jobs", jobs[0])):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Deployment",
            "hookgate",
            "4f1b-gateway-uid",
        )


async def test_a_missing_owner_is_reported_and_objects_are_still_made(
    make_runtime: Any, cluster: Emulator
) -> None:
    runtime: KubernetesRuntime = await make_runtime(identity="lone", owner="Deployment/absent")
    flow = make_flow("lone", "sync", worker={"image": "registry.example/o:1"})
    await runtime.scale(flow, 1)
    assert "ownerReferences" not in stored(cluster, "services", names.base_name(flow))["metadata"]


async def test_a_disruption_budget_follows_the_replica_count(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    flow = make_flow("budget", replicas=3)
    await runtime.scale(flow, 3)
    name = names.base_name(flow)
    budget = stored(cluster, "poddisruptionbudgets", name)
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"][names.FLOW_LABEL] == names.flow_key(flow.id)

    await runtime.scale(flow, 1)  # one pod: a budget would only block node drains
    assert names_of(cluster, "poddisruptionbudgets") == set()


async def test_fields_a_flow_no_longer_sets_are_removed(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    """Server-side apply removes what Hookgate applied before and applies no more."""
    flow = make_flow("removal", worker={"image": "i:1", "service_account": "w"})
    await runtime.scale(flow, 1)
    name = names.base_name(flow)
    assert (
        stored(cluster, "deployments", name)["spec"]["template"]["spec"]["serviceAccountName"]
        == "w"
    )

    flow.spec.worker.service_account = None
    await runtime.scale(flow, 1)
    pod = stored(cluster, "deployments", name)["spec"]["template"]["spec"]
    assert "serviceAccountName" not in pod
    assert pod["automountServiceAccountToken"] is False


async def test_fields_taken_by_another_manager_are_taken_back(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    flow = make_flow("owned-fields", replicas=2)
    await runtime.scale(flow, 2)
    name = names.base_name(flow)
    url = f"{cluster.url}/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}"
    async with httpx.AsyncClient() as client:
        # Another manager cannot apply over Hookgate's fields without forcing...
        refused = await client.patch(
            url,
            params={"fieldManager": "kubectl"},
            json={"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 5}},
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        assert refused.status_code == 409, refused.text
        assert "spec.replicas" in refused.json()["message"]
        # ...but may update them (kubectl scale); Hookgate's forced apply takes them back.
        scaled = await client.patch(
            url,
            params={"fieldManager": "kubectl"},
            json={"spec": {"replicas": 7}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert scaled.status_code == 200, scaled.text
    await eventually(lambda: stored(cluster, "deployments", name)["spec"]["replicas"] == 2)
