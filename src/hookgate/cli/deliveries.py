"""``hookgate deliveries …``: list, show and replay stored requests."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import click

from hookgate.cli.client import AdminClient, AdminError
from hookgate.cli.flows import as_json, pass_client
from hookgate.cli.output import console, emit_json, table, when

DELIVERY_ID = re.compile("[0-9a-f]{32}")


@click.group()
def deliveries() -> None:
    """Inspect and replay async deliveries."""


@deliveries.command("list")
@click.option("--flow", help="Flow name or id.")
@click.option("--status", type=click.Choice(["queued", "leased", "done", "dead"]))
@click.option("--limit", default=50, show_default=True)
@click.option("--cursor", help="Continue after a previous page.")
@as_json
@pass_client
def list_(
    client: AdminClient,
    flow: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    json_out: bool,
) -> None:
    """Newest first."""
    params = {
        k: v
        for k, v in {"flow": flow, "status": status, "limit": limit, "cursor": cursor}.items()
        if v
    }
    page = client.request("GET", "/api/v1/deliveries", params=params)
    if json_out:
        emit_json(page)
        return
    table(
        None,
        ["ID", "FLOW", "STATUS", "ATTEMPTS", "RECEIVED", "METHOD", "PATH", "LAST ERROR"],
        [
            (
                d["id"],
                d["flow"],
                d["status"],
                d["attempts"],
                when(d["receivedAt"]),
                d["method"],
                d["path"],
                d["lastError"],
            )
            for d in page["items"]
        ],
    )
    if page["cursor"]:
        console.print(f"more: --cursor {page['cursor']}")


@deliveries.command()
@click.argument("ref")
@as_json
@pass_client
def show(client: AdminClient, ref: str, json_out: bool) -> None:
    """The stored request, its status and every attempt.

    REF is the delivery id, the caller's request id (X-Request-Id, the requestId of the 202),
    the provider's delivery id (X-GitHub-Delivery, a Stripe event id, webhook-id, …) or a
    prefix of one of at least 8 characters. A REF that names several deliveries lists them.
    """
    d = _find(client, ref, json_out=json_out)
    if json_out:
        emit_json(d)
        return
    table(
        f"delivery {d['id']}",
        ["FIELD", "VALUE"],
        [
            ("flow", d["flow"]),
            ("status", d["status"]),
            ("request id", d["requestId"]),
            ("received", when(d["receivedAt"])),
            ("request", f"{d['method']} {d['path']}" + (f"?{d['query']}" if d["query"] else "")),
            ("source", d["source"]),
            ("size", d["size"]),
            ("last error", d["lastError"]),
        ],
    )
    table("headers", ["NAME", "VALUE"], d["headers"])
    console.print(f"body ({d['bodyEncoding']}):")
    console.print(d["body"][:4096], markup=False, highlight=False)
    table(
        "attempts",
        ["#", "STARTED", "STATUS", "ERROR", "MS", "RESPONSE"],
        [
            (
                a["number"],
                when(a["started_at"]),
                a["status_code"],
                a["error"],
                a["duration_ms"],
                a["response"][:80],
            )
            for a in d["history"]
        ],
    )


def _find(client: AdminClient, ref: str, *, json_out: bool = False) -> Any:
    """The delivery ``ref`` names; an ambiguous one lists the candidates, then fails."""
    try:
        return client.request("GET", f"/api/v1/deliveries/{quote(ref, safe='')}")
    except AdminError as exc:
        if exc.status == 409 and json_out:
            emit_json(exc.data)
        elif exc.status == 409:
            table(
                "candidates",
                ["ID", "REQUEST ID", "FLOW", "STATUS", "RECEIVED"],
                [
                    (d["id"], d["requestId"], d["flow"], d["status"], when(d["receivedAt"]))
                    for d in exc.data["candidates"]
                ],
            )
        raise


@deliveries.command()
@click.argument("ids", nargs=-1)
@click.option("--flow", help="Replay everything of this flow that matches.")
@click.option("--status", type=click.Choice(["dead", "done"]), help="Default: dead.")
@click.option("--since", type=float, help="Received at or after (Unix time).")
@click.option("--until", type=float, help="Received before (Unix time).")
@as_json
@pass_client
def replay(
    client: AdminClient,
    ids: tuple[str, ...],
    flow: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    json_out: bool,
) -> None:
    """Replay deliveries by id, or all matching --flow/--status/--since/--until.

    IDS may be any id of a delivery or a prefix, as for ``deliveries show``.
    """
    if ids:
        body: dict[str, object] = {
            "ids": [ref if DELIVERY_ID.fullmatch(ref) else _find(client, ref)["id"] for ref in ids]
        }
    elif flow or status or since or until:
        body = {
            k: v
            for k, v in {"flow": flow, "status": status, "since": since, "until": until}.items()
            if v is not None
        }
    else:
        raise click.UsageError("give delivery ids, or --flow/--status/--since/--until")
    result = client.request("POST", "/api/v1/deliveries/replay", json=body)
    if json_out:
        emit_json(result)
    else:
        console.print(f"{result['replayed']} deliveries queued again")
