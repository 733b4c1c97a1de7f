"""A flow's code cannot take the gateway's secrets (docs/security.md, "Worker isolation").

The worker ``tests/workers/snoop.py`` tries to read the environment and the memory of the
gateway and of its SQLite writer, searching for the admin token, and answers with what it got.
Two set-ups, both needing root to start processes as another user:

* the gateway runs as root and the flow's worker as ``worker.user: nobody``;
* the gateway itself runs as ``nobody``, and so does its worker: the same user, so only the
  gateway and its writer being non-dumpable keep the worker out.

Processes run as ``nobody`` need a Python that ``nobody`` may run: this one, or else the
system's Python of the same version, given this environment's packages on ``PYTHONPATH``
(a Python installed under ``/root`` is out of ``nobody``'s reach).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import ROOT, TOKEN, GatewayProcess
from tests.e2e.helpers import eventually

SNOOP = ROOT / "tests" / "workers" / "snoop.py"
NOBODY = pwd.getpwnam("nobody").pw_uid
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="starting processes as another user needs root (CI runs as root)"
)


@pytest.fixture(scope="module")
def python() -> str:
    """A Python of this version that ``nobody`` may run."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run processes as nobody")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        # Through sh: setpriv itself still has root's capabilities when it runs the command.
        probe = [*AS_NOBODY, "sh", "-c", '"$0" -c ""', candidate]
        if subprocess.run(probe, capture_output=True, timeout=30).returncode == 0:
            return candidate
    pytest.skip(f"no {version} that nobody may run (this one is {sys.executable})")


def snoop_flow(python: str, *, user: str | None = None) -> str:
    user_line = f"      user: {user}\n" if user else ""
    return f"""
flows:
  - name: snoop
    mode: sync
    worker:
      command: [{python}, {SNOOP}]
{user_line}"""


def snoop(gateway: GatewayProcess) -> dict[str, Any]:
    """What the worker could read of the gateway's processes, once it is ready."""
    eventually(lambda: gateway.flow("snoop")["workers"]["ready"] == 1)
    answer = httpx.get(gateway.hook("snoop"), params={"needle": TOKEN}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert TOKEN not in answer.text
    report: dict[str, Any] = answer.json()
    return report


def assert_kept_out(report: dict[str, Any], gateway: GatewayProcess) -> None:
    assert gateway.process is not None
    assert report["uid"] == NOBODY
    assert report["parent"] == gateway.process.pid
    processes = report["processes"]
    assert str(gateway.process.pid) in processes
    assert any("hookgate.store.sqlite.writer" in p["cmdline"] for p in processes.values())
    for pid, seen in processes.items():
        assert seen["environ"] == "denied: Permission denied", (pid, seen)
        assert seen["mem"] == "denied: Permission denied", (pid, seen)


def test_a_worker_run_as_another_user_cannot_read_the_gateway(
    gateway_factory: Any, python: str
) -> None:
    gateway: GatewayProcess = gateway_factory(snoop_flow(python, user="nobody"))
    assert_kept_out(snoop(gateway), gateway)


class GatewayAsNobody(GatewayProcess):
    """``hookgate serve`` started by root but running as ``nobody`` from its first instruction."""

    def __init__(self, data_dir: Path, *, python: str, flows: str) -> None:
        paths = sysconfig.get_paths()
        packages = [str(ROOT / "src"), paths["purelib"], paths["platlib"]]
        super().__init__(data_dir, flows=flows, env={"PYTHONPATH": os.pathsep.join(packages)})
        self.python = python

    def command(self) -> list[str]:
        _python, *args = super().command()
        return [*AS_NOBODY, self.python, *args]


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory ``nobody`` may write (pytest's own temporary directories are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="hookgate-nobody-"))
    os.chown(path, NOBODY, -1)
    yield path
    shutil.rmtree(path)


def test_a_worker_of_the_gateways_own_user_cannot_read_the_gateway(
    nobody_dir: Path, python: str
) -> None:
    gateway = GatewayAsNobody(nobody_dir / "data", python=python, flows=snoop_flow(python))
    try:
        gateway.start()
        assert_kept_out(snoop(gateway), gateway)

        as_root = {"name": "as-root", "mode": "sync", "worker": {"command": ["x"], "user": "root"}}
        refused = gateway.admin("POST", "/api/v1/flows", json=as_root)
        assert refused.status_code == 422
        assert refused.json()["error"] == (
            f"flow 'as-root': field worker.user: starting workers as 'root' needs a gateway "
            f"running as root (it runs as uid {NOBODY})"
        )
    finally:
        gateway.stop()
