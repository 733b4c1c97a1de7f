"""``hookgate tail FLOW`` against a running gateway: requests and delivery outcomes, live."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.cli.conftest import Cli
from tests.conftest import ROOT, GatewayProcess

from hookgate.cli import tail as tail_cli

FLAKY = ROOT / "tests" / "workers" / "flaky.py"


class Tail:
    """``hookgate tail`` as a process whose output lines can be awaited one pattern at a time."""

    def __init__(self, cli: Cli, *args: str) -> None:
        command = [sys.executable, "-m", "hookgate", "--admin-url", cli.gateway.admin_base]
        self.process = subprocess.Popen(
            [*command, "tail", *args],
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, *fragments: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if all(fragment in line for fragment in fragments):
                return line
        raise AssertionError(f"no line with {fragments}; saw: {self.seen}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(10)


@pytest.fixture
def orders(gateway: GatewayProcess, names: tuple[str, str]) -> Iterator[str]:
    name = names[0]
    spec = {"name": name, "mode": "async", "worker": {"command": [sys.executable, str(FLAKY)]}}
    assert gateway.admin("POST", "/api/v1/flows", json=spec).status_code == 201
    yield name
    gateway.admin("DELETE", f"/api/v1/flows/{name}")


def test_tail_shows_requests_and_delivery_outcomes(
    cli: Cli, gateway: GatewayProcess, orders: str
) -> None:
    tail = Tail(cli, orders)
    try:
        tail.wait_for("Tailing flow", orders)
        answer = httpx.post(gateway.hook(orders) + "/sub/path?status=500", content=b"x")
        request_id = answer.json()["requestId"]
        assert tail.wait_for("request", "POST /sub/path", "202", request_id)
        assert tail.wait_for("delivery", "attempt 1", "retry 500")
        assert tail.wait_for("delivery", "attempt 2", "retry 500")
        ok = httpx.post(gateway.hook(orders), content=b"y").json()["requestId"]
        assert tail.wait_for("request", "202", ok)
        assert tail.wait_for("delivery", "attempt 1", "done 200")
    finally:
        code = tail.stop()
    assert code == 0
    assert tail.wait_for("Stopped.")


def test_tail_json_lines(cli: Cli, gateway: GatewayProcess, orders: str) -> None:
    tail = Tail(cli, orders, "--json")
    try:
        tail.wait_for("Tailing flow")
        httpx.post(gateway.hook(orders) + "/j", content=b"x")
        line = tail.wait_for('"kind": "request"')
        assert '"path": "/j"' in line and '"status": 202' in line
    finally:
        tail.stop()


def test_tail_answers_shows_the_start_of_each_answer(
    cli: Cli, gateway: GatewayProcess, orders: str
) -> None:
    tail = Tail(cli, orders, "--answers")
    try:
        tail.wait_for("Tailing flow")
        httpx.post(gateway.hook(orders) + "/answered?status=422", content=b"x")
        tail.wait_for("delivery", "attempt 1", "dead 422")
        # flaky.py answers {"pid": …, "path": …, "attempt": …}
        assert tail.wait_for('"path": "/answered"').startswith("    {")
    finally:
        tail.stop()


def test_tail_of_an_unknown_flow_fails_clearly(cli: Cli) -> None:
    assert "no flow named or with id 'nosuch'" in cli.fails("tail", "nosuch")


def test_a_handshake_is_one_line_with_its_provider_and_outcome() -> None:
    event = {
        "kind": "handshake",
        "at": time.time(),
        "provider": "meta",
        "outcome": "bad-credentials",
        "status": 403,
        "requestId": "r-1",
    }
    text = tail_cli.line(event)
    assert "handshake" in text and "meta" in text and "bad-credentials 403" in text
    assert "r-1" in text
