"""Every store behind one fixture, each test in a fresh place: new memory tables, a new SQLite
file, or a new schema in a throwaway PostgreSQL database (created once per session, dropped at
the end)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest
from tests.conftest import fresh_database

from hookgate.domain.deliveries import Attempt, Delivery, Request, new_id
from hookgate.store.base import Store
from hookgate.store.memory import MemoryStore, Tables
from hookgate.store.postgres.store import PostgresStore
from hookgate.store.sqlite.store import SQLiteStore

BIG = 10**12


class Backend(Protocol):
    name: str

    def namespace(self) -> str:
        """A fresh, empty place for a store; removed after the test."""

    def store(self, where: str, *, max_queued_bytes: int = BIG) -> Store: ...


class SQLiteBackend:
    name = "sqlite"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def namespace(self) -> str:
        return str(self.tmp / f"{secrets.token_hex(4)}.db")

    def store(self, where: str, *, max_queued_bytes: int = BIG) -> Store:
        return SQLiteStore(where, max_queued_bytes=max_queued_bytes)


class MemoryBackend:
    """Each namespace is a ``Tables``: stores made on one share it, as on one database."""

    name = "memory"

    def __init__(self) -> None:
        self.tables: dict[str, Tables] = {}

    def namespace(self) -> str:
        where = secrets.token_hex(4)
        self.tables[where] = Tables()
        return where

    def store(self, where: str, *, max_queued_bytes: int = BIG) -> Store:
        return MemoryStore(max_queued_bytes=max_queued_bytes, tables=self.tables[where])


class PostgresBackend:
    """Each namespace is a schema; the store reaches it through ``search_path``."""

    name = "postgres"

    def __init__(self, admin: psycopg.Connection[Any], database: str) -> None:
        self.admin = admin
        self.database = database
        self.schemas: list[str] = []

    def namespace(self) -> str:
        schema = f"t_{secrets.token_hex(6)}"
        self.admin.execute(f"CREATE SCHEMA {schema}")
        self.schemas.append(schema)
        return f"{self.database}?options=-csearch_path%3D{schema}"

    def store(self, where: str, *, max_queued_bytes: int = BIG) -> Store:
        return PostgresStore(where, max_queued_bytes=max_queued_bytes, pool_size=4)

    def drop(self) -> None:
        for schema in self.schemas:
            self.admin.execute(f"DROP SCHEMA {schema} CASCADE")
        self.schemas.clear()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway database for the session (each pytest-xdist worker is a session of its own)."""
    with fresh_database("hookgate_test") as url:
        yield url


@pytest.fixture
def pg_admin(postgres: None, pg_database: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """An admin connection to make schemas in, for one test: a session-long one would not
    survive a test that restarts the server."""
    with psycopg.connect(pg_database, autocommit=True) as admin:
        yield admin, pg_database


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    if request.param == "sqlite":
        yield SQLiteBackend(tmp_path)
        return
    pg = PostgresBackend(*request.getfixturevalue("pg_admin"))
    try:
        yield pg
    finally:
        pg.drop()


@pytest.fixture
def where(backend: Backend) -> str:
    return backend.namespace()


@pytest.fixture
async def store(backend: Backend, where: str) -> AsyncIterator[Store]:
    opened = backend.store(where)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def make_request(
    flow_id: str,
    *,
    body: bytes = b'{"ok": true}',
    headers: list[tuple[str, str]] | None = None,
    received_at: float | None = None,
) -> Request:
    return Request(
        id=new_id(),
        request_id=new_id(),
        flow_id=flow_id,
        method="POST",
        path="/orders",
        query="a=1&b=2",
        headers=headers or [("content-type", "application/json")],
        body=body,
        source="203.0.113.7",
        received_at=time.time() if received_at is None else received_at,
    )


def attempt_for(delivery: Delivery, *, at: float, status: int = 200) -> Attempt:
    return Attempt(
        number=delivery.attempts,
        started_at=at,
        duration_ms=12.5,
        status_code=status,
        response="ok" if status < 300 else "boom",
    )
