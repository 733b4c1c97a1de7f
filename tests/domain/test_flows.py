"""Flow files: defaults, units, and validation messages that name the flow, field and line."""

from __future__ import annotations

import base64
import re

import msgspec
import pytest

from hookgate.domain.auth import GithubAuth
from hookgate.domain.flowfile import parse_flow_file, spec_from_object
from hookgate.domain.flows import MAX_WORKERS, Flow, FlowSpec, Mode, Status, new_flow_id
from hookgate.domain.units import ByteSize, Duration, dec_hook
from hookgate.errors import ConfigError

MINIMAL = """\
flows:
  - name: shop-orders
    mode: async
    worker: {command: [python, -m, orders]}
"""


def parse_one(text: str) -> FlowSpec:
    (spec,) = parse_flow_file(text, source="flows.yaml")
    return spec


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_flow_file(text, source="flows.yaml")
    return str(caught.value)


def test_only_name_mode_and_worker_are_needed_and_the_rest_has_the_documented_defaults() -> None:
    (spec,) = parse_flow_file(MINIMAL)
    assert spec.name == "shop-orders"
    assert spec.mode is Mode.ASYNC
    assert spec.worker.command == ["python", "-m", "orders"]
    assert spec.concurrency == "auto"
    assert spec.slots == 256
    assert spec.max_workers == 4
    assert spec.replicas == 1
    assert spec.idle_timeout == 30.0
    assert spec.timeout == 30.0
    assert (spec.retry.max_attempts, spec.retry.backoff, spec.retry.max_backoff) == (
        10,
        1.0,
        3600.0,
    )
    assert spec.max_body == 10_000_000
    assert spec.max_queued is None  # a quarter of HOOKGATE_MAX_QUEUED_BYTES
    assert spec.auth == []
    assert spec.schedule is None
    assert spec.delivery == "raw"
    assert spec.retention == 7 * 86400.0


def test_the_design_example_parses() -> None:
    text = """\
flows:
  - name: shop-orders
    mode: async
    worker:
      command: ["python", "-m", "orders"]
      image: registry.example/orders:1.4
      env: {LOG_LEVEL: info}
    concurrency: 8
    max_workers: 4
    replicas: 2
    idle_timeout: 30s
    timeout: 30s
    retry: {max_attempts: 10, backoff: 1s, max_backoff: 1h}
    max_body: 10MB
    auth: [{type: github, secret: env:GITHUB_WEBHOOK_SECRET}]
    schedule: {every: 5m}
"""
    (spec,) = parse_flow_file(text)
    assert spec.worker.image == "registry.example/orders:1.4"
    assert spec.worker.env == {"LOG_LEVEL": "info"}
    assert spec.replicas == 2
    assert spec.retry.max_backoff == 3600.0
    assert spec.schedule is not None and spec.schedule.every == 300.0
    assert spec.auth == [GithubAuth(secret="env:GITHUB_WEBHOOK_SECRET")]


@pytest.mark.parametrize(
    "written, seconds",
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("2d", 172800),
        ("1.5s", 1.5),
        ("1m30s500ms", 90.5),
        (45, 45),
        (0.25, 0.25),
    ],
)
def test_durations(written: object, seconds: float) -> None:
    assert Duration.parse(written) == pytest.approx(seconds)
    spec = parse_one(MINIMAL + f"    timeout: {written}\n")
    assert spec.timeout == pytest.approx(seconds)


