"""``hookgate init`` in an empty directory, then ``hookgate serve`` there: both flows answer.

The gateway runs with a PATH that holds no virtualenv (as after a pip-only install, nothing
activated): the `python` of the Python workers must be the gateway's own interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import GatewayProcess
from tests.e2e.helpers import eventually

BARE_PATH = "/usr/local/bin:/usr/bin:/bin"


def init(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookgate", "init", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("lang", ["python", "node"])
def test_init_then_serve_answers_on_both_flows(
    gateway_factory: Any, tmp_path: Path, lang: str
) -> None:
    if lang == "node" and shutil.which("node", path=BARE_PATH) is None:
        pytest.skip("Node.js is not installed")
    project = tmp_path / "project"
    done = init(project, "--lang", lang)
    assert done.returncode == 0, done.stderr
    assert "hookgate serve --config flows.yaml" in done.stdout

    gateway: GatewayProcess = gateway_factory(
        None,
        args=["--config", "flows.yaml"],
        cwd=project,
        env={"PATH": BARE_PATH, "VIRTUAL_ENV": ""},
    )
    hello = httpx.post(gateway.hook("hello"), content=b"Ada", timeout=30)
    assert hello.status_code == 200, hello.text
    assert hello.json()["hello"] == "Ada"

    accepted = httpx.post(gateway.hook("orders"), json={"id": 1}, timeout=10)
    assert accepted.status_code == 202

    def done_deliveries() -> list[dict[str, Any]]:
        page = gateway.admin("GET", "/api/v1/deliveries?flow=orders&status=done").json()
        items: list[dict[str, Any]] = page["items"]
        return items

    [delivery] = eventually(done_deliveries, timeout=30)
    assert delivery["requestId"] == accepted.json()["requestId"]


def test_init_does_not_overwrite_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "flows.yaml").write_text("flows: []\n")
    refused = init(tmp_path)
    assert refused.returncode != 0
    assert "flows.yaml already in" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (tmp_path / "flows.yaml").read_text() == "flows: []\n"
    assert not (tmp_path / "workers").exists()
    assert init(tmp_path, "--force").returncode == 0
    assert "name: orders" in (tmp_path / "flows.yaml").read_text()
    assert os.path.exists(tmp_path / "workers" / "hello.py")
