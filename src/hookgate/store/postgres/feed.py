"""The change feed: ``pg_notify`` inside each changing transaction, ``LISTEN`` here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg

from hookgate.store.changes import Change, FlowChanged, Queued, Resynced
from hookgate.store.postgres.statements import FLOW_CHANNEL, QUEUE_CHANNEL


async def events(
    conn: psycopg.AsyncConnection[Any], closing: Callable[[], bool]
) -> AsyncIterator[Change]:
    """``Resynced`` once listening, then ``FlowChanged`` or ``Queued`` per notification,
    until ``closing()``."""
    await conn.execute(f"LISTEN {FLOW_CHANNEL}")
    await conn.execute(f"LISTEN {QUEUE_CHANNEL}")
    yield Resynced()
    while not closing():
        async for note in conn.notifies(timeout=1.0):
            if note.channel == FLOW_CHANNEL:
                yield FlowChanged(note.payload)
            else:
                yield Queued(note.payload)
