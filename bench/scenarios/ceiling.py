"""``ceiling``: what this machine's HTTP stack does with nginx, under the very same load."""

from __future__ import annotations

from bench import load, nginx, wrk
from bench.context import Context
from bench.scenarios import Outcome

JSON = {"Content-Type": "application/json"}


def run(ctx: Context) -> Outcome:
    prefix = ctx.workdir("nginx")
    with nginx.ceiling(prefix) as (_, url):
        target = wrk.Target(url=url, body=ctx.body_file(), headers=JSON)
        row = load.measure(
            ctx, case="nginx return 202", target=target, pid=None, workdir=prefix, status=202
        )
    row.ratio = 1.0
    ctx.ceiling_rps = row.rate
    return Outcome(rows=[row], settings={"nginx": "worker_processes 1, access_log off"})
