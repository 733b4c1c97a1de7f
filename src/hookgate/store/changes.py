"""What a store announces as it commits, so that nothing above it threads wake-ups by hand.

Work queued for a flow (accepted, replayed, a poll run claimed), a flow changed by another
gateway, a change feed that was lost and is back, a group commit (for its metrics). SQLite and
the memory store announce what this process committed; PostgreSQL also what every other
gateway did (``LISTEN``). ``dispatch.wakeups`` turns changes into wake-ups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from hookgate.domain.deliveries import Request


class Queued(msgspec.Struct, frozen=True):
    """A flow has work: due now (``at`` None) or at ``at`` (a delayed route)."""

    flow_id: str
    at: float | None = None


class FlowChanged(msgspec.Struct, frozen=True):
    """Another gateway changed the flow: read it again."""

    flow_id: str


class Resynced(msgspec.Struct, frozen=True):
    """The feed from other gateways is (back) on: what changed meanwhile is unknown."""


class Committed(msgspec.Struct, frozen=True):
    """A group commit: how many writes it held and how long it took."""

    operations: int
    seconds: float


Change = Queued | FlowChanged | Resynced | Committed
Subscriber = Callable[[Change], None]


class Changes:
    """The subscribers of one store, called in the committing task in subscription order; a
    subscriber must not block (it wakes something, or starts a task)."""

    __slots__ = ("_subscribers",)

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, change: Change) -> None:
        for subscriber in self._subscribers:
            subscriber(change)

    def accepted(self, request: Request) -> None:
        """A new request is committed: its flow has work now, and at each delayed route's
        due time."""
        due = {None} if request.routes is None else {route.due_at for route in request.routes}
        for at in due:
            self.publish(Queued(request.flow_id, None if at == request.received_at else at))

    def requeued(self, flow_ids: Iterable[str]) -> None:
        """Deliveries of these flows are queued again (replay)."""
        for flow_id in set(flow_ids):
            self.publish(Queued(flow_id))
