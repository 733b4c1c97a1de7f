"""An emulated cluster whose kubelet runs each pod's container as a real local process.

``ProcessCluster`` keeps the controllers of ``tests.runtime.conftest.Cluster`` and replaces
its kubelet: a pod's image is mapped to a command, the process gets the pod's environment,
its own loopback address as pod IP (``127.0.0.N``, bound through ``HOST``) and
``HOSTNAME`` = the pod name, and it is reported ready once its port accepts connections.
A process that exits is restarted in place (one more restart, its exit code as last
state), except that an ``OnFailure`` pod whose process exits 0 has ``Succeeded``.
Deleting a pod is graceful as on a node: the pod stays (a finalizer holds it) while the
``preStop`` sleep runs, then gets SIGTERM, then SIGKILL after its grace period, and only
then disappears. ``Background`` runs the emulator and the cluster on their own event loop
in a thread, so that a test can drive a ``hookgate serve`` process synchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tests.runtime.conftest import NAMESPACE, Cluster

from hookgate.runtime.kubernetes.client import Kube, kubeconfig_for

from .emulator import Emulator, emulated

Object = dict[str, Any]
FINALIZER = "test.hookgate.io/kubelet"
T = TypeVar("T")


class ProcessCluster(Cluster):
    def __init__(self, emulator: Emulator, kube: Kube, images: dict[str, list[str]]) -> None:
        super().__init__(emulator, kube)
        self.images = images
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._loopback = itertools.count(2)

    def next_ip(self) -> str:
        return f"127.0.0.{next(self._loopback)}"

    def new_pod(self, owner: Object, extra_labels: dict[str, str]) -> Object:
        pod = super().new_pod(owner, extra_labels)
        pod["metadata"]["finalizers"] = [FINALIZER]
        pod["status"] = {
            "phase": "Pending",
            "podIP": pod["status"]["podIP"],
            "conditions": [{"type": "Ready", "status": "False"}],
        }
        return pod

    async def kubelet(self, pod: Object) -> None:
        name = pod["metadata"]["name"]
        if pod["metadata"].get("deletionTimestamp"):
            if name not in self._stopping:
                self._stopping[name] = asyncio.create_task(self._stop(pod))
            return
        if _finished(pod):
            return
        process = self.processes.get(name)
        if process is None:
            self.processes[name] = self._start(pod)
        elif process.poll() is not None:
            await self._exited(pod, process.returncode)
        elif not _ready(pod) and await self._answers(pod):
            status = {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [self._container(pod, ready=True, state={"running": {}})],
            }
            await self.kube.merge("Pod", name, {"status": status})

    async def _exited(self, pod: Object, code: int) -> None:
        """``OnFailure`` pods end on exit 0; otherwise the container restarts in place."""
        name = pod["metadata"]["name"]
        ended = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
        if code == 0 and pod["spec"].get("restartPolicy") == "OnFailure":
            del self.processes[name]
            container = self._container(pod, ready=False, state=ended)
            status = {"phase": "Succeeded", "conditions": [], "containerStatuses": [container]}
        else:
            self.processes[name] = self._start(pod)
            container = self._container(pod, ready=False, state={"running": {}}, restart=1)
            container["lastState"] = ended
            status = {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [container],
            }
        await self.kube.merge("Pod", name, {"status": status})

    def _container(self, pod: Object, *, ready: bool, state: Object, restart: int = 0) -> Object:
        """The container's status, its restarts (plus ``restart``) and last state kept."""
        before = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]
        container = {
            "name": "worker",
            "ready": ready,
            "restartCount": before.get("restartCount", 0) + restart,
            "image": self._image(pod),
            "imageID": "",
            "state": state,
        }
        if "lastState" in before:
            container["lastState"] = before["lastState"]
        return container

    def _start(self, pod: Object) -> subprocess.Popen[bytes]:
        container = pod["spec"]["containers"][0]
        env = {item["name"]: item["value"] for item in container.get("env") or []}
        return subprocess.Popen(
            self.images[container["image"]],
            env={
                **os.environ,
                **env,
                "HOST": pod["status"]["podIP"],
                "HOSTNAME": pod["metadata"]["name"],
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def _answers(self, pod: Object) -> bool:
        port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
        try:
            _, writer = await asyncio.open_connection(pod["status"]["podIP"], port)
        except OSError:
            return False
        writer.close()
        return True

    async def _stop(self, pod: Object) -> None:
        """preStop, SIGTERM, the grace period, SIGKILL; then let the API server remove it."""
        name, spec = pod["metadata"]["name"], pod["spec"]
        hook = spec["containers"][0].get("lifecycle", {}).get("preStop", {})
        grace = spec.get("terminationGracePeriodSeconds", 30)
        process = self.processes.get(name)
        if process is not None:
            await asyncio.sleep(hook.get("sleep", {}).get("seconds", 0))
            process.send_signal(signal.SIGTERM)
            for _ in range(int(grace * 20)):
                if process.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                process.kill()
            process.wait()
            del self.processes[name]
        await self.kube.merge("Pod", name, {"metadata": {"finalizers": []}})

    async def shutdown(self) -> None:
        for task in self._stopping.values():
            task.cancel()
        await asyncio.gather(*self._stopping.values(), return_exceptions=True)
        for process in self.processes.values():
            process.kill()
            process.wait()
        self.processes.clear()


def _finished(pod: Object) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _ready(pod: Object) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class Background:
    """The emulator and a ``ProcessCluster`` on an event loop in a thread."""

    def __init__(self, images: dict[str, list[str]]) -> None:
        self.images = images
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self.cluster: ProcessCluster | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        async with emulated() as emulator:
            kube = Kube(kubeconfig_for(str(emulator.url)), namespace=NAMESPACE)
            self.cluster = ProcessCluster(emulator, kube, self.images)
            self.url = str(emulator.url)
            playing = asyncio.create_task(self.cluster.run())
            self._ready.set()
            await self._stop.wait()
            playing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await playing
            await self.cluster.shutdown()
            await kube.close()

    def run(self, step: Coroutine[Any, Any, T]) -> T:
        """Run ``step`` on the cluster's loop (where its API client lives) and wait for it."""
        return asyncio.run_coroutine_threadsafe(step, self.loop).result(timeout=10)

    def kubeconfig(self, path: Path, *, token: str) -> Path:
        """A kubeconfig for the emulator, authenticating with a bearer ``token``."""
        path.write_text(
            f"apiVersion: v1\nkind: Config\ncurrent-context: emulated\n"
            f"clusters: [{{name: emulated, cluster: {{server: '{self.url}'}}}}]\n"
            f"users: [{{name: gateway, user: {{token: {token}}}}}]\n"
            f"contexts: [{{name: emulated, context: {{cluster: emulated, user: gateway, "
            f"namespace: {NAMESPACE}}}}}]\n"
        )
        return path


@contextlib.contextmanager
def background(images: dict[str, list[str]]) -> Iterator[Background]:
    running = Background(images)
    running._thread.start()
    if not running._ready.wait(10):
        raise RuntimeError("the emulated cluster did not start")
    try:
        yield running
    finally:
        assert running._stop is not None
        running.loop.call_soon_threadsafe(running._stop.set)
        running._thread.join(15)
        running.loop.close()
