"""The PostgreSQL schema: its version, and the migrations every replica runs in turn."""

from __future__ import annotations

from importlib import resources
from typing import Any

import psycopg

from hookgate.errors import SchemaMismatch

SCHEMA_VERSION = 5
_MIGRATION_LOCK = 0x686F6F6B67617465  # "hookgate": serialises migrations of every replica


async def version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The version the database is at (0: none yet)."""
    cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return 0
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: psycopg.AsyncConnection[Any], where: str) -> None:
    """Bring the schema up to date; the advisory lock makes concurrent starts take turns."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise SchemaMismatch(
                f"PostgreSQL database {where} has schema version {current}, newer"
                f" than this Hookgate ({SCHEMA_VERSION}); upgrade Hookgate, or point it"
                " at another database"
            )
        for step in range(current + 1, SCHEMA_VERSION + 1):
            script = resources.files("hookgate.store").joinpath(f"schema/postgres-{step:04d}.sql")
            await conn.execute(script.read_text().encode())
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", [step])
