"""The example workers in examples/workers/, in Python and in Node.js."""

from __future__ import annotations

import json
import shutil
import signal

import httpx
import pytest
from tests.worker.workerproc import PYTHON, REPO, Spawn

EXAMPLES = REPO / "examples" / "workers"
NODE = shutil.which("node")
HOOKGATE_HEADERS = {
    "X-Hookgate-Flow": "flow-1",
    "X-Hookgate-Delivery": "d-1",
    "X-Hookgate-Attempt": "2",
    "Idempotency-Key": "k-1",
}


def echo_command(kind: str) -> list[str]:
    if kind == "node":
        if NODE is None:
            pytest.skip("node is not installed: the Node.js echo example cannot run")
        return [NODE, str(EXAMPLES / "node" / "echo.js")]
    if kind == "sdk-module":
        return [PYTHON, "-m", "hookgate.worker", "echo:handle"]
    return [PYTHON, str(EXAMPLES / "echo.py")]


@pytest.fixture(params=["python", "sdk-module", "node"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_echo_answers_with_what_it_received(spawn: Spawn, kind: str) -> None:
    worker = spawn(echo_command(kind), cwd=EXAMPLES)
    async with httpx.AsyncClient(base_url=worker.url) as client:
        response = await client.post(
            "/sub/path?a=1", content="héllo".encode(), headers=HOOKGATE_HEADERS
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["path"] == "/sub/path"
    assert echo["query"] == "a=1"
    assert echo["body"] == "héllo"
    assert echo["headers"]["idempotency-key"] == "k-1"
    assert (echo["flow"], echo["delivery"], echo["attempt"]) == ("flow-1", "d-1", 2)
    assert worker.stop() == 0


async def test_echo_flow_comes_from_the_environment(spawn: Spawn, kind: str) -> None:
    worker = spawn(echo_command(kind), cwd=EXAMPLES, env={"HOOKGATE_FLOW_ID": "flow-env"})
    async with httpx.AsyncClient(base_url=worker.url) as client:
        echo = (await client.get("/")).json()
    assert (echo["flow"], echo["delivery"], echo["attempt"], echo["body"]) == (
        "flow-env",
        None,
        None,
        "",
    )


async def test_echo_status_makes_it_fail_on_purpose(spawn: Spawn, kind: str) -> None:
    worker = spawn(echo_command(kind), cwd=EXAMPLES, env={"ECHO_STATUS": "503"})
    async with httpx.AsyncClient(base_url=worker.url) as client:
        response = await client.get("/x")
    assert response.status_code == 503
    assert response.json()["path"] == "/x"


async def test_echo_delay_makes_it_miss_a_timeout(spawn: Spawn, kind: str) -> None:
    worker = spawn(echo_command(kind), cwd=EXAMPLES, env={"ECHO_DELAY": "30"})
    async with httpx.AsyncClient(base_url=worker.url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/")


async def test_orders_logs_each_order_and_refuses_non_json(spawn: Spawn) -> None:
    worker = spawn([PYTHON, str(EXAMPLES / "orders.py")], cwd=EXAMPLES)
    async with httpx.AsyncClient(base_url=worker.url) as client:
        taken = await client.post("/", json={"id": "o-1"}, headers=HOOKGATE_HEADERS)
        refused = await client.post("/", content=b"<order/>")
    assert (taken.status_code, taken.json()) == (200, {"accepted": True})
    assert refused.status_code == 400
    assert worker.stop(signal.SIGTERM) == 0
    logged = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    assert logged == [{"order": "o-1", "delivery": "d-1", "attempt": 2, "idempotency_key": "k-1"}]
