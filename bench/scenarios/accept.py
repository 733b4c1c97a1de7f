"""``ingest``, ``many-flows`` and ``auth``: durable async accept of a 1 KB JSON POST.

The flow's worker exits at once (:data:`bench.gateway.NO_WORKER`), so deliveries stay queued
and the figures are those of the ingress and the store alone, with ``synchronous=FULL``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from bench import load, wrk
from bench.context import Context
from bench.gateway import Gateway, flow
from bench.results import Row
from bench.scenarios import Outcome

JSON = {"Content-Type": "application/json"}
DURABLE = {"HOOKGATE_SQLITE_SYNCHRONOUS": "FULL"}


def accept_row(
    ctx: Context,
    gateway: Gateway,
    *,
    case: str,
    workdir: Path,
    name: str = "bench",
    headers: dict[str, str] | None = None,
    unique_header: str | None = None,
) -> Row:
    target = wrk.Target(
        url=gateway.hook_url(name),
        body=ctx.body_file(),
        headers={**JSON, **(headers or {})},
        unique_header=unique_header,
    )
    return load.measure(ctx, case=case, target=target, pid=gateway.pid, workdir=workdir, status=202)


def ingest(ctx: Context) -> Outcome:
    work = ctx.workdir("ingest")
    with Gateway(workdir=work, flows=[flow("bench")], env=DURABLE) as gateway:
        row = accept_row(ctx, gateway, case="1 KB JSON, async accept", workdir=work)
        row.note = f"ready in {gateway.startup_s:.2f} s, idle RSS {gateway.idle_rss_mb:.0f} MB"
        row.extra = {
            "startup_s": round(gateway.startup_s, 3),
            "idle_rss_mb": round(gateway.idle_rss_mb, 1),
        }
    return Outcome(rows=[row], settings={"flow": flow("bench"), "env": DURABLE})


def many_flows(ctx: Context) -> Outcome:
    """The same load with the flow count raised: all flows come from the flow file at start."""
    rows = []
    for count in ctx.timing.many_flows:
        work = ctx.workdir(f"many-flows-{count}")
        flows = [flow("bench"), *(flow(f"filler-{i:06d}") for i in range(1, count))]
        with Gateway(
            workdir=work, flows=flows, env=DURABLE, ready_timeout=30 + count / 500
        ) as gateway:
            ctx.console.print(
                f"{count:,} flows: ready in {gateway.startup_s:.1f} s, "
                f"idle RSS {gateway.idle_rss_mb:.0f} MB"
            )
            row = accept_row(ctx, gateway, case=f"{count:,} flows registered", workdir=work)
        row.note = f"ready in {gateway.startup_s:.1f} s, idle RSS {gateway.idle_rss_mb:.0f} MB"
        row.extra = {
            "flows": count,
            "startup_s": round(gateway.startup_s, 2),
            "idle_rss_mb": round(gateway.idle_rss_mb, 1),
        }
        rows.append(row)
    return Outcome(rows=rows, settings={"filler": flow("filler-000001"), "env": DURABLE})


def github_signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def auth(ctx: Context) -> Outcome:
    """GitHub-signed POSTs: once without a delivery id (verification only), once with a unique
    ``X-GitHub-Delivery`` per request, as GitHub sends it (verification plus deduplication)."""
    work = ctx.workdir("auth")
    secret = secrets.token_hex(20)
    spec = flow("bench", auth=[{"type": "github", "secret": "env:BENCH_GITHUB_SECRET"}])
    signature = github_signature(secret.encode(), ctx.body_file().read_bytes())
    signed = {"X-Hub-Signature-256": signature, "X-GitHub-Event": "push"}
    with Gateway(
        workdir=work, flows=[spec], env={**DURABLE, "BENCH_GITHUB_SECRET": secret}
    ) as gateway:
        unsigned = wrk.Target(url=gateway.hook_url("bench"), body=ctx.body_file(), headers=JSON)
        load.expect(unsigned, status=401)
        rows = [
            accept_row(
                ctx, gateway, case="GitHub signature, no delivery id", workdir=work, headers=signed
            ),
            accept_row(
                ctx,
                gateway,
                case="GitHub signature + unique X-GitHub-Delivery",
                workdir=work,
                headers=signed,
                unique_header="X-GitHub-Delivery",
            ),
        ]
    rows[0].note = "HMAC-SHA256 check per request; unsigned gets 401"
    rows[1].note = "plus a dedupe key stored per request"
    return Outcome(rows=rows, settings={"flow": spec, "env": DURABLE})
