"""A sync flow's slots per worker and its line of callers waiting for one.

Bounded by time (each caller's ``queue_timeout``), not by a multiple of the slots.
"""

from __future__ import annotations

import asyncio
import collections
import time

from hookgate.domain.concurrency import Ledger, Slots
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import Flow


class WaitLine:
    """Outstanding requests per endpoint of one flow, and the callers waiting for a slot.

    A waiter is a future, in arrival order, that is given the endpoint whose slot it now holds:
    a freed slot goes straight to the longest-waiting caller, so none can be lost or taken by a
    newcomer, and leaving the line (timeout, hang-up) is O(1). Each waiter has its deadline
    (``queue_timeout``); one timer per line, at the earliest, turns away those whose wait ran
    out: a timer per caller would cost one set and cancelled for nearly every request under load.
    """

    def __init__(self, flow: Flow, ledger: Ledger[Endpoint]) -> None:
        self.slots = Slots(pinned=flow.spec.pinned() is not None, ledger=ledger)
        self.concurrency = flow.spec.concurrency
        self.waiters: collections.OrderedDict[asyncio.Future[Endpoint | None], float] = (
            collections.OrderedDict()
        )
        self.recheck: asyncio.TimerHandle | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.ordered = True
        """Whether deadlines follow arrival order (they do unless ``queue_timeout`` was lowered
        while callers waited): then the first waiter still inside its wait is the earliest."""

    def join(
        self,
        turn: asyncio.Future[Endpoint | None],
        deadline: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        if not self.waiters:
            self.ordered = True
        elif deadline < next(reversed(self.waiters.values())):
            self.ordered = False
        self.waiters[turn] = deadline
        if self.expiry is None or self.expiry.when() > deadline:
            if self.expiry is not None:
                self.expiry.cancel()
            self.expiry = loop.call_at(deadline, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """The waits that ran out leave the line with no slot; the timer moves to the next."""
        self.expiry = None
        now = loop.time()
        following: float | None = None
        for turn, deadline in self.waiters.items():
            if turn.done():
                continue
            if deadline <= now:
                turn.set_result(None)
                continue
            if following is None or deadline < following:
                following = deadline
            if self.ordered:
                break
        if following is not None:
            self.expiry = loop.call_at(following, self._expire, loop)

    def measure(
        self, endpoint: Endpoint, busy: bool, *, overloaded: bool, everyone: bool = False
    ) -> None:
        """A worker's answer (or timeout) for its limiter; a ``429``/``503`` or a timeout
        lowers it at once, and with ``Retry-After`` (``everyone``) every replica's limit."""
        self.slots.measured(
            endpoint, busy=busy, overloaded=overloaded, everyone=everyone, now=time.monotonic()
        )
