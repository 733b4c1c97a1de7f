"""The cluster store: PostgreSQL shared by several gateways, through a psycopg 3 pool.

Ingest and delivery outcomes are group-committed: a few tasks each take every write that is
waiting and send it as one statement (``unnest`` of arrays, its own transaction), resolving
each caller only after the commit; several groups are in flight at once. Leasing uses
``FOR UPDATE SKIP LOCKED`` so gateways never hand out the same delivery; every transition is
guarded by the state it leaves and by ``attempts`` (the lease token). Changes are announced with
``pg_notify`` inside the changing transaction, and ``watch()`` turns them into events.
A probe on a connection of its own asks the database every ``PROBE_EVERY`` whether it answers:
that is ``accepting`` (a pool busy with load is not an outage).
``psycopg`` is imported here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from importlib import resources
from typing import Any, Generic, TypeVar

import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from hookgate.domain.deliveries import Attempt, Delivery, Progress, Request, State
from hookgate.domain.destinations import WORKERS, DeliveryRate
from hookgate.domain.flows import Flow, encode
from hookgate.domain.pacing import TokenBucket
from hookgate.errors import (
    DeliveryNotFound,
    FlowConflict,
    FlowNotFound,
    SchemaMismatch,
    StoreError,
    StoreUnavailable,
)
from hookgate.store import rows as table
from hookgate.store.base import Accepted, Claim, DeliveryFilter, DeliveryRecord, Page, QueueStats
from hookgate.store.shared import Acceptance, Outcomes, QueuedBytes, find_sql, prefix_bounds, settle

SCHEMA_VERSION = 5
_FIND_EXACT = find_sql(table.SUMMARY, "{col} = %(low)s", "%(limit)s")
_FIND_PREFIX = find_sql(table.SUMMARY, "{col} ~>=~ %(low)s AND {col} ~<~ %(high)s", "%(limit)s")
BATCH = 4096
GROUPS_IN_FLIGHT = 3
"""Group commits in flight at once: while one waits for its fsync, the next is written."""
T = TypeVar("T")
FLOW_CHANNEL = "hookgate_flow"
QUEUE_CHANNEL = "hookgate_queue"
_MIGRATION_LOCK = 0x686F6F6B67617465  # "hookgate": serialises migrations of every replica
_RECOUNT_EVERY = 5.0
PROBE_EVERY = 1.0


_INSERT_ROWS = (
    f"INSERT INTO deliveries ({table.INSERTED})"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], %b::float8[],"
    " %b::float8[], %b::text[], %b::text[], %b::text[], %b::bytea[], %b::bytea[], %b::text[],"
    " %b::text[], %b::text[], %b::int2[])"
)
"""Rows of ``rows.inserted_rows`` (one column per array) in one statement."""
_INSERT_PLAIN = (
    f"WITH added AS ({_INSERT_ROWS} RETURNING flow_id)"
    " SELECT pg_notify('hookgate_queue', flow_id) FROM (SELECT DISTINCT flow_id FROM added) AS f"
)
"""A group of plain enqueues and the wake-up of their flows' dispatchers, in one statement:
in autocommit it is its own transaction, so the group costs one round trip."""


def _columns(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows turned into one list per column: the arrays ``unnest`` turns back into rows."""
    return [list(column) for column in zip(*rows, strict=True)]


def _qualified(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in columns.split(","))


