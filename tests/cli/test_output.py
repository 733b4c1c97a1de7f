"""CLI output at 80 columns and piped: ids and URLs whole, the rest shortened, scripts served."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from tests.cli.conftest import Cli, entry, flow_file
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually

from hookgate.cli.output import duration, parse_moment, table, when

FLAKY = f"[{sys.executable}, {ROOT / 'tests' / 'workers' / 'flaky.py'}]"
ID = "Q2hhbmdlZCBieSBhIHRlc3Q"
URL = f"http://127.0.0.1:8080/hook/{ID}"

GOLDEN_80 = f"""\
NAME    MODE   STATUS   URL                                                 ERROR
orders  async  failing  {URL}  cannot st…
"""


def test_golden_table_at_80_columns_cuts_only_what_is_not_an_id_or_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [("orders", "async", "failing", URL, "cannot start 'node': no such executable")]
    monkeypatch.setenv("COLUMNS", "80")
    table(None, ["NAME", "MODE", "STATUS", "URL", "ERROR"], rows)
    assert capsys.readouterr().out == GOLDEN_80
    # -o wide: nothing is cut.
    table(None, ["NAME", "MODE", "STATUS", "URL", "ERROR"], rows, wide=True)
    assert "cannot start 'node': no such executable" in capsys.readouterr().out
    # Piped without COLUMNS: nothing is cut either (a script reads every character).
    monkeypatch.delenv("COLUMNS")
    table(None, ["NAME", "MODE", "STATUS", "URL", "ERROR"], rows)
    assert "cannot start 'node': no such executable" in capsys.readouterr().out


def test_times_and_durations_read_as_people_write_them() -> None:
    assert when(1796479390) == "2026-12-05 14:03:10 UTC"
    assert [duration(s) for s in (259200.0, 5400.0, 30.0, 0.25)] == ["3d", "1h30m", "30s", "250ms"]
    assert parse_moment("1h", now=10_000.0) == 6400.0
    assert parse_moment("2026-12-05T14:03:10") == 1796479390
    assert parse_moment("2026-12-05 14:03:10 UTC") == 1796479390
    assert parse_moment("1796479390") == 1796479390


def piped(cli: Cli, *args: str) -> str:
    """The command's output into a pipe with no COLUMNS, as in `hookgate … | grep`."""
    cli.env = {k: v for k, v in cli.env.items() if k != "COLUMNS"}
    return cli.ok(*args)


def test_lists_at_80_columns_and_piped_keep_ids_and_urls_whole(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    name = names[0] + "-with-a-rather-long-name"
    extra = "    retry: {max_attempts: 1}\n    retention: 3d\n"
    path = flow_file(tmp_path / "f.yaml", entry(name, extra=extra, command=FLAKY))
    cli.ok("flows", "apply", "-f", str(path))
    flow = gateway.flow(name)
    assert httpx.post(flow["url"] + "?status=422", timeout=10).status_code == 202

    def dead() -> list[str]:
        page = cli.json("deliveries", "list", "--flow", name, "--status", "dead")
        return [d["id"] for d in page["items"]]

    [dead_id] = eventually(dead)

    narrow = cli.run("flows", "list", env={"COLUMNS": "80"}).stdout
    for output in (narrow, piped(cli, "flows", "list")):
        [row] = [line for line in output.splitlines() if line.startswith(name)]
        assert flow["url"] in row.split()

    cli.env["COLUMNS"] = "80"
    listing = cli.ok("deliveries", "list", "--flow", name, "--since", "1h")
    [row] = [line for line in listing.splitlines() if line.startswith(dead_id)]
    assert name in row.split()
    assert row.endswith("…")  # the worker's long answer is shortened, nothing else
    assert piped(cli, "deliveries", "list", "--flow", name, "-o", "name").split() == [dead_id]

    # Scripts: -o json and -o yaml parse, --json is -o json.
    as_json = json.loads(cli.ok("flows", "show", name, "-o", "json"))
    assert as_json == json.loads(cli.ok("flows", "show", name, "--json"))
    assert yaml.safe_load(cli.ok("flows", "show", name, "-o", "yaml"))["id"] == flow["id"]
    assert cli.ok("flows", "list", "-o", "name").split().count(name) == 1

    # Human settings: durations as a flow file writes them, no Python dicts or None.
    shown = piped(cli, "flows", "show", name)
    settings = dict(line.split(None, 1) for line in shown.splitlines()[2:] if " " in line)
    assert settings["retention"].strip() == "3d"
    assert settings["retry.max_attempts"].strip() == "1"
    assert "replicas" not in settings and "queue_timeout" not in settings  # sync-only
    assert "None" not in shown and "{" not in shown
