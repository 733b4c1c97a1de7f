"""A Kubernetes API emulator (kmock) that behaves like a real API server for our verbs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web
import attrs
import kmock
import pytest
from kmock._internal import enums, rendering

from hookgate.domain.flows import Flow, new_flow_id, spec_from_object
from hookgate.runtime.kubernetes.client import kubeconfig_for
from hookgate.runtime.kubernetes.runtime import KubernetesRuntime

NAMESPACE = "flows"
RESOURCES = (
    "v1/services",
    "apps/v1/deployments",
    "batch/v1/jobs",
    "v1/pods",
    "v1/events",
    "coordination.k8s.io/v1/leases",
)
WRITES = {enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE}


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    """kmock plus server-side apply's upsert: applying a missing object creates it.

    kmock treats every PATCH as a merge patch of an existing object; a real API server
    creates the object on an apply patch, which is the one write the runtime uses.
    """

    refusals: dict[str, tuple[int, str, str]] = attrs.field(factory=dict, init=False)

    def refuse_writes(self, plural: str, code: int, reason: str, message: str) -> None:
        """Answer writes to ``plural`` with an API error, as RBAC or a quota would."""
        self.refusals[plural] = (code, reason, message)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        refusal = self.refusals.get(request.resource.plural or "") if request.resource else None
        if refusal is not None and request.action in WRITES:
            code, reason, message = refusal
            return aiohttp.web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "Status",
                    "status": "Failure",
                    "code": code,
                    "reason": reason,
                    "message": message,
                },
                status=code,
            )
        content_type = request.headers.get("Content-Type", "")
        if (
            request.action == enums.action.UPDATE
            and request.resource is not None
            and content_type.startswith("application/apply-patch")
        ):
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key not in self.objects or self.objects[key].deleted:
                    if key in self.objects:
                        self.objects[key].create(request.data)
                    else:
                        self.objects[key] = request.data
                    raw = self.objects[key].raw
                    await self._buses[request.resource].put({"type": "ADDED", "object": raw})
                    return aiohttp.web.json_response(raw, status=201)
        return await super()._handle(request)


@pytest.fixture
async def cluster() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator, kmock.Server(emulator):
        for resource in RESOURCES:
            emulator.resources[resource] = {}
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
