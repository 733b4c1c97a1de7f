"""The SDK serving real processes over loopback HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from tests.worker.workerproc import HERE, PYTHON, Spawn, Worker


def sdk(target: str) -> list[str]:
    return [PYTHON, "-m", "hookgate.worker", f"apps:{target}"]


@pytest.fixture(scope="module")
def sync_worker(spawn_shared: Spawn) -> Worker:
    return spawn_shared(sdk("sync_handle"), cwd=HERE, env={"HOOKGATE_FLOW_ID": "flow-env"})


async def test_plain_function_gets_the_whole_request(sync_worker: Worker) -> None:
    async with httpx.AsyncClient(base_url=sync_worker.url) as client:
        response = await client.post(
            "/orders/7?x=1&x=2",
            content=b'{"id": 7}',
            headers=[
                ("X-Hookgate-Delivery", "d-1"),
                ("X-Hookgate-Attempt", "2"),
                ("Idempotency-Key", "k-1"),
                ("X-Tag", "a"),
                ("X-Tag", "b"),
            ],
        )
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["path"] == "/orders/7"
    assert echo["query"] == "x=1&x=2"
    assert echo["body"] == '{"id": 7}'
    assert echo["json"] == {"id": 7}
    assert echo["headers"]["x-tag"] == "a, b"
    assert (echo["flow"], echo["delivery"], echo["attempt"], echo["idempotency_key"]) == (
        "flow-env",
        "d-1",
        2,
        "k-1",
    )


async def test_flow_header_wins_over_environment(sync_worker: Worker) -> None:
    async with httpx.AsyncClient(base_url=sync_worker.url) as client:
        response = await client.get("/", headers={"X-Hookgate-Flow": "flow-header"})
    assert response.json()["flow"] == "flow-header"


@pytest.mark.parametrize(
    ("path", "status", "content_type", "body"),
    [
        ("/json?q=1", 200, "application/json", b'{"hello":"world","query":"q=1"}'),
        ("/none", 204, None, b""),
        ("/bytes", 200, "application/octet-stream", b"\x00\xff"),
        ("/text", 200, "text/plain; charset=utf-8", b"plain text"),
        ("/response", 201, None, b"made"),
    ],
)
async def test_return_values(
    sync_worker: Worker, path: str, status: int, content_type: str | None, body: bytes
) -> None:
    async with httpx.AsyncClient(base_url=sync_worker.url) as client:
        response = await client.get(path)
    assert response.status_code == status
    assert response.headers.get("content-type") == content_type
    assert response.content == body
    assert "server" not in response.headers


async def test_response_headers_are_sent(sync_worker: Worker) -> None:
    async with httpx.AsyncClient(base_url=sync_worker.url) as client:
        response = await client.get("/response")
    assert response.headers["x-made"] == "yes"


@pytest.mark.parametrize("path", ["/boom", "/wrong"])
async def test_a_failing_handler_answers_500_and_the_worker_lives_on(
    sync_worker: Worker, path: str
) -> None:
    async with httpx.AsyncClient(base_url=sync_worker.url) as client:
        assert (await client.get(path)).status_code == 500
        assert (await client.get("/text")).status_code == 200
    assert sync_worker.process.poll() is None


async def test_async_function(spawn: Spawn) -> None:
    worker = spawn(sdk("async_handle"), cwd=HERE)
    async with httpx.AsyncClient(base_url=worker.url) as client:
        response = await client.put("/a/b", content=b"hello")
    assert response.json() == {"async": True, "path": "/a/b", "body": "hello"}


async def test_raw_asgi_app(spawn: Spawn) -> None:
    worker = spawn(sdk("asgi_app"), cwd=HERE)
    async with httpx.AsyncClient(base_url=worker.url) as client:
        response = await client.delete("/x")
    assert response.text == "raw asgi DELETE /x"


async def test_starlette_app(spawn: Spawn) -> None:
    worker = spawn(sdk("starlette_app"), cwd=HERE)
    async with httpx.AsyncClient(base_url=worker.url) as client:
        response = await client.get("/hello/flow")
    assert response.text == "starlette flow"


async def test_sigterm_finishes_the_request_in_flight_then_exits_0(
    spawn: Spawn, tmp_path: Path
) -> None:
    mark = tmp_path / "in-flight"
    worker = spawn(sdk("sync_handle"), cwd=HERE, env={"MARK_FILE": str(mark)})
    async with httpx.AsyncClient(base_url=worker.url, timeout=15) as client:
        slow = asyncio.create_task(client.get("/slow"))
        while not mark.exists():
            await asyncio.sleep(0.02)
        worker.process.send_signal(signal.SIGTERM)
        response = await slow
    assert response.status_code == 200
    assert response.text == "slow done"
    assert await asyncio.to_thread(worker.process.wait, 15) == 0


def test_idle_worker_exits_0_on_sigterm_and_sigint(spawn: Spawn) -> None:
    assert spawn(sdk("async_handle"), cwd=HERE).stop(signal.SIGTERM) == 0
    assert spawn(sdk("async_handle"), cwd=HERE).stop(signal.SIGINT) == 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["apps:async_handle"], {"PORT": ""}, "no port to listen on: set $PORT or pass port="),
        (["apps:async_handle"], {"PORT": "eighty"}, "$PORT must be a port number"),
        (["apps:missing", "--port", "1"], {}, 'Attribute "missing" not found in module "apps"'),
        (["nowhere:app", "--port", "1"], {}, 'Could not import module "nowhere"'),
        (["apps:two_arguments", "--port", "1"], {}, "expected an ASGI app"),
    ],
)
def test_bad_invocations_exit_2_with_a_clear_message(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "hookgate.worker", *args],
        cwd=HERE,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr
