"""Prometheus metrics, in a registry per gateway (not the global one) so tests stay isolated."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "hookgate_requests",
            "Requests on /hook/* by flow and status code.",
            ["flow", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "hookgate_request_seconds",
            "Time to answer a /hook/* request (accept or proxy).",
            ["flow", "mode"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.auth_failures = Counter(
            "hookgate_auth_failures",
            "Requests refused with 401, by flow and reason.",
            ["flow", "reason"],
            registry=r,
        )
        self.handshakes = Counter(
            "hookgate_handshakes",
            "Provider URL handshakes answered by the gateway itself, by flow, provider and "
            "outcome (answered, or why it was refused).",
            ["flow", "provider", "outcome"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "hookgate_queue_depth", "Deliveries queued or leased, by flow.", ["flow"], registry=r
        )
        self.queue_oldest_seconds = Gauge(
            "hookgate_queue_oldest_seconds",
            "Age of the oldest waiting delivery, by flow.",
            ["flow"],
            registry=r,
        )
        self.deliveries = Counter(
            "hookgate_deliveries",
            "Delivery attempts by flow, destination and outcome (done, retry, dead).",
            ["flow", "destination", "outcome"],
            registry=r,
        )
        self.filtered = Counter(
            "hookgate_filtered",
            "Deliveries not sent because a filter (the flow's or the destination's) did not hold.",
            ["flow", "destination"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "hookgate_delivery_seconds",
            "Duration of one delivery attempt, by flow and destination.",
            ["flow", "destination"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.workers = Gauge(
            "hookgate_workers",
            "Workers by flow and state (ready, starting).",
            ["flow", "state"],
            registry=r,
        )
        self.worker_starts = Counter(
            "hookgate_worker_starts",
            "Worker starts by flow and result (ok, failed).",
            ["flow", "result"],
            registry=r,
        )
        self.flow_failing = Gauge(
            "hookgate_flow_failing",
            "1 while the flow is failing (its last worker start failed and no worker is ready).",
            ["flow"],
            registry=r,
        )
        self.cold_start_seconds = Histogram(
            "hookgate_cold_start_seconds",
            "Time from asking for a worker to it being ready.",
            ["flow"],
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.store_commit_batch = Histogram(
            "hookgate_store_commit_batch",
            "Writes grouped into one store commit (one fsync).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.store_accepting = Gauge(
            "hookgate_store_accepting",
            "1 while the store can take requests, 0 while it cannot (disk below the reserve,"
            " disk full, database unreachable).",
            registry=r,
        )
        self.store_commit_seconds = Histogram(
            "hookgate_store_commit_seconds",
            "Time to run and commit one group of store writes.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.concurrency_limit = Gauge(
            "hookgate_concurrency_limit",
            "Requests the flow's ready workers may have in flight now (adaptive or pinned).",
            ["flow"],
            registry=r,
        )
        self.connections = Gauge(
            "hookgate_connections", "Open connections, by listener.", ["listener"], registry=r
        )
        self.connections_closed = Counter(
            "hookgate_connections_closed",
            "Connections closed or refused by the listener's limits, by listener and reason "
            "(idle, head_timeout, body_timeout, head_too_large, slow_reader, evicted, "
            "per_address, over_capacity).",
            ["listener", "reason"],
            registry=r,
        )
