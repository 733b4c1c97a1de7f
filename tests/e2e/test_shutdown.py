"""Stopping ``hookgate serve`` as a person does: Ctrl-C at a terminal, or SIGTERM from a tool.

Ctrl-C signals the terminal's whole foreground process group, so the gateway runs here as the
leader of its own group and the signal goes to the group, as a terminal sends it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually

FLOWS = f"""
flows:
  - name: echo
    mode: sync
    worker: {{command: [{sys.executable}, {ROOT / "examples" / "workers" / "echo.py"}]}}
    replicas: 1
  - name: orders
    mode: async
    worker: {{command: [{sys.executable}, {ROOT / "examples" / "workers" / "orders.py"}]}}
"""


def ready(gateway: GatewayProcess) -> bool:
    try:
        return httpx.get(f"{gateway.base}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_stops_cleanly_with_exit_0(
    gateway_factory: Any, sig: signal.Signals
) -> None:
    gateway: GatewayProcess = gateway_factory(FLOWS, start=False)
    process = subprocess.Popen(
        gateway.command(),
        env=gateway.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,
    )
    try:
        eventually(lambda: ready(gateway) or process.poll() is not None)
        # A worker and the SQLite writer are running, and the store has been written to.
        assert httpx.post(gateway.hook("echo"), content=b"hi", timeout=10).status_code == 200
        assert httpx.post(gateway.hook("orders"), content=b"{}", timeout=10).status_code == 202
        os.killpg(process.pid, sig)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr
    assert "restarting" not in stderr
    assert '"level": "error"' not in stderr
    assert sig.name in stderr
    assert '"event": "stopped"' in stderr