_LEASE = sql.SQL(
    "WITH ready AS (SELECT seq FROM deliveries AS r"
    "  WHERE flow_id = %(flow)s AND destination = %(to)s AND state = 0 AND next_at <= %(now)s"
    "  AND (order_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries AS e"
    "   WHERE e.flow_id = r.flow_id AND e.destination = r.destination"
    "   AND e.order_key = r.order_key AND e.state IN (0, 1) AND e.seq < r.seq))"
    "  ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
    " expired AS (SELECT seq FROM deliveries"
    "  WHERE flow_id = %(flow)s AND destination = %(to)s AND state = 1"
    "  AND lease_until < %(now)s"
    "  ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
    " pick AS (SELECT seq FROM ready UNION ALL SELECT seq FROM expired"
    "  ORDER BY seq LIMIT %(limit)s)"
    " UPDATE deliveries AS d SET state = 1, attempts = d.attempts + 1,"
    "  lease_until = %(until)s, updated_at = %(now)s"
    " FROM pick WHERE d.seq = pick.seq RETURNING {}"
).format(sql.SQL(_qualified("d", table.FULL)))
# One statement for a group of outcomes (one round trip, its own transaction): the moves,
# each guarded by its lease (``attempts``), the attempts of those that moved, and for retries
# the wake-up of every dispatcher.
_FINISH = (
    "WITH v AS (SELECT * FROM unnest(%s::text[], %s::int4[], %s::int2[], %s::float8[],"
    "  %s::text[], %s::float8[], %s::int4[], %s::float8[], %s::float8[], %s::int4[],"
    "  %s::text[], %s::text[], %s::bool[]) AS v(id, token, target, next_at, problem, ended,"
    "  number, started, ms, status, error, response, notify)),"
    " moved AS (UPDATE deliveries AS d SET state = v.target,"
    "  next_at = coalesce(v.next_at, d.next_at), lease_until = NULL,"
    "  last_error = v.problem, updated_at = v.ended"
    "  FROM v WHERE d.id = v.id AND d.state = 1 AND d.attempts = v.token"
    "  RETURNING d.id, d.flow_id, v.notify),"
    " tried AS (INSERT INTO attempts (delivery_id, number, started_at, duration_ms,"
    "  status_code, error, response)"
    "  SELECT v.id, v.number, v.started, v.ms, v.status, v.error, v.response"
    "  FROM v JOIN moved ON moved.id = v.id)"
    " SELECT id, CASE WHEN notify THEN pg_notify('hookgate_queue', flow_id) END FROM moved"
)
_NOTIFY_QUEUE = "SELECT pg_notify('hookgate_queue', f) FROM unnest(%s::text[]) AS f"


class _Pending:
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


def _keyed(item: _Pending) -> bool:
    """Whether an enqueue needs a transaction of its own (a dedupe key, a status token)."""
    return item.key is not None or item.token is not None


class _Finishing:
    """An outcome waiting for its group: the columns of ``_FINISH``, in order."""

    __slots__ = ("future", "row")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row
        self.future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()


class _Groups(Generic[T]):
    """Writes that go to the database together: each of ``writers`` tasks takes everything
    waiting (up to ``BATCH``) and writes it as one group, so several groups are in flight
    while others wait for their commit."""

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


