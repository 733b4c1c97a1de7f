"""The real ``hookgate`` command, run as a process against a real gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ROOT, TOKEN, GatewayProcess


class Cli:
    """Runs ``python -m hookgate --admin-url … ARGS`` with the admin token in the environment."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")},
            "HOOKGATE_ADMIN_TOKEN": TOKEN,
            "COLUMNS": "250",
        }

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        admin_url: str | None = None,
        cwd: Path = ROOT,
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "hookgate"]
        command += ["--admin-url", admin_url or self.gateway.admin_base, *args]
        return subprocess.run(
            command,
            env={**self.env, **(env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def fails(self, *args: str, **kwargs: Any) -> str:
        """stderr of a command that must fail with a message and no traceback."""
        done = self.run(*args, **kwargs)
        assert done.returncode != 0, done.stdout
        assert "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip()
        return done.stderr


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("cli") / "data").start()
    yield gw
    gw.stop()


@pytest.fixture
def cli(gateway: GatewayProcess) -> Cli:
    return Cli(gateway)


@pytest.fixture
def names() -> tuple[str, str]:
    """Two flow names no other test uses."""
    stem = uuid.uuid4().hex[:8]
    return f"orders-{stem}", f"contacts-{stem}"


def flow_file(path: Path, *entries: str) -> Path:
    path.write_text("flows:\n" + "".join(entries))
    return path


def entry(name: str, *, extra: str = "", command: str = '["false"]') -> str:
    return f"  - name: {name}\n    mode: async\n    worker: {{command: {command}}}\n{extra}"
