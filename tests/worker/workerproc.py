"""Workers as real processes on free loopback ports, the way the local runtime starts them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code once the process is gone."""
        self.process.send_signal(sig)
        return self.process.wait(timeout=15)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


Spawn = Callable[..., Worker]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    args: Sequence[str], *, log: Path, cwd: Path = REPO, env: dict[str, str] | None = None
) -> Worker:
    """Start ``args`` with ``$PORT`` set and return once the port accepts connections."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(args),
            cwd=cwd,
            env={**os.environ, "PORT": str(port), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{args} exited with {process.returncode}:\n{worker.output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return worker
        except OSError:
            time.sleep(0.02)
    process.kill()
    pytest.fail(f"{args} never opened port {port}:\n{worker.output()}")
