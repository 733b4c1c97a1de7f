"""The wrk side of the harness: the Lua it writes, what it reads back, and errors as errors."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from bench.errors import BenchFailure, RunErrors

from bench import load, wrk

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="apt-get install -y wrk")

OUTPUT = """\
Running 3s test @ http://127.0.0.1:8080/hook/x
  1 threads and 64 connections
Requests/sec:  25000.00
BENCH-RESULT {"requests":75000,"duration_us":3000000,"connect":0,"read":2,"write":0,\
"status":5,"timeout":1,"p50_us":1500,"p90_us":4200,"p99_us":9800,"max_us":31000}
"""


def test_parse_reads_the_exact_figures() -> None:
    result = wrk.parse(OUTPUT)
    assert result.requests == 75000
    assert result.rate == 25000
    assert (result.latency.p50_ms, result.latency.p90_ms) == (1.5, 4.2)
    assert (result.latency.p99_ms, result.latency.max_ms) == (9.8, 31.0)
    assert (result.errors.read, result.errors.http, result.errors.timeout) == (2, 5, 1)
    assert result.errors.total == 8


def test_a_run_with_errors_is_a_failure_naming_each_kind() -> None:
    with pytest.raises(
        RunErrors, match=r"8 errors in 75000 requests \(read 2, timeout 1, HTTP >= 400 5\)"
    ):
        load.check(wrk.parse(OUTPUT), case="ingest")


def test_output_without_a_result_line_is_a_failure_quoting_wrk() -> None:
    with pytest.raises(BenchFailure, match="unable to connect"):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_lua_strings_survive_quotes_backslashes_and_non_ascii() -> None:
    assert wrk.lua_string('a"b\\c') == '"a\\034b\\092c"'
    assert wrk.lua_string("é") == '"\\195\\169"'


def test_script_sets_method_headers_body_and_unique_header(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    target = wrk.Target(
        url="http://x/",
        body=body,
        headers={"X-Hub-Signature-256": "sha256=ab"},
        unique_header="X-GitHub-Delivery",
    )
    lua = wrk.script(target, nonce="n1")
    assert 'wrk.method = "POST"' in lua
    assert 'wrk.headers["X-Hub-Signature-256"] = "sha256=ab"' in lua
    assert f'io.open("{body}", "rb")' in lua
    assert 'wrk.headers["X-GitHub-Delivery"] = string.format("%s-%d-%d", "n1"' in lua
    assert "function done(" in lua


class _Answer(BaseHTTPRequestHandler):
    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Answer]]]:
    handler = type("Handler", (_Answer,), {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", handler
    httpd.shutdown()
    httpd.server_close()


@needs_wrk
def test_real_wrk_run_counts_http_errors_and_check_refuses_it(
    server: tuple[str, type[_Answer]], tmp_path: Path
) -> None:
    url, handler = server
    handler.status = 500
    body = tmp_path / "body.json"
    body.write_bytes(b'{"a":1}')
    result = wrk.run(wrk.Target(url=url, body=body), seconds=1, workdir=tmp_path, connections=4)
    assert result.requests > 0
    assert result.errors.http == result.requests
    with pytest.raises(RunErrors, match="HTTP >= 400"):
        load.check(result, case="five hundreds")


def test_expect_refuses_a_wrong_success_status(server: tuple[str, type[_Answer]]) -> None:
    url, handler = server
    handler.status = 200
    with pytest.raises(BenchFailure, match=r"answered 200 .* expected 202"):
        load.expect(wrk.Target(url=url), status=202)
