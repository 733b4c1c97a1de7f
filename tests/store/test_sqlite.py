"""What only the SQLite store does: its lease query's plan, its schema guard, its writer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import typing
from pathlib import Path

import msgspec
import pytest
from tests.conftest import fill

from hookgate.errors import (
    DeliveryNotFound,
    FlowConflict,
    SchemaMismatch,
    StoreFull,
    StoreUnavailable,
)
from hookgate.store import columns
from hookgate.store.base import Accepted
from hookgate.store.sqlite import protocol, reads, schema, writes
from hookgate.store.sqlite.store import SQLiteStore

from .conftest import make_request

NOW = 1_700_000_000.0


async def test_lease_walks_the_partial_indexes(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "q.db"), max_queued_bytes=10**9)
    await store.open()
    try:
        for i in range(50):
            await store.enqueue(make_request(f"f{i % 5}", received_at=NOW))
    finally:
        await store.close()

    statements: list[str] = []
    with contextlib.closing(schema.connect(str(tmp_path / "q.db"), "FULL")) as conn:
        conn.set_trace_callback(statements.append)
        assert len(writes.lease(conn, protocol.Lease("f1", "worker", 3, 30, NOW + 1))) == 3
        conn.set_trace_callback(None)
        [lease] = [s for s in statements if s.startswith("UPDATE deliveries SET state = 1")]
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {lease}")]
    searches = [step for step in plan if "deliveries" in step and "SCAN" in step]
    assert not searches, plan
    # First attempts are walked in seq order (no range on next_at, so no sort of the backlog).
    ready = "USING INDEX deliveries_ready (flow_id=? AND destination=?)"
    assert any(step.endswith(ready) for step in plan), plan
    assert any("USING INDEX deliveries_backoff" in step for step in plan), plan
    assert any("USING INDEX deliveries_leased" in step for step in plan), plan
    assert any("USING INDEX deliveries_keyed" in step for step in plan), plan


async def test_a_status_url_is_looked_up_through_its_partial_index(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"), max_queued_bytes=10**9)
    await store.open()
    await store.close()
    with contextlib.closing(schema.connect(str(tmp_path / "s.db"), "FULL")) as conn:
        plan = [
            row[3]
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT {columns.PROGRESS} FROM deliveries"
                " WHERE status_token = ?",
                ("t",),
            )
        ]
    assert any("USING INDEX deliveries_status_token" in step for step in plan), plan


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaMismatch, match="schema version 99, newer"):
        await SQLiteStore(str(path), max_queued_bytes=1).open()


async def test_a_killed_writer_process_fails_only_unanswered_writes_and_comes_back(
    tmp_path: Path,
) -> None:
    """Writes run in a process of their own: when it dies, what it had not answered fails
    (so the caller answers 503), what it answered is on disk, and a new writer takes over."""
    path = str(tmp_path / "w.db")
    store = SQLiteStore(path, max_queued_bytes=10**9)
    await store.open()
    writer = store.writer_pid
    assert writer is not None
    requests = [make_request("f", received_at=NOW) for _ in range(2000)]
    enqueues = [asyncio.ensure_future(store.enqueue(r)) for r in requests]
    await asyncio.sleep(0)
    os.kill(writer, signal.SIGKILL)
    outcomes = await asyncio.gather(*enqueues, return_exceptions=True)
    accepted = {r.id for r, o in zip(requests, outcomes, strict=True) if isinstance(o, Accepted)}
    failed = [o for o in outcomes if not isinstance(o, Accepted)]
    assert failed, "the writer was killed before it answered anything"
    assert all(isinstance(o, StoreUnavailable) for o in failed), failed[:3]

    later = make_request("f", received_at=NOW)
    for _ in range(100):
        with contextlib.suppress(StoreUnavailable):
            await store.enqueue(later)
            break
        await asyncio.sleep(0.05)
    assert store.writer_pid not in (None, writer)
    await store.close()

    with contextlib.closing(sqlite3.connect(path)) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM deliveries")}
    assert accepted | {later.id} <= stored


async def test_closing_waits_for_the_writer_to_commit_and_exit(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    store = SQLiteStore(path, max_queued_bytes=10**9)
    await store.open()
    process = store._writer.process
    assert process is not None
    await asyncio.gather(*(store.enqueue(make_request("f")) for _ in range(300)))
    await store.close()
    assert process.returncode == 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 300
    assert not Path(path + "-wal").exists() or Path(path + "-wal").stat().st_size == 0


async def test_a_full_disk_refuses_and_the_first_write_after_space_is_back_succeeds(
    small_volume: Path,
) -> None:
    """SQLITE_FULL for real (a filled tmpfs): the write fails as ``StoreFull``, the store
    stops accepting, and once space is back it accepts again by itself and stores."""
    store = SQLiteStore(str(small_volume / "full.db"), max_queued_bytes=10**9)
    await store.open()
    try:
        kept = make_request("f", body=b"k" * 1000)
        await store.enqueue(kept)
        ballast = small_volume / "ballast"
        # Filled without yielding to the loop: the store has not looked at the disk since,
        # so the write goes to SQLite and meets the full disk there.
        fill(ballast)
        lost = make_request("f", body=b"x" * 100_000)
        with pytest.raises(StoreFull, match="full"):
            await store.enqueue(lost)
        assert not store.accepting
        with pytest.raises(StoreFull):
            await store.enqueue(make_request("f"))

        ballast.unlink()
        for _ in range(100):
            if store.accepting:
                break
            await asyncio.sleep(0.05)
        assert store.accepting
        later = make_request("f", body=b"y" * 100_000)
        await store.enqueue(later)
        assert (await store.get_delivery(later.id)).body == later.body
        assert (await store.get_delivery(kept.id)).body == kept.body
        with pytest.raises(DeliveryNotFound):
            await store.get_delivery(lost.id)
    finally:
        await store.close()


def test_finding_by_any_id_or_prefix_walks_indexes(tmp_path: Path) -> None:
    with contextlib.closing(schema.connect(str(tmp_path / "q.db"), "FULL")) as conn:
        schema.migrate(conn, "q.db")
        params = {"low": "01234567", "high": "01234568", "limit": 11}
        for query in (reads._FIND_EXACT, reads._FIND_PREFIX):
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", params)]
            scans = [step for step in plan if step.startswith("SCAN")]
            assert scans == ["SCAN m0", "SCAN m1", "SCAN m2"], plan  # the bounded matches only
            for index in ("deliveries_id", "deliveries_request_id", "dedupe_key"):
                assert any(f"INDEX {index} (" in step for step in plan), (index, plan)


async def test_a_store_from_before_the_lookup_indexes_gets_them_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(str(path), max_queued_bytes=10**9)
    await store.open()
    request = make_request("f1", received_at=NOW)
    await store.enqueue(request, dedupe_key="evt_old", dedupe_until=NOW + 60)
    await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            "DROP INDEX deliveries_request_id; DROP INDEX dedupe_key;"
            " DROP INDEX deliveries_keyed; DROP INDEX deliveries_ready;"
            " DROP INDEX deliveries_leased; DROP INDEX deliveries_backoff;"
            " ALTER TABLE deliveries DROP COLUMN destination;"
            " ALTER TABLE deliveries DROP COLUMN order_key;"
            " CREATE INDEX deliveries_ready ON deliveries (flow_id, next_at) WHERE state = 0;"
            " CREATE INDEX deliveries_leased ON deliveries (flow_id, lease_until) WHERE state = 1;"
            " PRAGMA user_version = 3;"
        )
    store = SQLiteStore(str(path), max_queued_bytes=10**9)
    await store.open()
    try:
        assert await store.schema_version() == schema.SCHEMA_VERSION
        for ref in (request.request_id, "evt_old"):
            assert [d.id for d in await store.find_deliveries(ref, limit=5)] == [request.id]
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"deliveries_request_id", "dedupe_key"} <= names


def test_every_write_crosses_to_the_writer_typed_and_its_result_back() -> None:
    """Each kind of write has a runner in the writer and a result decoder here; a failure
    comes back as the error it was, anything unexpected as a RuntimeError."""
    kinds = set(typing.get_args(protocol.AnyWrite))
    assert kinds == {*writes.WRITES, protocol.Insert, protocol.Finish} == set(protocol.RESULTS)
    op = protocol.Op(7, protocol.Lease("f", "worker", 3, 30.0, NOW))
    assert protocol.ops_decoder.decode(protocol.frame([op])[4:]) == [op]
    flows = protocol.RESULTS[protocol.CreateFlow]
    failure = flows.decode(msgspec.msgpack.encode(protocol.Failure.of(FlowConflict("taken"))))
    assert isinstance(failure, protocol.Failure)
    assert type(failure.error()) is FlowConflict and str(failure.error()) == "taken"
    assert type(protocol.Failure("KeyError", "x").error()) is RuntimeError
    with pytest.raises(msgspec.ValidationError):
        protocol.RESULTS[protocol.Finish].decode(msgspec.msgpack.encode("yes"))
