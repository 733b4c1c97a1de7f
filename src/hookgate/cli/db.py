"""``hookgate db …``: apply migrations, show what a database holds, copy one store to another.

These commands talk to the database directly, not to a gateway, so they work while no gateway
runs (and ``copy`` insists on it for an SQLite file).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hookgate.cli.output import console, emit, output_option, table
from hookgate.domain.deliveries import State
from hookgate.errors import HookgateError
from hookgate.store.base import Store
from hookgate.store.copy import copy_store
from hookgate.store.open import open_store

T = TypeVar("T")
SQLITE = "sqlite://"
POSTGRES = ("postgresql://", "postgres://")
LOCK_FILE = "gateway.lock"  # the gateway holds it (flock) on its data directory while it runs
NO_BOUND = 2**62  # these commands never enqueue, so the queued-bytes bound does not matter

database_option = click.option(
    "--database",
    envvar="HOOKGATE_DATABASE_URL",
    required=True,
    help="sqlite:///path/to/hookgate.db or postgresql://… (env HOOKGATE_DATABASE_URL).",
)


@click.group(short_help="Schema migrations, status, SQLite to PostgreSQL.")
def db() -> None:
    """Schema migrations, status, and moving from SQLite to PostgreSQL."""


@db.command()
@database_option
def migrate(database: str) -> None:
    """Bring the database's schema up to this Hookgate's version (safe to run again)."""
    version = _run(_check(database, must_exist=False), _schema_version)
    console.print(f"{_shown(database)}: schema version {version}")


@db.command()
@database_option
@output_option
def status(database: str, output: str) -> None:
    """Schema version, flows, and deliveries by status (changes nothing, migrations included)."""
    url = _check(database, must_exist=True)
    stored, code = asyncio.run(_stored_version(url)), _code_version(url)
    if stored < code:
        # Opening the store would migrate it, under gateways that may still run the old version.
        behind = {"database": _shown(url), "schemaVersion": stored, "hookgate": code}

        def show_behind(_wide: bool) -> None:
            console.print(f"database  {behind['database']}")
            console.print(
                f"schema    {stored} (this Hookgate: {code}): older; `hookgate db migrate` "
                "upgrades it (stop gateways of the older version first). Nothing was changed."
            )

        emit(output, {**behind, "migrationNeeded": True}, names=[], show=show_behind)
        return
    summary = _run(url, _summary)

    def show(wide: bool) -> None:
        console.print(f"database  {summary['database']}")
        schema, code = summary["schemaVersion"], summary["hookgate"]
        console.print(f"schema    {schema} (this Hookgate: {code})")
        console.print(f"flows     {len(summary['flows'])}")
        _counts_table(summary, wide=wide)

    emit(output, summary, names=[f["name"] for f in summary["flows"]], show=show)


@db.command()
@click.option("--from", "source", required=True, help="Store to copy: sqlite:///…/hookgate.db.")
@click.option("--to", "target", required=True, help="Store to fill: postgresql://….")
@click.option(
    "--force", is_flag=True, help="Overwrite flows copied before (same id); add what is missing."
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Deliveries per transaction.",
)
def copy(source: str, target: str, force: bool, batch: int) -> None:
    """Copy flows (same ids, so the same URLs) and every delivery into another store.

    Stop the gateways on the source first. Queued requests stay queued, dead letters stay
    replayable, history is kept; deliveries already in the target are skipped, so an
    interrupted copy can be run again with --force.
    """
    _check(source, must_exist=True)
    _check(target, must_exist=False)
    if source == target:
        raise click.BadParameter("--from and --to are the same store", param_hint="--to")
    with _no_gateway(source), _no_gateway(target):
        summary = asyncio.run(_copy(source, target, force=force, batch=batch))
    console.print(f"target    {summary['database']}")
    _counts_table(summary)
    console.print(
        "Start the gateways with --database set to the --to URL; flow URLs are unchanged."
    )


# helpers -----------------------------------------------------------------------------------
def _check(url: str, *, must_exist: bool) -> str:
    if url.startswith(POSTGRES):
        return url
    if not url.startswith(SQLITE) or url == SQLITE:
        raise click.BadParameter(
            f"{url!r}: expected sqlite:///path/to/hookgate.db or postgresql://user@host/db"
        )
    path = Path(url.removeprefix(SQLITE))
    if must_exist and not path.is_file():
        raise click.BadParameter(f"no SQLite database at {path}")
    return url


def _shown(url: str) -> str:
    """The URL with its password masked, to print."""
    if not url.startswith(POSTGRES):
        return url
    scheme, _, rest = url.partition("://")
    userinfo, at, place = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    place = re.sub(r"(password=)[^&]*", r"\1***", place)
    return f"{scheme}://{user}{':***' if colon else ''}{at}{place}"


@contextlib.contextmanager
def _no_gateway(url: str) -> Iterator[None]:
    """Hold an SQLite data directory's gateway lock, so no gateway writes the file meanwhile."""
    if not url.startswith(SQLITE):
        yield
        return
    directory = Path(url.removeprefix(SQLITE)).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = (directory / LOCK_FILE).open("a")
    except OSError as exc:
        raise click.ClickException(f"cannot lock data directory {directory}: {exc}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise click.ClickException(
                f"a gateway is running on data directory {directory}; stop it first"
                " (the SQLite file must not change while it is copied)"
            ) from None
        yield


