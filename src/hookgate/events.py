"""A small in-process event hub: what happened to requests, for live views (console, tail).

Publishing never blocks the hot path: each subscriber has a bounded queue and a slow one
loses its oldest events (it is told how many) rather than slowing down the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any

QUEUE = 1000


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    @property
    def listening(self) -> bool:
        """Whether anyone subscribes: the hot path skips building events nobody reads."""
        return bool(self._subscribers)

    def publish(self, kind: str, **fields: Any) -> None:
        if not self._subscribers:
            return
        event = {"kind": kind, "at": time.time(), **fields}
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    async def subscribe(
        self, *, flow_id: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Events from now on, optionally of one flow only, until the consumer stops."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE)
        self._subscribers.add(queue)
        try:
            while True:
                event = await queue.get()
                if flow_id is None or event.get("flowId") == flow_id:
                    yield event
        finally:
            self._subscribers.discard(queue)
