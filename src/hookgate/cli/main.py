"""Entry point of the ``hookgate`` command."""

from __future__ import annotations

import sys

import click

from hookgate import __version__, logs
from hookgate.cli.client import AdminClient
from hookgate.cli.db import db
from hookgate.cli.deliveries import deliveries
from hookgate.cli.flows import flows
from hookgate.cli.init import init
from hookgate.cli.k8s import k8s
from hookgate.cli.tail import tail
from hookgate.config import load_settings
from hookgate.errors import HookgateError


@click.group()
@click.option(
    "--admin-url",
    default="http://127.0.0.1:8081",
    envvar="HOOKGATE_ADMIN_URL",
    show_default=True,
    help="Admin API of the gateway to talk to.",
)
@click.option(
    "--token",
    envvar="HOOKGATE_ADMIN_TOKEN",
    help="Admin token (default: HOOKGATE_ADMIN_TOKEN or the data directory's admin-token).",
)
@click.option("--data-dir", envvar="HOOKGATE_DATA_DIR", help="Where to find admin-token.")
@click.pass_context
def cli(ctx: click.Context, admin_url: str, token: str | None, data_dir: str | None) -> None:
    """Hookgate: permanent webhook URLs for integration flows."""
    ctx.obj = AdminClient(url=admin_url, token=token, data_dir=data_dir)


@cli.command()
@click.option("--config", "flows_file", type=click.Path(), help="Flow file applied at start.")
@click.option("--data-dir", help="Data directory (default ./hookgate-data).")
@click.option("--listen", help="Public listener HOST:PORT (default 127.0.0.1:8080).")
@click.option("--admin-listen", help="Admin listener HOST:PORT (default 127.0.0.1:8081).")
@click.option(
    "--database",
    help="sqlite:///path, postgresql://… or memory:// (a demo: nothing survives a restart) "
    "(default: SQLite in the data directory; env HOOKGATE_DATABASE_URL).",
)
@click.option("--public-url", help="Base URL printed for flows (default from --listen).")
@click.option("--runtime", type=click.Choice(["local", "kubernetes"]), help="Where workers run.")
@click.option(
    "--log-format",
    type=click.Choice(["json", "console"]),
    help="Default: console on a terminal, else JSON lines.",
)
def serve(
    flows_file: str | None,
    data_dir: str | None,
    listen: str | None,
    admin_listen: str | None,
    database: str | None,
    public_url: str | None,
    runtime: str | None,
    log_format: str | None,
) -> None:
    """Run the gateway: public /hook/* listener and admin API."""
    from hookgate.gateway import Gateway

    logs.configure(json=None if log_format is None else log_format == "json")
    try:
        settings = load_settings(
            data_dir=data_dir,
            listen=listen,
            admin_listen=admin_listen,
            database=database,
            public_url=public_url,
            flows_file=flows_file,
            runtime=runtime,
        )
        _run(Gateway(settings).serve())
    except KeyboardInterrupt:
        # Ctrl-C before the gateway installed its own handler: nothing was started yet.
        sys.exit(0)
    except HookgateError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _run(coroutine: object) -> None:
    try:
        import uvloop
    except ImportError:
        import asyncio

        asyncio.run(coroutine)  # type: ignore[arg-type]
        return
    uvloop.run(coroutine)  # type: ignore[arg-type]


@cli.command()
def version() -> None:
    """Print the version."""
    click.echo(f"hookgate {__version__}")


cli.add_command(flows)
cli.add_command(deliveries)
cli.add_command(tail)
cli.add_command(db)
cli.add_command(k8s)
cli.add_command(init)


def main() -> None:
    cli(prog_name="hookgate")
