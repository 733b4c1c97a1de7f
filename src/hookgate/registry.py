"""The flow registry: every flow change goes through here, and the hot path reads its cache.

The ingress looks a flow up on every request, so flows are held in a dict by id; the store is
the truth and the cache is loaded from it on start (and, with PostgreSQL, each flow another
gateway changes is reread on its NOTIFY).
Listeners (the dispatcher, the runtime) hear of every change and reconcile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from hookgate.domain.flows import Flow, FlowSpec, Mode, Status, new_flow_id
from hookgate.errors import ConfigError, FlowConflict, FlowNotFound
from hookgate.store.base import Store

Listener = Callable[[str], Awaitable[None]]
Outcome = Literal["created", "updated", "unchanged"]


class FlowRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id: dict[str, Flow] = {}
        self._by_name: dict[str, str] = {}
        self._listeners: list[Listener] = []
        # False until the first load: an empty cache then means "not known yet", not "none".
        self.loaded = False

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(flow_id)`` after every change of that flow."""
        self._listeners.append(listener)

    async def load(self) -> None:
        """Refresh the cache from the store and tell listeners about every flow that changed."""
        fresh = {flow.id: flow for flow in await self.store.list_flows()}
        changed = [
            fid for fid in fresh.keys() | self.by_id.keys() if fresh.get(fid) != self.by_id.get(fid)
        ]
        self.by_id = fresh
        self._by_name = {flow.name: flow.id for flow in fresh.values()}
        self.loaded = True
        for flow_id in changed:
            await self._changed(flow_id)

    async def refresh(self, flow_id: str) -> None:
        """Reread one flow (another gateway changed it); listeners hear only if it differs.

        A gateway also hears of its own changes: those find the cache up to date already.
        """
        fresh = await self.store.get_flow(flow_id)
        current = self.by_id.get(flow_id)
        if fresh == current:
            return
        if current is not None and self._by_name.get(current.name) == flow_id:
            del self._by_name[current.name]
        if fresh is None:
            self.by_id.pop(flow_id, None)
        else:
            self._put(fresh)
        await self._changed(flow_id)

    def get(self, flow_id: str) -> Flow | None:
        return self.by_id.get(flow_id)

    def find(self, ref: str) -> Flow:
        """A flow by name or id; ``FlowNotFound`` otherwise."""
        flow = self.by_id.get(ref)
        if flow is None and ref in self._by_name:
            flow = self.by_id.get(self._by_name[ref])
        if flow is None:
            raise FlowNotFound(f"no flow named or with id {ref!r}")
        return flow

    def flows(self) -> list[Flow]:
        return sorted(self.by_id.values(), key=lambda f: f.name)

    async def create(self, spec: FlowSpec) -> Flow:
        if spec.name in self._by_name:
            raise FlowConflict(f"a flow named {spec.name!r} exists already")
        now = time.time()
        flow = Flow(id=new_flow_id(), spec=spec, created_at=now, updated_at=now)
        await self.store.create_flow(flow)
        self._put(flow)
        await self._changed(flow.id)
        return flow

    async def replace(self, ref: str, spec: FlowSpec) -> tuple[Flow, Outcome]:
        current = self.find(ref)
        if spec == current.spec:
            return current, "unchanged"
        other = self._by_name.get(spec.name)
        if other is not None and other != current.id:
            raise FlowConflict(f"a flow named {spec.name!r} exists already")
        if current.status is Status.PAUSED and spec.mode is Mode.SYNC:
            raise ConfigError(f"flow {current.name!r} is paused: resume it before making it sync")
        flow = Flow(
            id=current.id,
            spec=spec,
            status=current.status,
            created_at=current.created_at,
            updated_at=time.time(),
        )
        await self.store.update_flow(flow)
        self._by_name.pop(current.name, None)
        self._put(flow)
        await self._changed(flow.id)
        return flow, "updated"

    async def apply(self, spec: FlowSpec) -> tuple[Flow, Outcome]:
        """Create or update by name, like ``kubectl apply``; the id never changes."""
        if spec.name in self._by_name:
            return await self.replace(spec.name, spec)
        return await self.create(spec), "created"

    async def apply_all(self, specs: list[FlowSpec]) -> list[tuple[Flow, Outcome]]:
        """Apply many flows at once; their writes share the store's group commits."""
        return list(await asyncio.gather(*(self.apply(spec) for spec in specs)))

    async def set_status(self, ref: str, status: Status) -> Flow:
        current = self.find(ref)
        if status is Status.PAUSED and current.mode is Mode.SYNC:
            raise ConfigError(
                f"flow {current.name!r} is sync: its callers wait for its workers, so it cannot"
                " hold requests; stop it instead"
            )
        if current.status is status:
            return current
        flow = Flow(
            id=current.id,
            spec=current.spec,
            status=status,
            created_at=current.created_at,
            updated_at=time.time(),
        )
        await self.store.update_flow(flow)
        self._put(flow)
        await self._changed(flow.id)
        return flow

    async def delete(self, ref: str) -> Flow:
        flow = self.find(ref)
        await self.store.delete_flow(flow.id)
        self.by_id.pop(flow.id, None)
        self._by_name.pop(flow.name, None)
        await self._changed(flow.id)
        return flow

    def _put(self, flow: Flow) -> None:
        self.by_id[flow.id] = flow
        self._by_name[flow.name] = flow.id

    async def _changed(self, flow_id: str) -> None:
        for listener in self._listeners:
            await listener(flow_id)
