"""``postgres``: ingest and drain with the gateway on a fresh PostgreSQL database.

The server is taken from ``$BENCH_POSTGRES_URL`` (default: the local one, user postgres); each
part gets a database of its own, created for it and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

from bench import load, wrk
from bench.context import Context
from bench.errors import BenchFailure
from bench.gateway import Gateway, flow
from bench.results import Load, Row
from bench.scenarios import Outcome
from bench.scenarios.accept import JSON, accept_row
from bench.scenarios.drain import drain_rows

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def run(ctx: Context) -> Outcome:
    server = os.environ.get("BENCH_POSTGRES_URL", SERVER)
    with fresh_database(server) as database:
        work = ctx.workdir("postgres-ingest")
        with Gateway(workdir=work, flows=[flow("bench")], database=database) as gateway:
            accept = accept_row(ctx, gateway, case="1 KB JSON, async accept", workdir=work)
    with fresh_database(server) as database:
        two = two_gateways(ctx, database=database)
    with fresh_database(server) as database:  # no backlog left over from the accept run
        drained, settings = drain_rows(ctx, database=database)
    for row in drained:
        row.case = f"drain: {row.case}"
    return Outcome(
        rows=[accept, two, *drained], settings={**settings, "server": _without_password(server)}
    )


def two_gateways(ctx: Context, *, database: str) -> Row:
    """Two gateways on one database, each loaded by its own wrk with half the connections
    (64 in all, as for one gateway): the total, and each gateway's share."""
    works = [ctx.workdir(f"postgres-two-{side}") for side in "ab"]
    with contextlib.ExitStack() as stack:
        gateways = [
            stack.enter_context(Gateway(workdir=w, flows=[flow("bench")], database=database))
            for w in works
        ]
        targets = [
            wrk.Target(url=g.hook_url("bench"), body=ctx.body_file(), headers=JSON)
            for g in gateways
        ]
        for target in targets:
            load.expect(target, status=202)
        pairs = list(zip(targets, works, strict=True))

        def both(seconds: float) -> list[Load]:
            with ThreadPoolExecutor(2) as pool:
                return list(
                    pool.map(
                        lambda p: wrk.run(p[0], seconds=seconds, workdir=p[1], connections=32),
                        pairs,
                    )
                )

        both(ctx.timing.warmup_s)
        runs = both(ctx.timing.measure_s)
    for run_ in runs:
        load.check(run_, case="two gateways")
    worst = max(runs, key=lambda r: r.latency.p99_ms)
    total = sum(r.rate for r in runs)
    return Row(
        case="two gateways, one database",
        rate=round(total, 1),
        ratio=ctx.ratio(total),
        latency=worst.latency,
        errors=worst.errors,
        note=" + ".join(f"{r.rate:,.0f}" for r in runs) + " req/s (wrk -c32 each)",
        extra={"gateway_a": round(runs[0].rate, 1), "gateway_b": round(runs[1].rate, 1)},
    )


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    try:
        import psycopg
    except ImportError as exc:
        raise BenchFailure("psycopg is missing: pip install 'hookgate[postgres]'") from exc
    name = f"hookgate_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise BenchFailure(
            f"PostgreSQL at {_without_password(server)} is not usable: {exc}"
        ) from exc
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
