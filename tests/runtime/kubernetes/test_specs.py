"""specs and names: pure functions from a flow to objects."""

from __future__ import annotations

import re

import pytest

from hookgate.errors import ConfigError
from hookgate.runtime.kubernetes import names, specs

from .conftest import make_flow

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "shop-orders",
        "x" * 63,
        "dots.and_underscores",
        "9starts-with-digit",
        "a-" * 31 + "b",
    ],
)
def test_names_are_dns_safe_and_leave_room_for_the_job_suffix(name: str) -> None:
    flow = make_flow(name)
    base = names.base_name(flow)
    job = names.job_name(flow, "0123456789abcdef")
    assert DNS_1035.match(base) and len(base) <= 63 - names.JOB_SUFFIX
    assert DNS_1035.match(job) and len(job) <= 63
    assert job.startswith(base + "-")


def test_flows_with_the_same_name_get_different_names() -> None:
    first, second = make_flow("same"), make_flow("same")
    assert names.base_name(first) != names.base_name(second)
    assert names.base_name(first) == names.base_name(first)  # deterministic


def test_render_gives_each_mode_its_objects() -> None:
    sync, batch = make_flow("web", replicas=3), make_flow("batch", "async", max_workers=6)
    objects = specs.render([sync, batch], "flows")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Service", names.base_name(sync)),
        ("Deployment", names.base_name(sync)),
        ("PodDisruptionBudget", names.base_name(sync)),
        ("Service", names.base_name(batch)),
        ("Job", objects[4]["metadata"]["name"]),
    ]
    assert objects[1]["spec"]["replicas"] == 3
    assert objects[2]["spec"]["maxUnavailable"] == 1
    assert objects[4]["spec"]["parallelism"] == 6
    assert all(o["metadata"]["namespace"] == "flows" for o in objects)


def test_spec_hash_is_stable_and_follows_changes() -> None:
    flow = make_flow("hashing")
    first = specs.deployment(flow, namespace="n", replicas=1)
    again = specs.deployment(flow, namespace="n", replicas=1)
    hash_of = first["metadata"]["annotations"][names.SPEC_HASH_ANNOTATION]
    assert again["metadata"]["annotations"][names.SPEC_HASH_ANNOTATION] == hash_of
    flow.spec.worker.env = {"NEW": "1"}
    changed = specs.deployment(flow, namespace="n", replicas=1)
    assert changed["metadata"]["annotations"][names.SPEC_HASH_ANNOTATION] != hash_of


def test_job_name_ignores_demand_but_follows_the_template() -> None:
    flow = make_flow("demand", "async", max_workers=8)
    one = specs.job(flow, namespace="n", workers=1)
    five = specs.job(flow, namespace="n", workers=5)
    assert one["metadata"]["name"] == five["metadata"]["name"]
    assert (one["spec"]["parallelism"], five["spec"]["parallelism"]) == (1, 5)
    flow.spec.worker.image = "other:2"
    assert specs.job(flow, namespace="n", workers=1)["metadata"]["name"] != one["metadata"]["name"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stopping_pods_serve_then_finish_the_request_in_hand(mode: str) -> None:
    flow = make_flow("stop", mode, timeout="40s")
    [obj] = [o for o in specs.render([flow], "n") if o["kind"] in ("Deployment", "Job")]
    pod = obj["spec"]["template"]["spec"]
    assert pod["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": specs.PRE_STOP}}
    assert pod["terminationGracePeriodSeconds"] >= specs.PRE_STOP + 40


def test_only_sync_flows_with_several_replicas_get_a_disruption_budget() -> None:
    one, three = make_flow("one", replicas=1), make_flow("three", replicas=3)
    kinds = [o["kind"] for o in specs.render([one, three], "n")]
    assert kinds.count("PodDisruptionBudget") == 1


def test_reserved_env_wins_over_the_flows_env() -> None:
    flow = make_flow("env", worker={"image": "i:1", "env": {"PORT": "1", "A": "b"}})
    container = specs.deployment(flow, namespace="n", replicas=1)["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"A": "b", "PORT": "8080", "HOOKGATE_FLOW_ID": flow.id, "HOOKGATE_MODE": "sync"}


def test_a_flow_without_image_cannot_run_on_kubernetes() -> None:
    flow = make_flow("local", worker={"command": ["./run"]})
    with pytest.raises(ConfigError, match=r"worker\.image"):
        specs.render([flow], "n")
