"""``concurrency: auto`` end to end: the limit follows a worker of known capacity, backs off on
429, and a pinned number pins (real gateway, real worker processes over loopback)."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually

CAPACITY = ROOT / "tests" / "workers" / "capacity.py"


def flow(extra: str = "", *, capacity: int = 4, overload: int = 0) -> str:
    return f"""
flows:
  - name: cap
    mode: async
    worker:
      command: [{sys.executable}, {CAPACITY}]
      env: {{CAPACITY: "{capacity}", SERVICE: "0.02", OVERLOAD: "{overload}"}}
    max_workers: 1
    retry: {{backoff: 100ms, max_backoff: 1s, max_attempts: 50}}
{extra}
"""


def metric(gateway: GatewayProcess, name: str, **labels: str) -> float | None:
    """The value of the sample with exactly these labels, None if there is none."""
    text = gateway.admin("GET", "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def burst(gateway: GatewayProcess, count: int) -> None:
    url = gateway.hook("cap")
    with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda _: client.post(url, content=b"{}").status_code, range(count))
        )
    assert statuses == [202] * count


def drained(gateway: GatewayProcess, count: int) -> None:
    eventually(
        lambda: (
            metric(
                gateway,
                "hookgate_deliveries_total",
                flow="cap",
                destination="worker",
                outcome="done",
            )
            == count
        ),
        timeout=60,
    )


def measured_limit(gateway: GatewayProcess) -> float:
    """The flow's limit once it has moved from where it starts (16); the gauge is refreshed
    every few seconds."""
    value: float = eventually(
        lambda: (
            (v := metric(gateway, "hookgate_concurrency_limit", flow="cap")) is not None
            and v < 16
            and v
        ),
        timeout=15,
    )
    return value


def test_the_limit_settles_near_the_workers_capacity(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(flow())
    burst(gateway, 1600)  # about 8 s of work: room for the limit's steps of three windows each
    drained(gateway, 1600)
    limit = measured_limit(gateway)
    assert 2 <= limit <= 10, limit


def test_429_with_retry_after_lowers_the_limit_and_nothing_is_lost(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory(flow(overload=429))
    burst(gateway, 300)
    drained(gateway, 300)
    assert (
        metric(
            gateway, "hookgate_deliveries_total", flow="cap", destination="worker", outcome="retry"
        )
        or 0
    ) > 0
    limit = measured_limit(gateway)
    assert limit <= 8, limit


def test_a_pinned_number_pins(gateway_factory: Any) -> None:
    """The worker answers 429 to a fourth request in flight: with ``concurrency: 3`` it never
    gets one, so not a single delivery is retried."""
    gateway: GatewayProcess = gateway_factory(flow("    concurrency: 3", capacity=3, overload=429))
    burst(gateway, 300)
    drained(gateway, 300)
    assert (
        metric(
            gateway, "hookgate_deliveries_total", flow="cap", destination="worker", outcome="retry"
        )
        is None
    )
    assert eventually(lambda: metric(gateway, "hookgate_concurrency_limit", flow="cap")) == 3
