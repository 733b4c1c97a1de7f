"""The scenarios, in the order a full run measures them (the ceiling first, for the ratios)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from bench.context import Context
from bench.results import Row


class Outcome(msgspec.Struct, kw_only=True):
    rows: list[Row]
    settings: dict[str, Any] = {}


class Scenario(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    run: Callable[[Context], Outcome]
    tools: tuple[str, ...]
    about: str

    @property
    def uses_ceiling(self) -> bool:
        return "wrk" in self.tools and self.name != "ceiling"


def all_scenarios() -> list[Scenario]:
    from bench.scenarios import (
        accept,
        ceiling,
        cold_start,
        drain,
        e2e,
        edge,
        fairness,
        postgres,
        routing,
        sync,
        traced,
        upload,
    )

    wrk = ("wrk",)
    return [
        Scenario(
            name="ceiling",
            run=ceiling.run,
            tools=("wrk", "nginx"),
            about="nginx `return 202`: the HTTP ceiling of this machine",
        ),
        Scenario(
            name="ingest",
            run=accept.ingest,
            tools=wrk,
            about="durable async accept of a 1 KB JSON POST",
        ),
        Scenario(
            name="many-flows",
            run=accept.many_flows,
            tools=wrk,
            about="the same with 10,000 and 100,000 flows registered",
        ),
        Scenario(
            name="auth",
            run=accept.auth,
            tools=wrk,
            about="durable accept of GitHub-signed POSTs (X-Hub-Signature-256)",
        ),
        Scenario(
            name="sync",
            run=sync.run,
            tools=wrk,
            about="1 KB POST via the gateway to 2 echo workers vs one worker direct",
        ),
        Scenario(
            name="sync-defaults",
            run=sync.defaults,
            tools=("wrk", "node"),
            about="a sync flow with every default, fast Node.js worker, 64 conns: 2xx/s, non-2xx %",
        ),
        Scenario(
            name="traced",
            run=traced.run,
            tools=wrk,
            about="the sync scenario with OpenTelemetry tracing off, on, and 1 % sampled",
        ),
        Scenario(
            name="upload",
            run=upload.run,
            tools=(),
            about="1 GiB chunked POST streamed via a sync flow: gateway RSS growth, MB/s",
        ),
        Scenario(
            name="e2e",
            run=e2e.run,
            tools=("wrk", "node"),
            about="async flow, defaults, fast Node.js worker: delivered/s until the queue is empty",
        ),
        Scenario(
            name="fairness",
            run=fairness.run,
            tools=("wrk", "node"),
            about="flow B's accept-to-delivery latency while flow A drains a 100,000 backlog",
        ),
        Scenario(
            name="edge",
            run=edge.run,
            tools=("prlimit",),
            about="hostile clients on the defaults: slow drips at the cap, stalled 9 MB bodies",
        ),
        Scenario(
            name="drain",
            run=drain.run,
            tools=wrk,
            about="deliveries/s from a backlog to a warm Python SDK worker",
        ),
        Scenario(
            name="cold-start",
            run=cold_start.run,
            tools=(),
            about="no worker running -> first delivery received by the worker",
        ),
        Scenario(
            name="routing",
            run=routing.run,
            tools=wrk,
            about="ingest with a filter against without; RabbitMQ destination end to end",
        ),
        Scenario(
            name="postgres", run=postgres.run, tools=wrk, about="ingest and drain on PostgreSQL"
        ),
    ]
