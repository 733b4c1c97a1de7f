"""A Hookgate gateway for one scenario: its own data directory, ports, flows and admin token."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from bench.context import REPO
from bench.errors import BenchFailure
from bench.procs import Service, rss_bytes, store_processes
from bench.tools import ensure_free, free_port

ECHO = REPO / "examples" / "workers" / "echo.py"
NO_WORKER = [shutil.which("false") or "/bin/false"]
"""A worker command that exits at once: deliveries stay queued (the runtime backs off its
restarts up to 30 s), so accept-only scenarios measure the ingress and the store alone."""


def flow(
    name: str, *, mode: str = "async", worker: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """A flow spec as the flow file and the admin API take it."""
    return {"name": name, "mode": mode, "worker": worker or {"command": NO_WORKER}, **fields}


def recorder(record: Path) -> dict[str, Any]:
    """The ``worker`` of a flow served by :mod:`bench.workers.recorder`."""
    return {
        "command": [sys.executable, "-m", "bench.workers.recorder"],
        "env": {"BENCH_RECORD": str(record), "PYTHONPATH": str(REPO)},
    }


def echo() -> dict[str, Any]:
    """The ``worker`` of a flow served by the example echo worker (Python SDK)."""
    return {"command": [sys.executable, str(ECHO)]}


class Gateway:
    """``hookgate serve`` in the foreground, ready once ``/readyz`` answers 200."""

    def __init__(
        self,
        *,
        workdir: Path,
        flows: list[dict[str, Any]],
        database: str | None = None,
        env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
        prefix: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.prefix = prefix or []
        self.flows = flows
        self.database = database
        self.env = env or {}
        self.ready_timeout = ready_timeout
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.public = f"http://127.0.0.1:{self.port}"
        self.service = Service(
            name="hookgate",
            command=self._command(),
            log=workdir / "hookgate.log",
            env={**_inherited(), **self.env, "HOOKGATE_ADMIN_TOKEN": self.token},
            cwd=workdir,
        )
        self.admin = httpx.Client(
            base_url=f"http://127.0.0.1:{self.admin_port}",
            timeout=120,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        self.startup_s = 0.0
        self.idle_rss_mb = 0.0

    def _command(self) -> list[str]:
        flows_file = self.workdir / "flows.yaml"
        flows_file.write_text(json.dumps({"flows": self.flows}))  # JSON is YAML
        command = [
            *self.prefix,
            sys.executable,
            "-m",
            "hookgate",
            "serve",
            "--data-dir",
            str(self.workdir / "data"),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
            "--config",
            str(flows_file),
            "--log-format",
            "json",
        ]
        return command + (["--database", self.database] if self.database else [])

    @property
    def pid(self) -> int:
        return self.service.pid

    def __enter__(self) -> Gateway:
        ensure_free(self.port)
        ensure_free(self.admin_port)
        self.service.start()
        try:
            self.startup_s = self.service.wait_ready(self._ready, timeout=self.ready_timeout)
            pids = [self.pid, *store_processes(self.pid)]
            self.idle_rss_mb = sum(rss_bytes(p) for p in pids) / 1024**2
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.admin.close()
        self.service.stop()

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.public}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One admin API call; any failure is the scenario's failure, with the server's words."""
        self.service.check_alive()
        try:
            answer = self.admin.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BenchFailure(f"admin API {method} {path}: {exc}") from exc
        if answer.status_code >= 400:
            raise BenchFailure(
                f"admin API {method} {path} answered {answer.status_code}: {answer.text[:300]}"
            )
        return answer.json()

    def flow_id(self, name: str) -> str:
        flow_id: str = self.call("GET", f"/api/v1/flows/{name}")["id"]
        return flow_id

    def hook_url(self, name: str) -> str:
        return f"{self.public}/hook/{self.flow_id(name)}"

    def waiting(self, flow_id: str) -> int:
        """Deliveries of a flow still queued or leased (0 or 1: a page of one is enough)."""
        return sum(
            len(
                self.call(
                    "GET",
                    "/api/v1/deliveries",
                    params={"flow": flow_id, "status": status, "limit": 1},
                )["items"]
            )
            for status in ("queued", "leased")
        )


def _inherited() -> dict[str, str]:
    """This environment without ``HOOKGATE_*``: a developer's own settings (a database URL, a
    data directory) must not leak into a benchmark gateway."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}
