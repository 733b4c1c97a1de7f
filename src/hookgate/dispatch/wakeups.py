"""The store's one subscriber on the delivery side: a change becomes a wake-up.

Work queued for a flow wakes its lanes (at the due time of a delayed route); a flow another
gateway changed is read again, and everything is when the feed from other gateways was lost
and is back (the registry then tells the dispatcher and the scheduler what changed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine

from hookgate import logs
from hookgate.dispatch.dispatcher import Dispatcher
from hookgate.errors import StoreError
from hookgate.registry import FlowRegistry
from hookgate.store.changes import Change, FlowChanged, Queued, Resynced

log = logs.get("hookgate.dispatch")


class Wakeups:
    def __init__(self, *, dispatcher: Dispatcher, registry: FlowRegistry) -> None:
        self.dispatcher = dispatcher
        self.registry = registry
        self._reading: asyncio.Task[None] | None = None

    def __call__(self, change: Change) -> None:
        if isinstance(change, Queued):
            self.dispatcher.notify(change.flow_id, change.at)
        elif isinstance(change, FlowChanged):
            self._read(self.registry.refresh(change.flow_id))
        elif isinstance(change, Resynced):
            self._read(self.registry.load())

    def _read(self, reading: Coroutine[None, None, None]) -> None:
        """Reads run one after the other, in the order of the changes: two reads of one flow
        must not land in the other order."""
        self._reading = asyncio.create_task(self._after(self._reading, reading))

    @staticmethod
    async def _after(
        previous: asyncio.Task[None] | None, reading: Coroutine[None, None, None]
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await reading
        except StoreError as exc:
            log.warning("cannot read flows another gateway changed", error=str(exc))
