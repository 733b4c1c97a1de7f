"""Sync flows end to end: always-running replicas behind the gateway's streaming proxy."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually, recorded

FLAKY = ROOT / "tests" / "workers" / "flaky.py"
ECHO = ROOT / "examples" / "workers" / "echo.py"


def sync_flow(*, command: Path = ECHO, replicas: int = 2, extra: str = "", env: str = "") -> str:
    return f"""
flows:
  - name: api
    mode: sync
    worker:
      command: [{sys.executable}, {command}]
      env: {{X: "1"{env}}}
    replicas: {replicas}
    timeout: 2s
{extra}
"""


def ready(gateway: GatewayProcess, count: int) -> None:
    eventually(lambda: gateway.flow("api")["workers"]["ready"] == count)


def test_the_caller_gets_the_flows_answer_in_the_contract_shape(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(sync_flow())
    ready(gateway, 2)
    answer = httpx.post(
        gateway.hook("api") + "/orders/7?x=1",
        content=b"hello",
        headers={"x-request-id": "rid-1", "x-custom": "v"},
    )
    assert answer.status_code == 200
    echo = answer.json()
    assert echo["method"] == "POST"
    assert echo["path"] == "/orders/7"
    assert echo["query"] == "x=1"
    assert echo["body"] == "hello"
    headers = {k.lower(): v for k, v in echo["headers"].items()}
    assert headers["x-request-id"] == "rid-1"
    assert headers["x-hookgate-flow"] == gateway.flow("api")["id"]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{gateway.port}"
    assert headers["x-custom"] == "v"
    assert answer.headers["x-request-id"] == "rid-1"


def test_worker_status_and_headers_pass_through(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(
        sync_flow(command=FLAKY, replicas=1, env=", FLAKY_STATUS: '418'")
    )
    ready(gateway, 1)
    answer = httpx.get(gateway.hook("api"))
    assert answer.status_code == 418
    assert answer.json()["pid"]


def test_slow_worker_gives_504_at_timeout(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(sync_flow(command=FLAKY, replicas=1))
    ready(gateway, 1)
    started = time.monotonic()
    answer = httpx.get(gateway.hook("api") + "?sleep=5", timeout=10)
    assert answer.status_code == 504
    assert 1.9 <= time.monotonic() - started < 5
    assert answer.json()["error"] == "the flow did not answer within 2s"
    assert "requestId" in answer.json()


@pytest.mark.parametrize("action", ["crash", "close", "garbage", "endless-head"])
def test_worker_failing_mid_request_gives_502(gateway_factory: Any, action: str) -> None:
    gateway: GatewayProcess = gateway_factory(sync_flow(command=FLAKY, replicas=1))
    ready(gateway, 1)
    answer = httpx.get(gateway.hook("api") + f"?action={action}")
    assert answer.status_code == 502
    assert answer.json()["error"].startswith("the flow's worker failed")
    if action == "crash":
        status = eventually(lambda: (f := gateway.flow("api")["workers"])["restarts"] and f)
        assert "exited with code 1" in status["last_exit"]
        ready(gateway, 1)
    assert httpx.get(gateway.hook("api")).status_code == 200


def test_overload_waits_then_503_with_retry_after(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(
        sync_flow(command=FLAKY, replicas=1, extra="    concurrency: 2\n    queue_timeout: 300ms")
    )
    ready(gateway, 1)
    url = gateway.hook("api")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: httpx.get(url + "?sleep=1", timeout=10), range(6)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) == 2
    assert codes.count(503) == 4
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["retry-after"] == "1"


def test_64_callers_on_a_default_flow_all_get_answers(gateway_factory: Any) -> None:
    # Every default (1 replica, concurrency auto starting at 16 in flight, queue_timeout 1s):
    # 64 callers at once, each answered after 50 ms, means at most 48 wait in line, none longer
    # than ~4 x 50 ms (less once the limit has risen).
    gateway: GatewayProcess = gateway_factory(
        f"""
