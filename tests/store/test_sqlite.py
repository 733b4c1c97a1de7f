"""What only the SQLite store does: its lease query's plan, and its schema guard."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from hookgate.errors import SchemaMismatch
from hookgate.store import sqlite as sqlite_store
from hookgate.store.sqlite import SQLiteStore

from .conftest import make_request

NOW = 1_700_000_000.0


async def test_lease_walks_the_partial_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []
    connect = sqlite_store._connect

    def traced(path: str, synchronous: str) -> sqlite3.Connection:
        conn = connect(path, synchronous)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite_store, "_connect", traced)
    store = SQLiteStore(str(tmp_path / "q.db"), max_queued_bytes=10**9)
    await store.open()
    try:
        for i in range(50):
            await store.enqueue(make_request(f"f{i % 5}", received_at=NOW))
        assert len(await store.lease("f1", limit=3, lease_for=30, now=NOW + 1)) == 3
    finally:
        await store.close()

    [lease] = [s for s in statements if s.startswith("UPDATE deliveries SET state = 1")]
    with contextlib.closing(sqlite3.connect(tmp_path / "q.db")) as conn:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {lease}")]
    searches = [step for step in plan if "deliveries" in step and "SCAN" in step]
    assert not searches, plan
    assert any("USING INDEX deliveries_ready" in step for step in plan), plan
    assert any("USING INDEX deliveries_leased" in step for step in plan), plan


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaMismatch, match="schema version 99, newer"):
        await SQLiteStore(str(path), max_queued_bytes=1).open()
