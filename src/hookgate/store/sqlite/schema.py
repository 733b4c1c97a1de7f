"""Opening a SQLite database the way both ends of the store use it, and its migrations."""

from __future__ import annotations

import sqlite3
from importlib import resources

from hookgate.errors import SchemaMismatch

SCHEMA_VERSION = 6
BUSY_MS = 30_000
MULTI_ROW = 512  # 512 rows x 15 columns stays below SQLite's 32,766 bound variables


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=30,
        cached_statements=MULTI_ROW + 64,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    return conn


def migrate(conn: sqlite3.Connection, path: str) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"{path} has schema version {version}, newer than this Hookgate "
            f"({SCHEMA_VERSION}); upgrade Hookgate or use a copy of the data directory"
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        script = resources.files("hookgate.store").joinpath(f"schema/sqlite-{step:04d}.sql")
        conn.executescript(
            f"BEGIN IMMEDIATE; {script.read_text()}; PRAGMA user_version={step}; COMMIT;"
        )