def _run(url: str, action: Callable[[Store, str], Awaitable[T]]) -> T:
    async def run() -> T:
        store = open_store(url, max_queued_bytes=NO_BOUND)
        async with _opened(store):
            return await action(store, url)

    return asyncio.run(run())


@contextlib.asynccontextmanager
async def _opened(store: Store) -> AsyncIterator[Store]:
    """Open (which applies migrations) and close; Hookgate's errors become CLI messages."""
    try:
        await store.open()
    except HookgateError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield store
    except HookgateError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        await store.close()


async def _schema_version(store: Store, _url: str) -> int:
    return await store.schema_version()


async def _stored_version(url: str) -> int:
    """The database's schema version, read without opening (and so migrating) the store."""
    try:
        return await open_store(url, max_queued_bytes=NO_BOUND).schema_version()
    except HookgateError as exc:
        raise click.ClickException(str(exc)) from None


async def _summary(store: Store, url: str) -> dict[str, Any]:
    names = {flow.id: flow.name for flow in await store.list_flows()}
    counts = await store.count_deliveries()
    rows: list[dict[str, Any]] = [
        {
            "name": names.get(flow_id, ""),
            "id": flow_id,
            "deliveries": {s.label: counts.get(flow_id, {}).get(s, 0) for s in State},
        }
        for flow_id in sorted(names.keys() | counts.keys(), key=lambda f: (names.get(f, ""), f))
    ]
    return {
        "database": _shown(url),
        "schemaVersion": await store.schema_version(),
        "hookgate": _code_version(url),
        "flows": [row for row in rows if row["name"]],
        "orphans": [row for row in rows if not row["name"]],
        "deliveries": {s.label: sum(r["deliveries"][s.label] for r in rows) for s in State},
    }


def _code_version(url: str) -> int:
    """The schema version this Hookgate writes, for the backend of ``url``."""
    if url.startswith(POSTGRES):
        from hookgate.store.postgres.store import SCHEMA_VERSION as postgres_version

        return postgres_version
    from hookgate.store.sqlite.store import SCHEMA_VERSION as sqlite_version

    return sqlite_version


def _counts_table(summary: dict[str, Any], *, wide: bool = False) -> None:
    labels = [s.label for s in State]
    rows: list[tuple[Any, ...]] = [
        (row["name"] or "(no flow)", row["id"], *(row["deliveries"][s] for s in labels))
        for row in summary["flows"] + summary["orphans"]
    ]
    rows.append(("total", "", *(summary["deliveries"][s] for s in labels)))
    table(None, ["FLOW", "ID", *(s.upper() for s in labels)], rows, wide=wide)


async def _copy(source_url: str, target_url: str, *, force: bool, batch: int) -> dict[str, Any]:
    source = open_store(source_url, max_queued_bytes=NO_BOUND)
    target = open_store(target_url, max_queued_bytes=NO_BOUND)
    async with _opened(source), _opened(target):
        total = sum(sum(c.values()) for c in (await source.count_deliveries()).values())
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("copying deliveries", total=total)
            result = await copy_store(
                source,
                target,
                force=force,
                batch=batch,
                progress=lambda n: progress.advance(task, n),
            )
        console.print(
            f"copied {result.flows_created + result.flows_replaced} flows"
            f" ({result.flows_replaced} overwritten) and {result.deliveries_copied} deliveries"
            f" ({result.deliveries_skipped} were there already)"
        )
        return await _summary(target, target_url)
