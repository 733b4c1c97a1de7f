"""What one listener allows a connection: deadlines, connection caps and body memory.

The public listener faces the internet, so every phase of a connection has a bound: waiting
for a request (``keep_alive``), sending its head (``head_timeout``), sending its body (no
``body_timeout`` window without progress, and ``body_min_rate`` bytes/s on average). The
numbers are documented in docs/configuration.md; here they are plain data.
"""

from __future__ import annotations

import msgspec

# Per connection, a body's first bytes stay in memory; beyond this they go to a temporary file.
BODY_IN_MEMORY = 256 * 1024
# Connections kept for the gateway's own files, sockets, the store and worker pipes.
RESERVED_FILES = 128
DEFAULT_MAX_CONNECTIONS = 10_000


class ListenerLimits(msgspec.Struct, frozen=True, kw_only=True):
    head_timeout: float = 10.0
    """From a request head's first byte to its end."""
    body_timeout: float = 10.0
    """The longest a body may go without a byte arriving."""
    body_min_rate: int = 1024
    """Bytes per second a body must average once it has taken ``body_timeout``."""
    keep_alive: float = 30.0
    """An open connection with no request in progress (including a new one) is closed after."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Open connections at most; beyond, idle and stalled ones are closed first, then 503."""
    max_connections_per_ip: int = 256
    """Open connections from one source address (trusted proxies are not counted)."""
    body_memory: int = 64 * 1024 * 1024
    """Request body bytes held in memory across all connections; the rest is spooled to disk."""
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100


def connections_for(open_files: int) -> int:
    """The default connection cap for a process allowed ``open_files`` descriptors.

    Three quarters of what is left after the gateway's own files, so that ``accept()`` never
    meets ``EMFILE`` (asyncio then stops accepting for a second, for everyone).
    """
    return max(16, min(DEFAULT_MAX_CONNECTIONS, (open_files - RESERVED_FILES) * 3 // 4))
