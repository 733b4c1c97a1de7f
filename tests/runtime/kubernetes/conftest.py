"""Fixtures: the emulated API server, runtimes bound to it, flows, and ways to look inside."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kmock._internal import rendering

from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import Flow, new_flow_id
from hookgate.runtime.kubernetes.client import kubeconfig_for
from hookgate.runtime.kubernetes.runtime import KubernetesRuntime

from .emulator import WRITES, Emulator, emulated

NAMESPACE = "flows"
# A pod in its grace period (a finalizer keeps the emulator from removing it at once).
TERMINATING = {
    "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["test/grace"]}
}


@pytest.fixture
async def cluster() -> AsyncIterator[Emulator]:
    async with emulated() as emulator:
        yield emulator


@pytest.fixture
async def make_runtime(cluster: Emulator) -> AsyncIterator[Callable[..., Any]]:
    made: list[KubernetesRuntime] = []

    async def make(**options: Any) -> KubernetesRuntime:
        client = kubeconfig_for(str(cluster.url))
        runtime = KubernetesRuntime(namespace=NAMESPACE, client=client, **options)
        await runtime.start()
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.close()
        await runtime.kube.close()


@pytest.fixture
async def runtime(make_runtime: Callable[..., Any]) -> KubernetesRuntime:
    made: KubernetesRuntime = await make_runtime(identity="solo")
    return made


def make_flow(name: str, mode: str = "sync", **fields: Any) -> Flow:
    worker = fields.pop("worker", {"image": f"registry.example/{name}:1"})
    spec = spec_from_object({"name": name, "mode": mode, "worker": worker, **fields})
    return Flow(id=new_flow_id(), spec=spec, created_at=0.0, updated_at=0.0)


def stored(cluster: Emulator, plural: str, name: str) -> Any:
    """The object as the emulator holds it now, or None."""
    for (resource, namespace, found), obj in cluster.objects.items():
        if (resource.plural, namespace, found) == (plural, NAMESPACE, name) and not obj.deleted:
            return obj.raw
    return None


def names_of(cluster: Emulator, plural: str) -> set[str]:
    return {
        name
        for (resource, namespace, name), obj in cluster.objects.items()
        if resource.plural == plural and namespace == NAMESPACE and not obj.deleted
    }


def writes(cluster: Emulator) -> list[rendering.Request]:
    return [r for r in cluster if r.action in WRITES]


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy (the watch is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await asyncio.sleep(0.02)
