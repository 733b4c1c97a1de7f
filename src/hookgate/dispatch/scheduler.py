"""Polling triggers: at each due tick, enqueue a *poll delivery* for the flow.

Poll deliveries take the normal async path (on-demand workers, retries, dead letters). Each
tick is claimed in the store with one guarded statement (``last_tick < tick``), so with
several gateways on one database every tick is enqueued exactly once, and a claim can also
require that no earlier run is still queued or running (no overlap).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from hookgate import logs
from hookgate.domain.flows import Flow
from hookgate.domain.schedule import due, next_tick, poll_request, tolerance, upcoming
from hookgate.errors import StoreError
from hookgate.registry import FlowRegistry
from hookgate.store.base import Store

log = logs.get("hookgate.schedule")

IDLE_CHECK = 30.0
BUSY_RETRY = 1.0


class Scheduler:
    def __init__(self, *, registry: FlowRegistry, store: Store):
        self.registry = registry
        self.store = store
        self._last: dict[str, float] = {}
        self._waiting: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler")

    async def flow_changed(self, flow_id: str) -> None:
        self._last.pop(flow_id, None)
        self._waiting.pop(flow_id, None)
        self._wake.set()

    def next_ticks(self, flow: Flow, count: int = 3) -> list[float]:
        """The next due times of a scheduled flow (for ``flows show``)."""
        schedule = flow.spec.schedule
        if schedule is None:
            return []
        return upcoming(schedule, self._last.get(flow.id, time.time()), count)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wake_at = time.time() + IDLE_CHECK
            for flow in list(self.registry.by_id.values()):
                if flow.spec.schedule is None or not flow.running:
                    continue
                try:
                    wake_at = min(wake_at, await self._tick(flow))
                except StoreError as exc:
                    log.warning("schedule: store unavailable", flow=flow.name, error=str(exc))
                    wake_at = min(wake_at, time.time() + BUSY_RETRY)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake_at - time.time())):
                    await self._wake.wait()

    async def _tick(self, flow: Flow) -> float:
        """Enqueue the flow's due runs; return when it is next due."""
        schedule = flow.spec.schedule
        assert schedule is not None
        now = time.time()
        last = self._last.get(flow.id)
        if last is None:
            stored = await self.store.last_tick(flow.id)
            if stored is None:
                await self.store.claim_tick(flow.id, tick=now, request=None, exclusive=False)
                stored = now
            last = self._last[flow.id] = stored
        waiting = self._waiting.pop(flow.id, None)
        runs, newest = due(schedule, last=last, now=now)
        if waiting is not None and waiting not in runs:
            runs.insert(0, waiting)  # a tick that waited for a run to end is not "missed"
        snapshot = await self.store.snapshot(flow.id) if runs else None
        for tick in runs:
            request = poll_request(flow, scheduled_at=tick, snapshot=snapshot)
            outcome = await self.store.claim_tick(
                flow.id, tick=tick, request=request, exclusive=not schedule.overlap
            )
            late = now - tick > tolerance(schedule)
            if outcome == "busy" and (schedule.busy == "wait" or late):
                # Catch-up runs queue up one after another rather than being skipped.
                log.info("schedule: previous run still going; waiting", flow=flow.name)
                self._waiting[flow.id] = tick
                return time.time() + BUSY_RETRY
            if outcome == "busy":
                log.info(
                    "schedule: previous run still going; tick skipped", flow=flow.name, tick=tick
                )
                await self.store.claim_tick(flow.id, tick=tick, request=None, exclusive=False)
            self._last[flow.id] = tick
        if newest > self._last[flow.id]:
            # Ticks that ``missed`` dropped are handled too, so they are not due again.
            await self.store.claim_tick(flow.id, tick=newest, request=None, exclusive=False)
            self._last[flow.id] = newest
        return next_tick(schedule, self._last[flow.id])
