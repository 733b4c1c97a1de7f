"""A destination that is not the flow's workers (a URL, RabbitMQ, NATS): a ``Lane`` that
sends through a ``Sender`` instead of the runtime's workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hookgate.destinations.base import Sender
from hookgate.dispatch.lane import Lane
from hookgate.domain.concurrency import CEILING
from hookgate.domain.deliveries import Delivery
from hookgate.domain.destinations import Destination
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import Flow
from hookgate.domain.forwarding import Reply

if TYPE_CHECKING:
    from hookgate.dispatch.dispatcher import Dispatcher


class SenderLane(Lane):
    """A destination that is not the flow's workers: a URL or a broker, through a ``Sender``.

    It needs no runtime: one virtual endpoint, always ready, whose limiter finds how many
    sends in flight the destination takes (``auto``) up to ``CEILING``.
    """

    def __init__(
        self, owner: Dispatcher, flow: Flow, destination: Destination, sender: Sender
    ) -> None:
        self.sender = sender
        self.endpoint = Endpoint(f"{destination.kind}:{destination.name}", 0, CEILING)
        super().__init__(owner, flow, destination)

    def endpoints(self) -> list[Endpoint]:
        return [self.endpoint]

    async def _want(self, workers: int) -> None:
        """Nothing to start: the destination runs elsewhere."""

    def start_failed(self, reason: str) -> None:
        """Never asked for workers."""

    def _plain(self, delivery: Delivery) -> bool:
        """A sender takes one delivery at a time."""
        return False

    async def _send(
        self, endpoint: Endpoint, delivery: Delivery, snapshot: bytes | None, keep_body: int
    ) -> Reply:
        """The sender builds its own message from the delivery."""
        return await self.sender.send(delivery, timeout=self.flow.spec.timeout)

    def _pause(self, reply: Reply, retry_after: float | None, now: float) -> None:
        """A ``429``/``503`` with ``Retry-After`` pauses the whole destination until then."""
        if retry_after is not None and reply.status in (429, 503):
            self.paused_until = max(self.paused_until, now + retry_after)

    async def stop(self, *, grace: float) -> None:
        await super().stop(grace=grace)
        await self.sender.close()
