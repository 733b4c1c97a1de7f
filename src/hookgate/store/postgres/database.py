"""Reaching PostgreSQL: the pool, connections of their own (migrations, the feed, the probe),
psycopg's errors as Hookgate's, and the probe that says whether the database answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from hookgate.errors import StoreError, StoreUnavailable
from hookgate.store.postgres import schema
from hookgate.store.shared import Acceptance

PROBE_EVERY = 1.0


class Database:
    def __init__(
        self, url: str, *, pool_size: int, connect_timeout: float, statement_timeout: float
    ) -> None:
        params = conninfo_to_dict(url)
        timeout = f"-c statement_timeout={int(statement_timeout * 1000)}"
        options = f"{params.get('options', '')} {timeout}".strip()
        self._conninfo = make_conninfo(url, options=options)
        self.where = (
            f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
            f"/{params.get('dbname', params.get('user', ''))}"
        )
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None

    async def migrate(self) -> None:
        async with await self.connect() as conn:
            try:
                await schema.migrate(conn, self.where)
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(self.unreachable(exc)) from None
            except psycopg.Error as exc:
                raise StoreError(f"migrating PostgreSQL {self.where} failed: {exc}") from None

    async def open_pool(self) -> None:
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
        except PoolTimeout:
            await self.close_pool()
            raise StoreUnavailable(self.unreachable("no connection")) from None

    async def close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """A connection of its own, outside the pool."""
        try:
            return await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(self.unreachable(exc)) from None

    def unreachable(self, exc: object) -> str:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"cannot reach PostgreSQL at {self.where}: {reason}"

    @contextlib.asynccontextmanager
    async def conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; psycopg's errors leave this block as Hookgate's."""
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with self._pool.connection(timeout=self.connect_timeout) as conn:
                yield conn
        except PoolTimeout:
            raise StoreUnavailable(
                self.unreachable(f"no connection within {self.connect_timeout:g}s")
            ) from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(self.unreachable(exc)) from None
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL {self.where} refused the statement: {exc}") from None

    async def probe(self, conn: psycopg.AsyncConnection[Any] | None, health: Acceptance) -> None:
        """``SELECT 1`` every ``PROBE_EVERY`` on a connection of its own, reconnecting after a
        failure: accepting stops when the database does not answer and resumes when it does."""
        try:
            while True:
                try:
                    conn = conn or await self.connect()
                    async with asyncio.timeout(self.connect_timeout):
                        await conn.execute("SELECT 1")
                        if not health.accepting and self._pool is not None:
                            await self._pool.check()  # drop the connections the outage broke
                    health.resume()
                except (StoreError, psycopg.Error, TimeoutError) as exc:
                    health.stop(self._unanswered(exc))
                    if conn is not None:
                        await conn.close()
                        conn = None
                await asyncio.sleep(PROBE_EVERY)
        finally:
            if conn is not None:
                await conn.close()

    def _unanswered(self, exc: Exception) -> str:
        if isinstance(exc, StoreError):  # from connect(), which says where already
            return str(exc)
        if isinstance(exc, TimeoutError):
            return self.unreachable(f"no answer within {self.connect_timeout:g}s")
        return self.unreachable(exc)
