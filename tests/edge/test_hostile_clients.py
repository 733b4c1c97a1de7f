"""The public listener against slow, stalled and greedy clients, over real sockets.

Each test starts a real gateway with its limits lowered by environment variables (seconds
instead of the defaults' tens of seconds) and plays the attacker with raw sockets, while a
normal client checks that it is still answered.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually

ECHO = ROOT / "examples" / "workers" / "echo.py"
SINK = ROOT / "tests" / "workers" / "flaky.py"

FLOWS = f"""
flows:
  - name: inbox
    mode: async
    worker: {{command: [{sys.executable}, {SINK}]}}
    max_body: 10MB
  - name: api
    mode: sync
    worker: {{command: [{sys.executable}, {ECHO}]}}
    max_body: 10MB
  - name: stream
    mode: sync
    worker: {{command: [{sys.executable}, {ECHO}]}}
    request_buffering: false
    concurrency: 2
    max_body: 10MB
"""

FAST = {
    "HOOKGATE_HEAD_TIMEOUT": "1s",
    "HOOKGATE_BODY_TIMEOUT": "1s",
    "HOOKGATE_KEEP_ALIVE": "1s",
}


def start(factory: Any, **env: str) -> GatewayProcess:
    gateway: GatewayProcess = factory(FLOWS, env={**FAST, **env})
    eventually(lambda: gateway.flow("api")["workers"]["ready"] == 1)
    return gateway


def connect(gateway: GatewayProcess, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", gateway.port), timeout=10, source_address=(source, 0)
    )
    return sock


def answer(sock: socket.socket, *, timeout: float = 10.0) -> bytes:
    """Everything the gateway sends until it closes the connection (b"" if it said nothing)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def head(
    gateway: GatewayProcess, flow: str, *, length: int | None = None, chunked: bool = False
) -> bytes:
    path = "/hook/" + gateway.flow(flow)["id"]
    lines = [f"POST {path} HTTP/1.1", "host: x"]
    if length is not None:
        lines.append(f"content-length: {length}")
    if chunked:
        lines.append("transfer-encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_connection_that_never_speaks_is_closed_after_keep_alive(gateway_factory: Any) -> None:
    gateway = start(gateway_factory)
    sock = connect(gateway)
    started = time.monotonic()
    assert answer(sock) == b""  # closed without a word
    assert time.monotonic() - started < 5


def test_a_stalled_request_line_and_a_stalled_head_get_408(gateway_factory: Any) -> None:
    gateway = start(gateway_factory)
    request = head(gateway, "inbox", length=2)
    line = connect(gateway)
    line.sendall(b"POST /hook/abc HT")
    partial = connect(gateway)
    partial.sendall(request[:-10])
    for sock in (line, partial):
        started = time.monotonic()
        reply = answer(sock)
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert b'"error":"request head not received in time"' in reply
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("chunked", [False, True], ids=["sized", "chunked"])
def test_a_stalled_body_gets_408_and_nothing_is_stored(gateway_factory: Any, chunked: bool) -> None:
    gateway = start(gateway_factory)
    if chunked:
        request = head(gateway, "inbox", chunked=True) + b"5\r\nhello\r\n"
    else:
        request = head(gateway, "inbox", length=1000) + b"x" * 10
    sock = connect(gateway)
    sock.sendall(request)
    reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert b"request body not received in time" in reply
    assert gateway.admin("GET", "/api/v1/deliveries").json()["items"] == []
    metrics = httpx.get(
        gateway.admin_base + "/metrics", headers={"authorization": "Bearer test-admin-token"}
    ).text
    assert (
        'hookgate_connections_closed_total{listener="public",reason="body_timeout"} 1.0' in metrics
    )


def test_a_body_that_trickles_below_the_minimum_rate_gets_408(gateway_factory: Any) -> None:
    gateway = start(gateway_factory, HOOKGATE_BODY_TIMEOUT="2s", HOOKGATE_BODY_MIN_RATE="1KB")
    request = head(gateway, "inbox", length=10_000)
    sock = connect(gateway)
    sock.sendall(request)
    sent = 0
    reply = b""
    sock.settimeout(0.25)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"x")  # one byte every 0.25 s: progress, but 4 bytes/s
            sent += 1
            reply = sock.recv(4096)
            if reply:
                break
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert sent < 40  # cut off after about the 2 s window, not after the 10 s the test allows


