"""``hookgate flows …``: apply a flow file, list, show, start, stop, pause, resume, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from hookgate.cli.client import AdminClient
from hookgate.cli.output import console, emit, human, output_option, table, when
from hookgate.domain import concurrency
from hookgate.domain.flowfile import parse_flow_file, spec_from_object
from hookgate.domain.flows import Mode, settings_for, to_builtins
from hookgate.errors import ConfigError

pass_client = click.make_pass_decorator(AdminClient)


@click.group()
def flows() -> None:
    """Manage flows and their permanent URLs."""


@flows.command(short_help="Create or update the flows of a file.")
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(path_type=Path),
    help="Flow file (YAML) to apply.",
)
@output_option
@pass_client
def apply(client: AdminClient, path: Path, output: str) -> None:
    """Create or update the flows of a file by name; ids (so URLs) never change.

    Flows of the file that exist are updated (their workers roll over to the new
    configuration), new ones are created; flows not in the file are left alone. Warnings
    (a worker command not found on the gateway's PATH) go to stderr.
    """
    try:
        specs = parse_flow_file(path.read_text(), source=str(path))
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    result = client.request("POST", "/api/v1/apply", json={"flows": to_builtins(specs)})
    items = result["items"]

    def show(_wide: bool) -> None:
        for i in items:
            click.echo(f"flow {i['name']} {i['outcome']}  {i['url']}")

    emit(output, result, names=[i["name"] for i in items], show=show)
    for item in items:
        for warning in item.get("warnings", []):
            click.echo(f"warning: {warning}", err=True)


@flows.command("list", short_help="Every flow: name, mode, status, workers, URL.")
@output_option
@pass_client
def list_(client: AdminClient, output: str) -> None:
    """Every flow: name, mode, status, workers (ready/desired) and URL.

    STATUS is running, stopped, or failing (its workers cannot start: `flows show` says why).
    `-o wide` adds the id (also the URL's last part).
    """
    items = client.request("GET", "/api/v1/flows")["items"]

    def show(wide: bool) -> None:
        columns = ["NAME", "MODE", "STATUS", "WORKERS", "URL", *(["ID"] if wide else [])]
        rows = [
            (f["name"], f["mode"], f["status"], _workers(f), f["url"], *([f["id"]] if wide else []))
            for f in items
        ]
        table(None, columns, rows, wide=wide)

    emit(output, items, names=[f["name"] for f in items], show=show)


def _workers(flow: dict[str, Any]) -> str:
    workers = flow.get("workers") or {}
    return f"{workers.get('ready', 0)}/{workers.get('desired', 0)}"


@flows.command(short_help="One flow: URL, status, workers, configuration.")
@click.argument("ref")
@output_option
@pass_client
def show(client: AdminClient, ref: str, output: str) -> None:
    """One flow (REF: its name or id): URL, status, workers and their last error, and its
    configuration as a flow file writes it (durations like 30s, sizes like 10MB)."""
    flow = client.request("GET", f"/api/v1/flows/{ref}")
    workers = flow.get("workers") or {}
    error = workers.get("last_error")
    if error and workers.get("last_error_at"):
        error = f"{error} (at {when(workers['last_error_at'])})"
    rows = [
        ("id", flow["id"]),
        ("url", flow["url"]),
        ("mode", flow["mode"]),
        ("status", flow["status"]),
        ("workers ready/desired", _workers(flow)),
        ("last error", error),
        ("last exit", workers.get("last_exit")),
        ("created", when(flow["createdAt"])),
        ("updated", when(flow["updatedAt"])),
        *[("next run", when(t)) for t in flow.get("schedule", {}).get("next", [])],
        *_settings(Mode(flow["mode"]), flow["spec"], flow.get("concurrencyLimit")),
    ]
    emit(
        output,
        flow,
        names=[flow["name"]],
        show=lambda wide: table(flow["name"], ["FIELD", "VALUE"], rows, wide=wide),
    )


def _settings(mode: Mode, spec: dict[str, Any], limit: int | None) -> list[tuple[str, str]]:
    """The flow's configuration, one dotted field a line; unset fields and those its mode
    ignores left out. ``concurrency`` also says the limit in force now (``limit``)."""
    relevant = settings_for(mode, spec).keys() - {"name", "mode"}
    return sorted(
        (name, concurrency.shown(value, limit) if name == "concurrency" else value)
        for name, value in _flatten(spec_from_object(spec), "")
        if name.split(".")[0].split("[")[0] in relevant
    )


def _flatten(value: Any, prefix: str) -> list[tuple[str, str]]:
    if hasattr(value, "__struct_fields__"):
        fields = {f: getattr(value, f) for f in value.__struct_fields__}
        return [p for f, v in fields.items() for p in _flatten(v, f"{prefix}{f}.")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _flatten(v, f"{prefix}{k}.")]
    if isinstance(value, list) and any(hasattr(v, "__struct_fields__") for v in value):
        return [p for i, v in enumerate(value) for p in _flatten(v, f"{prefix[:-1]}[{i}].")]
    if value is None or value == []:
        return []
    return [(prefix[:-1], human(value))]


def _action(name: str, method: str, suffix: str, done: str, *, doc: str, warns: str = "") -> None:
    """A command that changes a flow's status; ``warns``: what senders will see, said before
    anything changes unless ``--yes`` is given."""

    @click.argument("ref")
    @output_option
    @pass_client
    def command(client: AdminClient, ref: str, output: str, yes: bool = False) -> None:
        if warns and not yes:
            raise click.UsageError(f"{warns}. Give --yes to {name} the flow.")
        result = client.request(method, f"/api/v1/flows/{quote(ref, safe='')}{suffix}")
        emit(
            output,
            result,
            names=[result["name"]],
            show=lambda _wide: console.print(f"flow [bold]{result['name']}[/] {done}"),
        )

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


@flows.command(short_help="Show, replace or clear a polling flow's snapshot.")
@click.argument("ref")
@click.option("--set", "value", help="Replace the snapshot with this JSON.")
@click.option("--clear", is_flag=True, help="Forget the snapshot (the next run gets null).")
@output_option
@pass_client
def snapshot(client: AdminClient, ref: str, value: str | None, clear: bool, output: str) -> None:
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
    emit(
        output,
        result,
        names=[ref],
        show=lambda _wide: click.echo(json.dumps(result["snapshot"], indent=2)),
    )


@flows.command()
@click.argument("ref")
@click.option("--force", is_flag=True, help="Run a flow that has no schedule all the same.")
@output_option
@pass_client
def run(client: AdminClient, ref: str, force: bool, output: str) -> None:
    """Enqueue a poll run of a flow now, outside its schedule (which does not move).

    The worker gets a poll run with the flow's snapshot, as on a scheduled tick. A flow with
    no schedule is refused unless --force.
    """
    query = "?force=true" if force else ""
    result = client.request("POST", f"/api/v1/flows/{ref}/run{query}")
    emit(
        output,
        result,
        names=[result["deliveryId"]],
        show=lambda _wide: console.print(f"poll run queued: delivery {result['deliveryId']}"),
    )
