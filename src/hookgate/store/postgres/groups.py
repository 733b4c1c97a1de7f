"""Group commit for PostgreSQL: enqueues and outcomes wait in a queue, and a few tasks each
write everything waiting as one group (one statement, or one transaction), so several groups
are in flight while others wait for their commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import msgspec
import psycopg

from hookgate.domain.deliveries import Request
from hookgate.store import rows as table
from hookgate.store.base import Accepted
from hookgate.store.postgres.statements import INSERT_PLAIN, INSERT_ROWS, NOTIFY_QUEUE, columns

T = TypeVar("T")
BATCH = 4096
GROUPS_IN_FLIGHT = 3
"""Group commits in flight at once: while one waits for its fsync, the next is written."""


class Pending:
    """An enqueue waiting for the ingest task; its future resolves after the batch commits."""

    __slots__ = ("future", "key", "request", "token", "until")

    def __init__(
        self, request: Request, key: str | None, until: float, token: str | None = None
    ) -> None:
        self.request = request
        self.key = key
        self.until = until
        self.token = token
        self.future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()

    @property
    def keyed(self) -> bool:
        """Whether it needs a transaction of its own (a dedupe key, a status token)."""
        return self.key is not None or self.token is not None


class Finishing:
    """An outcome waiting for its group: the columns of ``statements.FINISH``, in order."""

    __slots__ = ("delivery_id", "future", "row")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row
        self.delivery_id: str = row[0]
        self.future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()


class Groups(Generic[T]):
    """Writes that go to the database together: each of ``writers`` tasks takes everything
    waiting (up to ``BATCH``) and writes it as one group."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], writers: int) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._run(write)) for _ in range(writers)]

    def put(self, item: T) -> None:
        self._queue.put_nowait(item)

    async def _run(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            group, stop = [first], False
            while len(group) < BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                group.append(item)
            await write(group)
            if stop:
                return

    async def close(self) -> None:
        """Write what is waiting, then stop."""
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks)


async def insert_batch(conn: psycopg.AsyncConnection[Any], batch: list[Pending]) -> list[Accepted]:
    """Plain enqueues go in one statement (its own transaction: one round trip); those
    with a dedupe key or a status token in a transaction of their own, row by row."""
    claimed: dict[int, Accepted] = {}
    plain = [item.request for item in batch if not item.keyed]
    if plain:
        await conn.execute(
            INSERT_PLAIN, columns(row for r in plain for row in table.inserted_rows(r))
        )
    keyed = [item for item in batch if item.keyed]
    if keyed:
        async with conn.transaction():
            for item in keyed:
                claimed[id(item)] = await _claim(conn, item)
            flows = {i.request.flow_id for i in keyed if not claimed[id(i)].duplicate}
            await conn.execute(NOTIFY_QUEUE, [sorted(flows)])
    return [
        claimed[id(item)] if item.keyed else Accepted(item.request.request_id, item.request.id)
        for item in batch
    ]


async def _claim(conn: psycopg.AsyncConnection[Any], item: Pending) -> Accepted:
    """Insert under a dedupe key unless a live one exists (then answer with its ids), and
    give the delivery its status token unless it has one."""
    accepted = await _deduped(conn, item)
    if item.token is None:
        return accepted
    cur = await conn.execute(
        "UPDATE deliveries SET status_token = coalesce(status_token, %s) WHERE id = %s"
        " RETURNING status_token",
        [item.token, accepted.delivery_id],
    )
    kept = await cur.fetchone()
    return msgspec.structs.replace(accepted, status_token=None if kept is None else kept[0])


async def _deduped(conn: psycopg.AsyncConnection[Any], item: Pending) -> Accepted:
    request = item.request
    if item.key is None:
        await conn.execute(INSERT_ROWS, columns(table.inserted_rows(request)))
        return Accepted(request.request_id, request.id)
    cur = await conn.execute(
        "INSERT INTO dedupe AS d VALUES (%s, %s, %s, %s, %s) ON CONFLICT (flow_id, key)"
        " DO UPDATE SET request_id = excluded.request_id,"
        " delivery_id = excluded.delivery_id, expires_at = excluded.expires_at"
        " WHERE d.expires_at <= %s RETURNING 1",
        [
            request.flow_id,
            item.key,
            request.request_id,
            request.id,
            item.until,
            request.received_at,
        ],
    )
    if await cur.fetchone() is None:
        cur = await conn.execute(
            "SELECT request_id, delivery_id FROM dedupe WHERE flow_id = %s AND key = %s",
            [request.flow_id, item.key],
        )
        seen = await cur.fetchone()
        if seen is not None:
            request_id, delivery_id = seen
            return Accepted(request_id, delivery_id, duplicate=True)
    await conn.execute(INSERT_ROWS, columns(table.inserted_rows(request)))
    return Accepted(request.request_id, request.id)
