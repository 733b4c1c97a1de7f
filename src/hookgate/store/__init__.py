"""Where flows and queued requests live. ``Store`` is the seam; see ``base.py``."""

from hookgate.errors import ConfigError
from hookgate.store.base import Accepted, DeliveryFilter, Page, QueueStats, Store

__all__ = ["Accepted", "DeliveryFilter", "Page", "QueueStats", "Store", "open_store"]


def open_store(url: str, *, max_queued_bytes: int, synchronous: str = "FULL") -> Store:
    """A store for a URL: ``sqlite:///path/to.db`` or ``postgresql://…``."""
    if url.startswith(("postgresql://", "postgres://")):
        from hookgate.store.postgres import PostgresStore

        return PostgresStore(url, max_queued_bytes=max_queued_bytes)
    if not url.startswith("sqlite://"):
        raise ConfigError(
            f"unsupported database URL {url.split('@')[-1]!r}: use sqlite:///path or postgresql://"
        )
    from hookgate.store.sqlite import SQLiteStore

    return SQLiteStore(
        url.removeprefix("sqlite://"), max_queued_bytes=max_queued_bytes, synchronous=synchronous
    )
