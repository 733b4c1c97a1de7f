"""``hookgate db migrate|status|copy`` against real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import fcntl
import json
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from hookgate.cli.main import cli
from hookgate.domain.deliveries import Attempt, Delivery, Request, State, new_id
from hookgate.domain.flows import Flow, FlowSpec, Mode, Status, WorkerSpec, new_flow_id
from hookgate.store.base import DeliveryFilter, Store
from hookgate.store.postgres.store import SCHEMA_VERSION as PG_SCHEMA
from hookgate.store.postgres.store import PostgresStore
from hookgate.store.sqlite.store import SCHEMA_VERSION as SQLITE_SCHEMA
from hookgate.store.sqlite.store import SQLiteStore

NOW = 1_700_000_000.0


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "hookgate.db"


def hookgate(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def flow(name: str, *, status: Status = Status.RUNNING) -> Flow:
    spec = FlowSpec(name=name, mode=Mode.ASYNC, worker=WorkerSpec(command=["w"]))
    return Flow(id=new_flow_id(), spec=spec, status=status, created_at=NOW, updated_at=NOW)


def request(flow_id: str, body: bytes, *, at: float = NOW) -> Request:
    return Request(
        id=new_id(),
        request_id=new_id(),
        flow_id=flow_id,
        method="POST",
        path="/sub",
        query="x=1",
        headers=[("content-type", "application/octet-stream"), ("x-sig", "v1=abc")],
        body=body,
        source="203.0.113.9",
        received_at=at,
    )


def tried(delivery: Delivery, status: int) -> Attempt:
    return Attempt(
        number=delivery.attempts, started_at=NOW + 1, duration_ms=3.0, status_code=status
    )


async def fill(store: Store, flows: list[Flow]) -> dict[str, State]:
    """Per flow: 3 queued, 1 leased (a gateway died holding it), 1 done, 1 dead."""
    await store.open()
    try:
        expected: dict[str, State] = {}
        for f in flows:
            await store.create_flow(f)
            for i in range(6):
                accepted = await store.enqueue(request(f.id, bytes([i, 0, 255]) * 50, at=NOW + i))
                expected[accepted.delivery_id] = State.QUEUED
            done, dead, leased = await store.lease(f.id, limit=3, lease_for=30, now=NOW + 10)
            assert await store.complete(done, tried(done, 200))
            assert await store.bury(dead, tried(dead, 400))
            expected[done.id], expected[dead.id] = State.DONE, State.DEAD
            expected[leased.id] = State.QUEUED
        return expected
    finally:
        await store.close()


async def contents(store: Store) -> tuple[list[Flow], dict[str, tuple[Delivery, list[Attempt]]]]:
    await store.open()
    try:
        items = (await store.list_deliveries(DeliveryFilter(), limit=10_000, cursor=None)).items
        whole = {d.id: (await store.get_delivery(d.id), await store.attempts(d.id)) for d in items}
        return await store.list_flows(), whole
    finally:
        await store.close()


def postgres(url: str) -> PostgresStore:
    return PostgresStore(url, max_queued_bytes=10**12, pool_size=2)


def sqlite(path: Path) -> SQLiteStore:
    return SQLiteStore(str(path), max_queued_bytes=10**12)


# migrate -----------------------------------------------------------------------------------
def test_migrate_creates_the_schema_and_can_run_again(pg_url: str) -> None:
    first = hookgate("db", "migrate", "--database", pg_url)
    assert first.exit_code == 0, first.output
    assert f"schema version {PG_SCHEMA}" in first.output
    again = hookgate("db", "migrate", "--database", pg_url)
    assert again.exit_code == 0, again.output
    with psycopg.connect(pg_url) as conn:
        versions = conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        assert versions == [(v,) for v in range(1, PG_SCHEMA + 1)]
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)


def test_migrate_reads_the_url_from_the_environment(sqlite_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["db", "migrate"], env={"HOOKGATE_DATABASE_URL": f"sqlite://{sqlite_path}"}
    )
    assert result.exit_code == 0, result.output
    assert f"schema version {SQLITE_SCHEMA}" in result.output
    assert sqlite_path.is_file()


def test_a_newer_postgres_schema_is_refused_and_left_alone(pg_url: str) -> None:
    assert hookgate("db", "migrate", "--database", pg_url).exit_code == 0
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", [PG_SCHEMA + 1])
    for command in ("migrate", "status"):
        result = hookgate("db", command, "--database", pg_url)
        assert result.exit_code != 0
        assert (
            f"has schema version {PG_SCHEMA + 1}, newer than this Hookgate ({PG_SCHEMA});"
            " upgrade Hookgate" in " ".join(result.output.split())
        )
    with psycopg.connect(pg_url) as conn:
        versions = conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
    assert versions == [(v,) for v in range(1, PG_SCHEMA + 2)]


def test_a_newer_sqlite_schema_is_refused(sqlite_path: Path) -> None:
    url = f"sqlite://{sqlite_path}"
    assert hookgate("db", "migrate", "--database", url).exit_code == 0
    with sqlite3.connect(sqlite_path) as conn:
        conn.execute(f"PRAGMA user_version = {SQLITE_SCHEMA + 1}")
    result = hookgate("db", "migrate", "--database", url)
    assert result.exit_code != 0
    assert f"schema version {SQLITE_SCHEMA + 1}, newer than this Hookgate" in result.output


def test_an_unreachable_database_is_one_clear_line() -> None:
    result = hookgate("db", "migrate", "--database", "postgresql://postgres@127.0.0.1:1/x")
    assert result.exit_code == 1
    assert "cannot reach PostgreSQL at 127.0.0.1:1/x" in result.output
    assert "Traceback" not in result.output


def test_urls_that_are_not_stores_are_refused(tmp_path: Path) -> None:
    for url in ("mysql://h/db", str(tmp_path / "hookgate.db"), "sqlite://"):
        result = hookgate("db", "migrate", "--database", url)
        assert result.exit_code == 2
        assert "expected sqlite:///path/to/hookgate.db or postgresql://" in result.output
    missing = hookgate("db", "status", "--database", f"sqlite://{tmp_path / 'none.db'}")
    assert missing.exit_code == 2
    assert "no SQLite database at" in missing.output
    assert not (tmp_path / "none.db").exists()


# status ------------------------------------------------------------------------------------
def test_status_counts_flows_and_deliveries_by_status(pg_url: str) -> None:
    orders, billing = flow("orders"), flow("billing", status=Status.STOPPED)
    asyncio.run(fill(postgres(pg_url), [orders, billing]))
    result = hookgate("db", "status", "--database", pg_url, "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert (status["schemaVersion"], status["hookgate"]) == (PG_SCHEMA, PG_SCHEMA)
    per_flow = {"queued": 3, "leased": 1, "done": 1, "dead": 1, "filtered": 0}
    assert status["flows"] == [
        {"name": "billing", "id": billing.id, "deliveries": per_flow},
        {"name": "orders", "id": orders.id, "deliveries": per_flow},
    ]
    assert status["deliveries"] == {"queued": 6, "leased": 2, "done": 2, "dead": 2, "filtered": 0}

    text = hookgate("db", "status", "--database", pg_url)
    assert text.exit_code == 0, text.output
    assert f"schema    {PG_SCHEMA} (this Hookgate: {PG_SCHEMA})" in text.output
    assert "flows     2" in text.output
    assert orders.id in text.output


def test_status_of_an_older_schema_says_so_and_migrates_nothing(
    sqlite_path: Path, pg_url: str
) -> None:
    """An operator checking a database before an upgrade must not upgrade it by looking: older
    gateways may still run on it."""
    sqlite_url = f"sqlite://{sqlite_path}"
    assert hookgate("db", "migrate", "--database", sqlite_url).exit_code == 0
    with sqlite3.connect(sqlite_path) as conn:
        conn.execute(f"PRAGMA user_version = {SQLITE_SCHEMA - 1}")
    assert hookgate("db", "migrate", "--database", pg_url).exit_code == 0
    with psycopg.connect(pg_url) as conn:
        conn.execute("DELETE FROM schema_version WHERE version = %s", [PG_SCHEMA])

    for url, code in ((sqlite_url, SQLITE_SCHEMA), (pg_url, PG_SCHEMA)):
        text = hookgate("db", "status", "--database", url)
        assert text.exit_code == 0, text.output
        assert f"schema    {code - 1} (this Hookgate: {code}): older" in text.output
        assert "hookgate db migrate" in text.output
        status = json.loads(hookgate("db", "status", "--database", url, "--json").output)
        assert (status["schemaVersion"], status["migrationNeeded"]) == (code - 1, True)

    with sqlite3.connect(sqlite_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SQLITE_SCHEMA - 1
    with psycopg.connect(pg_url) as conn:
        versions = conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
    assert versions == [(v,) for v in range(1, PG_SCHEMA)]


def test_status_of_an_empty_postgres_database_creates_nothing(pg_url: str) -> None:
    status = json.loads(hookgate("db", "status", "--database", pg_url, "--json").output)
    assert (status["schemaVersion"], status["migrationNeeded"]) == (0, True)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,)


def test_status_never_prints_a_password(pg_url: str) -> None:
    with_password = pg_url.replace("postgres@", "postgres:s3cret@")
    result = hookgate("db", "status", "--database", with_password)
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "postgres:***@127.0.0.1:5432" in result.output


# copy --------------------------------------------------------------------------------------
def test_copy_keeps_ids_states_bodies_and_history(sqlite_path: Path, pg_url: str) -> None:
    flows = [flow("orders"), flow("billing", status=Status.STOPPED)]
    states = asyncio.run(fill(sqlite(sqlite_path), flows))
    src_flows, src = asyncio.run(contents(sqlite(sqlite_path)))

    result = hookgate("db", "copy", "--from", f"sqlite://{sqlite_path}", "--to", pg_url)
    assert result.exit_code == 0, result.output
    assert "copied 2 flows (0 overwritten) and 12 deliveries (0 were there already)" in (
        result.output
    )

    dst_flows, dst = asyncio.run(contents(postgres(pg_url)))
    assert dst_flows == src_flows
    assert {d.id: d.state for d, _ in dst.values()} == states
    for delivery_id, (copied, history) in dst.items():
        original, original_history = src[delivery_id]
        assert history == original_history
        assert (copied.body, copied.headers, copied.request_id, copied.received_at) == (
            original.body,
            original.headers,
            original.request_id,
            original.received_at,
        )
        assert copied.attempts == original.attempts
        if original.state is State.LEASED:
            assert copied.lease_until is None
        else:
            assert copied == original
    dead = [h for d, h in dst.values() if d.state is State.DEAD]
    assert [[a.status_code for a in h] for h in dead] == [[400], [400]]


def test_copied_queue_is_leasable_in_the_target(sqlite_path: Path, pg_url: str) -> None:
    orders = flow("orders")
    states = asyncio.run(fill(sqlite(sqlite_path), [orders]))
    assert (
        hookgate("db", "copy", "--from", f"sqlite://{sqlite_path}", "--to", pg_url).exit_code == 0
    )

    async def lease_all() -> set[str]:
        store = postgres(pg_url)
        await store.open()
        try:
            leased = await store.lease(orders.id, limit=100, lease_for=30, now=time.time())
            return {d.id for d in leased}
        finally:
            await store.close()

    assert asyncio.run(lease_all()) == {i for i, s in states.items() if s is State.QUEUED}


def test_copy_again_needs_force_and_then_adds_only_what_is_missing(
    sqlite_path: Path, pg_url: str
) -> None:
    orders = flow("orders")
    asyncio.run(fill(sqlite(sqlite_path), [orders]))
    source = f"sqlite://{sqlite_path}"
    assert hookgate("db", "copy", "--from", source, "--to", pg_url).exit_code == 0

    refused = hookgate("db", "copy", "--from", source, "--to", pg_url)
    assert refused.exit_code == 1
    assert "the target already has flows orders (same ids" in refused.output
    assert "--force" in refused.output

    async def one_more() -> None:
        store = sqlite(sqlite_path)
        await store.open()
        try:
            await store.enqueue(request(orders.id, b"late"))
        finally:
            await store.close()

    asyncio.run(one_more())
    forced = hookgate("db", "copy", "--from", source, "--to", pg_url, "--force")
    assert forced.exit_code == 0, forced.output
    assert "copied 1 flows (1 overwritten) and 1 deliveries (6 were there already)" in (
        forced.output
    )
    _, copied = asyncio.run(contents(postgres(pg_url)))
    assert len(copied) == 7


def test_a_target_flow_with_the_same_name_and_another_id_is_never_overwritten(
    sqlite_path: Path, pg_url: str
) -> None:
    asyncio.run(fill(sqlite(sqlite_path), [flow("orders")]))
    theirs = flow("orders")
    asyncio.run(fill(postgres(pg_url), [theirs]))
    for extra in ([], ["--force"]):
        result = hookgate("db", "copy", "--from", f"sqlite://{sqlite_path}", "--to", pg_url, *extra)
        assert result.exit_code == 1
        assert "the target has flows named orders with other ids" in result.output
    flows, copied = asyncio.run(contents(postgres(pg_url)))
    assert [f.id for f in flows] == [theirs.id]
    assert len(copied) == 6


def test_copy_refuses_while_a_gateway_holds_the_data_directory(
    sqlite_path: Path, pg_url: str
) -> None:
    asyncio.run(fill(sqlite(sqlite_path), [flow("orders")]))
    with (sqlite_path.parent / "gateway.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = hookgate("db", "copy", "--from", f"sqlite://{sqlite_path}", "--to", pg_url)
    assert result.exit_code == 1
    assert f"a gateway is running on data directory {sqlite_path.parent}; stop it" in (
        " ".join(result.output.split())
    )
    flows, _ = asyncio.run(contents(postgres(pg_url)))
    assert flows == []


def test_copy_from_a_store_to_itself_is_refused(sqlite_path: Path) -> None:
    url = f"sqlite://{sqlite_path}"
    assert hookgate("db", "migrate", "--database", url).exit_code == 0
    result = hookgate("db", "copy", "--from", url, "--to", url)
    assert result.exit_code == 2
    assert "the same store" in result.output
