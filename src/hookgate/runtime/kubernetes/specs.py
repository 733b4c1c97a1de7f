"""The objects a flow should have, as plain dicts: pure functions, no I/O.

Every flow gets a ClusterIP Service (port 80 to the worker port) selecting its pods; a sync
flow a Deployment that keeps ``replicas`` ready pods (and a PodDisruptionBudget once it has
more than one); an async flow, while work waits, a Job whose ``parallelism`` follows demand.
Each object carries a ``hookgate.io/spec-hash`` annotation: the reconciler compares hashes,
so an unchanged flow causes no write at all.
"""

from __future__ import annotations

import math
from typing import Any

from hookgate.domain.flows import Flow, Mode
from hookgate.errors import ConfigError
from hookgate.runtime.kubernetes import names

Object = dict[str, Any]

SERVICE_PORT = 80
# A Job that never completes by itself and never fails for crashes (int32 maximum, the
# largest the API accepts): see ``job``.
JOB_FOREVER = 2**31 - 1
JOB_TTL = 300
# Seconds a stopping pod keeps serving, so that every client (the gateway's watch,
# kube-proxy, an ingress) has stopped sending it new requests before it gets SIGTERM.
PRE_STOP = 5
# After SIGTERM: time to finish the request in hand (the flow's timeout) and exit.
STOP_MARGIN = 5
DEFAULT_INSTANCE = "hookgate"


def service(flow: Flow, *, namespace: str, instance: str = DEFAULT_INSTANCE) -> Object:
    port = {
        "name": "http",
        "port": SERVICE_PORT,
        "targetPort": flow.spec.workload.port,
        "protocol": "TCP",
    }
    spec = {
        "type": "ClusterIP",
        "selector": names.selector(flow.id, instance=instance),
        "ports": [port],
    }
    return _finish("v1", "Service", names.base_name(flow), flow, namespace, instance, spec)


def deployment(
    flow: Flow, *, namespace: str, replicas: int, instance: str = DEFAULT_INSTANCE
) -> Object:
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": names.selector(flow.id, instance=instance)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": pod_template(flow, instance=instance, restart="Always"),
    }
    return _finish("apps/v1", "Deployment", names.base_name(flow), flow, namespace, instance, spec)


