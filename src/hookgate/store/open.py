"""``open_store``: the one place that picks an implementation, so ``base`` imports none and
each driver is imported only when its URL is used."""

from __future__ import annotations

from hookgate.errors import ConfigError
from hookgate.store.base import Store


def open_store(
    url: str, *, max_queued_bytes: int, synchronous: str = "FULL", disk_reserve: int = 0
) -> Store:
    """A store for a URL: ``sqlite:///path/to.db``, ``postgresql://…`` or ``memory://`` (a
    throwaway demo or test: nothing survives a restart).

    ``disk_reserve``: the free bytes SQLite leaves on its volume (PostgreSQL minds its own).
    """
    if url.startswith(("postgresql://", "postgres://")):
        from hookgate.store.postgres.store import PostgresStore

        return PostgresStore(url, max_queued_bytes=max_queued_bytes)
    if url == "memory://":
        from hookgate.store.memory import MemoryStore

        return MemoryStore(max_queued_bytes=max_queued_bytes)
    if not url.startswith("sqlite://"):
        raise ConfigError(
            f"unsupported database URL {url.split('@')[-1]!r}: use sqlite:///path,"
            " postgresql://… or memory://"
        )
    from hookgate.store.sqlite.store import SQLiteStore

    return SQLiteStore(
        url.removeprefix("sqlite://"),
        max_queued_bytes=max_queued_bytes,
        synchronous=synchronous,
        disk_reserve=disk_reserve,
    )
