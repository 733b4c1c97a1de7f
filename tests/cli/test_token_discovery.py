"""The CLI finds the admin token itself: ``--token``, the environment, or the data directory."""

from __future__ import annotations

import os
import pty
import select
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.conftest import Cli
from tests.conftest import GatewayProcess


@pytest.fixture
def own_token_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway given no token: it makes one and keeps it in its data directory."""
    gateway = GatewayProcess(tmp_path / "data")
    del gateway.env["HOOKGATE_ADMIN_TOKEN"]
    yield gateway.start()
    gateway.stop()


def test_generated_token_is_saved_0600_never_logged_and_found_by_the_cli(
    own_token_gateway: GatewayProcess,
) -> None:
    gateway = own_token_gateway
    token_file = gateway.data_dir / "admin-token"
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(gateway.data_dir.stat().st_mode) == 0o700  # made by the gateway
    # Logs go to files and log shippers: they say where the token is, never what it is.
    assert token not in gateway.logs()
    assert str(token_file) in gateway.logs()

    cli = Cli(gateway)
    del cli.env["HOOKGATE_ADMIN_TOKEN"]
    assert cli.json("--data-dir", str(gateway.data_dir), "flows", "list") == []
    assert (
        cli.run("flows", "list", env={"HOOKGATE_DATA_DIR": str(gateway.data_dir)}).returncode == 0
    )
    assert cli.json("--token", token, "flows", "list") == []
    message = cli.fails("--data-dir", str(gateway.data_dir.parent / "elsewhere"), "flows", "list")
    assert "no admin token" in message

    # The same token after a restart.
    assert gateway.stop() == 0
    gateway.start()
    assert token_file.read_text().strip() == token
    assert token not in gateway.logs()
    assert cli.json("--data-dir", str(gateway.data_dir), "flows", "list") == []


def test_the_default_data_directory_is_where_the_cli_runs(
    own_token_gateway: GatewayProcess, tmp_path: Path
) -> None:
    cli = Cli(own_token_gateway)
    del cli.env["HOOKGATE_ADMIN_TOKEN"]
    workdir = tmp_path / "project"
    (workdir / "hookgate-data").mkdir(parents=True)
    shutil.copy(own_token_gateway.data_dir / "admin-token", workdir / "hookgate-data")
    done = cli.run("flows", "list", "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert cli.run("flows", "list", cwd=tmp_path).returncode != 0


def test_a_first_start_on_a_terminal_shows_the_token_once(tmp_path: Path) -> None:
    """Someone watching a terminal gets the token to paste; a log file never does."""
    gateway = GatewayProcess(tmp_path / "data")
    del gateway.env["HOOKGATE_ADMIN_TOKEN"]
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        gateway.command(), env=gateway.env, stdout=follower, stderr=subprocess.DEVNULL
    )
    os.close(follower)
    try:
        seen = b""
        deadline = time.monotonic() + 20
        while b"\n" not in seen.partition(b"Admin token")[2] and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.5)[0]:
                seen += os.read(leader, 4096)
    finally:
        process.terminate()
        process.wait(30)
        os.close(leader)
    token = (gateway.data_dir / "admin-token").read_text().strip()
    assert token.encode() in seen.partition(b"Admin token")[2]
