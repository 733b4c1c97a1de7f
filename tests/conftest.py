"""Shared fixtures: a real gateway process on loopback ports, with its own data directory."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

TOKEN = "test-admin-token"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Tests share the machine's PostgreSQL, but one restarts it: it must have the server to itself.
# File locks hold across pytest-xdist workers (and other pytest runs on the machine).
LOCKS = Path(tempfile.gettempdir())
_held = 0  # this process's depth in postgres_lock: a nested take is a no-op


@contextlib.contextmanager
def postgres_lock(*, alone: bool = False) -> Iterator[None]:
    """Share the PostgreSQL server (``alone``: have it alone), writer first.

    A reader passes a turnstile before taking its shared lock; a writer holds the turnstile
    while it waits, so a steady stream of readers cannot keep it out.
    """
    global _held
    if _held:
        _held += 1
        try:
            yield
        finally:
            _held -= 1
        return
    with (
        (LOCKS / "hookgate-tests-postgres.turnstile").open("a") as turnstile,
        (LOCKS / "hookgate-tests-postgres.lock").open("a") as server,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(server, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        _held = 1
        try:
            yield
        finally:
            _held = 0
            fcntl.flock(server, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> Iterator[None]:
    """The PostgreSQL server for one test: shared, or alone for a test marked
    ``postgres_alone`` (it restarts the server, which kills every other client's connections)."""
    with postgres_lock(alone=request.node.get_closest_marker("postgres_alone") is not None):
        yield


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new empty PostgreSQL database, dropped afterwards (connections and all).

    Skipped when this machine runs no server, unless CI is set: then it is a failure.
    """
    with postgres_lock():
        try:
            server = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            reason = f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}".strip()
            if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
                pytest.fail(f"{reason} (CI is set, so PostgreSQL must be tested)")
            pytest.skip(f"{reason} (set CI=true to make this a failure)")
        name = f"{prefix}_{secrets.token_hex(6)}"
        with server:
            server.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        # A fresh connection: a PostgreSQL restart during the test kills older ones.
        with (
            postgres_lock(),
            psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=10) as c,
        ):
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def pg_url(postgres: None) -> Iterator[str]:
    """A fresh database for one test."""
    with fresh_database("hookgate_t") as url:
        yield url


class GatewayProcess:
    """``hookgate serve`` as a child process; restartable on the same data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        flows: str | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        prefix: list[str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.data_dir = data_dir
        self.cwd = cwd
        self.prefix = prefix or []
        self.port = free_port()
        self.admin_port = free_port()
        self.rebinds = 3  # first starts left to retry on other ports (see start)
        self.flows_file: Path | None = None
        if flows is not None:
            self.flows_file = data_dir.parent / f"{data_dir.name}-flows.yaml"
            self.flows_file.write_text(flows)
        self.env = {**os.environ, "HOOKGATE_ADMIN_TOKEN": TOKEN, **(env or {})}
        self.args = args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}-gateway.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_base(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def command(self) -> list[str]:
        cmd = [
            *self.prefix,
            sys.executable,
            "-m",
            "hookgate",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
            "--log-format",
            "json",
        ]
        if self.flows_file is not None:
            cmd += ["--config", str(self.flows_file)]
        return cmd + self.args

    def start(self, *, timeout: float = 20.0) -> GatewayProcess:
        first = self.process is None
        logged = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(), env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.log.read_bytes()[logged:].decode(errors="replace")
                if first and self.rebinds and "Address already in use" in output:
                    # free_port's port was taken before the gateway bound it (tests run in
                    # parallel): on a first start nothing knows the ports yet, so take others.
                    self.process, self.rebinds = None, self.rebinds - 1
                    self.port, self.admin_port = free_port(), free_port()
                    return self.start(timeout=timeout)
                raise RuntimeError(
                    f"gateway exited with {self.process.returncode}:\n"
                    + self.log.read_text()[-3000:]
                )
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("gateway did not become ready:\n" + self.log.read_text()[-3000:])

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            self.admin_base + path,
            headers={"authorization": f"Bearer {TOKEN}"},
            timeout=30,
            **kwargs,
        )

    def flow(self, name: str) -> dict[str, Any]:
        response = self.admin("GET", f"/api/v1/flows/{name}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def hook(self, name: str) -> str:
        return f"{self.base}/hook/{self.flow(name)['id']}"

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, *, timeout: float = 30.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def logs(self) -> str:
        return self.log.read_text()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def make(
        flows: str | None = None, *, name: str = "data", start: bool = True, **kwargs: Any
    ) -> GatewayProcess:
        gateway = GatewayProcess(tmp_path / name, flows=flows, **kwargs)
        started.append(gateway)
        return gateway.start() if start else gateway

    yield make
    for gateway in started:
        if gateway.process is not None and gateway.process.poll() is None:
            gateway.stop()


ECHO = f"{sys.executable} {ROOT / 'examples' / 'workers' / 'echo.py'}"

ASYNC_FLOW = f"""
flows:
  - name: orders
    mode: async
    worker: {{command: [{sys.executable}, {ROOT / "tests" / "workers" / "flaky.py"}]}}
    max_body: 1KB
"""


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 20 MB tmpfs, to fill a disk for real. Mounting needs root (CI runs as root): skipped
    where it cannot mount, unless CI is set: then it is a failure."""
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(volume)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason} (CI is set, so the full disk must be tested)")
        pytest.skip(reason)
    try:
        yield volume
    finally:
        subprocess.run(["umount", "--lazy", str(volume)], capture_output=True, check=False)


def fill(path: Path) -> None:
    """Write ``path`` until its volume has no byte left."""
    with path.open("ab", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * chunk)
