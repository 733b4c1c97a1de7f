"""Watches that break as real ones do: server timeouts, 410 Gone, events never delivered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kmock._internal import enums

from hookgate.domain.endpoints import Endpoint
from hookgate.runtime.kubernetes import names
from hookgate.runtime.kubernetes.runtime import KubernetesRuntime

from .conftest import TERMINATING, Emulator, eventually, make_flow, stored
from .test_runtime import add_pod


def pod_lists(cluster: Emulator) -> int:
    return sum(
        r.action == enums.action.LIST and r.resource is not None and r.resource.plural == "pods"
        for r in cluster
    )


async def test_a_deletion_missed_while_the_watch_was_gone_is_seen_after_410(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    flow = make_flow("gone", replicas=2)
    await runtime.scale(flow, 2)
    await add_pod(runtime, flow, "gone-a", ip="10.0.0.1")
    await add_pod(runtime, flow, "gone-b", ip="10.0.0.2")
    await eventually(lambda: len(runtime.endpoints(flow.id)) == 2)

    # The pod goes while no watch reports it (its DELETED event is never delivered)...
    [key] = [k for k in cluster.objects if k[0].plural == "pods" and k[2] == "gone-a"]
    cluster.objects[key].delete()
    # ...and the watch's version has been compacted: resuming it answers 410 Gone.
    cluster.expire_watches()

    await eventually(lambda: runtime.endpoints(flow.id) == [Endpoint("10.0.0.2", 8080, 256)])
    await add_pod(runtime, flow, "gone-c", ip="10.0.0.3")  # and the new watch follows changes
    await eventually(lambda: len(runtime.endpoints(flow.id)) == 2)


async def test_watches_the_server_times_out_resume_without_a_relist(
    make_runtime: Callable[..., Any], cluster: Emulator
) -> None:
    runtime: KubernetesRuntime = await make_runtime(identity="timeouts", watch_timeout=1)
    flow = make_flow("timeouts")
    await runtime.scale(flow, 1)
    lists = pod_lists(cluster)

    pod_watches = lambda: [  # noqa: E731
        r
        for r in cluster
        if r.action == enums.action.WATCH and r.resource is not None and r.resource.plural == "pods"
    ]
    await eventually(lambda: len(pod_watches()) >= 3)  # timed out twice, resumed twice
    assert all(r.params["timeoutSeconds"] == "1" for r in pod_watches())
    assert all(r.params.get("resourceVersion") for r in pod_watches())
    assert pod_lists(cluster) == lists

    await add_pod(runtime, flow, "late", ip="10.0.0.9")
    await eventually(lambda: runtime.endpoints(flow.id) == [Endpoint("10.0.0.9", 8080, 256)])


async def test_cold_starts_and_crashes_are_reported(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    started: list[tuple[str, float]] = []
    failed: list[tuple[str, str]] = []
    runtime.on_ready = lambda flow_id, seconds: started.append((flow_id, seconds))
    runtime.on_failed = lambda flow_id, reason: failed.append((flow_id, reason))
    flow = make_flow("hooks", "async")
    await runtime.scale(flow, 1)

    await add_pod(runtime, flow, "hooks-a", ready=False)
    await eventually(lambda: runtime.status(flow.id).starting == 1)
    await add_pod(runtime, flow, "hooks-a", ready=True)
    await eventually(lambda: started)
    [(flow_id, seconds)] = started
    assert flow_id == flow.id and seconds > 0

    crash = {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}
    await add_pod(runtime, flow, "hooks-a", ready=False, waiting=crash, restarts=1)
    await eventually(lambda: failed)
    assert failed[0][0] == flow.id
    status = runtime.status(flow.id)
    assert (status.jobs, status.restarts) == (1, 1)
    assert len(started) == 1  # a pod is timed once, from first sight to its first ready


async def test_a_pod_that_never_starts_fails_a_delivery_but_a_crash_after_ready_does_not(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    """A bad image is a start failure (the dispatcher spends an attempt on it, as for a local
    command that is missing); a worker that was ready and crashed is only reported."""
    never: list[tuple[str, str]] = []
    runtime.on_start_failed = lambda flow_id, reason: never.append((flow_id, reason))
    flow = make_flow("images", "async")
    await runtime.scale(flow, 1)
    await add_pod(runtime, flow, "images-a", ready=False)
    pull = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope:1"'}
    await add_pod(runtime, flow, "images-a", ready=False, waiting=pull)
    await eventually(lambda: never)
    assert never[0][0] == flow.id and "ImagePullBackOff" in never[0][1]

    await add_pod(runtime, flow, "images-b", ready=False)
    await add_pod(runtime, flow, "images-b", ready=True)
    crash = {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}
    await add_pod(runtime, flow, "images-b", ready=False, waiting=crash, restarts=1)
    await eventually(lambda: runtime.status(flow.id).restarts >= 1)
    assert len(never) == 1


async def test_terminating_pods_count_as_stopping(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    flow = make_flow("stopping", replicas=1)
    await runtime.scale(flow, 1)
    await add_pod(runtime, flow, "stopping-a")
    await runtime.kube.merge("Pod", "stopping-a", TERMINATING)
    status = await eventually(lambda: (s := runtime.status(flow.id)).stopping and s)
    assert (status.ready, status.stopping) == (0, 1)


async def test_an_event_that_cannot_be_decoded_restarts_the_watch(
    runtime: KubernetesRuntime, cluster: Emulator
) -> None:
    """A Deployment without ``spec`` (what a bookmark looks like) does not end the watch."""
    flow = make_flow("undecodable")
    await runtime.scale(flow, 1)
    name = names.base_name(flow)
    [resource] = {key[0] for key in cluster.objects if key[0].plural == "deployments"}
    await cluster._buses[resource].put({"type": "MODIFIED", "object": {"metadata": {}}})

    await runtime.kube.merge("Deployment", name, {"spec": {"replicas": 7}})
    await eventually(lambda: stored(cluster, "deployments", name)["spec"]["replicas"] == 1)