flows:
  - name: api
    mode: sync
    worker: {{command: [{sys.executable}, {FLAKY}]}}
"""
    )
    ready(gateway, 1)
    url = gateway.hook("api") + "?sleep=0.05"
    start = threading.Barrier(64)

    def caller(_: int) -> list[int]:
        with httpx.Client(timeout=10) as client:
            start.wait()
            return [client.post(url, content=b"x").status_code for _ in range(3)]

    with ThreadPoolExecutor(64) as pool:
        codes = [code for codes in pool.map(caller, range(64)) for code in codes]
    assert codes == [200] * 64 * 3, sorted(set(codes))


def test_sequential_callers_are_shared_by_idle_replicas(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(sync_flow(command=FLAKY, replicas=2))
    ready(gateway, 2)
    with httpx.Client(timeout=10) as client:
        pids = [client.get(gateway.hook("api")).json()["pid"] for _ in range(10)]
    assert sorted(collections.Counter(pids).values()) == [5, 5]


def test_callers_past_the_gateways_waiter_bound_get_503(
    gateway_factory: Any, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    gateway: GatewayProcess = gateway_factory(
        sync_flow(
            command=FLAKY,
            replicas=1,
            extra="    concurrency: 1\n    queue_timeout: 10s",
            env=f", RECORD_FILE: '{record}'",
        ),
        env={"HOOKGATE_MAX_SYNC_WAITERS": "2"},
    )
    ready(gateway, 1)
    url = gateway.hook("api")
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(httpx.get, url + "?sleep=1.5", timeout=20)
        eventually(lambda: recorded(record))
        # The slot is taken: two of the next three callers wait (well within queue_timeout),
        # the third finds the line full.
        later = list(pool.map(lambda _: httpx.get(url + "?sleep=0.5", timeout=20), range(3)))
    assert first.result().status_code == 200
    assert sorted(a.status_code for a in later) == [200, 200, 503]
    refused = next(a for a in later if a.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "no worker available, retry later"


def test_a_caller_waits_for_a_replica_that_is_restarting(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(
        sync_flow(
            command=FLAKY,
            replicas=1,
            extra="    queue_timeout: 20s",
            env=", FLAKY_START_DELAY: '1'",
        )
    )
    ready(gateway, 1)
    url = gateway.hook("api")
    victim = httpx.get(url).json()["pid"]
    os.kill(victim, signal.SIGKILL)
    ready(gateway, 0)
    # No worker is ready (the new one takes a second to listen): the caller waits for it.
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["pid"] != victim


def test_a_bad_waiter_bound_is_refused_at_start(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(
        sync_flow(replicas=1), start=False, env={"HOOKGATE_MAX_SYNC_WAITERS": "lots"}
    )
    done = subprocess.run(
        gateway.command(), env=gateway.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "HOOKGATE_MAX_SYNC_WAITERS must be a whole number ≥ 0, got 'lots'" in done.stderr


def test_stopped_flow_has_no_workers_and_answers_404(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(sync_flow(replicas=1))
    ready(gateway, 1)
    url = gateway.hook("api")
    gateway.admin("POST", "/api/v1/flows/api/stop")
    ready(gateway, 0)
    assert httpx.get(url).status_code == 404
    gateway.admin("POST", "/api/v1/flows/api/start")
    ready(gateway, 1)
    assert httpx.get(url).status_code == 200


def test_streaming_upload_and_download(gateway_factory: Any, tmp_path: Path) -> None:
    worker = tmp_path / "stream_worker.py"
    worker.write_text(STREAM_WORKER)
    gateway: GatewayProcess = gateway_factory(
        sync_flow(command=worker, replicas=1, extra="    max_body: 100MB")
    )
    ready(gateway, 1)
    url = gateway.hook("api")
    size = 64 * 1024 * 1024

    def upload() -> Any:
        for _ in range(size // 65536):
            yield b"z" * 65536

    answer = httpx.post(url + "/upload", content=upload(), timeout=60)
    assert answer.status_code == 200
    assert answer.json() == {"received": size}
    # A worker may answer before it has read the upload: every byte still reaches it.
    answer = httpx.post(url + "/early", content=upload(), timeout=60)
    assert answer.status_code == 200
    assert answer.json() == {"received": size}

    received = 0
    first_chunk_at = None
    started = time.monotonic()
    with httpx.stream("GET", url + "/events", timeout=30) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"] == "text/event-stream"
        for chunk in stream.iter_raw():
            if first_chunk_at is None:
                first_chunk_at = time.monotonic() - started
            received += len(chunk)
    # The worker sends one event at once, then waits 1.5 s before the rest: the first
    # event must reach the caller before the stream ends (it is not buffered).
    assert first_chunk_at is not None and first_chunk_at < 1.4
    assert received == len(b"data: 0\n\n") * 3


def test_caller_disconnect_cancels_the_worker_request(gateway_factory: Any, tmp_path: Path) -> None:
    worker = tmp_path / "stream_worker.py"
    worker.write_text(STREAM_WORKER)
    marker = tmp_path / "cancelled"
    gateway: GatewayProcess = gateway_factory(
        sync_flow(command=worker, replicas=1, env=f", MARKER: '{marker}'")
    )
    ready(gateway, 1)
    url = gateway.hook("api")
    with httpx.stream("GET", url + "/forever", timeout=30) as stream:
        iterator = stream.iter_raw()
        assert next(iterator).startswith(b"data:")
    eventually(marker.exists, timeout=10)
    assert httpx.get(url + "/events").status_code == 200


def test_replica_crash_under_load_fails_only_its_inflight_requests(
    gateway_factory: Any, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    gateway: GatewayProcess = gateway_factory(
        sync_flow(command=FLAKY, replicas=2, env=f", RECORD_FILE: '{record}'")
    )
    ready(gateway, 2)
    url = gateway.hook("api")
    stop = threading.Event()
    results: list[int] = []

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                results.append(client.get(url + "?sleep=0.01").status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    eventually(lambda: len(results) > 50)
    victim = recorded(record)[-1]["pid"]
    os.kill(victim, signal.SIGKILL)
    eventually(lambda: gateway.flow("api")["workers"]["restarts"] >= 1)
    ready(gateway, 2)
    before = len(results)
    eventually(lambda: len(results) > before + 50)
    stop.set()
    for thread in threads:
        thread.join()
    failures = [code for code in results if code != 200]
    assert len(failures) <= 4, failures
    assert set(failures) <= {502, 503}


def test_rolling_update_under_load_has_no_errors(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(sync_flow(command=FLAKY, replicas=2))
    ready(gateway, 2)
    url = gateway.hook("api")
    stop = threading.Event()
    results: list[tuple[int, int]] = []

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                answer = client.post(url + "?sleep=0.005", content=b"x")
                pid = answer.json()["pid"] if answer.status_code == 200 else 0
                results.append((answer.status_code, pid))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    eventually(lambda: len(results) > 50)
    old = {pid for _, pid in results}
    assert len(old) == 2
    spec = gateway.flow("api")["spec"]
    spec["worker"]["env"]["X"] = "2"
    assert gateway.admin("PUT", "/api/v1/flows/api", json=spec).json()["outcome"] == "updated"
    eventually(lambda: all(not _alive(pid) for pid in old), timeout=30)
    before = len(results)
    eventually(lambda: len(results) > before + 50)
    stop.set()
    for thread in threads:
        thread.join()
    assert {code for code, _ in results} == {200}, [c for c, _ in results if c != 200][:5]
    new = {pid for _, pid in results[before:]}
    assert len(new) == 2 and not new & old


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


def test_header_flood_gets_431_and_the_gateway_keeps_serving(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(sync_flow(replicas=1))
    ready(gateway, 1)
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        request = b"GET /hook/x HTTP/1.1\r\nHost: a\r\n" + b"X-A: " + b"b" * 200_000 + b"\r\n\r\n"
        sock.sendall(request)
        answer = sock.recv(100)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert httpx.get(gateway.hook("api")).status_code == 200


STREAM_WORKER = """
import asyncio, os, sys
from hookgate.worker import serve

