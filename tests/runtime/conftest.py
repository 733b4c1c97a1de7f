"""The platforms the runtime contract runs on: real local processes, Kubernetes emulated, or
ASGI apps in this event loop (the memory twin).

A ``Harness`` hands the suite a started runtime, flows whose workers start, start slowly or
cannot start on that platform, and ways to look at the platform itself — which workers run,
what is left of a flow, whether an endpoint really serves the flow — without asking the
runtime, so the suite checks what the runtime says against what is there.

The Kubernetes emulator stores objects but runs nothing, so ``Cluster`` plays the parts of
the cluster the runtime relies on: the Deployment and Job controllers, the kubelet and the
garbage collector.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import httpx
import pytest
from tests.conftest import ROOT
from tests.runtime.kubernetes.emulator import Emulator, emulated

from hookgate.asgi import Receive, Scope, Send
from hookgate.domain.backoff import RestartBackoff
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import Flow, new_flow_id
from hookgate.domain.forwarding import Outbound
from hookgate.errors import RuntimeFailure, WorkerStartFailed
from hookgate.runtime.base import Runtime
from hookgate.runtime.kubernetes import names, reconciler
from hookgate.runtime.kubernetes.client import Kube, kubeconfig_for
from hookgate.runtime.kubernetes.runtime import KubernetesRuntime
from hookgate.runtime.local import RESTART, LocalRuntime
from hookgate.runtime.memory import App, MemoryRuntime, Network
from hookgate.transport.memory import MemoryTransport

Fault = Literal["slow", "exit", "missing"]
Object = dict[str, Any]

ECHO = ROOT / "examples" / "workers" / "echo.py"
NAMESPACE = "contract"
VERSION = "CONTRACT_VERSION"
# Waits for a file before serving (``slow``) or exits at once until it exists (``exit``).
GATED = """\
import os, runpy, sys, time
gate, fault, echo = sys.argv[1:]
while not os.path.exists(gate):
    if fault == "exit":
        sys.exit("boom: the worker cannot start")
    time.sleep(0.02)
sys.argv = [echo]
runpy.run_path(echo, run_name="__main__")
"""


class Running(NamedTuple):
    """A worker as the platform sees it: a process id or a pod name, and its environment."""

    name: str
    env: dict[str, str]


class Harness(abc.ABC):
    name: str
    runtime: Runtime

    def __init__(self) -> None:
        self.flow_ids: set[str] = set()

    def flow(
        self,
        name: str,
        mode: str,
        *,
        version: str = "1",
        fault: Fault | None = None,
        flow_id: str | None = None,
        **fields: Any,
    ) -> Flow:
        """A flow of echo workers; the same ``flow_id`` with another ``version`` is an edit."""
        worker = {**self.worker(fault), "env": {VERSION: version}}
        spec = spec_from_object({"name": name, "mode": mode, "worker": worker, **fields})
        flow = Flow(id=flow_id or new_flow_id(), spec=spec, created_at=0.0, updated_at=0.0)
        self.flow_ids.add(flow.id)
        return flow

    @abc.abstractmethod
    def worker(self, fault: Fault | None) -> dict[str, Any]:
        """The ``worker:`` of a flow whose workers behave, or misbehave in the given way."""

    @abc.abstractmethod
    async def heal(self) -> None:
        """Make every misbehaving worker start normally from now on."""

    @abc.abstractmethod
    def explains(self, fault: Fault, mode: str) -> str:
        """What ``status().last_error`` must mention for the fault, in the platform's words."""

    @abc.abstractmethod
    def workers(self, flow_id: str) -> list[Running]:
        """The flow's workers that exist on the platform now, ready or not."""

    @abc.abstractmethod
    def leftovers(self, flow_id: str) -> list[str]:
        """Anything of the flow still on the platform."""

    @abc.abstractmethod
    async def answers(self, endpoint: Endpoint, flow: Flow) -> bool:
        """Whether a request sent to the endpoint now reaches a ready worker of the flow."""


# local ----------------------------------------------------------------------------------------
class LocalHarness(Harness):
    name = "local"

    def __init__(self, tmp: Path, *, restart: RestartBackoff = RESTART) -> None:
        super().__init__()
        self.runtime = LocalRuntime(stop_grace=2.0, restart=restart)
        self.gate = tmp / "healed"
        self.gated = tmp / "gated.py"
        self.gated.write_text(GATED)
        self.missing = tmp / "bin" / "worker"

    def worker(self, fault: Fault | None) -> dict[str, Any]:
        if fault is None:
            return {"command": [sys.executable, str(ECHO)]}
        if fault == "missing":
            return {"command": [str(self.missing)]}
        return {"command": [sys.executable, str(self.gated), str(self.gate), fault, str(ECHO)]}

    async def heal(self) -> None:
        self.gate.touch()
        self.missing.parent.mkdir(exist_ok=True)
        self.missing.write_text(f"#!/bin/sh\nexec {sys.executable} {ECHO}\n")
        self.missing.chmod(0o755)

    def explains(self, fault: Fault, mode: str) -> str:
        return {"exit": "boom: the worker cannot start", "missing": "no such executable"}[fault]

    def workers(self, flow_id: str) -> list[Running]:
        """Live processes whose environment names the flow, found in /proc, not in the runtime."""
        marker = f"HOOKGATE_FLOW_ID={flow_id}"
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            pairs = [item.partition("=") for item in environ.split("\0") if item]
            if any(f"{key}={value}" == marker for key, _, value in pairs):
                found.append(Running(entry.name, {key: value for key, _, value in pairs}))
        return found

    def leftovers(self, flow_id: str) -> list[str]:
        return [f"process {worker.name}" for worker in self.workers(flow_id)]

    async def answers(self, endpoint: Endpoint, flow: Flow) -> bool:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(f"{endpoint.base_url}/contract/probe?n=1")
        echo = response.json()
        return bool(
            response.status_code == 200
            and echo["flow"] == flow.id
            and echo["path"] == "/contract/probe"
        )


# kubernetes -----------------------------------------------------------------------------------
def _ready(pod: Object) -> bool:
    status = pod.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return status.get("phase") == "Running" and conditions.get("Ready") == "True"


def _owner(pod: Object) -> str:
    [ref] = pod["metadata"]["ownerReferences"]
    return f"{ref['kind']}/{ref['name']}"


