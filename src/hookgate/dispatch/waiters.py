"""Callers waiting in this process for a delivery's first answer (``Prefer: wait=N``).

The ingress registers a waiter under the delivery id before it enqueues; the dispatcher that
delivers it settles the waiter as soon as the verdict is known, before the store records the
outcome, so the caller waits for the worker and not for a commit. A delivery leased by another
gateway (PostgreSQL) settles nobody here: its caller gets ``202`` + ``Location`` at the end of
its wait. One dict lookup per delivery with a status URL; none for the others.
"""

from __future__ import annotations

import asyncio

from hookgate.domain.deliveries import Answer


class Waiters:
    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Answer | None]] = {}

    def expect(self, delivery_id: str) -> asyncio.Future[Answer | None]:
        """A future for the delivery's first answer; ``forget`` it when done waiting."""
        future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        self._waiting[delivery_id] = future
        return future

    def forget(self, delivery_id: str) -> None:
        self._waiting.pop(delivery_id, None)

    def settle(self, delivery_id: str, answer: Answer | None) -> None:
        """The worker's answer, or None when there is none the caller should get (it will be
        retried, it came too large, or no answer came): then the caller gets ``202``."""
        future = self._waiting.pop(delivery_id, None)
        if future is not None and not future.done():
            future.set_result(answer)
