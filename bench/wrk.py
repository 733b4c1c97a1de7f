"""Load with wrk: a generated Lua script sets the POST and reports exact figures as one JSON line.

wrk's own text output rounds latencies and omits p90 without ``--latency``; its Lua ``done``
hook sees the full histogram, so the script prints ``BENCH-RESULT {json}`` and we parse that.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import msgspec

from bench.errors import BenchFailure
from bench.results import Errors, Latency, Load
from bench.tools import require

MARKER = "BENCH-RESULT "

_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    "MARKER", summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
""".replace("MARKER", MARKER)


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """What every request of a run sends: the body is read from a file by the Lua script."""

    url: str
    method: str = "POST"
    body: Path | None = None
    headers: dict[str, str] = {}
    unique_header: str | None = None
    """A header given a value never sent before on every request (a provider's delivery id)."""


class _Report(msgspec.Struct, frozen=True):
    requests: int
    duration_us: int
    connect: int
    read: int
    write: int
    status: int
    timeout: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int


def lua_string(text: str) -> str:
    """A Lua string literal for any text: every byte outside printable ASCII is ``\\ddd``."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\' or not 32 <= byte < 127:
            out.append(f"\\{byte:03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


_UNIQUE = """
local thread_number = 0
function setup(thread)
  thread_number = thread_number + 1
  thread:set("thread_id", thread_number)
end
local sent = 0
function request()
  sent = sent + 1
  wrk.headers[HEADER] = string.format("%s-%d-%d", NONCE, thread_id or 0, sent)
  return wrk.format()
end
"""


def script(target: Target, *, nonce: str = "") -> str:
    """The Lua for ``target``; ``nonce`` keeps unique header values apart between runs."""
    lines = [f"wrk.method = {lua_string(target.method)}"]
    for name, value in target.headers.items():
        lines.append(f"wrk.headers[{lua_string(name)}] = {lua_string(value)}")
    if target.body is not None:
        lines += [
            f'local file = assert(io.open({lua_string(str(target.body))}, "rb"))',
            'wrk.body = file:read("*a")',
            "file:close()",
        ]
    if target.unique_header is not None:
        lines.append(
            _UNIQUE.replace("HEADER", lua_string(target.unique_header)).replace(
                "NONCE", lua_string(nonce)
            )
        )
    return "\n".join(lines) + "\n" + _DONE


def parse(output: str) -> Load:
    """The :class:`Load` in wrk's output; :class:`BenchFailure` when wrk printed none."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            try:
                report = msgspec.convert(json.loads(line[len(MARKER) :]), _Report)
            except (ValueError, msgspec.ValidationError) as exc:
                raise BenchFailure(f"wrk printed an unreadable result line: {line!r}") from exc
            return Load(
                requests=report.requests,
                seconds=report.duration_us / 1e6,
                latency=Latency(
                    p50_ms=report.p50_us / 1000,
                    p90_ms=report.p90_us / 1000,
                    p99_ms=report.p99_us / 1000,
                    max_ms=report.max_us / 1000,
                ),
                errors=Errors(
                    connect=report.connect,
                    read=report.read,
                    write=report.write,
                    timeout=report.timeout,
                    http=report.status,
                ),
            )
    tail = "\n".join(output.strip().splitlines()[-5:])
    raise BenchFailure(f"wrk printed no result; its output ended with:\n{tail}")


def run(
    target: Target,
    *,
    seconds: float,
    workdir: Path,
    threads: int = 1,
    connections: int = 64,
    timeout_s: float = 5.0,
) -> Load:
    """Run wrk against ``target`` for ``seconds`` (whole seconds, at least 1)."""
    wrk = require("wrk")
    lua = workdir / "wrk.lua"
    lua.write_text(script(target, nonce=secrets.token_hex(4)))
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(lua),
        target.url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise BenchFailure(f"wrk exited with {done.returncode}: {output.strip()[-500:]}")
    return parse(output)
