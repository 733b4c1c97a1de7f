"""Measuring one case: a smoke request, a warm-up, then a metered wrk run that must be clean."""

from __future__ import annotations

from pathlib import Path

import httpx

from bench import wrk
from bench.context import Context
from bench.errors import BenchFailure, RunErrors
from bench.procs import Meter
from bench.results import Load, Row, Usage


def expect(target: wrk.Target, *, status: int) -> bytes:
    """Send the target's request once and insist on ``status`` — wrk counts only >= 400 as errors,
    so a wrong 2xx/3xx (a 200 where 202 is due) must be caught before the load."""
    body = target.body.read_bytes() if target.body else None
    try:
        answer = httpx.request(
            target.method, target.url, content=body, headers=target.headers, timeout=10
        )
    except httpx.HTTPError as exc:
        raise BenchFailure(f"{target.url} did not answer: {exc}") from exc
    if answer.status_code != status:
        raise BenchFailure(
            f"{target.method} {target.url} answered {answer.status_code} "
            f"{answer.text[:200]!r}, expected {status}"
        )
    return answer.content


def check(load: Load, *, case: str) -> None:
    """A run with any error, or none at all, is a failure and never a result."""
    if load.requests == 0:
        raise RunErrors(f"{case}: no request completed")
    if load.errors.total:
        raise RunErrors(
            f"{case}: {load.errors.total} errors in {load.requests} requests "
            f"({load.errors.describe()})"
        )


def measure(
    ctx: Context,
    *,
    case: str,
    target: wrk.Target,
    pid: int | None,
    workdir: Path,
    status: int,
    note: str = "",
) -> Row:
    load, usage = metered(ctx, target=target, pid=pid, workdir=workdir, status=status)
    check(load, case=case)
    return Row(
        case=case,
        rate=round(load.rate, 1),
        ratio=ctx.ratio(load.rate),
        latency=load.latency,
        errors=load.errors,
        usage=usage,
        note=note,
    )


def metered(
    ctx: Context, *, target: wrk.Target, pid: int | None, workdir: Path, status: int
) -> tuple[Load, Usage | None]:
    """A smoke request, a warm-up, then the wrk run with the gateway's CPU and RSS metered;
    its errors are the caller's to judge."""
    expect(target, status=status)
    wrk.run(target, seconds=ctx.timing.warmup_s, workdir=workdir)
    meter = Meter(pid).start() if pid is not None else None
    load = wrk.run(target, seconds=ctx.timing.measure_s, workdir=workdir)
    return load, meter.stop() if meter is not None else None
