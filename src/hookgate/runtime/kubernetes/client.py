"""The Kubernetes API as the runtime uses it; the only module that imports lightkube.

Objects go in and come out as plain dicts. Every API or transport error becomes
``RuntimeFailure`` carrying the API's own reason (``Forbidden``, ``NotFound``,
``AlreadyExists``, ``Conflict``...), so callers log and retry without knowing lightkube.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from lightkube import AsyncClient, ConfigError, KubeConfig
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Pod, Service
from lightkube.types import CascadeType, PatchType

from hookgate.errors import RuntimeFailure
from hookgate.runtime.kubernetes.names import MANAGER

Object = dict[str, Any]

KINDS: dict[str, Any] = {
    "Service": Service, "Deployment": Deployment, "Job": Job, "Pod": Pod, "Event": Event,
    "Lease": Lease,
}
MAX_IN_FLIGHT = 16


def connect(*, kubeconfig: str | None = None, namespace: str | None = None) -> AsyncClient:
    """A client from ``kubeconfig`` if given, else in-cluster config, else ``$KUBECONFIG``."""
    try:
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    except ConfigError as exc:
        raise RuntimeFailure(f"no Kubernetes configuration: {exc}") from None
    return AsyncClient(config, namespace=namespace, field_manager=MANAGER)


def kubeconfig_for(server: str) -> AsyncClient:
    """A client for an unauthenticated API server URL (an emulator, ``kubectl proxy``)."""
    config = KubeConfig.from_dict({
        "clusters": [{"name": "api", "cluster": {"server": server}}],
        "users": [{"name": "anonymous", "user": {}}],
        "contexts": [{"name": "api", "context": {"cluster": "api", "user": "anonymous"}}],
        "current-context": "api",
    })
    return AsyncClient(config, field_manager=MANAGER)


class Kube:
    """Namespaced verbs with bounded concurrency, so 1,000 flows do not open 1,000 requests."""

    def __init__(self, client: AsyncClient, *, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def apply(self, obj: Object) -> Object:
        """Server-side apply (create or update) with Hookgate as the field manager."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        async with self._slots, _translated("apply", kind, name):
            result = await self.client.patch(
                KINDS[kind], name, obj, namespace=self.namespace, patch_type=PatchType.APPLY,
                field_manager=MANAGER, force=True,
            )
        return _plain(result)

    async def create(self, obj: Object) -> Object:
        kind, name = obj["kind"], obj["metadata"]["name"]
        async with self._slots, _translated("create", kind, name):
            result = await self.client.create(KINDS[kind].from_dict(obj), namespace=self.namespace)
        return _plain(result)

    async def merge(self, kind: str, name: str, patch: Object) -> Object:
        """A JSON merge patch; a ``metadata.resourceVersion`` in it makes it conditional."""
        async with self._slots, _translated("patch", kind, name):
            result = await self.client.patch(
                KINDS[kind], name, patch, namespace=self.namespace, patch_type=PatchType.MERGE,
            )
        return _plain(result)

    async def get(self, kind: str, name: str) -> Object | None:
        async with self._slots, _translated("get", kind, name, missing_ok=True):
            return _plain(await self.client.get(KINDS[kind], name, namespace=self.namespace))
        return None

    async def delete(self, kind: str, name: str) -> None:
        """Delete now, dependents (a Job's pods) in the background; gone already is fine."""
        async with self._slots, _translated("delete", kind, name, missing_ok=True):
            await self.client.delete(
                KINDS[kind], name, namespace=self.namespace, cascade=CascadeType.BACKGROUND,
            )

    async def list(
        self, kind: str, *, labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> list[Object]:
        async with self._slots, _translated("list", kind, ""):
            return [
                _plain(obj) async for obj in self.client.list(
                    KINDS[kind], namespace=self.namespace, labels=labels, fields=fields,
                )
            ]

    async def watch(
        self, kind: str, *, labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> AsyncIterator[tuple[str, Object]]:
        """Watch events: first ``ADDED`` for every existing object, then changes."""
        async with _translated("watch", kind, ""):
            async for event, obj in self.client.watch(
                KINDS[kind], namespace=self.namespace, labels=labels, fields=fields,
            ):
                yield event, _plain(obj)

    async def close(self) -> None:
        await self.client.close()


def _plain(obj: Any) -> Object:
    result: Object = obj.to_dict()
    return result


class _translated:
    """Turn lightkube/httpx errors into ``RuntimeFailure``; optionally swallow 404."""

    def __init__(self, verb: str, kind: str, name: str, *, missing_ok: bool = False) -> None:
        self.what = f"{verb} {kind}/{name}".rstrip("/")
        self.missing_ok = missing_ok

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, httpx2.HTTPStatusError):
            code = exc.response.status_code
            if code == 404 and self.missing_ok:
                return True
            raise RuntimeFailure(f"{self.what}: {_reason(exc.response)}") from None
        if isinstance(exc, httpx2.HTTPError):
            raise RuntimeFailure(
                f"{self.what}: cannot reach the Kubernetes API: {type(exc).__name__}: {exc}"
            ) from None
        return False


def _reason(response: httpx2.Response) -> str:
    """``Reason (code): message`` from a ``Status`` body, or the bare HTTP status."""
    try:
        status = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        status = {}
    if not isinstance(status, dict):
        status = {}
    reason = status.get("reason") or response.reason_phrase
    message = status.get("message") or ""
    text = f"{reason} ({response.status_code})"
    return f"{text}: {message}" if message else text
