"""The ``Sender`` protocol: one delivery to a destination that is not the flow's workers.

A sender answers like a worker does, so the retry rules (``domain.backoff``) and the attempt
history are the same for every destination: an HTTP destination's status as it is; a broker's
confirmed publish as ``200`` (the attempt's ``response`` says where it went), a refused or
unconfirmed one as ``Reply(status=None, error=…)`` (retried).
"""

from __future__ import annotations

from typing import Protocol

from hookgate.domain.deliveries import Delivery
from hookgate.domain.forwarding import Reply

CONFIRMED = 200
"""The status an attempt records for a publish the broker confirmed."""


class Sender(Protocol):
    kind: str

    async def send(self, delivery: Delivery, *, timeout: float) -> Reply:
        """Never raises for the destination's failures: they come back as ``Reply.error``."""

    async def close(self) -> None:
        """Close connections; a send after close opens them again."""