def _pod_status(fault: Fault | None, image: str, ip: str) -> Object:
    """A pod's status as the kubelet reports it for a worker that behaves or misbehaves."""
    container: Object = {"name": "worker", "image": image, "imageID": "", "restartCount": 0}
    phase = "Pending"
    if fault is None:
        phase, container["state"] = "Running", {"running": {}}
    elif fault == "slow":
        container["state"] = {"waiting": {"reason": "ContainerCreating"}}
    elif fault == "missing":
        message = f'Back-off pulling image "{image}"'
        container["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": message}}
    else:
        phase, container["restartCount"] = "Running", 1
        message = "back-off 10s restarting failed container=worker"
        container["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        container["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
    container["ready"] = fault is None
    ready = "True" if fault is None else "False"
    return {
        "phase": phase,
        "podIP": ip,
        "conditions": [{"type": "Ready", "status": ready}],
        "containerStatuses": [container],
    }


_OVER = ("Succeeded", "Failed")


class Cluster:
    """The controllers and the kubelet that the emulator lacks, polling it and writing back.

    Deployments roll out like ``RollingUpdate`` with ``maxUnavailable: 0`` (pods of the new
    template first, the old ones once those are ready); a Job runs ``parallelism`` pods (its
    ``backoffLimit`` is never reached: crashing pods stay in CrashLoopBackOff); pods whose
    owner is gone are garbage-collected. Each pod gets its own IP. An image listed in
    ``faults`` misbehaves until ``faults`` is cleared.
    """

    def __init__(self, emulator: Emulator, kube: Kube) -> None:
        self.emulator = emulator
        self.kube = kube
        self.faults: dict[str, Fault] = {}
        self._serial = itertools.count()
        self._ips = itertools.count(1)

    def objects(self, plural: str) -> list[Object]:
        return [
            obj.raw
            for (resource, namespace, _), obj in list(self.emulator.objects.items())
            if resource.plural == plural and namespace == NAMESPACE and not obj.deleted
        ]

    def pods_of(self, owner: str) -> list[Object]:
        return [pod for pod in self.objects("pods") if _owner(pod) == owner]

    async def run(self) -> None:
        while True:
            with contextlib.suppress(RuntimeFailure):  # raced with the runtime; look again
                await self.step()
            await asyncio.sleep(0.01)

    async def step(self) -> None:
        deployments = {d["metadata"]["name"]: d for d in self.objects("deployments")}
        jobs = {j["metadata"]["name"]: j for j in self.objects("jobs")}
        owners = {f"Deployment/{n}" for n in deployments} | {f"Job/{n}" for n in jobs}
        for pod in self.objects("pods"):
            if _owner(pod) not in owners and not pod["metadata"].get("deletionTimestamp"):
                await self.kube.delete("Pod", pod["metadata"]["name"])
            else:
                await self.kubelet(pod)
        for deployment in deployments.values():
            await self._roll(deployment)
        for job in jobs.values():
            await self._run(job)

    async def kubelet(self, pod: Object) -> None:
        """Run the pod: here, report it ready unless its image is told to misbehave."""
        if not _ready(pod) and self._fault(pod) is None:
            status = _pod_status(None, self._image(pod), pod["status"]["podIP"])
            await self.kube.merge("Pod", pod["metadata"]["name"], {"status": status})

    def _live(self, pods: list[Object]) -> list[Object]:
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    async def _roll(self, deployment: Object) -> None:
        name, spec = deployment["metadata"]["name"], deployment["spec"]
        revision = names.digest(spec["template"])
        pods = self._live(self.pods_of(f"Deployment/{name}"))
        current = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == revision]
        for _ in range(spec["replicas"] - len(current)):
            await self._create(deployment, {"pod-template-hash": revision})
        for pod in current[spec["replicas"] :]:
            await self.kube.delete("Pod", pod["metadata"]["name"])
        if sum(_ready(p) for p in current) >= spec["replicas"]:
            for pod in pods:
                if pod not in current:
                    await self.kube.delete("Pod", pod["metadata"]["name"])

    async def _run(self, job: Object) -> None:
        """Keep ``parallelism`` pods active, as the Job controller does with ``completions``:
        at most ``completions`` - succeeded; without it, none once any pod has succeeded."""
        name, spec = job["metadata"]["name"], job["spec"]
        pods = self._live(self.pods_of(f"Job/{name}"))
        succeeded = sum((p.get("status") or {}).get("phase") == "Succeeded" for p in pods)
        pods = [p for p in pods if (p.get("status") or {}).get("phase") not in _OVER]
        left = spec.get("completions", 0 if succeeded else spec["parallelism"]) - succeeded
        for _ in range(min(spec["parallelism"], left) - len(pods)):
            await self._create(job, {})
        for pod in pods[spec["parallelism"] :]:
            await self.kube.delete("Pod", pod["metadata"]["name"])

    async def _create(self, owner: Object, extra_labels: dict[str, str]) -> None:
        await self.kube.apply(self.new_pod(owner, extra_labels))

    def new_pod(self, owner: Object, extra_labels: dict[str, str]) -> Object:
        template = owner["spec"]["template"]
        image = template["spec"]["containers"][0]["image"]
        reference = {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": "emulated",
            "controller": True,
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{owner['metadata']['name']}-{next(self._serial):05d}",
                "namespace": NAMESPACE,
                "labels": {**template["metadata"]["labels"], **extra_labels},
                "annotations": template["metadata"].get("annotations", {}),
                "ownerReferences": [reference],
            },
            "spec": template["spec"],
            "status": _pod_status(self.faults.get(image), image, self.next_ip()),
        }
        return pod

    def next_ip(self) -> str:
        return f"10.1.0.{next(self._ips)}"

    @staticmethod
    def _image(pod: Object) -> str:
        image: str = pod["spec"]["containers"][0]["image"]
        return image

    def _fault(self, pod: Object) -> Fault | None:
        return self.faults.get(self._image(pod))