def test_a_normal_client_is_served_while_slow_drips_fill_the_listener(gateway_factory: Any) -> None:
    """With the open-file limit lowered, the listener is full of slow-drip connections; newer
    connections push out the longest-waiting ones, so a normal client is always answered."""
    gateway: GatewayProcess = gateway_factory(
        FLOWS,
        env={"HOOKGATE_HEAD_TIMEOUT": "60s", "HOOKGATE_KEEP_ALIVE": "60s"},
        prefix=["prlimit", "--nofile=512:512"],
    )
    process = psutil.Process(gateway.process.pid if gateway.process else 0)
    assert process.rlimit(psutil.RLIMIT_NOFILE) == (512, 512)
    url = gateway.hook("inbox")
    drips: list[socket.socket] = []
    statuses: list[int] = []
    try:
        # 400 drips from 40 addresses (10 each): far more than the derived cap of 240.
        for i in range(400):
            sock = connect(gateway, source=f"127.0.1.{i % 40 + 1}")
            sock.sendall(b"POST /hook/x HTTP/1.1\r\nhost: x\r\nx-a: ")
            drips.append(sock)
            if i % 20 == 0:
                statuses.append(httpx.post(url, content=b"{}", timeout=5).status_code)
        statuses += [httpx.post(url, content=b"{}", timeout=5).status_code for _ in range(50)]
        assert statuses == [202] * len(statuses)
        closed = sum(1 for sock in drips if _closed(sock))
        assert closed >= 400 - 240  # the oldest drips were pushed out
    finally:
        for sock in drips:
            sock.close()
    metrics = gateway.admin("GET", "/metrics").text
    assert 'reason="evicted"' in metrics


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(2)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_one_address_cannot_take_every_connection(gateway_factory: Any) -> None:
    gateway = start(gateway_factory, HOOKGATE_MAX_CONNECTIONS_PER_IP="5", HOOKGATE_KEEP_ALIVE="30s")
    held = [connect(gateway, source="127.0.0.2") for _ in range(5)]
    try:
        extra = connect(gateway, source="127.0.0.2")
        reply = answer(extra)
        assert reply.startswith(b"HTTP/1.1 503 "), reply
        assert b"retry-after: 1" in reply
        assert httpx.post(gateway.hook("inbox"), content=b"{}").status_code == 202
    finally:
        for sock in held:
            sock.close()


def test_stalled_large_bodies_are_spooled_not_held_in_memory(gateway_factory: Any) -> None:
    # 10 s of silence ends a body: sending 90 MB round-robin from one thread can leave one
    # socket unfed for seconds on a loaded machine, and that must not count as its silence.
    gateway = start(gateway_factory, HOOKGATE_BODY_TIMEOUT="10s")
    process = psutil.Process(gateway.process.pid if gateway.process else 0)
    before = process.memory_info().rss
    peak = [before]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # One head for all: built per socket, its admin lookups outlasted the 1 s keep-alive on a
    # loaded machine, and the last sockets were closed as idle before their head arrived.
    request = head(gateway, "inbox", length=5_000_000)
    socks = [connect(gateway) for _ in range(20)]
    chunk = b"x" * 65536
    try:
        for sock in socks:
            sock.sendall(request)
        sending = list(socks)
        for _ in range(70):  # 4.5 MB of each 5 MB body, then silence
            for sock in list(sending):
                try:
                    sock.sendall(chunk)
                except OSError:  # cut off already (a slow machine): its answer is read below
                    sending.remove(sock)
        replies = [answer(sock, timeout=30) for sock in socks]
    finally:
        sampling.set()
        sampler.join()
        for sock in socks:
            sock.close()
    others = [r[:40] for r in replies if not r.startswith(b"HTTP/1.1 408 ")]
    assert all(r.startswith(b"HTTP/1.1 408 ") for r in replies), others
    # 90 MB arrived; what stayed in memory is bounded by 256 KB a body plus parser buffers.
    assert peak[0] - before < 40 * 1024 * 1024, (before, peak)
    assert httpx.post(gateway.hook("inbox"), content=b"{}").status_code == 202


