"""The console's charts: a flow's last hour minute by minute, from the gateway's own metrics."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from tests.conftest import TOKEN, GatewayProcess
from tests.console.conftest import ORDERS_TOKEN, sign_in
from tests.console.test_browser import browser, page  # noqa: F401 - fixtures
from tests.e2e.helpers import eventually

from hookgate.console.charts import History, chart, quantile
from hookgate.metrics import Metrics

T0 = 1_800_000_000.0  # a minute boundary


def test_minutes_are_differences_of_the_counters_and_the_live_minute_is_last() -> None:
    metrics, history = Metrics(), History()
    history.sample(metrics.registry, now=T0 + 1)
    for _ in range(3):
        metrics.requests.labels("orders", "202").inc()
        metrics.request_seconds.labels("orders", "async").observe(0.002)
    metrics.requests.labels("orders", "401").inc()
    metrics.queue_depth.labels("orders").set(7)
    metrics.queue_oldest_seconds.labels("orders").set(12.5)
    history.sample(metrics.registry, now=T0 + 61)  # minute 2 begins: minute 1 is closed
    metrics.requests.labels("orders", "202").inc()
    history.sample(metrics.registry, now=T0 + 90)  # minute 2 in progress
    series = history.series("orders")
    assert series.requests == [4.0, 1.0]
    assert series.errors == [1.0, 0.0]
    assert series.depth == [7.0, 7.0]
    assert series.oldest_s == [12.5, 12.5]
    assert series.p50_ms[0] is not None and 1.0 < series.p50_ms[0] <= 2.5
    assert series.p99_ms[1] is None  # no answer timed in the live minute
    assert history.series("unknown").requests == [0.0, 0.0]


def test_quantile_interpolates_within_a_bucket_like_prometheus() -> None:
    buckets = {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.75, buckets) == pytest.approx(0.15)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_a_chart_keeps_its_numbers() -> None:
    drawn = chart("Requests/min", [0.0, 3.0, None, 6.0])
    assert drawn.values == "0,3,,6"
    assert (drawn.last, drawn.top) == ("6", "6")
    assert len(drawn.points.split()) == 3


def values_of(svg_html: str, title: str) -> list[float]:
    found = re.search(rf'data-chart="{re.escape(title)}" data-values="([^"]*)"', svg_html)
    assert found, svg_html
    return [float(v) for v in found.group(1).split(",") if v]


def test_a_flow_page_charts_a_known_sequence_of_requests(gateway: GatewayProcess) -> None:
    hook = gateway.hook("orders")
    for _ in range(5):
        assert httpx.post(hook, headers={"authorization": f"Bearer {ORDERS_TOKEN}"}).is_success
    for _ in range(2):
        assert httpx.post(hook).status_code == 401
    with httpx.Client(base_url=gateway.admin_base, timeout=10) as client:
        sign_in(client)
        flow_id = gateway.flow("orders")["id"]

        def charted() -> str | None:
            html = client.get(f"/console/flows/{flow_id}/charts").text
            return html if sum(values_of(html, "Requests/min")) >= 7 else None

        html = eventually(charted, timeout=30)  # sampled every 5 s
        assert sum(values_of(html, "Requests/min")) == 7
        assert sum(values_of(html, "Failed requests and attempts/min")) >= 2
        assert values_of(html, "Answer time p99")
        assert 'data-chart="Queue depth"' in html and 'data-chart="Oldest queued"' in html
        page_html = client.get(f"/console/flows/{flow_id}").text
        assert 'id="charts"' in page_html and 'data-chart="Requests/min"' in page_html
        flows_html = client.get("/console/flows").text
        spark = re.search(r'<svg class="spark"[^>]*data-values="([\d.,]*)"', flows_html)
        assert spark, flows_html
        assert sum(float(v) for v in spark.group(1).split(",") if v) == 7


def test_a_sync_flow_page_shows_sync_settings_only(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.admin_base, timeout=10) as client:
        sign_in(client)
        sync_page = client.get("/console/flows/quotes").text
        async_page = client.get("/console/flows/orders").text
    assert "queue_timeout:" in sync_page and "replicas:" in sync_page
    for async_only in ("retry:", "max_workers:", "idle_timeout:", "retention:"):
        assert async_only not in sync_page
        assert async_only in async_page
    assert 'data-chart="Queue depth"' not in sync_page


def charted_requests(chart: Any) -> float:
    return sum(float(v) for v in (chart.get_attribute("data-values") or "").split(",") if v)


def test_charts_render_in_chromium_and_follow_new_requests(
    page: Any,  # noqa: F811 - the fixture
    gateway: GatewayProcess,
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{gateway.admin_base}/console/")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(gateway.admin_base + "/console/flows")
    page.goto(f"{gateway.admin_base}/console/flows/orders")
    requests = page.locator('svg[data-chart="Requests/min"]')
    expect(requests).to_be_visible()
    box = requests.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 40
    before = charted_requests(requests)

    # Requests arriving while the page is open: the chart and the numbers follow, no reload.
    hook = gateway.hook("orders")
    for _ in range(3):
        httpx.post(hook, headers={"authorization": f"Bearer {ORDERS_TOKEN}"}, timeout=10)
    eventually(lambda: charted_requests(requests) >= before + 3, timeout=30)
    expect(page.locator("#flow-facts [data-field=perMinute]")).not_to_have_text("-")
    assert page.locator("#charts polyline").count() >= 4

    page.goto(f"{gateway.admin_base}/console/flows")
    spark = page.locator("tr", has_text="orders").locator("svg.spark")
    expect(spark).to_be_visible()
    assert charted_requests(spark) >= 3
