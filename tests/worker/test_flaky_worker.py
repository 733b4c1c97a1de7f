"""The knobs of tests/workers/flaky.py, which other suites use to break deliveries on purpose."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from tests.worker.workerproc import PYTHON, REPO, Spawn, Worker

FLAKY = [PYTHON, str(REPO / "tests" / "workers" / "flaky.py")]


@pytest.fixture(scope="module")
def flaky(spawn_shared: Spawn) -> Worker:
    return spawn_shared(FLAKY)


async def test_plain_answer(flaky: Worker) -> None:
    async with httpx.AsyncClient(base_url=flaky.url) as client:
        response = await client.post("/a/b", content=b"x", headers={"X-Hookgate-Attempt": "3"})
    assert response.status_code == 200
    assert response.json() == {"pid": flaky.process.pid, "path": "/a/b", "attempt": 3}


async def test_status_and_retry_after_from_the_query(flaky: Worker) -> None:
    async with httpx.AsyncClient(base_url=flaky.url) as client:
        response = await client.get("/", params={"status": "429", "retry_after": "7"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"


async def test_keep_alive_serves_several_requests_on_one_connection(flaky: Worker) -> None:
    async with httpx.AsyncClient(base_url=flaky.url) as client:
        statuses = [(await client.get("/", params={"status": f"20{s}"})).status_code for s in "123"]
    assert statuses == [201, 202, 203]


async def test_fail_attempts_misbehaves_only_on_early_attempts(flaky: Worker) -> None:
    params = {"status": "500", "fail_attempts": "2"}
    async with httpx.AsyncClient(base_url=flaky.url) as client:
        statuses = [
            (
                await client.get("/", params=params, headers={"X-Hookgate-Attempt": str(n)})
            ).status_code
            for n in (1, 2, 3)
        ]
    assert statuses == [500, 500, 200]


@pytest.mark.parametrize("action", ["close", "garbage"])
async def test_broken_answers(flaky: Worker, action: str) -> None:
    async with httpx.AsyncClient(base_url=flaky.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/", params={"action": action})
        assert (await client.get("/")).status_code == 200


async def test_sleep_misses_a_client_timeout(flaky: Worker) -> None:
    async with httpx.AsyncClient(base_url=flaky.url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/", params={"sleep": "30"})


async def test_record_file_and_crash(spawn: Spawn, tmp_path: Path) -> None:
    record = tmp_path / "received.jsonl"
    worker = spawn(FLAKY, env={"RECORD_FILE": str(record), "FLAKY_STATUS": "202"})
    async with httpx.AsyncClient(base_url=worker.url) as client:
        first = await client.post("/one?x=1", content=b"\x00\x01", headers={"X-Tag": "t"})
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/two", params={"action": "crash"}, content=b"last words")
    assert first.status_code == 202
    assert worker.process.wait(timeout=15) == 1
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(r["method"], r["path"], r["query"]) for r in lines] == [
        ("POST", "/one", "x=1"),
        ("POST", "/two", "action=crash"),
    ]
    assert base64.b64decode(lines[0]["body"]) == b"\x00\x01"
    assert base64.b64decode(lines[1]["body"]) == b"last words"
    assert lines[0]["headers"]["x-tag"] == "t"
    assert {r["pid"] for r in lines} == {worker.process.pid}


def test_exit_code_at_start() -> None:
    result = subprocess.run(FLAKY, env={"FLAKY_EXIT_CODE": "3", "PORT": "1"}, timeout=30)
    assert result.returncode == 3


def test_start_delay_keeps_the_port_closed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        FLAKY, env={**os.environ, "PORT": str(port), "FLAKY_START_DELAY": "60"}
    )
    try:
        time.sleep(0.5)
        assert process.poll() is None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
    finally:
        process.kill()
        process.wait()


async def test_sigterm_finishes_the_request_in_flight_then_exits_0(
    spawn: Spawn, tmp_path: Path
) -> None:
    record = tmp_path / "received.jsonl"
    worker = spawn(FLAKY, env={"RECORD_FILE": str(record)})
    async with httpx.AsyncClient(base_url=worker.url, timeout=15) as client:
        slow = asyncio.create_task(client.get("/", params={"sleep": "1"}))
        while not record.exists():
            await asyncio.sleep(0.02)
        worker.process.send_signal(signal.SIGTERM)
        assert (await slow).status_code == 200
    assert await asyncio.to_thread(worker.process.wait, 15) == 0


def test_ignore_sigterm_needs_sigkill(spawn: Spawn) -> None:
    worker = spawn(FLAKY, env={"FLAKY_IGNORE_SIGTERM": "1"})
    worker.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert worker.process.poll() is None
    assert httpx.get(worker.url).status_code == 200
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
