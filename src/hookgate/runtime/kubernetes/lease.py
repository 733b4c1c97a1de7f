"""Leader election with a ``coordination.k8s.io/v1`` Lease: one gateway replica reconciles.

Every replica tries the Lease every ``retry`` seconds; the holder renews it every ``renew``
seconds. A Lease counts as expired once its record has not changed for its
``leaseDurationSeconds`` as seen by *this* replica's clock (clock skew between nodes does not
matter, as in client-go). A holder that shuts down releases the Lease, so the next replica
takes over at its next try instead of waiting out the duration. Updates carry the observed
``resourceVersion``, so two replicas racing for an expired Lease cannot both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Callable
from typing import Any

from hookgate import logs
from hookgate.errors import RuntimeFailure
from hookgate.runtime.kubernetes.client import Kube

log = logs.get("hookgate.runtime.kubernetes.lease")

Object = dict[str, Any]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        *,
        kube: Kube,
        name: str,
        identity: str,
        duration: int = 15,
        renew: float | None = None,
        retry: float | None = None,
        on_change: Callable[[bool], None] = lambda _leading: None,
    ) -> None:
        if duration < 1:
            raise ValueError("the lease duration must be at least 1 second")
        self.kube = kube
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew = renew if renew is not None else duration / 3
        self.retry = retry if retry is not None else duration / 5
        self.on_change = on_change
        self.leading = False
        self._renewed = 0.0
        self._seen: tuple[Any, ...] | None = None
        self._seen_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Try once (so a lone replica leads as soon as ``start`` returns), then keep trying."""
        await self.attempt()
        self._task = asyncio.create_task(self._loop(), name="lease")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.leading:
            with contextlib.suppress(RuntimeFailure):
                await self.kube.merge(
                    "Lease",
                    self.name,
                    {
                        "spec": {
                            "holderIdentity": None,
                            "leaseDurationSeconds": 1,
                            "renewTime": _now(),
                        }
                    },
                )
            self._set(False)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.renew if self.leading else self.retry)
            await self.attempt()

    async def attempt(self) -> None:
        try:
            await self._attempt()
        except RuntimeFailure as exc:
            log.warning("lease attempt failed", lease=self.name, error=str(exc))
            if self.leading and time.monotonic() - self._renewed > self.duration * 2 / 3:
                self._set(False)

    async def _attempt(self) -> None:
        lease = await self.kube.get("Lease", self.name)
        if lease is None:
            await self.kube.create(
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.kube.namespace},
                    "spec": self._spec(transitions=0),
                }
            )
            return self._won()
        spec: Object = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if holder == self.identity:
            await self._update(lease, {"renewTime": _now()})
            return self._won()
        if holder and not self._expired(spec):
            return self._set(False)
        transitions = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        await self._update(lease, self._spec(transitions=transitions))
        log.info("lease taken over", lease=self.name, previous=holder, identity=self.identity)
        return self._won()

    def _expired(self, spec: Object) -> bool:
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("acquireTime"))
        now = time.monotonic()
        if record != self._seen:
            self._seen, self._seen_at = record, now
        return now - self._seen_at > float(spec.get("leaseDurationSeconds") or self.duration)

    def _spec(self, *, transitions: int) -> Object:
        now = _now()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def _update(self, lease: Object, spec: Object) -> None:
        patch: Object = {
            "spec": {**spec, "holderIdentity": self.identity, "leaseDurationSeconds": self.duration}
        }
        version = lease.get("metadata", {}).get("resourceVersion")
        if version:
            patch["metadata"] = {"resourceVersion": version}
        await self.kube.merge("Lease", self.name, patch)

    def _won(self) -> None:
        self._renewed = time.monotonic()
        self._set(True)

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("leadership changed", lease=self.name, identity=self.identity, leading=leading)
            self.on_change(leading)
