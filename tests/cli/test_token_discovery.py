"""The CLI finds the admin token itself: ``--token``, the environment, or the data directory."""

from __future__ import annotations

import shutil
import stat
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


def test_generated_token_is_saved_0600_printed_once_and_found_by_the_cli(
    own_token_gateway: GatewayProcess,
) -> None:
    gateway = own_token_gateway
    token_file = gateway.data_dir / "admin-token"
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(gateway.data_dir.stat().st_mode) == 0o700  # made by the gateway
    assert gateway.logs().count(token) == 1

    cli = Cli(gateway)
    del cli.env["HOOKGATE_ADMIN_TOKEN"]
    assert cli.json("--data-dir", str(gateway.data_dir), "flows", "list") == []
    assert (
        cli.run("flows", "list", env={"HOOKGATE_DATA_DIR": str(gateway.data_dir)}).returncode == 0
    )
    assert cli.json("--token", token, "flows", "list") == []
    message = cli.fails("--data-dir", str(gateway.data_dir.parent / "elsewhere"), "flows", "list")
    assert "no admin token" in message

    # The same token after a restart, and it is not printed again.
    assert gateway.stop() == 0
    gateway.start()
    assert token_file.read_text().strip() == token
    assert gateway.logs().count(token) == 1
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
