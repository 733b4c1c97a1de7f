"""Level-based reconciliation of flows' objects: observe, diff, apply once per object.

Watches keep ``Observed`` current on every replica, as client-go's informers do: list, then
watch from the list's version; a watch the server times out resumes from the last version
seen, and one that fails (410 Gone once that version is compacted, a broken connection) is
replaced by a fresh list, so an object deleted while no watch ran is forgotten within
seconds. A client-side deadline ends a watch whose connection died silently. A periodic
resync re-lists in case a watch missed something anyway.

A change to a flow's objects (or to what is wanted of the flow) queues the flow; a worker
computes the desired objects, diffs them against what is observed and writes only the
difference, so in steady state there are no writes at all. Only the leader writes.
Failures are recorded on the flow and retried with capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from hookgate import logs
from hookgate.domain.backoff import next_delay
from hookgate.domain.destinations import RetryPolicy
from hookgate.domain.flows import Flow
from hookgate.domain.units import Duration
from hookgate.errors import ConfigError, RuntimeFailure
from hookgate.runtime.kubernetes import diff, specs
from hookgate.runtime.kubernetes.client import Kube, WatchExpired
from hookgate.runtime.kubernetes.names import MANAGER, flow_key
from hookgate.runtime.kubernetes.observed import WORKLOADS, Observed

log = logs.get("hookgate.runtime.kubernetes")

RETRY = RetryPolicy(max_attempts=1_000_000, backoff=Duration(1), max_backoff=Duration(60))
WORKERS = 8
JOB_PAUSE = 10.0
JOB_PAUSE_MAX = 600.0
WATCHED = (*WORKLOADS, "Pod", "Event")
WATCH_TIMEOUT = 30
WATCH_GRACE = 5.0
Object = dict[str, Any]
PodHook = Callable[[str, Object | None, Object], None]


class Wanted:
    """What is wanted of one flow: its spec and worker count, or nothing (removed)."""

    def __init__(self, flow: Flow | None, workers: int) -> None:
        self.flow = flow
        self.workers = workers
        self.error: str | None = None
        self.failures = 0
        self.job_failures = 0
        self.job_not_before = 0.0


class Reconciler:
    def __init__(
        self,
        *,
        kube: Kube,
        instance: str,
        resync: float,
        leading: Callable[[], bool],
        watch_timeout: int = WATCH_TIMEOUT,
    ) -> None:
        self.kube = kube
        self.instance = instance
        self.resync = resync
        self.leading = leading
        self.watch_timeout = watch_timeout
        self.observed = Observed()
        self.on_pod: PodHook = lambda _event, _before, _after: None
        self.owner: specs.Object | None = None
        self.wanted: dict[str, Wanted] = {}
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # wanted state ----------------------------------------------------------------------
    def want(self, flow: Flow, workers: int) -> str:
        key = flow_key(flow.id)
        wanted = self.wanted.get(key)
        if wanted is None or wanted.flow is None or wanted.flow.spec != flow.spec:
            wanted = self.wanted[key] = Wanted(flow, workers)
        wanted.flow, wanted.workers = flow, workers
        return key

    def forget(self, flow_id: str) -> str:
        key = flow_key(flow_id)
        self.wanted[key] = Wanted(None, 0)
        return key

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """List every kind once (so nothing is applied blindly), then watch and work."""
        versions = {kind: await self._list(kind) for kind in WATCHED}
        for kind in WATCHED:
            self._tasks.append(asyncio.create_task(self._watch(kind, versions.get(kind))))
        self._tasks.append(asyncio.create_task(self._resync()))
        self._tasks.extend(asyncio.create_task(self._work()) for _ in range(WORKERS))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def enqueue(self, key: str) -> None:
        if key in self.wanted and key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def enqueue_all(self) -> None:
        for key in list(self.wanted):
            self.enqueue(key)

    async def relist(self) -> None:
        for kind in (*WORKLOADS, "Pod"):
            await self._list(kind)

    async def _list(self, kind: str) -> str | None:
        objects, version = await self.kube.snapshot(kind, **_selector(kind))
        if kind == "Event":
            for event in objects:
                self.observed.put(kind, event)
            return version
        for key in self.observed.replace(kind, objects):
            self.enqueue(key)
        return version

    # one flow --------------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        """Converge one flow now (leader only); a failure is recorded and retried later."""
        async with self._locks[key]:
            wanted = self.wanted.get(key)
            if wanted is None or not self.leading():
                return
            try:
                await self._converge(key, wanted)
            except (RuntimeFailure, ConfigError) as exc:
                self._failed(key, wanted, exc)
                return
            wanted.error, wanted.failures = None, 0
            if wanted.flow is None and not any(self.observed.objects(key, k) for k in WORKLOADS):
                del self.wanted[key]

    async def _converge(self, key: str, wanted: Wanted) -> None:
        want = (
            []
            if wanted.flow is None
            else specs.desired(
                wanted.flow,
                workers=wanted.workers,
                namespace=self.kube.namespace,
                instance=self.instance,
                owner=self.owner,
            )
        )
        have = {kind: dict(self.observed.objects(key, kind)) for kind in WORKLOADS}
        steps = diff.plan(want, have)
        if steps.failed_job is not None and self._hold_failed_job(key, wanted):
            steps = diff.Plan(
                apply=[o for o in steps.apply if o["kind"] != "Job"],
                delete=[d for d in steps.delete if d[0] != "Job"],
            )
        for kind, name in steps.delete:
            await self.kube.delete(kind, name)
            self.observed.drop(kind, have[kind][name])
        for applied in await asyncio.gather(*(self.kube.apply(obj) for obj in steps.apply)):
            self.observed.put(applied["kind"], applied)
        if not steps.empty:
            log.info(
                "flow reconciled",
                flow=key,
                applied=[o["metadata"]["name"] for o in steps.apply],
                deleted=[name for _, name in steps.delete],
            )

    def _hold_failed_job(self, key: str, wanted: Wanted) -> bool:
        """Keep a failed Job (its error stays visible) for a doubling pause, then replace it."""
        now = time.monotonic()
        if not wanted.job_not_before:
            wanted.job_failures += 1
            delay = min(JOB_PAUSE_MAX, JOB_PAUSE * 2 ** (wanted.job_failures - 1))
            wanted.job_not_before = now + delay
            asyncio.get_running_loop().call_later(delay, self.enqueue, key)
            log.warning("job failed", flow=key, retry_in=delay)
            return True
        if now < wanted.job_not_before:
            return True
        wanted.job_not_before = 0.0
        return False

    def _failed(self, key: str, wanted: Wanted, exc: Exception) -> None:
        wanted.error = str(exc)
        log.warning("flow not reconciled", flow=key, error=str(exc), attempt=wanted.failures + 1)
        if isinstance(exc, ConfigError):
            return
        wanted.failures += 1
        delay = next_delay(attempt=wanted.failures, policy=RETRY)
        asyncio.get_running_loop().call_later(delay, self.enqueue, key)

    # loops -----------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            await self.reconcile(key)

    async def _watch(self, kind: str, version: str | None) -> None:
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._list(kind)
                version = await self._follow(kind, version)
                failures = 0
            except WatchExpired as exc:
                log.info("watch expired; listing again", kind=kind, error=str(exc))
                version = None
                failures += 1
                if failures > 1:  # a fresh list's version expired too: do not spin
                    await asyncio.sleep(next_delay(attempt=failures - 1, policy=RETRY))
            except RuntimeFailure as exc:
                failures += 1
                version = None
                log.warning("watch failed", kind=kind, error=str(exc))
                await asyncio.sleep(next_delay(attempt=failures, policy=RETRY))

    async def _follow(self, kind: str, version: str | None) -> str | None:
        """Apply events from ``version`` until the watch ends; returns the last version seen.

        The deadline outlasts the server's timeout, so it fires only on a connection that
        died without a word; the watch then resumes. (Bookmarks are not asked for: lightkube
        cannot decode them for kinds whose model requires a ``spec``.)
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.watch_timeout + WATCH_GRACE):
                async for event, obj in self.kube.watch(
                    kind, since=version, timeout=self.watch_timeout, **_selector(kind)
                ):
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    self._observe(kind, event, obj)
        return version

    def _observe(self, kind: str, event: str, obj: Object) -> None:
        before = self.observed.get(kind, obj) if kind == "Pod" else None
        key = self.observed.drop(kind, obj) if event == "DELETED" else self.observed.put(kind, obj)
        if kind == "Pod":
            self.on_pod(event, before, obj)
        elif key is not None:
            self.enqueue(key)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            try:
                await self.relist()
            except RuntimeFailure as exc:
                log.warning("resync failed", error=str(exc))
            self.enqueue_all()


def _selector(kind: str) -> dict[str, dict[str, str]]:
    """Warning events (not labelled) by type; everything else by Hookgate's label."""
    if kind == "Event":
        return {"fields": {"type": "Warning"}}
    return {"labels": {"app.kubernetes.io/managed-by": MANAGER}}
