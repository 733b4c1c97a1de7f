"""How Hookgate talks HTTP to workers. ``WorkerTransport`` is the seam; aiohttp lives here only."""

from hookgate.transport.base import Outbound, Reply, WorkerTransport

__all__ = ["Outbound", "Reply", "WorkerTransport"]