@pytest.mark.parametrize("written", ["soon", "5 parsecs", "1x", "s", "-1s", "", True, [1]])
def test_bad_durations_are_refused(written: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        Duration.parse(written)


@pytest.mark.parametrize(
    "written, size",
    [
        ("10MB", 10_000_000),
        ("512KiB", 524_288),
        ("512KB", 512_000),
        ("1GiB", 1024**3),
        ("1MiB", 1024**2),
        ("1.5MB", 1_500_000),
        ("10 mb", 10_000_000),
        ("100", 100),
        ("100B", 100),
        (2048, 2048),
    ],
)
def test_sizes(written: object, size: int) -> None:
    assert ByteSize.parse(written) == size
    spec = parse_one(MINIMAL + f"    max_body: {written}\n")
    assert spec.max_body == size


def test_max_queued_is_a_size_not_below_max_body() -> None:
    spec = parse_one(MINIMAL + "    max_body: 1MB\n    max_queued: 1MB\n")
    assert (spec.max_body, spec.max_queued) == (1_000_000, 1_000_000)
    message = error_of(MINIMAL + "    max_queued: 5MB\n")
    assert message == (
        "flows.yaml:2: flow 'shop-orders': max_queued (5000000 bytes) must not be below"
        " max_body (10000000 bytes): a request of max_body could never be queued"
    )


@pytest.mark.parametrize("written", ["huge", "10 parsecs", "MB", "-5MB", False, 1.5])
def test_bad_sizes_are_refused(written: object) -> None:
    with pytest.raises(ValueError, match="size"):
        ByteSize.parse(written)


# Every error names the file:line, the flow and the field. -------------------------------


@pytest.mark.parametrize(
    "extra, line, field, problem",
    [
        ("    colour: red\n", 5, "colour", "unknown field"),
        ("    concurrency: lots\n", 5, "concurrency", "Expected `int`"),
        ("    timeout: 5 parsecs\n", 5, "timeout", "duration"),
        ("    max_body: huge\n", 5, "max_body", "size"),
        ("    retry: {max_attempts: ten}\n", 5, "retry.max_attempts", "Expected `int`"),
        ("    retry:\n      backoff: 1s\n      jitter: full\n", 7, "retry.jitter", "unknown"),
        ("    worker_env: {A: b}\n", 5, "worker_env", "unknown field"),
        ("    delivery: mail\n", 5, "delivery", "mail"),
        ("    auth: [{type: github, secret: plain-text}]\n", 5, "auth[0]", "env:NAME"),
        ("    auth: [{type: carrier-pigeon}]\n", 5, "auth[0].type", "carrier-pigeon"),
        ("    schedule: {every: 5m, cron: '* * * * *'}\n", 5, "schedule", "exactly one"),
    ],
)
def test_validation_errors_name_file_line_flow_and_field(
    extra: str, line: int, field: str, problem: str
) -> None:
    message = error_of(MINIMAL + extra)
    assert message.startswith(f"flows.yaml:{line}: flow 'shop-orders': field {field}: "), message
    assert problem in message


def test_the_failing_flow_is_named_among_several() -> None:
    text = (
        MINIMAL
        + """\
  - name: crm-contacts
    mode: sometimes
    worker: {command: [x]}
"""
    )
    message = error_of(text)
    assert message.startswith("flows.yaml:6: flow 'crm-contacts': field mode: "), message
    assert "sometimes" in message


def test_a_missing_required_field_is_named() -> None:
    message = error_of("flows:\n  - name: lonely\n    mode: async\n")
    assert message.startswith("flows.yaml:2: flow 'lonely': "), message
    assert "worker" in message


def test_a_flow_without_a_name_is_named_by_position() -> None:
    message = error_of(MINIMAL + "  - mode: async\n    worker: {command: [x]}\n")
    assert message.startswith("flows.yaml:5: flow #2: "), message
    assert "name" in message


def test_a_worker_without_command_or_image_is_refused() -> None:
    message = error_of("flows:\n  - name: a\n    mode: async\n    worker: {env: {A: b}}\n")
    assert message.startswith("flows.yaml:4: flow 'a': field worker: "), message
    assert "command" in message and "image" in message


@pytest.mark.parametrize("name", ["Shop", "shop orders", "-shop", "shop-", "a" * 64, ""])
def test_bad_names_are_refused_with_the_rule(name: str) -> None:
    message = error_of(
        f"flows:\n  - name: '{name}'\n    mode: async\n    worker: {{command: [x]}}\n"
    )
    assert message.startswith("flows.yaml:2: "), message
    assert "name must be" in message


@pytest.mark.parametrize("field", ["concurrency", "max_workers", "replicas"])
def test_range_errors_point_at_the_field_line(field: str) -> None:
    message = error_of(MINIMAL + f"    {field}: 0\n")
    assert message.startswith(f"flows.yaml:5: flow 'shop-orders': field {field}: "), message


@pytest.mark.parametrize("field", ["max_workers", "replicas"])
def test_workers_of_a_flow_are_at_most_256(field: str) -> None:
    assert MAX_WORKERS == 256
    assert getattr(parse_one(MINIMAL + f"    {field}: 256\n"), field) == 256
    message = error_of(MINIMAL + f"    {field}: 257\n")
    assert message == (
        f"flows.yaml:5: flow 'shop-orders': field {field}: at most 256 workers per flow, got 257"
    )
    second = "  - name: wide\n    mode: sync\n    worker: {command: [x]}\n"
    message = error_of(MINIMAL + second + f"    {field}: 200000\n")
    assert message == (
        f"flows.yaml:8: flow 'wide': field {field}: at most 256 workers per flow, got 200000"
    )
    with pytest.raises(ConfigError) as caught:
        spec_from_object({"name": "a", "mode": "sync", "worker": {"command": ["x"]}, field: 300})
    assert str(caught.value) == f"flow 'a': field {field}: at most 256 workers per flow, got 300"


def test_a_flow_stored_before_the_limit_still_loads() -> None:
    """Only submitted flows are checked: a stored one over the limit is decoded, not refused."""
    stored = {"name": "a", "mode": "sync", "worker": {"command": ["x"]}, "replicas": 200000}
    spec = msgspec.json.decode(msgspec.json.encode(stored), type=FlowSpec, dec_hook=dec_hook)
    assert spec.replicas == 200000


@pytest.mark.parametrize("user, expected", [("nobody", "nobody"), (65534, 65534), (0, 0)])
def test_worker_user_is_a_name_or_a_uid(user: object, expected: object) -> None:
    worker = {"command": ["x"], "user": user}
    spec = spec_from_object({"name": "a", "mode": "sync", "worker": worker})
    assert spec.worker.user == expected
    assert parse_one(MINIMAL).worker.user is None


@pytest.mark.parametrize("user", ["", -1, True, 1.5, ["nobody"]])
def test_a_worker_user_that_is_no_name_or_uid_is_refused(user: object) -> None:
    with pytest.raises(ConfigError) as caught:
        spec_from_object({"name": "a", "mode": "sync", "worker": {"command": ["x"], "user": user}})
    assert str(caught.value).startswith("flow 'a': field worker"), caught.value


def test_range_errors_name_flow_and_field() -> None:
    message = error_of(MINIMAL + "    concurrency: 0\n")
    assert "flows.yaml:" in message
    assert "flow 'shop-orders'" in message
    assert "Expected `int` >= 1" in message


def test_max_backoff_below_backoff_is_refused() -> None:
    message = error_of(MINIMAL + "    retry: {backoff: 10s, max_backoff: 1s}\n")
    assert message.startswith("flows.yaml:5: flow 'shop-orders': field retry: "), message
    assert "max_backoff" in message


def test_malformed_yaml_names_the_line() -> None:
    message = error_of("flows:\n  - name: a\n    mode: [async\n")
    assert message.startswith("flows.yaml: not valid YAML"), message
    assert "line 3" in message
    assert "<unicode string>" not in message


@pytest.mark.parametrize(
    ("extra", "hint"),
    [
        ("    retyr: {max_attempts: 3}\n", "did you mean `retry`?"),
        ("    retry: {max_atempts: 3}\n", "did you mean `max_attempts`?"),
        ("    delivery: envelop\n", "expected one of 'envelope', 'raw'"),
    ],
)
def test_a_misspelt_field_or_value_gets_the_nearest_or_the_valid_ones(
    extra: str, hint: str
) -> None:
    message = error_of(MINIMAL + extra)
    assert message.startswith("flows.yaml:5: flow 'shop-orders': field "), message
    assert message.endswith(hint), message


def test_a_wrong_mode_lists_the_modes() -> None:
    message = error_of(MINIMAL.replace("mode: async", "mode: batch"))
    assert message.endswith("Invalid enum value 'batch'; expected one of 'async', 'sync'"), message
    with pytest.raises(ConfigError, match="did you mean `env`"):
        spec_from_object({"name": "a", "mode": "async", "worker": {"command": ["x"], "evn": {}}})


@pytest.mark.parametrize("text", ["", "flows: 3\n", "- name: a\n", "flow:\n  - name: a\n"])
def test_a_file_without_a_flows_list_is_refused(text: str) -> None:
    message = error_of(text)
    assert message.startswith("flows.yaml"), message
    assert "flows" in message


def test_duplicate_names_are_refused() -> None:
    message = error_of(MINIMAL + MINIMAL.removeprefix("flows:\n"))
    assert "flows.yaml" in message
    assert "'shop-orders' is declared twice" in message


def test_duplicate_names_point_at_the_second_declaration() -> None:
    message = error_of(MINIMAL + MINIMAL.removeprefix("flows:\n"))
    assert message.startswith("flows.yaml:5: "), message


def test_api_bodies_are_validated_with_the_same_messages() -> None:
    with pytest.raises(ConfigError, match=r"^flow 'a': field concurrency: Expected `int`"):
        spec_from_object(
            {"name": "a", "mode": "async", "worker": {"command": ["x"]}, "concurrency": "8"}
        )
    with pytest.raises(ConfigError, match=r"^flow 'a': .*unknown field `colour`"):
        spec_from_object({"name": "a", "mode": "async", "worker": {"command": ["x"]}, "colour": 1})
    with pytest.raises(ConfigError, match=r"^flow: "):
        spec_from_object(["not", "an", "object"])


# Identity and hashing ------------------------------------------------------------------


def test_flow_ids_are_128_random_url_safe_bits() -> None:
    ids = {new_flow_id() for _ in range(1000)}
    assert len(ids) == 1000
    for flow_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", flow_id)
        assert len(base64.urlsafe_b64decode(flow_id + "==")) == 16


def test_no_flow_id_starts_with_a_dash() -> None:
    """``hookgate flows start <id>`` would read it as an option (1 id in 64 did)."""
    assert not [i for i in (new_flow_id() for _ in range(10_000)) if i.startswith("-")]


def test_spec_hash_is_stable_across_spelling_and_key_order() -> None:
    one = parse_one(
        "flows:\n  - name: x\n    mode: async\n    timeout: 1m\n    max_body: 1KiB\n"
        "    worker: {command: [w], env: {B: '2', A: '1'}}\n"
    )
    two = parse_one(
        "flows:\n  - worker: {env: {A: '1', B: '2'}, command: [w]}\n    max_body: 1024\n"
        "    timeout: 60\n    mode: async\n    name: x\n"
    )
    assert one == two
    assert one.spec_hash() == two.spec_hash()
    assert re.fullmatch(r"[0-9a-f]{16}", one.spec_hash())
    # Defaults written out explicitly are the same spec.
    explicit = parse_one(
        "flows:\n  - name: x\n    mode: async\n    timeout: 1m\n    max_body: 1KiB\n"
        "    worker: {command: [w], env: {B: '2', A: '1'}}\n    concurrency: auto\n"
    )
    assert explicit.spec_hash() == one.spec_hash()


def test_spec_hash_changes_with_any_field() -> None:
    base = parse_one(MINIMAL)
    changed = [
        parse_one(MINIMAL + "    timeout: 31s\n"),
        parse_one(MINIMAL.replace("orders]", "orders2]")),
        parse_one(MINIMAL.replace("async", "sync")),
        parse_one(MINIMAL + "    retry: {max_attempts: 9}\n"),
    ]
    hashes = {base.spec_hash()} | {c.spec_hash() for c in changed}
    assert len(hashes) == 5


def test_status_and_mode_values() -> None:
    assert [m.value for m in Mode] == ["async", "sync"]
    assert [s.value for s in Status] == ["running", "paused", "stopped"]


def test_a_paused_flow_accepts_but_does_not_run() -> None:
    flow = Flow(id="f", spec=parse_one(MINIMAL), created_at=0.0, updated_at=0.0)
    states = {}
    for status in Status:
        flow.status = status
        states[status.value] = (flow.accepting, flow.running)
    assert states == {
        "running": (True, True),
        "paused": (True, False),
        "stopped": (False, False),
    }
