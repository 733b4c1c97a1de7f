"""``traced``: the ``sync`` scenario's gateway with OpenTelemetry tracing off, on for every
request, and on with 1 % of traces sampled, exporting to a sink that drops what it gets
(:mod:`bench.workers.otlp_sink`). The cost of tracing is the gap between the rows.
"""

from __future__ import annotations

import os
import sys

from bench import load, wrk
from bench.context import REPO, Context
from bench.gateway import Gateway
from bench.procs import Service
from bench.results import Row
from bench.scenarios import Outcome
from bench.scenarios.sync import JSON, SPEC, wait_answering
from bench.tools import ensure_free, free_port, listening

SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}


def run(ctx: Context) -> Outcome:
    port = free_port()
    ensure_free(port)
    sink = Service(
        name="OTLP sink",
        command=[sys.executable, "-m", "bench.workers.otlp_sink"],
        log=ctx.workdir("otlp-sink") / "sink.log",
        env={**os.environ, "PORT": str(port), "PYTHONPATH": str(REPO)},
    )
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    runs = [
        ("tracing off", {}),
        ("every request traced", endpoint),
        ("1 % of traces sampled", {**endpoint, **SAMPLED}),
    ]
    rows: list[Row] = []
    with sink.start():
        sink.wait_ready(lambda: listening(port), timeout=20)
        for label, env in runs:
            work = ctx.workdir("traced")
            with Gateway(workdir=work, flows=[SPEC], env=env) as gateway:
                url = gateway.hook_url("bench")
                wait_answering(url, timeout=30)
                rows.append(
                    load.measure(
                        ctx,
                        case=f"gateway → 2 echo workers, {label}",
                        target=wrk.Target(url=url, body=ctx.body_file(), headers=JSON),
                        pid=gateway.pid,
                        workdir=work,
                        status=200,
                    )
                )
    if rows[0].rate:
        for row in rows[1:]:
            row.note = f"{row.rate / rows[0].rate:.2f}x tracing off"
    return Outcome(rows=rows, settings={"flow": SPEC, "sampled": SAMPLED})
