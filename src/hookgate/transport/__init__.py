"""How Hookgate talks HTTP to workers. ``WorkerTransport`` is the seam; ``client`` implements it."""

from hookgate.transport.base import Outbound, Reply, Upstream, WorkerTransport

__all__ = ["Outbound", "Reply", "Upstream", "WorkerTransport"]
