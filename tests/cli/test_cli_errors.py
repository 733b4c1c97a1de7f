"""Bad input to the CLI: one clear message each, exit code ≠ 0, nothing half-applied."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from tests.cli.conftest import Cli, entry, flow_file
from tests.conftest import GatewayProcess


def not_applied(gateway: GatewayProcess, *names: str) -> bool:
    listed = {f["name"] for f in gateway.admin("GET", "/api/v1/flows").json()["items"]}
    return not listed & set(names)


def test_malformed_yaml_names_the_line(cli: Cli, tmp_path: Path, names: tuple[str, str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(f"flows:\n  - name: {names[0]}\n    mode: [async\n    worker: x\n")
    message = cli.fails("flows", "apply", "-f", str(path))
    assert str(path) in message
    assert "line 3" in message


@pytest.mark.parametrize(
    "extra, words",
    [
        ("    colour: red\n", ["field colour", "unknown field"]),
        ("    concurrency: lots\n", ["field concurrency", "Expected `int`"]),
        ("    timeout: 5 parsecs\n", ["field timeout", "duration"]),
        ("    retry: {max_attempts: 0}\n", ["field retry", "max_attempts"]),
        ("    replicas: 200000\n", ["field replicas", "at most 256 workers per flow, got 200000"]),
        ("    max_workers: 257\n", ["field max_workers", "at most 256 workers per flow, got 257"]),
    ],
)
def test_invalid_fields_name_file_line_flow_and_field(
    cli: Cli,
    gateway: GatewayProcess,
    tmp_path: Path,
    names: tuple[str, str],
    extra: str,
    words: list[str],
) -> None:
    path = flow_file(tmp_path / "f.yaml", entry(names[0], extra=extra))
    message = cli.fails("flows", "apply", "-f", str(path))
    assert f"{path}:5: flow '{names[0]}'" in message
    for word in words:
        assert word in message
    assert not_applied(gateway, names[0])


def test_duplicate_names_are_refused(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    path = flow_file(tmp_path / "f.yaml", entry(names[0]), entry(names[0]))
    message = cli.fails("flows", "apply", "-f", str(path))
    assert f"'{names[0]}' is declared twice" in message
    assert not_applied(gateway, names[0])


def test_one_bad_flow_means_nothing_is_applied(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    good, bad = names
    path = flow_file(tmp_path / "f.yaml", entry(good), entry(bad, extra="    max_workers: -1\n"))
    message = cli.fails("flows", "apply", "-f", str(path))
    assert f"flow '{bad}'" in message
    assert not_applied(gateway, good, bad)


def test_one_flow_this_gateway_cannot_run_means_nothing_is_applied(
    cli: Cli, gateway: GatewayProcess, tmp_path: Path, names: tuple[str, str]
) -> None:
    good, bad = names
    image_only = f"  - name: {bad}\n    mode: async\n    worker: {{image: example/worker:1}}\n"
    path = flow_file(tmp_path / "f.yaml", entry(good), image_only)
    message = cli.fails("flows", "apply", "-f", str(path))
    assert f"flow '{bad}'" in message
    assert "worker.command" in message
    assert not_applied(gateway, good, bad)

    secret = entry(
        bad, extra="    auth: [{type: bearer, token: 'env:HOOKGATE_TEST_UNSET_SECRET'}]\n"
    )
    message = cli.fails("flows", "apply", "-f", str(flow_file(path, entry(good), secret)))
    assert "HOOKGATE_TEST_UNSET_SECRET" in message
    assert not_applied(gateway, good, bad)


def test_a_missing_file_is_one_message(cli: Cli, tmp_path: Path) -> None:
    message = cli.fails("flows", "apply", "-f", str(tmp_path / "nope.yaml"))
    assert "nope.yaml" in message


@pytest.mark.parametrize(
    "args",
    [
        ("flows", "show", "no-such-flow"),
        ("flows", "start", "no-such-flow"),
        ("flows", "stop", "no-such-flow", "--yes"),
        ("flows", "pause", "no-such-flow"),
        ("flows", "resume", "no-such-flow"),
        ("flows", "delete", "no-such-flow", "--yes"),
        ("deliveries", "list", "--flow", "no-such-flow"),
    ],
)
def test_an_unknown_flow_is_named(cli: Cli, args: tuple[str, ...]) -> None:
    assert "'no-such-flow'" in cli.fails(*args)


def test_an_unknown_delivery_is_one_message(cli: Cli) -> None:
    assert "0123456789abcdef0123456789abcdef" in cli.fails(
        "deliveries", "show", "0123456789abcdef0123456789abcdef"
    )


def test_a_bad_status_is_a_usage_error(cli: Cli) -> None:
    done = cli.run("deliveries", "list", "--status", "failed")
    assert done.returncode == 2
    assert "'failed' is not one of" in done.stderr


def test_replay_needs_something_to_replay(cli: Cli) -> None:
    done = cli.run("deliveries", "replay")
    assert done.returncode == 2
    assert "give delivery ids" in done.stderr


def test_gateway_not_running_is_a_clear_message(cli: Cli) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    message = cli.fails("flows", "list", admin_url=url)
    assert f"cannot reach the gateway's admin API at {url}" in message
    assert "hookgate serve" in message


def test_a_wrong_token_is_a_clear_message(cli: Cli) -> None:
    message = cli.fails("flows", "list", env={"HOOKGATE_ADMIN_TOKEN": "wrong"})
    assert "missing or wrong admin token" in message
    message = cli.fails("--token", "wrong-too", "flows", "list")
    assert "missing or wrong admin token" in message
