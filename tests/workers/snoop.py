"""A worker that tries to take the gateway's secrets, for ``tests/e2e/test_worker_isolation.py``.

Run by a sync flow (``PORT=N python tests/workers/snoop.py``); standard library only, so any
Python 3 that the worker's user may run will do. Each request makes it look at its
parent — the gateway — and the parent's other children (the SQLite writer): it tries to read
their ``/proc/<pid>/environ`` and, through ``/proc/<pid>/mem``, their memory, searching it for
the query's ``needle``. It answers with what it got::

    {"uid": 65534, "parent": 1234,
     "processes": {"1234": {"cmdline": "…", "environ": "denied: Permission denied",
                            "mem": "denied: Permission denied"}, …}}

``environ`` is the text read, or ``denied: <reason>``; ``mem`` is ``found``, ``not found`` or
``denied: <reason>``. The needle is only ever compared, never echoed.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

LARGEST_REGION = 256 * 1024 * 1024


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def read_environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError as exc:
        return f"denied: {exc.strerror}"


def search_memory(pid: int, needle: bytes) -> str:
    try:
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        return f"denied: {exc.strerror}"
    with mem:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        except OSError as exc:
            return f"denied: {exc.strerror}"
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(part, 16) for part in span.split("-"))
            if not perms.startswith("r") or end - start > LARGEST_REGION:
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue
            if data and needle in data:
                return "found"
    return "not found"


def report(needle: bytes) -> dict[str, object]:
    parent = os.getppid()
    processes = {}
    for pid in [parent, *children_of(parent)]:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        if "snoop.py" in cmdline:
            continue  # another replica of this worker
        processes[str(pid)] = {
            "cmdline": cmdline,
            "environ": read_environ(pid),
            "mem": search_memory(pid, needle) if needle else "no needle",
        }
    return {"uid": os.getuid(), "parent": parent, "processes": processes}


class Snoop(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        needle = parse_qs(urlsplit(self.path).query).get("needle", [""])[0].encode()
        body = json.dumps(report(needle)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the gateway logs every line a worker prints."""


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Snoop).serve_forever()