class KubernetesHarness(Harness):
    name = "kubernetes"

    def __init__(self, *, runtime: KubernetesRuntime, cluster: Cluster) -> None:
        super().__init__()
        self.runtime = runtime
        self.cluster = cluster

    def worker(self, fault: Fault | None) -> dict[str, Any]:
        image = f"registry.example/{fault or 'echo'}:1"
        if fault is not None:
            self.cluster.faults[image] = fault
        return {"image": image}

    async def heal(self) -> None:
        self.cluster.faults.clear()

    def explains(self, fault: Fault, mode: str) -> str:
        if fault == "missing":
            return "ImagePullBackOff"
        return "CrashLoopBackOff"

    def _of(self, plural: str, flow_id: str) -> list[Object]:
        key = names.flow_key(flow_id)
        return [
            obj
            for obj in self.cluster.objects(plural)
            if (obj["metadata"].get("labels") or {}).get(names.FLOW_LABEL) == key
        ]

    def workers(self, flow_id: str) -> list[Running]:
        return [
            Running(
                pod["metadata"]["name"],
                {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]},
            )
            for pod in self._of("pods", flow_id)
        ]

    def leftovers(self, flow_id: str) -> list[str]:
        return [
            f"{plural}/{obj['metadata']['name']}"
            for plural in ("services", "deployments", "jobs", "pods")
            for obj in self._of(plural, flow_id)
        ]

    async def answers(self, endpoint: Endpoint, flow: Flow) -> bool:
        """The endpoint is a ready pod of the flow, at its IP and the worker's port."""
        return any(
            _ready(pod)
            and pod["status"].get("podIP") == endpoint.host
            and endpoint.port in {p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
            for pod in self._of("pods", flow.id)
        )


# memory ---------------------------------------------------------------------------------------
class MemoryHarness(Harness):
    """Workers are ASGI apps whose lifespan the harness watches: a worker exists from its
    startup to its shutdown, whatever the runtime says."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.healed = asyncio.Event()
        self.live: dict[str, Running] = {}
        self.serial = itertools.count(1)
        self.network = Network()
        self.runtime = MemoryRuntime(
            self.app, network=self.network, restart=RestartBackoff(first=0.05, cap=0.5)
        )

    def worker(self, fault: Fault | None) -> dict[str, Any]:
        return {"command": [fault or "echo"]}

    def app(self, flow: Flow, env: dict[str, str]) -> App:
        fault = (flow.spec.workload.command or ["echo"])[0]
        if fault == "missing" and not self.healed.is_set():
            raise WorkerStartFailed("cannot start 'missing': no such executable")
        name = f"worker-{next(self.serial)}"

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                await receive()
                self.live[name] = Running(name, env)
                try:
                    if fault == "exit" and not self.healed.is_set():
                        message = "boom: the worker cannot start"
                        await send({"type": "lifespan.startup.failed", "message": message})
                        return
                    if fault == "slow":
                        await self.healed.wait()
                    await send({"type": "lifespan.startup.complete"})
                    await receive()
                    await send({"type": "lifespan.shutdown.complete"})
                finally:
                    del self.live[name]
                return
            echo = {"flow": env["HOOKGATE_FLOW_ID"], "path": scope["path"]}
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": json.dumps(echo).encode()})

        return app

    async def heal(self) -> None:
        self.healed.set()

    def explains(self, fault: Fault, mode: str) -> str:
        return {"exit": "boom: the worker cannot start", "missing": "no such executable"}[fault]

    def workers(self, flow_id: str) -> list[Running]:
        return [w for w in self.live.values() if w.env["HOOKGATE_FLOW_ID"] == flow_id]

    def leftovers(self, flow_id: str) -> list[str]:
        return [w.name for w in self.workers(flow_id)]

    async def answers(self, endpoint: Endpoint, flow: Flow) -> bool:
        probe = Outbound(method="GET", target="/contract/probe?n=1", headers=[], body=b"")
        reply = await MemoryTransport(self.network).send(
            endpoint, probe, timeout=5.0, keep_body=1024
        )
        echo = json.loads(reply.body)
        return reply.status == 200 and echo == {"flow": flow.id, "path": "/contract/probe"}


# fixtures -------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def local(
    tmp_path: Path, *, restart: RestartBackoff = RESTART
) -> AsyncIterator[LocalHarness]:
    harness = LocalHarness(tmp_path, restart=restart)
    await harness.runtime.start()
    try:
        yield harness
    finally:
        await harness.runtime.close()
        # close() stops every worker it started; one that outlives it is killed and reported.
        leaked = [w for flow_id in harness.flow_ids for w in harness.workers(flow_id)]
        for worker in leaked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(worker.name), signal.SIGKILL)
        assert not leaked, f"workers outlived LocalRuntime.close(): {leaked}"


@contextlib.asynccontextmanager
async def kubernetes(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KubernetesHarness]:
    # A failed Job is kept for a pause before it is replaced; keep the suite fast.
    monkeypatch.setattr(reconciler, "JOB_PAUSE", 0.2)
    async with emulated() as emulator:
        runtime = KubernetesRuntime(
            namespace=NAMESPACE, client=kubeconfig_for(str(emulator.url)), identity="contract"
        )
        kube = Kube(kubeconfig_for(str(emulator.url)), namespace=NAMESPACE)
        cluster = Cluster(emulator, kube)
        await runtime.start()
        playing = asyncio.create_task(cluster.run(), name="emulated-cluster")
        try:
            yield KubernetesHarness(runtime=runtime, cluster=cluster)
        finally:
            playing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await playing
            await runtime.close()
            await runtime.kube.close()
            await kube.close()


@contextlib.asynccontextmanager
async def memory() -> AsyncIterator[MemoryHarness]:
    harness = MemoryHarness()
    await harness.runtime.start()
    try:
        yield harness
    finally:
        await harness.runtime.close()
        assert not harness.live, f"workers outlived MemoryRuntime.close(): {harness.live}"


@pytest.fixture(params=["memory", "local", "kubernetes"])
async def harness(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    platform: contextlib.AbstractAsyncContextManager[Harness]
    if request.param == "memory":
        platform = memory()
    elif request.param == "local":
        platform = local(tmp_path)
    else:
        platform = kubernetes(monkeypatch)
    async with platform as made:
        yield made