class PostgresStore(Outcomes):
    def __init__(
        self,
        url: str,
        *,
        max_queued_bytes: int,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
    ) -> None:
        params = conninfo_to_dict(url)
        timeout = f"-c statement_timeout={int(statement_timeout * 1000)}"
        options = f"{params.get('options', '')} {timeout}".strip()
        self._conninfo = make_conninfo(url, options=options)
        self.where = (
            f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
            f"/{params.get('dbname', params.get('user', ''))}"
        )
        self.queued = QueuedBytes(max_queued_bytes)
        self._health = Acceptance("postgresql")
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._ingest: _Groups[_Pending] | None = None
        self._finishes: _Groups[_Finishing] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        async with await self._connect() as conn:
            await self._migrate(conn)
        self._pool = AsyncConnectionPool(
            self._conninfo,
            min_size=min(2, self.pool_size),
            max_size=self.pool_size,
            kwargs={"autocommit": True},
            open=False,
            name="hookgate",
        )
        try:
            await self._pool.open(wait=True, timeout=self.connect_timeout)
            await self._recount()
            probe = await self._connect()
        except (PoolTimeout, StoreError) as exc:
            pool, self._pool = self._pool, None
            await pool.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreUnavailable(self._unreachable("no connection")) from None
        self._ingest = _Groups(self._commit, GROUPS_IN_FLIGHT)
        self._finishes = _Groups(self._finish_group, GROUPS_IN_FLIGHT)
        self._tasks = [
            asyncio.create_task(self._recounter()),
            asyncio.create_task(self._probe(probe)),
        ]

    async def close(self) -> None:
        self._closing = True
        for groups in (self._ingest, self._finishes):
            if groups is not None:
                await groups.close()
        self._ingest = self._finishes = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def schema_version(self) -> int:
        """The version the database is at, for ``hookgate db status``."""
        async with await self._connect() as conn:
            cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
            row = await cur.fetchone()
            if not row or not row[0]:
                return 0
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(self._unreachable(exc)) from None

    def _unreachable(self, exc: object) -> str:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"cannot reach PostgreSQL at {self.where}: {reason}"

    async def _migrate(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Bring the schema up to date; the advisory lock makes concurrent starts take turns."""
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
                row = await cur.fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise SchemaMismatch(
                        f"PostgreSQL database {self.where} has schema version {version}, newer"
                        f" than this Hookgate ({SCHEMA_VERSION}); upgrade Hookgate, or point it"
                        " at another database"
                    )
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    script = resources.files("hookgate.store").joinpath(
                        f"schema/postgres-{step:04d}.sql"
                    )
                    await conn.execute(script.read_text().encode())
                    await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", [step])
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(self._unreachable(exc)) from None
        except psycopg.Error as exc:
            raise StoreError(f"migrating PostgreSQL {self.where} failed: {exc}") from None

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; psycopg's errors leave this block as Hookgate's."""
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with self._pool.connection(timeout=self.connect_timeout) as conn:
                yield conn
        except PoolTimeout:
            raise StoreUnavailable(
                self._unreachable(f"no connection within {self.connect_timeout:g}s")
            ) from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(self._unreachable(exc)) from None
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL {self.where} refused the statement: {exc}") from None

    # group commit ------------------------------------------------------------------------
    async def _commit(self, batch: list[_Pending]) -> None:
        """Write a batch in one transaction; if one row is refused, write the rest one by one."""
        results: list[Accepted | BaseException]
        try:
            results = await self._write_batch(batch)
        except StoreUnavailable as exc:
            results = [exc] * len(batch)
        except Exception as exc:
            if len(batch) > 1:
                for item in batch:
                    await self._commit([item])
                return
            message = (
                str(exc)
                if isinstance(exc, StoreError)
                else (f"PostgreSQL {self.where} refused the request: {exc}")
            )
            results = [StoreUnavailable(message)]
        for item, result in zip(batch, results, strict=True):
            settle(item.future, result)

    async def _write_batch(self, batch: list[_Pending]) -> list[Accepted | BaseException]:
        """Plain enqueues go in one statement (its own transaction: one round trip); those
        with a dedupe key or a status token in a transaction of their own, row by row."""
        claimed: dict[int, Accepted] = {}
        async with self._conn() as conn:
            plain = [item.request for item in batch if not _keyed(item)]
            if plain:
                await conn.execute(
                    _INSERT_PLAIN, _columns(row for r in plain for row in table.inserted_rows(r))
                )
            keyed = [item for item in batch if _keyed(item)]
            if keyed:
                async with conn.transaction():
                    for item in keyed:
                        claimed[id(item)] = await self._claim(conn, item)
                    flows = {i.request.flow_id for i in keyed if not claimed[id(i)].duplicate}
                    await conn.execute(_NOTIFY_QUEUE, [sorted(flows)])
        return [
            claimed[id(item)]
            if _keyed(item)
            else Accepted(item.request.request_id, item.request.id)
            for item in batch
        ]

    @staticmethod
    async def _claim(conn: psycopg.AsyncConnection[Any], item: _Pending) -> Accepted:
        """Insert under a dedupe key unless a live one exists (then answer with its ids), and
        give the delivery its status token unless it has one."""
        accepted = await PostgresStore._deduped(conn, item)
        if item.token is None:
            return accepted
        cur = await conn.execute(
            "UPDATE deliveries SET status_token = coalesce(status_token, %s) WHERE id = %s"
            " RETURNING status_token",
            [item.token, accepted.delivery_id],
        )
        kept = await cur.fetchone()
        return msgspec.structs.replace(accepted, status_token=None if kept is None else kept[0])

    @staticmethod
    async def _deduped(conn: psycopg.AsyncConnection[Any], item: _Pending) -> Accepted:
        request = item.request
        if item.key is None:
            await conn.execute(_INSERT_ROWS, _columns(table.inserted_rows(request)))
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
                return Accepted(seen[0], seen[1], duplicate=True)
        await conn.execute(_INSERT_ROWS, _columns(table.inserted_rows(request)))
        return Accepted(request.request_id, request.id)

    async def _recount(self) -> None:
        """The queued bytes of every gateway: each only sees its own enqueues and acks."""
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT flow_id, sum({table.QUEUED_SIZE}) FROM deliveries"
                " WHERE state IN (0, 1) GROUP BY flow_id"
            )
            self.queued.reset({flow_id: int(size) for flow_id, size in await cur.fetchall()})

    async def _recounter(self) -> None:
        while True:
            await asyncio.sleep(_RECOUNT_EVERY)
            with contextlib.suppress(StoreError):
                await self._recount()

    # health ------------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        return self._health.accepting

    async def _probe(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        """``SELECT 1`` every ``PROBE_EVERY`` on a connection of its own, reconnecting after a
        failure: accepting stops when the database does not answer and resumes when it does."""
        try:
            while True:
                try:
                    conn = conn or await self._connect()
                    async with asyncio.timeout(self.connect_timeout):
                        await conn.execute("SELECT 1")
                        if not self._health.accepting and self._pool is not None:
                            await self._pool.check()  # drop the connections the outage broke
                    self._health.resume()
                except (StoreError, psycopg.Error, TimeoutError) as exc:
                    self._health.stop(self._unanswered(exc))
                    if conn is not None:
                        await conn.close()
                        conn = None
                await asyncio.sleep(PROBE_EVERY)
        finally:
            if conn is not None:
                await conn.close()

    def _unanswered(self, exc: Exception) -> str:
        if isinstance(exc, StoreError):  # from _connect(), which says where already
            return str(exc)
        if isinstance(exc, TimeoutError):
            return self._unreachable(f"no answer within {self.connect_timeout:g}s")
        return self._unreachable(exc)

    # flows -------------------------------------------------------------------------------
    async def create_flow(self, flow: Flow) -> None:
        async with self._conn() as conn, conn.transaction():
            try:
                await conn.execute(
                    "INSERT INTO flows (id, name, spec, status, created_at, updated_at)"
                    " VALUES (%s, %s, %s::jsonb, %s, %s, %s)",
                    [
                        flow.id,
                        flow.name,
                        encode(flow.spec).decode(),
                        flow.status.value,
                        flow.created_at,
                        flow.updated_at,
                    ],
                )
            except psycopg.errors.UniqueViolation:
                raise FlowConflict(f"a flow named {flow.name!r} exists already") from None
            await conn.execute("SELECT pg_notify('hookgate_flow', %s)", [flow.id])

    async def update_flow(self, flow: Flow) -> None:
        async with self._conn() as conn, conn.transaction():
            try:
                cur = await conn.execute(
                    "UPDATE flows SET name = %s, spec = %s::jsonb, status = %s, updated_at = %s"
                    " WHERE id = %s",
                    [
                        flow.name,
                        encode(flow.spec).decode(),
                        flow.status.value,
                        flow.updated_at,
                        flow.id,
                    ],
                )
            except psycopg.errors.UniqueViolation:
                raise FlowConflict(f"a flow named {flow.name!r} exists already") from None
            if cur.rowcount != 1:
                raise FlowNotFound(f"no flow with id {flow.id}")
            await conn.execute("SELECT pg_notify('hookgate_flow', %s)", [flow.id])

    async def delete_flow(self, flow_id: str) -> None:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute("DELETE FROM flows WHERE id = %s", [flow_id])
            if cur.rowcount != 1:
                raise FlowNotFound(f"no flow with id {flow_id}")
            await conn.execute(
                "WITH gone AS (DELETE FROM deliveries WHERE flow_id = %s RETURNING id)"
                " DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM gone)",
                [flow_id],
            )
            await conn.execute("DELETE FROM dedupe WHERE flow_id = %s", [flow_id])
            await conn.execute("DELETE FROM schedules WHERE flow_id = %s", [flow_id])
            await conn.execute("DELETE FROM buckets WHERE name LIKE %s", [f"{flow_id}/%"])
            await conn.execute("SELECT pg_notify('hookgate_flow', %s)", [flow_id])
        self.queued.forget(flow_id)

    async def list_flows(self) -> list[Flow]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id, spec::text, status, created_at, updated_at FROM flows ORDER BY name"
            )
            return [table.flow(r) for r in await cur.fetchall()]

    async def get_flow(self, flow_id: str) -> Flow | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id, spec::text, status, created_at, updated_at FROM flows WHERE id = %s",
                [flow_id],
            )
            row = await cur.fetchone()
            return None if row is None else table.flow(row)

    # ingest ------------------------------------------------------------------------------
    async def enqueue(
        self,
        request: Request,
        *,
        dedupe_key: str | None = None,
        dedupe_until: float = 0.0,
        max_queued: int | None = None,
        status_token: str | None = None,
    ) -> Accepted:
        if self._ingest is None or self._closing:
            raise StoreUnavailable("the store is not open")
        if self._health.reason is not None:
            raise StoreUnavailable(self._health.reason)
        size = table.queued_size(request)
        self.queued.check(request.flow_id, size, max_queued)
        item = _Pending(request, dedupe_key, dedupe_until, status_token)
        self._ingest.put(item)
        result = await item.future
        if not result.duplicate:
            self.queued.add(request.flow_id, size)
        return result

    # the queue ---------------------------------------------------------------------------
    async def lease(
        self,
        flow_id: str,
        *,
        destination: str = WORKERS,
        limit: int,
        lease_for: float,
        now: float,
    ) -> list[Delivery]:
        where = {"flow": flow_id, "to": destination, "now": now, "limit": limit}
        async with self._conn() as conn:
            cur = await conn.execute(_LEASE, {**where, "until": now + lease_for})
            rows = await cur.fetchall()
        return sorted((table.full(row) for row in rows), key=lambda d: d.id)

    async def _finish(
        self, delivery: Delivery, attempt: Attempt, *, to: State, next_at: float | None = None
    ) -> bool:
        if self._finishes is None or self._closing:
            raise StoreUnavailable("the store is not open")
        _, *tried = table.attempt_row(delivery.id, attempt)
        ended = attempt.started_at + attempt.duration_ms / 1000
        move = (delivery.id, delivery.attempts, int(to), next_at, attempt.problem, ended)
        item = _Finishing((*move, *tried, to is State.QUEUED))
        self._finishes.put(item)
        return await item.future

    async def _finish_group(self, group: list[_Finishing]) -> None:
        """Every outcome of the group in one statement: guarded moves, their attempts and
        the wake-ups for retries."""
        try:
            async with self._conn() as conn:
                cur = await conn.execute(_FINISH, _columns(f.row for f in group))
                moved = {row[0] for row in await cur.fetchall()}
        except Exception as exc:
            error = exc if isinstance(exc, StoreError) else StoreError(f"finishing failed: {exc}")
            for item in group:
                settle(item.future, error)
            return
        for item in group:
            settle(item.future, item.row[0] in moved)

    async def keep_answer(self, delivery: Delivery, answer: bytes) -> bool:
        async with self._conn() as conn:
            cur = await conn.execute(
                "UPDATE deliveries SET answer = %s WHERE id = %s AND state = 1 AND attempts = %s",
                [answer, delivery.id, delivery.attempts],
            )
        return cur.rowcount == 1

    async def replay(self, ids: Sequence[str], *, now: float) -> int:
        if not ids:
            return 0
        return await self._replay(sql.SQL("id = ANY(%s)"), [list(ids)], now)

    async def replay_matching(self, where: DeliveryFilter, *, now: float) -> int:
        clause, params = _where(where)
        return await self._replay(clause, params, now)

    async def _replay(self, clause: sql.Composable, params: list[Any], now: float) -> int:
        query = sql.SQL(
            "UPDATE deliveries SET state = 0, attempts = 0, next_at = %s, lease_until = NULL,"
            " updated_at = %s WHERE ({}) AND state IN (2, 3) RETURNING flow_id, {}"
        ).format(clause, sql.SQL(table.QUEUED_SIZE))
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(query, [now, now, *params])
            rows = await cur.fetchall()
            await conn.execute(_NOTIFY_QUEUE, [sorted({row[0] for row in rows})])
        self.queued.add_all(rows)
        return len(rows)

    async def delete_deliveries(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                "WITH gone AS (DELETE FROM deliveries WHERE id = ANY(%s)"
                f"  RETURNING id, flow_id, state, {table.QUEUED_SIZE} AS size),"
                " tried AS (DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM gone))"
                " SELECT flow_id, count(*), coalesce(sum(size) FILTER (WHERE state IN (0, 1)), 0)"
                " FROM gone GROUP BY flow_id",
                [list(ids)],
            )
            rows = await cur.fetchall()
        self.queued.add_all([(flow_id, int(freed)) for flow_id, _, freed in rows], sign=-1)
        return sum(int(count) for _, count, _ in rows)

    # reading -----------------------------------------------------------------------------
    async def get_delivery(self, delivery_id: str) -> Delivery:
        async with self._conn() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT {} FROM deliveries WHERE id = %s").format(sql.SQL(table.FULL)),
                [delivery_id],
            )
            row = await cur.fetchone()
        if row is None:
            raise DeliveryNotFound(f"no delivery {delivery_id} (unknown, or purged)")
        return table.full(row)

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT {table.ATTEMPT} FROM attempts WHERE delivery_id = %s ORDER BY seq",
                [delivery_id],
            )
            rows = await cur.fetchall()
        return [table.attempt(r) for r in rows]

    async def progress(self, status_token: str) -> Progress | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                f"SELECT {table.PROGRESS} FROM deliveries WHERE status_token = %s", [status_token]
            )
            row = await cur.fetchone()
        return None if row is None else table.progress(row)

    async def find_deliveries(self, ref: str, *, limit: int) -> list[Delivery]:
        bounds = prefix_bounds(ref)
        params: dict[str, Any] = {"low": ref, "limit": limit}
        async with self._conn() as conn:
            cur = await conn.execute(_FIND_EXACT, params)
            rows = await cur.fetchall()
            if not rows and bounds is not None:
                params["low"], params["high"] = bounds
                cur = await conn.execute(_FIND_PREFIX, params)
                rows = await cur.fetchall()
        return [table.summary(row) for row in rows]

    async def list_deliveries(
        self, where: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> Page:
        query, params = list_query(where, limit=limit, cursor=cursor)
        async with self._conn() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            [table.summary(row[1:]) for row in rows], str(rows[-1][0]) if more and rows else None
        )

    async def queue_stats(self) -> dict[str, QueueStats]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT flow_id, count(*) FILTER (WHERE state = 0),"
                " count(*) FILTER (WHERE state = 1), min(received_at),"
                " min(CASE WHEN state = 0 THEN next_at ELSE lease_until END)"
                " FROM deliveries WHERE state IN (0, 1) GROUP BY flow_id"
            )
            rows = await cur.fetchall()
        return {r[0]: QueueStats(r[1], r[2], r[3], r[4]) for r in rows}

    # hygiene -----------------------------------------------------------------------------
    async def purge(self, *, flow_id: str, done_before: float, limit: int = 1000) -> int:
        """One small batch, skipping rows another purge holds, so no lock is held for long."""
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                "WITH gone AS (DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries"
                "  WHERE flow_id = %s AND state IN (2, 4) AND updated_at < %s"
                "  ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id),"
                " tried AS (DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM gone))"
                " SELECT count(*) FROM gone",
                [flow_id, done_before, limit],
            )
            row = await cur.fetchone()
            await conn.execute(
                "DELETE FROM dedupe WHERE flow_id = %s AND expires_at < extract(epoch FROM now())",
                [flow_id],
            )
        return int(row[0]) if row else 0

    # moving between stores ---------------------------------------------------------------
    async def count_deliveries(self) -> dict[str, dict[State, int]]:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT flow_id, state, count(*) FROM deliveries GROUP BY flow_id, state"
            )
            rows = await cur.fetchall()
        counts: dict[str, dict[State, int]] = {}
        for flow_id, state, count in rows:
            counts.setdefault(flow_id, {})[State(state)] = count
        return counts

    async def export_deliveries(
        self, *, limit: int, cursor: str | None
    ) -> tuple[list[DeliveryRecord], str | None]:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                sql.SQL(
                    "SELECT seq, {} FROM deliveries WHERE seq > %s ORDER BY seq LIMIT %s"
                ).format(sql.SQL(table.FULL)),
                [int(cursor or 0), limit],
            )
            rows = await cur.fetchall()
            cur = await conn.execute(
                f"SELECT delivery_id, {table.ATTEMPT} FROM attempts"
                " WHERE delivery_id = ANY(%s) ORDER BY seq",
                [[row[1] for row in rows]],
            )
            tried = await cur.fetchall()
        history: dict[str, list[Attempt]] = {}
        for r in tried:
            history.setdefault(r[0], []).append(table.attempt(r[1:]))
        records = [DeliveryRecord(table.full(row[1:]), history.get(row[1], [])) for row in rows]
        return records, str(rows[-1][0]) if len(rows) == limit else None

    async def import_deliveries(self, records: Sequence[DeliveryRecord]) -> int:
        """COPY the ones not present yet; one transaction, so a failed batch leaves nothing."""
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT id FROM deliveries WHERE id = ANY(%s)",
                [[r.delivery.id for r in records]],
            )
            present = {row[0] for row in await cur.fetchall()}
            fresh = [r for r in records if r.delivery.id not in present]
            async with conn.cursor().copy(
                sql.SQL("COPY deliveries ({}) FROM STDIN").format(sql.SQL(table.FULL))
            ) as copy:
                for record in fresh:
                    await copy.write_row(table.full_row(record.delivery))
            async with conn.cursor().copy(
                "COPY attempts (delivery_id, number, started_at, duration_ms, status_code,"
                " error, response) FROM STDIN"
            ) as copy:
                for record in fresh:
                    for a in record.attempts:
                        await copy.write_row(table.attempt_row(record.delivery.id, a))
            pending = [
                r.delivery for r in fresh if r.delivery.state in (State.QUEUED, State.LEASED)
            ]
            await conn.execute(_NOTIFY_QUEUE, [sorted({d.flow_id for d in pending})])
        self.queued.add_all([(d.flow_id, table.queued_size(d)) for d in pending])
        return len(fresh)

    # events ------------------------------------------------------------------------------
    # polling triggers --------------------------------------------------------------------
    async def last_tick(self, flow_id: str) -> float | None:
        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT last_tick FROM schedules WHERE flow_id = %s", [flow_id]
            )
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def claim_tick(
        self, flow_id: str, *, tick: float, request: Request | None, exclusive: bool
    ) -> Claim:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO schedules (flow_id) VALUES (%s) ON CONFLICT DO NOTHING", [flow_id]
            )
            # The row lock orders gateways claiming the same flow's ticks.
            cur = await conn.execute(
                "SELECT last_tick FROM schedules WHERE flow_id = %s FOR UPDATE", [flow_id]
            )
            row = await cur.fetchone()
            if row is not None and row[0] is not None and row[0] >= tick:
                return "taken"
            if exclusive:
                cur = await conn.execute(
                    "SELECT 1 FROM deliveries WHERE flow_id = %s AND source = 'schedule'"
                    " AND state IN (0, 1) LIMIT 1",
                    [flow_id],
                )
                if await cur.fetchone() is not None:
                    return "busy"
            await conn.execute(
                "UPDATE schedules SET last_tick = %s WHERE flow_id = %s", [tick, flow_id]
            )
            if request is not None:
                await conn.execute(_INSERT_ROWS, _columns(table.inserted_rows(request)))
                await conn.execute("SELECT pg_notify('hookgate_queue', %s)", [flow_id])
        if request is not None:
            self.queued.add(flow_id, table.queued_size(request))
        return "claimed"

    async def snapshot(self, flow_id: str) -> bytes | None:
        async with self._conn() as conn:
            cur = await conn.execute("SELECT snapshot FROM schedules WHERE flow_id = %s", [flow_id])
            row = await cur.fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    async def take_tokens(self, bucket: str, wanted: int, *, rate: DeliveryRate, now: float) -> int:
        """The bucket's row is locked for the moment of the take, so gateways take in turn;
        time is the database's, so gateways' clocks need not agree."""
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO buckets AS b (name, tokens, stamp)"
                " VALUES (%s, %s, extract(epoch FROM clock_timestamp()))"
                " ON CONFLICT (name) DO UPDATE SET stamp = b.stamp"
                " RETURNING tokens, stamp, extract(epoch FROM clock_timestamp())::float8",
                [bucket, float(rate.burst)],
            )
            row = await cur.fetchone()
            assert row is not None
            pace = TokenBucket.of(rate)
            pace.tokens, pace.stamp = row[0], row[1]
            granted = pace.spend(wanted, rate, row[2])
            await conn.execute(
                "UPDATE buckets SET tokens = %s, stamp = %s WHERE name = %s",
                [pace.tokens, pace.stamp, bucket],
            )
        return granted

    async def set_snapshot(self, flow_id: str, snapshot: bytes | None) -> None:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO schedules (flow_id, snapshot) VALUES (%s, %s)"
                " ON CONFLICT (flow_id) DO UPDATE SET snapshot = excluded.snapshot",
                [flow_id, snapshot],
            )

    async def watch(self) -> AsyncGenerator[tuple[str, str], None]:
        """``("flow", id)`` when any gateway changed a flow, ``("queue", id)`` when work arrived.

        The first event is ``("listening", "")``: from then on nothing is missed, so that is the
        moment to reload caches. Ends when the store closes; raises ``StoreUnavailable`` when the
        connection is lost: events may have been missed, so watch again and reload on "listening".
        """
        async with await self._connect() as conn:
            try:
                await conn.execute(f"LISTEN {FLOW_CHANNEL}")
                await conn.execute(f"LISTEN {QUEUE_CHANNEL}")
                yield ("listening", "")
                while not self._closing:
                    async for note in conn.notifies(timeout=1.0):
                        yield (note.channel.removeprefix("hookgate_"), note.payload)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise StoreUnavailable(self._unreachable(exc)) from None


def list_query(
    where: DeliveryFilter, *, limit: int, cursor: str | None
) -> tuple[sql.Composed, list[Any]]:
    """The page query: newest first by ``seq``, continuing below the cursor (keyset)."""
    clause, params = _where(where)
    if cursor is not None:
        clause = sql.SQL("{} AND seq < %s").format(clause)
        params.append(int(cursor))
    query = sql.SQL("SELECT seq, {} FROM deliveries WHERE {} ORDER BY seq DESC LIMIT %s").format(
        sql.SQL(table.SUMMARY), clause
    )
    return query, [*params, limit + 1]


def _where(where: DeliveryFilter) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = [sql.SQL("true")]
    params: list[Any] = []
    for column, op, value in (
        ("flow_id", "=", where.flow_id),
        ("state", "=", None if where.state is None else int(where.state)),
        ("received_at", ">=", where.since),
        ("received_at", "<", where.until),
    ):
        if value is not None:
            clauses.append(sql.SQL(f"{column} {op} %s"))
            params.append(value)
    return sql.SQL(" AND ").join(clauses), params
