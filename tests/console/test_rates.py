"""Requests per minute and error rate come from the Prometheus counters."""

from __future__ import annotations

from hookgate.console.rates import Rates
from hookgate.metrics import Metrics


def test_rates_over_the_last_minute() -> None:
    metrics = Metrics()
    rates = Rates(metrics.registry)
    assert rates.rates(now=1000.0) is None
    rates.sample(now=1000.0)
    metrics.requests.labels("orders", "202").inc(8)
    metrics.requests.labels("orders", "401").inc(2)
    metrics.deliveries.labels("orders", "worker", "done").inc(6)
    metrics.deliveries.labels("orders", "worker", "retry").inc(4)
    metrics.requests.labels("other", "202").inc(100)
    found = rates.rates(now=1030.0)
    assert found is not None
    rate = found["orders"]
    assert rate.per_minute == 20.0
    assert rate.error_rate == 6 / 20


def test_samples_older_than_the_window_are_not_the_base() -> None:
    metrics = Metrics()
    rates = Rates(metrics.registry)
    rates.sample(now=0.0)
    metrics.requests.labels("orders", "202").inc(50)
    rates.sample(now=100.0)
    metrics.requests.labels("orders", "202").inc(6)
    found = rates.rates(now=130.0)
    assert found is not None
    rate = found["orders"]
    assert rate.per_minute == 12.0
    assert rate.error_rate == 0.0
    assert "idle" not in found
