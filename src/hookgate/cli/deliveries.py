"""``hookgate deliveries …``: list, show and replay stored requests."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import click

from hookgate.cli.client import AdminClient, AdminError
from hookgate.cli.flows import pass_client
from hookgate.cli.output import Moment, console, emit, output_option, table, when

DELIVERY_ID = re.compile("[0-9a-f]{32}")


@click.group()
def deliveries() -> None:
    """Inspect and replay async deliveries."""


@deliveries.command("list", short_help="Stored requests, newest first.")
@click.option("--flow", help="Flow name or id.")
@click.option(
    "--status",
    type=click.Choice(["queued", "leased", "done", "dead"]),
    help="queued (waiting, or waiting for a retry), leased (being delivered), done, or dead "
    "(out of attempts, or refused with a 4xx: replayable).",
)
@click.option("--since", type=Moment(), help="Received at or after: 1h (ago), an ISO time, …")
@click.option("--until", type=Moment(), help="Received before: 30m (ago), an ISO time, …")
@click.option("--limit", default=50, show_default=True, help="Deliveries per page.")
@click.option("--cursor", help="Continue after a previous page (printed under the table).")
@output_option
@pass_client
def list_(
    client: AdminClient,
    flow: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    cursor: str | None,
    output: str,
) -> None:
    """Stored requests of async flows, newest first, with their status and last error.

    Times are ISO (UTC unless they say otherwise), durations ago (1h, 30m, 2d) or Unix
    seconds. `-o wide` adds the method and path; `-o name` prints ids only.
    """
    wanted = {
        "flow": flow,
        "status": status,
        "since": since,
        "until": until,
        "limit": limit,
        "cursor": cursor,
    }
    params = {k: v for k, v in wanted.items() if v is not None}
    page = client.request("GET", "/api/v1/deliveries", params=params)
    items = page["items"]

    def show(wide: bool) -> None:
        columns = ["ID", "FLOW", "DESTINATION", "STATUS", "ATTEMPTS", "RECEIVED"]
        columns += ["METHOD", "PATH", "LAST ERROR"] if wide else ["LAST ERROR"]
        rows = [
            (
                d["id"],
                d["flow"],
                d["destination"] or "-",
                d["status"],
                d["attempts"],
                when(d["receivedAt"]),
                *([d["method"], d["path"]] if wide else []),
                d["lastError"],
            )
            for d in items
        ]
        table(None, columns, rows, wide=wide)
        if page["cursor"]:
            click.echo(f"more: --cursor {page['cursor']}")

    emit(output, page, names=[d["id"] for d in items], show=show)


@deliveries.command(short_help="One stored request and its attempts, found by any of its ids.")
@click.argument("ref")
@output_option
@pass_client
def show(client: AdminClient, ref: str, output: str) -> None:
    """The stored request (headers, body), its status and every attempt with its answer.

    REF is the delivery id, the caller's request id (X-Request-Id, the requestId of the 202),
    the provider's delivery id (X-GitHub-Delivery, a Stripe event id, webhook-id, …) or a
    prefix of one of at least 8 characters. A REF that names several deliveries lists them.
    """
    d = _find(client, ref, output=output)
    emit(output, d, names=[d["id"]], show=lambda wide: _show(d, wide=wide))


def _show(d: dict[str, Any], *, wide: bool) -> None:
    table(
        f"delivery {d['id']}",
        ["FIELD", "VALUE"],
        [
            ("flow", d["flow"]),
            ("status", d["status"]),
            ("destination", d["destination"] or "-"),
            *([("order key", d["orderKey"])] if d["orderKey"] is not None else []),
            ("request id", d["requestId"]),
            ("received", when(d["receivedAt"])),
            ("request", f"{d['method']} {d['path']}" + (f"?{d['query']}" if d["query"] else "")),
            ("source", d["source"]),
            ("size", d["size"]),
            ("last error", d["lastError"]),
        ],
        wide=wide,
    )
    table("headers", ["NAME", "VALUE"], d["headers"], wide=wide)
    console.print(f"body ({d['bodyEncoding']}):")
    console.print(d["body"][:4096], markup=False, highlight=False)
    table(
        "attempts",
        ["ROUND", "#", "STARTED", "STATUS", "ERROR", "MS", "RESPONSE"],
        [
            (
                a["round"],
                a["number"],
                when(a["started_at"]),
                a["status_code"],
                a["error"],
                a["duration_ms"],
                a["response"],
            )
            for a in d["history"]
        ],
        wide=wide,
    )


def _find(client: AdminClient, ref: str, *, output: str = "table") -> Any:
    """The delivery ``ref`` names; an ambiguous one lists the candidates, then fails."""
    try:
        return client.request("GET", f"/api/v1/deliveries/{quote(ref, safe='')}")
    except AdminError as exc:
        if exc.status == 409:
            candidates = exc.data["candidates"]
            emit(
                output,
                exc.data,
                names=[d["id"] for d in candidates],
                show=lambda wide: table(
                    "candidates",
                    ["ID", "REQUEST ID", "FLOW", "STATUS", "RECEIVED"],
                    [
                        (d["id"], d["requestId"], d["flow"], d["status"], when(d["receivedAt"]))
                        for d in candidates
                    ],
                    wide=wide,
                ),
            )
        raise


@deliveries.command(short_help="Queue deliveries again (by any id, or by filter).")
@click.argument("ids", nargs=-1)
@click.option("--flow", help="Replay everything of this flow that matches.")
@click.option("--status", type=click.Choice(["dead", "done"]), help="Default: dead.")
@click.option("--since", type=Moment(), help="Received at or after: 1h (ago), an ISO time, …")
@click.option("--until", type=Moment(), help="Received before: 30m (ago), an ISO time, …")
@output_option
@pass_client
def replay(
    client: AdminClient,
    ids: tuple[str, ...],
    flow: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    output: str,
) -> None:
    """Replay deliveries by id, or all matching --flow/--status/--since/--until.

    IDS may be any id of a delivery or a prefix, as for ``deliveries show``. Each replayed
    delivery is queued again with a fresh series of attempts (its earlier attempts are kept
    in its history).
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
    emit(
        output,
        result,
        names=list(ids),
        show=lambda _wide: console.print(f"{result['replayed']} deliveries queued again"),
    )
