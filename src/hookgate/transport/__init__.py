"""How Hookgate talks HTTP to workers. ``WorkerTransport`` is the seam; ``client`` implements it
(over ``connection`` and ``pool``)."""

from hookgate.domain.forwarding import Outbound, Reply
from hookgate.transport.base import Upstream, WorkerTransport

__all__ = ["Outbound", "Reply", "Upstream", "WorkerTransport"]
