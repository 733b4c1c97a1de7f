"""kmock's Kubernetes emulator, taught the one thing the runtime needs that it lacks.

Shared by the tests and ``bench/k8s_reconcile.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp.web
import attrs
import kmock
from kmock._internal import enums, rendering

RESOURCES = (
    "v1/services",
    "apps/v1/deployments",
    "batch/v1/jobs",
    "policy/v1/poddisruptionbudgets",
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


@contextlib.asynccontextmanager
async def emulated() -> AsyncIterator[Emulator]:
    """A running emulator that knows the resources the runtime uses."""
    async with Emulator() as emulator, kmock.Server(emulator):
        for resource in RESOURCES:
            emulator.resources[resource] = {}
        yield emulator
