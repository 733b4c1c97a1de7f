"""``hookgate flows …``: apply a flow file, list, show, start, stop, pause, resume, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from hookgate.cli.client import AdminClient
from hookgate.cli.output import console, emit_json, table, when
from hookgate.domain.flows import parse_flow_file, to_builtins
from hookgate.errors import ConfigError

pass_client = click.make_pass_decorator(AdminClient)
as_json = click.option("--json", "json_out", is_flag=True, help="Print JSON for scripts.")


@click.group()
def flows() -> None:
    """Manage flows and their permanent URLs."""


@flows.command()
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(path_type=Path),
    help="Flow file (YAML) to apply.",
)
@as_json
@pass_client
def apply(client: AdminClient, path: Path, json_out: bool) -> None:
    """Create or update the flows of FILE by name; ids (URLs) never change."""
    try:
        specs = parse_flow_file(path.read_text(), source=str(path))
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    result = client.request("POST", "/api/v1/apply", json={"flows": to_builtins(specs)})
    if json_out:
        emit_json(result)
        return
    for item in result["items"]:
        console.print(f"flow [bold]{item['name']}[/] {item['outcome']}  {item['url']}")


@flows.command("list")
@as_json
@pass_client
def list_(client: AdminClient, json_out: bool) -> None:
    """Name, id, mode, status and URL of every flow."""
    items = client.request("GET", "/api/v1/flows")["items"]
    if json_out:
        emit_json(items)
        return
    table(
        None,
        ["NAME", "ID", "MODE", "STATUS", "WORKERS", "URL"],
        [(f["name"], f["id"], f["mode"], f["status"], _workers(f), f["url"]) for f in items],
    )


def _workers(flow: dict[str, Any]) -> str:
    workers = flow.get("workers") or {}
    return f"{workers.get('ready', 0)}/{workers.get('desired', 0)}"


@flows.command()
@click.argument("ref")
@as_json
@pass_client
def show(client: AdminClient, ref: str, json_out: bool) -> None:
    """One flow (by name or id): URL, status, workers, configuration."""
    flow = client.request("GET", f"/api/v1/flows/{ref}")
    if json_out:
        emit_json(flow)
        return
    workers = flow.get("workers") or {}
    table(
        flow["name"],
        ["FIELD", "VALUE"],
        [
            ("id", flow["id"]),
            ("url", flow["url"]),
            ("mode", flow["mode"]),
            ("status", flow["status"]),
            ("workers ready/desired", _workers(flow)),
            ("last error", workers.get("last_error")),
            ("last exit", workers.get("last_exit")),
            ("created", when(flow["createdAt"])),
            ("updated", when(flow["updatedAt"])),
            *[("next run", when(t)) for t in flow.get("schedule", {}).get("next", [])],
            *sorted((k, v) for k, v in flow["spec"].items() if k not in ("name", "mode")),
        ],
    )


def _action(name: str, method: str, suffix: str, done: str, *, doc: str, warns: str = "") -> None:
    """A command that changes a flow's status; ``warns``: what senders will see, said before
    anything changes unless ``--yes`` is given."""

    @click.argument("ref")
    @as_json
    @pass_client
    def command(client: AdminClient, ref: str, json_out: bool, yes: bool = False) -> None:
        if warns and not yes:
            raise click.UsageError(f"{warns}. Give --yes to {name} the flow.")
        result = client.request(method, f"/api/v1/flows/{quote(ref, safe='')}{suffix}")
        if json_out:
            emit_json(result)
        else:
            console.print(f"flow [bold]{result['name']}[/] {done}")

    command.__doc__ = doc
    if warns:
        command = click.option("--yes", is_flag=True, help="Confirm: " + warns.lower())(command)
    flows.command(name)(command)


_action("start", "POST", "/start", "started", doc="Start a flow (by name or id).")
_action(
    "stop",
    "POST",
    "/stop",
    "stopped (its URL answers 404 until started)",
    doc="Stop a flow (by name or id): its URL answers 404 until it is started again.",
    warns="Senders will get 404 from the flow's URL until it is started again; what is"
    " queued waits",
)
_action(
    "pause",
    "POST",
    "/pause",
    "paused (its URL still accepts and stores; nothing is delivered until resumed)",
    doc="Pause an async flow: its URL still answers 202 and stores, deliveries wait.",
)
_action(
    "resume",
    "POST",
    "/resume",
    "resumed (what it holds is being delivered)",
    doc="Resume a paused flow: everything it held is delivered, each request once.",
)
_action(
    "delete",
    "DELETE",
    "",
    "deleted",
    doc="Delete a flow (by name or id) with everything queued for it.",
    warns="Senders will get 404 from the flow's URL for good (re-creating the flow gives a"
    " new URL), and everything queued for it is deleted",
)


@flows.command()
@click.argument("ref")
@click.option("--set", "value", help="Replace the snapshot with this JSON.")
@click.option("--clear", is_flag=True, help="Forget the snapshot (the next run gets null).")
@as_json
@pass_client
def snapshot(client: AdminClient, ref: str, value: str | None, clear: bool, json_out: bool) -> None:
    """Show, replace or clear the snapshot a polling flow carries from run to run."""
    if value is not None and clear:
        raise click.UsageError("give --set or --clear, not both")
    path = f"/api/v1/flows/{ref}/snapshot"
    if clear:
        result = client.request("DELETE", path)
    elif value is not None:
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--set") from None
        result = client.request("PUT", path, json={"snapshot": parsed})
    else:
        result = client.request("GET", path)
    if json_out:
        emit_json(result)
    else:
        click.echo(json.dumps(result["snapshot"], indent=2))


@flows.command()
@click.argument("ref")
@as_json
@pass_client
def run(client: AdminClient, ref: str, json_out: bool) -> None:
    """Enqueue a poll run of a flow now, outside its schedule."""
    result = client.request("POST", f"/api/v1/flows/{ref}/run")
    if json_out:
        emit_json(result)
    else:
        console.print(f"poll run queued: delivery {result['deliveryId']}")
