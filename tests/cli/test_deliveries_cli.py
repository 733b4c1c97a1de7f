"""``hookgate deliveries list|show|replay`` against a running gateway."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
from tests.cli.conftest import Cli, entry, flow_file
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually

FLAKY = f"[{sys.executable}, {ROOT / 'tests' / 'workers' / 'flaky.py'}]"


def test_list_show_and_replay(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    worked, parked = names
    extra = "    retry: {max_attempts: 1}\n    idle_timeout: 1s\n"
    path = flow_file(tmp_path / "f.yaml", entry(worked, command=FLAKY, extra=extra), entry(parked))
    cli.ok("flows", "apply", "-f", str(path))
    worked_url, parked_url = gateway.flow(worked)["url"], gateway.flow(parked)["url"]
    done_id = httpx.post(worked_url, content=b"fine").json()["requestId"]
    dead_id = httpx.post(worked_url + "?status=422", content=b"refused").json()["requestId"]
    queued_id = httpx.post(
        parked_url + "/a/b?c=d", content=b"caf\xc3\xa9", headers={"x-request-id": "cli-queued"}
    ).json()["requestId"]

    def by_status(flow: str, status: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = cli.json(
            "deliveries", "list", "--flow", flow, "--status", status
        )["items"]
        return items

    (dead,) = eventually(lambda: by_status(worked, "dead"), timeout=20)
    (done,) = eventually(lambda: by_status(worked, "done"), timeout=20)
    assert (dead["requestId"], done["requestId"]) == (dead_id, done_id)
    (queued,) = by_status(parked, "queued")
    assert queued["requestId"] == queued_id == "cli-queued"
    assert by_status(parked, "dead") == []

    table = cli.ok("deliveries", "list", "--flow", worked, "--status", "dead")
    assert dead["id"] in table and "HTTP 422" in table and "dead" in table
    assert "DESTINATION" in table and "worker" in table

    shown = cli.json("deliveries", "show", queued["id"])
    assert shown["body"] == "café"
    assert (shown["method"], shown["path"], shown["query"]) == ("POST", "/a/b", "c=d")
    text = cli.ok("deliveries", "show", dead["id"])
    assert "refused" in text  # the body
    assert "422" in text  # the attempt
    assert dead_id in text
    assert "destination" in text and "worker" in text

    assert cli.json("deliveries", "replay", dead["id"]) == {"replayed": 1}
    eventually(lambda: len(cli.json("deliveries", "show", dead["id"])["history"]) == 2, timeout=20)
    assert "1 deliveries queued again" in cli.ok("deliveries", "replay", "--flow", worked)


def test_paging_with_limit_and_cursor(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    parked, _ = names
    cli.ok("flows", "apply", "-f", str(flow_file(tmp_path / "f.yaml", entry(parked))))
    url = gateway.flow(parked)["url"]
    sent = [httpx.post(url, content=b"x").json()["requestId"] for _ in range(5)]
    first = cli.json("deliveries", "list", "--flow", parked, "--limit", "3")
    assert first["cursor"]
    rest = cli.json(
        "deliveries", "list", "--flow", parked, "--limit", "3", "--cursor", first["cursor"]
    )
    assert rest["cursor"] is None
    got = [d["requestId"] for d in first["items"] + rest["items"]]
    assert got == list(reversed(sent))
    assert f"more: --cursor {first['cursor']}" in cli.ok(
        "deliveries", "list", "--flow", parked, "--limit", "3"
    )
