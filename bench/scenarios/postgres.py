"""``postgres``: ingest and drain with the gateway on a fresh PostgreSQL database.

The server is taken from ``$BENCH_POSTGRES_URL`` (default: the local one, user postgres); each
part gets a database of its own, created for it and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from bench.context import Context
from bench.errors import BenchFailure
from bench.gateway import Gateway, flow
from bench.scenarios import Outcome
from bench.scenarios.accept import accept_row
from bench.scenarios.drain import drain_rows

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def run(ctx: Context) -> Outcome:
    server = os.environ.get("BENCH_POSTGRES_URL", SERVER)
    with fresh_database(server) as database:
        work = ctx.workdir("postgres-ingest")
        with Gateway(workdir=work, flows=[flow("bench")], database=database) as gateway:
            accept = accept_row(ctx, gateway, case="1 KB JSON, async accept", workdir=work)
    with fresh_database(server) as database:  # no backlog left over from the accept run
        drained, settings = drain_rows(ctx, database=database)
    for row in drained:
        row.case = f"drain: {row.case}"
    return Outcome(
        rows=[accept, *drained], settings={**settings, "server": _without_password(server)}
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