@contextlib.contextmanager
def trickling(gateway: GatewayProcess, flow: str, count: int) -> Iterator[list[bytes]]:
    """``count`` uploads sending one byte every 0.2 s until the context ends; yields the
    answers they got (filled in as they come)."""
    stop = threading.Event()
    answers: list[bytes] = []
    request = head(gateway, flow, length=100_000)
    socks = [connect(gateway) for _ in range(count)]
    for sock in socks:
        sock.sendall(request)

    def drip() -> None:
        while not stop.wait(0.2):
            for sock in list(socks):
                try:
                    sock.sendall(b"x")
                except OSError:
                    socks.remove(sock)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        stop.set()
        thread.join()
        for sock in socks:
            sock.settimeout(0.1)
            with contextlib.suppress(OSError):
                answers.append(sock.recv(4096))
            sock.close()


def test_trickling_uploads_do_not_hold_a_sync_flows_workers(gateway_factory: Any) -> None:
    gateway = start(gateway_factory, HOOKGATE_BODY_TIMEOUT="30s", HOOKGATE_BODY_MIN_RATE="1")
    url = gateway.hook("api")
    with trickling(gateway, "api", 12):  # more uploads than the flow's 8 worker slots
        time.sleep(0.5)
        statuses = [httpx.post(url, content=b"ping", timeout=5).status_code for _ in range(30)]
    assert statuses == [200] * 30


def test_without_buffering_the_body_deadline_still_frees_the_workers(gateway_factory: Any) -> None:
    """``request_buffering: false`` streams to the worker, so a trickle holds a slot, but only
    until the body deadline: then the caller gets 408 and the slot is free again."""
    gateway = start(gateway_factory, HOOKGATE_BODY_TIMEOUT="3s", HOOKGATE_BODY_MIN_RATE="1KB")
    eventually(lambda: gateway.flow("stream")["workers"]["ready"] == 1)
    url = gateway.hook("stream")
    with trickling(gateway, "stream", 2):
        time.sleep(0.3)
        busy = httpx.post(url, content=b"x" * 100_000, timeout=5).status_code
        eventually(lambda: httpx.post(url, content=b"x" * 100_000, timeout=5).status_code == 200)
    assert busy == 503  # both slots held by the trickles, until their deadline


def test_the_admin_listener_has_the_same_head_limits(gateway_factory: Any) -> None:
    gateway = start(gateway_factory)
    sock = socket.create_connection(("127.0.0.1", gateway.admin_port), timeout=10)
    sock.sendall(b"GET /api/v1/flows HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 200_000)
    reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:100]
    stalled = socket.create_connection(("127.0.0.1", gateway.admin_port), timeout=10)
    stalled.sendall(b"GET /api/v1/flows HTTP/1.1\r\nhost: x\r\n")
    assert answer(stalled).startswith(b"HTTP/1.1 408 ")


