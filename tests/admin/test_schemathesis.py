"""Schemathesis, every check, against a real gateway serving its own OpenAPI document.

Two runs, seeded so CI sees the same requests each time: the whole API but the event stream
(each stream stays open until schemathesis gives up on it, so it gets a few cases of its own).
Creating or replacing a flow may refuse a schema-valid spec for what no schema can say — a
secret reference that does not resolve here, a cron expression, a NUL character PostgreSQL
cannot store — so those operations may answer 400 or 422 to valid data, and only they.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import ROOT, TOKEN, GatewayProcess

FLOWS = f"""
flows:
  - name: orders
    mode: async
    worker: {{command: [{sys.executable}, {ROOT / "tests" / "workers" / "flaky.py"}],
              env: {{API_KEY: not-for-clients}}}}
    retry: {{max_attempts: 1}}
  - name: quotes
    mode: sync
    worker: {{command: [{sys.executable}, {ROOT / "examples" / "workers" / "echo.py"}]}}
"""

CONFIG = """
[[operations]]
include-path-regex = "^/api/v1/(flows|apply)"
include-method-regex = "^(POST|PUT)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "422"]
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    gw = GatewayProcess(tmp_path_factory.mktemp("schemathesis") / "data", flows=FLOWS).start()
    for status in (200, 500):
        answer = httpx.post(gw.hook("orders") + f"?status={status}", content=b"{}")
        assert answer.status_code == 202, answer.text
    yield gw
    gw.stop()


def schemathesis(gateway: GatewayProcess, workdir: Path, *args: str) -> None:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"),
            f"{gateway.admin_base}/api/v1/openapi.json",
            *("--checks", "all", "--header", f"Authorization: Bearer {TOKEN}"),
            *("--workers", "1", "--seed", "1", "--phases", "coverage,fuzzing"),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]


def test_every_check_passes_on_the_whole_api(gateway: GatewayProcess, tmp_path: Path) -> None:
    schemathesis(gateway, tmp_path, "--max-examples", "10", "--exclude-path", "/api/v1/events")


def test_every_check_passes_on_the_event_stream(gateway: GatewayProcess, tmp_path: Path) -> None:
    schemathesis(gateway, tmp_path, "--max-examples", "2", "--include-path", "/api/v1/events")