async def received(receive):  # the upload's size, as JSON
    total = 0
    while True:
        message = await receive()
        total += len(message.get("body", b""))
        if not message.get("more_body"):
            return ('{"received": %d}' % total).encode()

async def app(scope, receive, send):
    path = scope["path"]
    if path == "/early":
        # The answer begins before the upload is read: a streamed answer, then the count.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await send({"type": "http.response.body", "body": await received(receive)})
        return
    if path == "/upload":
        body = await received(receive)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    if path == "/events":
        await send({"type": "http.response.body", "body": b"data: 0\\n\\n", "more_body": True})
        await asyncio.sleep(1.5)
        await send({"type": "http.response.body", "body": b"data: 0\\n\\n" * 2})
        return
    async def hangup():
        while (await receive())["type"] != "http.disconnect":
            pass

    gone = asyncio.ensure_future(hangup())
    try:
        while not gone.done():
            await send({"type": "http.response.body", "body": b"data: 1\\n\\n", "more_body": True})
            await asyncio.sleep(0.1)
    except OSError:
        pass
    open(os.environ["MARKER"], "w").write("cancelled")

serve(app)
"""


def test_too_many_headers_get_431(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(sync_flow(replicas=1))
    headers = {f"x-h{i}": "v" for i in range(150)}
    answer = httpx.get(gateway.hook("api"), headers=headers)
    assert answer.status_code == 431
    assert answer.json()["error"] == "request header fields too large"


def test_streamed_upload_over_max_body_gets_413(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(sync_flow(replicas=1, extra="    max_body: 100"))
    ready(gateway, 1)

    def chunks() -> Any:
        for _ in range(50):
            yield b"x" * 100

    answer = httpx.post(gateway.hook("api"), content=chunks())
    assert answer.status_code == 413
    assert answer.json()["error"] == "body larger than 100 bytes"
    assert httpx.post(gateway.hook("api"), content=b"x" * 100).status_code == 200


def test_path_encoding_and_callers_idempotency_key_reach_the_worker(
    gateway_factory: Any,
) -> None:
    gateway: GatewayProcess = gateway_factory(sync_flow(replicas=1))
    ready(gateway, 1)
    answer = httpx.get(
        gateway.hook("api") + "/a%2Fb/c?q=%2F&r=1", headers={"idempotency-key": "caller-key"}
    )
    echo = answer.json()
    assert echo["path"] in ("/a%2Fb/c", "/a/b/c")
    assert echo["query"] == "q=%2F&r=1"
    assert echo["headers"]["idempotency-key"] == "caller-key"


def test_workers_do_not_inherit_the_gateways_secrets(gateway_factory: Any, tmp_path: Path) -> None:
    worker = tmp_path / "env_worker.py"
    worker.write_text(
        "import os\nfrom hookgate.worker import serve\n"
        "serve(lambda request: {k: v for k, v in os.environ.items()})\n"
    )
    gateway: GatewayProcess = gateway_factory(
        sync_flow(command=worker, replicas=1), env={"GATEWAY_ONLY_SECRET": "s3cret"}
    )
    ready(gateway, 1)
    env = httpx.get(gateway.hook("api")).json()
    assert "GATEWAY_ONLY_SECRET" not in env
    assert "HOOKGATE_ADMIN_TOKEN" not in env
    assert env["X"] == "1"
    assert env["HOOKGATE_MODE"] == "sync"
    assert env["HOOKGATE_FLOW_ID"] == gateway.flow("api")["id"]