def test_an_admin_listener_open_to_other_hosts_is_warned_about(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(start=False)
    gateway.args = ["--admin-listen", f"0.0.0.0:{gateway.admin_port}"]
    gateway.start()
    assert "the admin listener is reachable from other hosts" in gateway.logs()


def test_pipelined_requests_are_all_answered_and_the_connection_then_idles_out(
    gateway_factory: Any,
) -> None:
    gateway = start(gateway_factory)
    one = head(gateway, "inbox", length=2) + b"{}"
    sock = connect(gateway)
    sock.sendall(one * 3)
    reply = answer(sock)  # read until the idle connection is closed (HOOKGATE_KEEP_ALIVE=1s)
    assert reply.count(b"HTTP/1.1 202 ") == 3, reply


def closing(request_head: bytes) -> bytes:
    """The head asking the gateway to close the connection after its answer."""
    return request_head.replace(b"host: x\r\n", b"host: x\r\nconnection: close\r\n")


def read_to_end(sock: socket.socket) -> bytes:
    """Everything until the gateway's end of stream; a reset raises (unlike ``answer``)."""
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_caller_still_uploading_when_answered_early_reads_the_whole_answer(
    gateway_factory: Any,
) -> None:
    """Most clients send the whole body before they read. When the gateway answers first (413
    for a declared size, 400 for bytes that do not parse,
    431), closing with the rest unread would reset the connection: the upload would fail and
    the answer could be lost. It half-closes and drops what still comes instead."""
    gateway = start(gateway_factory)
    oversized = head(gateway, "inbox", length=20_000_000)  # the flow's max_body is 10MB
    requests = {
        b"413": closing(oversized),
        b"400": b"NOT HTTP AT ALL\r\n\r\n",
        b"431": oversized[:-2] + b"x-big: " + b"a" * 100_000 + b"\r\n\r\n",
    }
    for status, request in requests.items():
        sock = connect(gateway)
        sock.sendall(request)
        for _ in range(16):  # 1 MB more, after the gateway has answered
            time.sleep(0.01)
            sock.sendall(b"x" * 65536)
        sock.shutdown(socket.SHUT_WR)
        reply = read_to_end(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 " + status + b" "), reply[:80]
        head_end = reply.index(b"\r\n\r\n") + 4
        length = re.search(rb"content-length: (\d+)", reply[:head_end])
        assert length is not None and len(reply) == head_end + int(length[1]), reply
        assert b'"error":' in reply[head_end:]


def test_a_caller_that_never_stops_sending_after_the_answer_is_cut_off(
    gateway_factory: Any,
) -> None:
    gateway = start(gateway_factory)
    request = closing(head(gateway, "inbox", length=20_000_000))  # answered 413 at once
    sock = connect(gateway)
    sock.sendall(request)
    started = time.monotonic()
    with pytest.raises(OSError):  # reset once the linger (2 s, then the next sweep) is over
        while time.monotonic() - started < 15:
            sock.sendall(b"x" * 65536)  # 640 KB/s: under the byte bound for 6 s
            time.sleep(0.1)
    assert time.monotonic() - started < 5


def test_a_body_sent_after_an_early_answer_leaves_the_connection_to_the_idle_deadline(
    gateway_factory: Any,
) -> None:
    gateway = start(gateway_factory)
    # No such flow: 404 before the body, and the connection is kept alive.
    request = b"POST /hook/nope HTTP/1.1\r\nhost: x\r\ncontent-length: 10000001\r\n\r\n"
    sock = connect(gateway)
    sock.sendall(request)
    sock.settimeout(10)
    assert sock.recv(65536).startswith(b"HTTP/1.1 404 ")
    sock.sendall(b"x" * 10_000_001)  # sent anyway (kept alive: read and dropped)
    started = time.monotonic()
    sock.settimeout(8)
    assert sock.recv(1) == b""  # then closed as idle (HOOKGATE_KEEP_ALIVE=1s), not held open
    assert time.monotonic() - started < 5


def test_a_body_declared_too_large_ends_the_connection_however_slowly_it_keeps_coming(
    gateway_factory: Any,
) -> None:
    """An attacker declares 100 GB on a kept-alive connection and trickles it above the
    minimum rate: the 413 says ``connection: close`` and the connection ends within the
    linger, instead of being read and dropped for as long as the trickle lasts."""
    gateway = start(gateway_factory, HOOKGATE_BODY_MIN_RATE="1KB", HOOKGATE_BODY_TIMEOUT="5s")
    sock = connect(gateway)
    sock.sendall(head(gateway, "inbox", length=100 * 10**9))
    sock.settimeout(10)
    reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:80]
    assert b"connection: close" in reply.lower()
    started = time.monotonic()
    with pytest.raises(OSError):  # the gateway closed: a reset ends the trickle
        while time.monotonic() - started < 15:
            sock.sendall(b"x" * 4096)  # 40 KB/s: well above the minimum rate
            time.sleep(0.1)
    assert time.monotonic() - started < 6
