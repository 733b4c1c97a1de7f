"""``hookgate tail FLOW``: a flow's requests, handshakes and delivery outcomes, live, until
Ctrl-C.

Reads the admin API's server-sent events. When the gateway goes away (a restart) the stream
is picked up again, so a tail left open across a deploy keeps working.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from typing import Any

import click
import httpx
from rich.markup import escape

from hookgate.cli.client import AdminClient
from hookgate.cli.output import console

pass_client = click.make_pass_decorator(AdminClient)
RECONNECT = (0.5, 1.0, 2.0, 5.0)


@click.command(short_help="Follow a flow's requests and deliveries live.")
@click.argument("flow")
@click.option("--json", "json_out", is_flag=True, help="Print each event as a JSON line.")
@click.option(
    "--answers",
    is_flag=True,
    help="Under each delivery attempt, the start of the worker's answer (its first 1 KB).",
)
@pass_client
def tail(client: AdminClient, flow: str, json_out: bool, answers: bool) -> None:
    """Stream FLOW's requests and delivery attempts (by name or id) until Ctrl-C.

    A poll run's attempt shows what the run found when the worker says so in its answer:
    use --answers to see it.
    """
    found = client.request("GET", f"/api/v1/flows/{flow}")
    try:
        _follow(client, found, json_out=json_out, answers=answers)
    except KeyboardInterrupt:
        _say("Stopped.")


def _follow(client: AdminClient, flow: dict[str, Any], *, json_out: bool, answers: bool) -> None:
    failures = 0
    while True:
        try:
            for event in _events(client, flow["id"]):
                if event is None:
                    failures = 0
                    name, url = escape(flow["name"]), escape(flow["url"])
                    _say(f"Tailing flow [bold]{name}[/] ({url}); Ctrl-C to stop.")
                elif json_out:
                    click.echo(json.dumps(event, sort_keys=True))
                else:
                    _say(line(event))
                    if answers and event.get("answer"):
                        _say(f"    [dim]{escape(' '.join(event['answer'].split()))}[/]")
            _say("[yellow]The gateway closed the stream; reconnecting…[/]")
        except httpx.TransportError as exc:
            if failures == 0:
                _say(f"[yellow]Lost the gateway ({escape(str(exc))}); reconnecting…[/]")
        time.sleep(RECONNECT[min(failures, len(RECONNECT) - 1)])
        failures += 1


def _events(client: AdminClient, flow_id: str) -> Iterator[dict[str, Any] | None]:
    """Events as dicts; ``None`` once, when the gateway has subscribed us."""
    headers = {"authorization": f"Bearer {client.token}", "accept": "text/event-stream"}
    timeout = httpx.Timeout(10.0, read=60.0)
    url = f"{client.url}/api/v1/events"
    with httpx.stream(
        "GET", url, params={"flow": flow_id}, headers=headers, timeout=timeout
    ) as response:
        if response.status_code != 200:
            response.read()
            raise click.ClickException(_error(response))
        kind, data = "message", []
        for text in response.iter_lines():
            if text.startswith("event:"):
                kind = text[6:].strip()
            elif text.startswith("data:"):
                data.append(text[5:].strip())
            elif not text:
                if kind == "subscribed":
                    yield None
                elif data:
                    yield json.loads("\n".join(data))
                kind, data = "message", []


def _error(response: httpx.Response) -> str:
    try:
        message = response.json().get("error")
    except ValueError:
        message = None
    return str(message or f"HTTP {response.status_code}")


def line(event: dict[str, Any]) -> str:
    """One event as one line of rich markup."""
    at = datetime.datetime.fromtimestamp(event["at"]).strftime("%H:%M:%S.%f")[:-3]
    if event["kind"] == "request":
        status = int(event["status"])
        colour = "red" if status >= 500 else "yellow" if status >= 400 else "green"
        return (
            f"{at}  [cyan]request [/] {escape(event['method'])} {escape(event['path'])}  "
            f"[{colour}]{status}[/]  {event['ms']:.1f} ms  request {event['requestId']}"
        )
    if event["kind"] == "handshake":
        colour = "green" if event["outcome"] == "answered" else "red"
        return (
            f"{at}  [blue]handshake[/] {escape(event['provider'])}  "
            f"[{colour}]{escape(event['outcome'])} {event['status']}[/]  "
            f"request {event['requestId']}"
        )
    outcome = event["outcome"]
    colour = {"done": "green", "retry": "yellow"}.get(outcome, "red")
    answer = f" {event['status']}" if event.get("status") else ""
    error = f"  {escape(event['error'])}" if event.get("error") else ""
    return (
        f"{at}  [magenta]delivery[/] {event['deliveryId']} attempt {event['attempt']}  "
        f"[{colour}]{outcome}{answer}[/]  {event['ms']:.1f} ms{error}"
    )


def _say(markup: str) -> None:
    console.print(markup, soft_wrap=True, highlight=False)
    console.file.flush()
