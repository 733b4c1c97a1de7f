"""Request counts: nothing written in steady state; 1,000 flows reconciled from nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from kmock._internal import enums

from hookgate.runtime.kubernetes import names

from .conftest import Emulator, make_flow, names_of, writes

WORKLOADS = {"services", "deployments", "jobs", "poddisruptionbudgets"}


async def settled(cluster: Emulator, *, period: float = 0.3) -> int:
    """Wait until nothing was written for ``period``; returns the request count then."""
    count = -1
    while count != len(writes(cluster)):
        count = len(writes(cluster))
        await asyncio.sleep(period)
    return len(list(cluster))


async def resyncs(cluster: Emulator, *, since: int, count: int, timeout: float = 30.0) -> None:
    """Wait until the runtime has listed Services ``count`` times after request ``since``: that
    many resyncs went by, however slowly a loaded machine runs them."""
    deadline = time.monotonic() + timeout
    while True:
        later = list(cluster)[since:]
        lists = [
            r
            for r in later
            if r.action == enums.action.LIST
            and r.resource is not None
            and r.resource.plural == "services"
        ]
        if len(lists) >= count:
            return
        assert time.monotonic() < deadline, f"{len(lists)} of {count} resyncs in {timeout}s"
        await asyncio.sleep(0.05)


async def test_steady_state_makes_no_writes_and_only_resync_lists(
    make_runtime: Callable[..., Any], cluster: Emulator
) -> None:
    runtime = await make_runtime(identity="steady", resync=0.2)
    flows = [make_flow(f"steady-{i}", "sync" if i % 2 else "async") for i in range(20)]
    for flow in flows:
        await runtime.scale(flow, 2)
    mark = await settled(cluster)

    await resyncs(cluster, since=mark, count=3)
    for flow in flows:  # and the gateway re-asserts what it wants, as it does on restart
        await runtime.scale(flow, 2)
    await resyncs(cluster, since=len(list(cluster)), count=2)

    later = list(cluster)[mark:]
    workload = [r for r in later if r.resource is not None and r.resource.plural in WORKLOADS]
    assert [
        r
        for r in workload
        if r.action in {enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE}
    ] == []
    kinds = Counter((r.action, r.resource.plural) for r in later if r.resource is not None)
    print("requests in steady state:", dict(kinds))
    assert {action for action, plural in kinds if plural != "leases"} == {enums.action.LIST}
    assert {plural for _, plural in kinds} <= {*WORKLOADS, "pods", "leases"}
    assert kinds[(enums.action.LIST, "services")] >= 3  # the resync did run


async def test_a_thousand_flows_from_nothing(
    make_runtime: Callable[..., Any], cluster: Emulator
) -> None:
    runtime = await make_runtime(identity="bulk")
    flows = [make_flow(f"flow-{i:04d}", "sync" if i % 2 else "async") for i in range(1000)]

    started = time.perf_counter()
    await asyncio.gather(*(runtime.scale(flow, 1) for flow in flows))
    elapsed = time.perf_counter() - started

    requests = Counter(r.method for r in writes(cluster))
    print(f"\n1,000 flows reconciled in {elapsed:.2f}s; writes: {dict(requests)}")
    assert names_of(cluster, "services") == {names.base_name(f) for f in flows}
    assert names_of(cluster, "deployments") == {names.base_name(f) for f in flows[1::2]}
    assert len(names_of(cluster, "jobs")) == 500
    assert all(runtime.status(f.id).last_error is None for f in flows)