def disruption_budget(flow: Flow, *, namespace: str, instance: str = DEFAULT_INSTANCE) -> Object:
    """At most one pod of a sync flow evicted at a time (node drains, autoscaler).

    Unhealthy pods may always be evicted, so a crash-looping flow never blocks a drain.
    """
    spec = {
        "maxUnavailable": 1,
        "selector": {"matchLabels": names.selector(flow.id, instance=instance)},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    return _finish(
        "policy/v1", "PodDisruptionBudget", names.base_name(flow), flow, namespace, instance, spec
    )


def job(flow: Flow, *, namespace: str, workers: int, instance: str = DEFAULT_INSTANCE) -> Object:
    """A Job of ``workers`` parallel pods (at most ``max_workers``) that lives while work waits.

    A Job is the wrong tool for a pool of servers unless shaped for it: without
    ``completions`` one pod exiting 0 (an evicted worker whose SDK exits 0 on SIGTERM) ends
    the Job and no pod replaces it. So ``completions`` is the int32 maximum: every pod that
    exits is replaced until the gateway deletes the Job. Crashes restart the container in
    place (``OnFailure``, the kubelet's CrashLoopBackOff) and cost the delivery in hand one
    attempt under the flow's retry rules; ``backoffLimit`` is the maximum too, so no number
    of crashes stops the flow's other work. No ``activeDeadlineSeconds``: a flow busy for
    days keeps its Job.

    Pod templates of Jobs are immutable, so the name carries a hash of everything but
    ``parallelism``: a changed flow gets a new Job, while demand only patches the old one.
    """
    spec: Object = {
        "completions": JOB_FOREVER,
        "backoffLimit": JOB_FOREVER,
        "ttlSecondsAfterFinished": JOB_TTL,
        "template": pod_template(flow, instance=instance, restart="OnFailure"),
    }
    name = names.job_name(flow, names.digest(spec))
    spec["parallelism"] = max(1, min(workers, flow.spec.max_workers))
    return _finish("batch/v1", "Job", name, flow, namespace, instance, spec)


def pod_template(flow: Flow, *, instance: str, restart: str) -> Object:
    worker = flow.spec.workload
    if not worker.image:
        raise ConfigError(f"flow {flow.name!r}: the kubernetes runtime needs worker.image")
    env = {
        **worker.env,
        "PORT": str(worker.port),
        "HOOKGATE_FLOW_ID": flow.id,
        "HOOKGATE_MODE": flow.mode.value,
    }
    probe: Object = (
        {"httpGet": {"path": worker.readiness_path, "port": worker.port}}
        if worker.readiness_path
        else {"tcpSocket": {"port": worker.port}}
    )
    container: Object = {
        "name": "worker",
        "image": worker.image,
        "ports": [{"name": "http", "containerPort": worker.port, "protocol": "TCP"}],
        "env": [{"name": key, "value": value} for key, value in sorted(env.items())],
        "readinessProbe": {**probe, "periodSeconds": 2, "failureThreshold": 3},
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP}}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if worker.resources:
        container["resources"] = worker.resources
    pod: Object = {
        "restartPolicy": restart,
        # Serve while clients stop sending, then finish the request in hand after SIGTERM.
        "terminationGracePeriodSeconds": PRE_STOP + math.ceil(flow.spec.timeout) + STOP_MARGIN,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if worker.service_account:
        pod["serviceAccountName"] = worker.service_account
    else:
        pod["automountServiceAccountToken"] = False
    if worker.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in worker.image_pull_secrets]
    if worker.node_selector:
        pod["nodeSelector"] = dict(worker.node_selector)
    if worker.tolerations:
        pod["tolerations"] = list(worker.tolerations)
    metadata = {
        "labels": names.labels(flow, instance=instance),
        "annotations": {names.FLOW_ID_ANNOTATION: flow.id},
    }
    return {"metadata": metadata, "spec": pod}


def desired(
    flow: Flow,
    *,
    workers: int,
    namespace: str,
    instance: str = DEFAULT_INSTANCE,
    owner: Object | None = None,
) -> list[Object]:
    """What the flow should have with ``workers`` workers wanted now.

    With an ``owner`` (an ownerReference to the gateway's Deployment), deleting Hookgate lets
    Kubernetes collect every flow object, even those of flows deleted while it was down.
    """
    objects = [service(flow, namespace=namespace, instance=instance)]
    if flow.mode is Mode.SYNC:
        objects.append(deployment(flow, namespace=namespace, replicas=workers, instance=instance))
        if workers > 1:
            objects.append(disruption_budget(flow, namespace=namespace, instance=instance))
    elif workers > 0:
        objects.append(job(flow, namespace=namespace, workers=workers, instance=instance))
    if owner is not None:
        for obj in objects:
            obj["metadata"]["ownerReferences"] = [owner]
    return objects


def owner_reference(owner: Object) -> Object:
    """An ownerReference to ``owner`` (which does not block its deletion)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "blockOwnerDeletion": False,
    }


def render(flows: list[Flow], namespace: str, *, instance: str = DEFAULT_INSTANCE) -> list[Object]:
    """Every object the flows would get: sync at ``replicas``, async at ``max_workers``."""
    return [
        obj
        for flow in flows
        for obj in desired(
            flow,
            namespace=namespace,
            instance=instance,
            workers=flow.spec.replicas if flow.mode is Mode.SYNC else flow.spec.max_workers,
        )
    ]


def _finish(
    api_version: str,
    kind: str,
    name: str,
    flow: Flow,
    namespace: str,
    instance: str,
    spec: Object,
) -> Object:
    obj: Object = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": names.labels(flow, instance=instance),
            "annotations": {names.FLOW_ID_ANNOTATION: flow.id},
        },
        "spec": spec,
    }
    obj["metadata"]["annotations"][names.SPEC_HASH_ANNOTATION] = names.digest(obj)
    return obj
