"""``/metrics`` after a known sequence: names, labels and counts a dashboard relies on."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import GatewayProcess
from tests.console.conftest import post_order
from tests.e2e.helpers import eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(gateway: GatewayProcess) -> Samples:
    text = gateway.admin("GET", "/metrics").text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def until(gateway: GatewayProcess, check: Callable[[Samples], bool]) -> Samples:
    def ready() -> Samples | None:
        found = samples(gateway)
        return found if check(found) else None

    result: Samples = eventually(ready)
    return result


def test_metrics_after_a_known_sequence(gateway: GatewayProcess) -> None:
    post_order(gateway, b"one")
    post_order(gateway, b"two")
    refused = httpx.post(
        gateway.hook("orders"), content=b"x", headers={"authorization": "Bearer no"}
    )
    assert refused.status_code == 401
    missing = httpx.post(gateway.hook("orders"), content=b"x")
    assert missing.status_code == 401
    answered = httpx.post(gateway.hook("quotes") + "/price", content=b"q", timeout=10)
    assert answered.status_code == 200

    found = until(
        gateway,
        lambda s: (
            value(
                s, "hookgate_deliveries_total", flow="orders", destination="worker", outcome="dead"
            )
            == 2
        ),
    )
    assert value(found, "hookgate_requests_total", flow="orders", status="202") == 2
    assert value(found, "hookgate_requests_total", flow="orders", status="401") == 2
    assert value(found, "hookgate_requests_total", flow="quotes", status="200") == 1
    assert (
        value(found, "hookgate_auth_failures_total", flow="orders", reason="bearer:bad-credentials")
        == 1
    )
    assert (
        value(
            found,
            "hookgate_auth_failures_total",
            flow="orders",
            reason="bearer:missing-credentials",
        )
        == 1
    )
    assert value(found, "hookgate_request_seconds_count", flow="orders", mode="async") == 4
    assert value(found, "hookgate_request_seconds_count", flow="quotes", mode="sync") == 1
    assert value(found, "hookgate_delivery_seconds_count", flow="orders", destination="worker") == 2
    assert value(found, "hookgate_cold_start_seconds_count", flow="orders") >= 1
    assert value(found, "hookgate_store_accepting") == 1

    names = {name for name, _ in found}
    for expected in (
        "hookgate_queue_depth",
        "hookgate_queue_oldest_seconds",
        "hookgate_workers",
        "hookgate_store_commit_batch_count",
        "hookgate_store_commit_seconds_count",
    ):
        assert expected in names, expected
    labelled = until(
        gateway, lambda s: value(s, "hookgate_workers", flow="quotes", state="ready") == 1
    )
    assert ("hookgate_queue_depth", frozenset({("flow", "orders")})) in labelled
