"""``hookgate flows …`` and ``hookgate version`` against a running gateway."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
from tests.cli.conftest import Cli, entry, flow_file
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually

from hookgate import __version__


def cells(line: str) -> list[str]:
    """The cells of one row of a table (none of these cells has a space)."""
    return line.split()


def test_version(cli: Cli) -> None:
    assert cli.ok("version").strip() == f"hookgate {__version__}"


def test_apply_reports_created_updated_unchanged(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    orders, contacts = names
    path = flow_file(tmp_path / "flows.yaml", entry(orders), entry(contacts))
    out = cli.ok("flows", "apply", "-f", str(path))
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for name, line in zip((orders, contacts), lines, strict=True):
        flow = gateway.flow(name)
        assert line.split() == ["flow", name, "created", flow["url"]]

    flow_file(path, entry(orders, extra="    timeout: 10s\n"), entry(contacts))
    out = cli.ok("flows", "apply", "--file", str(path))
    assert f"flow {orders} updated" in out
    assert f"flow {contacts} unchanged" in out
    assert gateway.flow(orders)["spec"]["timeout"] == 10

    items = cli.json("flows", "apply", "-f", str(path))["items"]
    assert [(i["name"], i["outcome"]) for i in items] == [
        (orders, "unchanged"),
        (contacts, "unchanged"),
    ]
    assert {i["id"] for i in items} == {gateway.flow(orders)["id"], gateway.flow(contacts)["id"]}


def test_list_shows_name_id_mode_status_and_url(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    orders, contacts = names
    cli.ok(
        "flows", "apply", "-f", str(flow_file(tmp_path / "f.yaml", entry(orders), entry(contacts)))
    )
    cli.ok("flows", "stop", contacts, "--yes")
    header, *rows = cli.ok("flows", "list", "-o", "wide").splitlines()
    assert cells(header) == ["NAME", "MODE", "STATUS", "WORKERS", "URL", "ID"]
    by_name = {cells(row)[0]: cells(row) for row in rows}
    for name, status in ((orders, "running"), (contacts, "stopped")):
        flow = gateway.flow(name)
        assert by_name[name][1:3] == ["async", status]
        assert by_name[name][-2:] == [flow["url"], flow["id"]]

    listed = {f["name"]: f for f in cli.json("flows", "list")}
    assert listed[orders]["id"] == gateway.flow(orders)["id"]
    assert listed[contacts]["status"] == "stopped"
    assert listed[orders]["url"] == gateway.flow(orders)["url"]


def test_show_by_name_and_by_id(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    orders, _ = names
    cli.ok("flows", "apply", "-f", str(flow_file(tmp_path / "f.yaml", entry(orders))))
    flow = gateway.flow(orders)
    by_name = cli.json("flows", "show", orders)
    by_id = cli.json("flows", "show", flow["id"])
    assert by_name["id"] == by_id["id"] == flow["id"]
    assert by_name["spec"] == by_id["spec"] == flow["spec"]
    text = cli.ok("flows", "show", flow["id"])
    assert orders in text
    assert flow["url"] in text
    assert "running" in text


def test_show_says_the_concurrency_limit_in_force_next_to_the_setting(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    orders, _ = names
    worker = f"[{sys.executable}, {ROOT / 'tests' / 'workers' / 'flaky.py'}]"
    path = flow_file(
        tmp_path / "f.yaml", entry(orders, command=worker, extra="    idle_timeout: 2m\n")
    )
    cli.ok("flows", "apply", "-f", str(path))
    assert re.search(r"concurrency +auto \(no worker in use\)", cli.ok("flows", "show", orders))
    assert cli.json("flows", "show", orders)["concurrencyLimit"] is None

    assert httpx.post(gateway.flow(orders)["url"], content=b"{}").status_code == 202
    limit = eventually(lambda: gateway.flow(orders)["concurrencyLimit"])
    assert cli.json("flows", "show", orders)["concurrencyLimit"] == limit
    assert re.search(rf"concurrency +auto \(now {limit}\)", cli.ok("flows", "show", orders))


def test_stop_start_delete_by_name_and_by_id(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    orders, contacts = names
    cli.ok(
        "flows", "apply", "-f", str(flow_file(tmp_path / "f.yaml", entry(orders), entry(contacts)))
    )
    flow = gateway.flow(orders)

    assert "stopped" in cli.ok("flows", "stop", orders, "--yes")
    assert httpx.post(flow["url"]).status_code == 404
    assert cli.json("flows", "start", flow["id"])["status"] == "running"
    assert httpx.post(flow["url"]).status_code == 202
    assert cli.json("flows", "stop", flow["id"], "--yes")["status"] == "stopped"
    assert f"flow {orders} started" in cli.ok("flows", "start", orders)

    assert f"flow {orders} deleted" in cli.ok("flows", "delete", orders, "--yes")
    assert cli.json("flows", "delete", gateway.flow(contacts)["id"], "--yes")["deleted"] is True
    remaining = {f["name"] for f in cli.json("flows", "list")}
    assert not remaining & {orders, contacts}
    assert httpx.post(flow["url"]).status_code == 404


def test_stop_and_delete_say_what_senders_will_see_and_need_yes(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    orders, _ = names
    cli.ok("flows", "apply", "-f", str(flow_file(tmp_path / "f.yaml", entry(orders))))
    stop = cli.run("flows", "stop", orders)
    assert stop.returncode == 2
    assert "Senders will get 404 from the flow's URL until it is started again" in stop.stderr
    assert "--yes" in stop.stderr
    delete = cli.run("flows", "delete", orders)
    assert delete.returncode == 2
    assert "for good (re-creating the flow gives a new URL)" in delete.stderr
    assert gateway.flow(orders)["status"] == "running"
    assert httpx.post(gateway.flow(orders)["url"]).status_code == 202


def test_pause_keeps_the_url_accepting_and_resume_runs_it_again(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    orders, _ = names
    cli.ok("flows", "apply", "-f", str(flow_file(tmp_path / "f.yaml", entry(orders))))
    url = gateway.flow(orders)["url"]
    assert "paused (its URL still accepts and stores" in cli.ok("flows", "pause", orders)
    assert cli.json("flows", "show", orders)["status"] == "paused"
    assert httpx.post(url).status_code == 202
    assert httpx.head(url).status_code == 200
    assert cli.json("flows", "resume", orders)["status"] == "running"
