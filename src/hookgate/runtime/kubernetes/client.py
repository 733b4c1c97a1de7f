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
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig, NotReadyError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Pod, Service
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import CascadeType, PatchType

from hookgate.errors import RuntimeFailure
from hookgate.runtime.kubernetes.names import MANAGER

Object = dict[str, Any]

KINDS: dict[str, Any] = {
    "Service": Service,
    "Deployment": Deployment,
    "Job": Job,
    "Pod": Pod,
    "Event": Event,
    "Lease": Lease,
    "PodDisruptionBudget": PodDisruptionBudget,
}
MAX_IN_FLIGHT = 16


class WatchExpired(RuntimeFailure):
    """410 Gone: the version a watch resumes from is compacted away; list again."""


def connect(*, kubeconfig: str | None = None, namespace: str | None = None) -> AsyncClient:
    """A client from ``kubeconfig`` if given, else in-cluster config, else ``$KUBECONFIG``."""
    try:
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    except ConfigError as exc:
        raise RuntimeFailure(f"no Kubernetes configuration: {exc}") from None
    return AsyncClient(config, namespace=namespace, field_manager=MANAGER)


def kubeconfig_for(server: str) -> AsyncClient:
    """A client for an unauthenticated API server URL (an emulator, ``kubectl proxy``)."""
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "api", "cluster": {"server": server}}],
            "users": [{"name": "anonymous", "user": {}}],
            "contexts": [{"name": "api", "context": {"cluster": "api", "user": "anonymous"}}],
            "current-context": "api",
        }
    )
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
        async with self._slots:
            with _translated("apply", kind, name):
                result = await self.client.patch(
                    KINDS[kind],
                    name,
                    obj,
                    namespace=self.namespace,
                    patch_type=PatchType.APPLY,
                    field_manager=MANAGER,
                    force=True,
                )
        return _plain(result)

    async def create(self, obj: Object) -> Object:
        kind, name = obj["kind"], obj["metadata"]["name"]
        async with self._slots:
            with _translated("create", kind, name):
                result = await self.client.create(KINDS[kind].from_dict(obj))
        return _plain(result)

    async def merge(self, kind: str, name: str, patch: Object) -> Object:
        """A JSON merge patch; a ``metadata.resourceVersion`` in it makes it conditional."""
        async with self._slots:
            with _translated("patch", kind, name):
                result = await self.client.patch(
                    KINDS[kind],
                    name,
                    patch,
                    namespace=self.namespace,
                    patch_type=PatchType.MERGE,
                )
        return _plain(result)

    async def get(self, kind: str, name: str) -> Object | None:
        async with self._slots:
            with _translated("get", kind, name):
                try:
                    found = await self.client.get(KINDS[kind], name, namespace=self.namespace)
                except httpx2.HTTPStatusError as exc:
                    if exc.response.status_code != 404:
                        raise
                    return None
        return _plain(found)

    async def delete(self, kind: str, name: str) -> None:
        """Delete now, dependents (a Job's pods) in the background; gone already is fine."""
        async with self._slots:
            with _translated("delete", kind, name):
                try:
                    await self.client.delete(
                        KINDS[kind],
                        name,
                        namespace=self.namespace,
                        cascade=CascadeType.BACKGROUND,
                    )
                except httpx2.HTTPStatusError as exc:
                    if exc.response.status_code != 404:
                        raise

    async def snapshot(
        self,
        kind: str,
        *,
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> tuple[list[Object], str | None]:
        """The objects and the list's ``resourceVersion``, where a watch takes over."""
        async with self._slots:
            with _translated("list", kind, ""):
                found = self.client.list(
                    KINDS[kind],
                    namespace=self.namespace,
                    labels=_any(labels),
                    fields=_any(fields),
                )
                objects = [_plain(obj) async for obj in found]
                return objects, _version(found)

    async def list(
        self,
        kind: str,
        *,
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> list[Object]:
        objects, _ = await self.snapshot(kind, labels=labels, fields=fields)
        return objects

    async def watch(
        self,
        kind: str,
        *,
        since: str | None,
        timeout: int,
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> AsyncIterator[tuple[str, Object]]:
        """Events after version ``since`` (every object as ``ADDED`` first if None).

        The server ends the watch after ``timeout`` seconds and lightkube resumes it from the
        last version seen; a version the server no longer has raises ``WatchExpired``.
        """
        with _translated("watch", kind, ""):
            try:
                async for event, obj in self.client.watch(
                    KINDS[kind],
                    namespace=self.namespace,
                    labels=_any(labels),
                    fields=_any(fields),
                    server_timeout=timeout,
                    resource_version=since,
                ):
                    yield event, _plain(obj)
            except ApiError as exc:
                if exc.status.code == 410:
                    raise WatchExpired(f"watch {kind}: {exc.status.message}") from None
                raise
            except ValueError as exc:  # an event lightkube cannot decode: start afresh
                raise RuntimeFailure(f"watch {kind}: undecodable event: {exc}") from None

    async def close(self) -> None:
        await self.client.close()


def _plain(obj: Any) -> Object:
    result: Object = obj.to_dict()
    return result


def _version(listing: Any) -> str | None:
    try:
        version: str = listing.resourceVersion
    except NotReadyError:  # the server sent no version: watch from scratch
        return None
    return version


def _any(selector: dict[str, str] | None) -> dict[str, Any] | None:
    """lightkube's selector types are invariant dicts of operators; plain strings are fine."""
    return dict(selector) if selector else None


class _translated:
    """Turn lightkube/httpx errors raised inside the block into ``RuntimeFailure``."""

    def __init__(self, verb: str, kind: str, name: str) -> None:
        self.what = f"{verb} {kind}/{name}".rstrip("/")

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, httpx2.HTTPStatusError):
            raise RuntimeFailure(f"{self.what}: {_reason(exc.response)}") from None
        if isinstance(exc, httpx2.HTTPError):
            raise RuntimeFailure(
                f"{self.what}: cannot reach the Kubernetes API: {type(exc).__name__}: {exc}"
            ) from None


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
