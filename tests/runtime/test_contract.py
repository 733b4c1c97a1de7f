"""The ``Runtime`` contract: what the gateway, the dispatcher and the proxy rely on.

One suite, run against real local worker processes and against ``KubernetesRuntime`` on the
emulated cluster (``conftest.py``). Where the platforms differ the suite states the rule both
must keep: both list one endpoint per ready worker (a process, a pod), so the endpoints'
capacities add up to ``ready * slots`` — at every look, not just at the end, because callers
size their queues by it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec
import pytest

from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import Flow, new_flow_id
from hookgate.errors import ConfigError
from hookgate.runtime.base import WorkerStatus

from .conftest import VERSION, Fault, Harness

MODES = pytest.mark.parametrize("mode", ["sync", "async"])
# Longer than the first retry pause of either runtime (local 0.5 s, a failed Job 0.2 s here).
RETRY_WINDOW = 0.7

Check = Callable[[WorkerStatus, list[Endpoint]], bool]


async def observe(
    harness: Harness,
    flow: Flow,
    until: Check,
    *,
    keep_serving: bool = False,
    timeout: float = 15.0,
) -> tuple[WorkerStatus, list[Endpoint]]:
    """Look at ``status`` and ``endpoints`` until ``until`` holds, checking them at every look.

    ``keep_serving``: the flow must have an endpoint at every look (a sync flow being rolled
    out is never without a worker).
    """
    runtime = harness.runtime
    deadline = time.monotonic() + timeout
    while True:
        status = msgspec.structs.replace(runtime.status(flow.id))
        endpoints = runtime.endpoints(flow.id)
        assert all(e.capacity > 0 for e in endpoints), endpoints
        assert len(set(endpoints)) == len(endpoints), endpoints
        assert sum(e.capacity for e in endpoints) == status.ready * flow.spec.slots, (
            status,
            endpoints,
        )
        if keep_serving:
            assert endpoints, f"{flow.name} had no endpoint at some point: {status}"
        if until(status, endpoints):
            return status, endpoints
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {status}, {endpoints}")
        await asyncio.sleep(0.01)


def ready(workers: int) -> Check:
    return lambda status, endpoints: status.ready == workers


async def gone(harness: Harness, flow_id: str, timeout: float = 15.0) -> None:
    """Wait until the runtime has forgotten the flow and nothing of it is left on the platform."""
    deadline = time.monotonic() + timeout
    while harness.runtime.status(flow_id) != WorkerStatus() or harness.leftovers(flow_id):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"still there after {timeout}s: {harness.runtime.status(flow_id)}, "
                f"{harness.leftovers(flow_id)}"
            )
        await asyncio.sleep(0.01)


async def assert_answers(harness: Harness, flow: Flow, endpoints: list[Endpoint]) -> None:
    for endpoint in endpoints:
        assert await harness.answers(endpoint, flow), endpoint


async def test_an_unknown_flow_has_no_workers(harness: Harness) -> None:
    flow_id = new_flow_id()
    assert harness.runtime.status(flow_id) == WorkerStatus()
    assert harness.runtime.endpoints(flow_id) == []
    await harness.runtime.remove(flow_id)  # nothing to remove is not an error


async def test_validate_accepts_its_workers_and_refuses_what_it_cannot_run(
    harness: Harness,
) -> None:
    flow = harness.flow("valid", "async")
    assert harness.runtime.validate(flow.spec) == []
    if harness.name == "memory":
        pytest.skip("the memory runtime runs any worker: its apps are made from the flow")
    other = {"command": ["w"]} if flow.spec.workload.image else {"image": "registry.example/w:1"}
    unrunnable = spec_from_object({"name": "unrunnable", "mode": "async", "worker": other})
    with pytest.raises(ConfigError, match=r"unrunnable.*worker\.(command|image) is needed"):
        harness.runtime.validate(unrunnable)


@MODES
async def test_scale_brings_up_ready_workers_that_answer(harness: Harness, mode: str) -> None:
    flow = harness.flow("orders", mode, concurrency=3)
    await harness.runtime.scale(flow, 2)
    assert harness.runtime.status(flow.id).desired == 2

    status, endpoints = await observe(harness, flow, ready(2))
    assert (status.desired, status.last_error) == (2, None)
    assert sum(e.capacity for e in endpoints) == 6
    await assert_answers(harness, flow, endpoints)
    running = harness.workers(flow.id)
    assert len(running) == 2
    # design §4: a worker learns its flow and mode from the environment
    assert {(w.env["HOOKGATE_FLOW_ID"], w.env["HOOKGATE_MODE"]) for w in running} == {
        (flow.id, mode)
    }

    await harness.runtime.scale(flow, 2)  # asking again for what is there changes nothing
    await asyncio.sleep(0.2)
    assert {w.name for w in harness.workers(flow.id)} == {w.name for w in running}
    assert harness.runtime.endpoints(flow.id) == endpoints


@MODES
async def test_nothing_is_served_before_a_worker_is_ready(harness: Harness, mode: str) -> None:
    flow = harness.flow("slow", mode, fault="slow")
    await harness.runtime.scale(flow, 1)

    await observe(harness, flow, lambda s, e: len(harness.workers(flow.id)) == 1)
    await asyncio.sleep(0.2)  # the worker runs but does not listen yet
    status = harness.runtime.status(flow.id)
    assert (status.desired, status.ready, status.last_error) == (1, 0, None)
    assert harness.runtime.endpoints(flow.id) == []

    await harness.heal()
    status, endpoints = await observe(harness, flow, ready(1))
    assert (status.starting, status.last_error) == (0, None)
    await assert_answers(harness, flow, endpoints)


async def test_status_counts_workers_that_are_starting(harness: Harness) -> None:
    flow = harness.flow("starting", "sync", fault="slow")
    await harness.runtime.scale(flow, 1)
    await observe(harness, flow, lambda s, e: len(harness.workers(flow.id)) == 1)

    status, _ = await observe(harness, flow, lambda s, e: s.starting == 1, timeout=3.0)
    assert (status.desired, status.ready, status.last_error) == (1, 0, None)


@MODES
async def test_scale_down_and_to_zero(harness: Harness, mode: str) -> None:
    flow = harness.flow("shrink", mode, concurrency=2, max_workers=4)
    await harness.runtime.scale(flow, 3)
    await observe(harness, flow, ready(3))

    await harness.runtime.scale(flow, 1)
    assert harness.runtime.status(flow.id).desired == 1
    status, endpoints = await observe(
        harness, flow, lambda s, e: s.ready == 1 and len(harness.workers(flow.id)) == 1
    )
    assert sum(e.capacity for e in endpoints) == 2
    await assert_answers(harness, flow, endpoints)

    await harness.runtime.scale(flow, 0)
    status, endpoints = await observe(
        harness, flow, lambda s, e: s.ready == 0 and not harness.workers(flow.id)
    )
    assert endpoints == []
    assert (status.desired, status.starting, status.last_error) == (0, 0, None)


@MODES
async def test_a_changed_spec_rolls_out(harness: Harness, mode: str) -> None:
    flow = harness.flow("rollout", mode, version="1")
    await harness.runtime.scale(flow, 2)
    await observe(harness, flow, ready(2))

    edited = harness.flow("rollout", mode, version="2", flow_id=flow.id)
    await harness.runtime.scale(edited, 2)

    def rolled_out(status: WorkerStatus, endpoints: list[Endpoint]) -> bool:
        running = harness.workers(flow.id)
        return status.ready == 2 and sorted(w.env[VERSION] for w in running) == ["2", "2"]

    # Sync workers run at all times, so callers are served throughout the rollout.
    status, endpoints = await observe(harness, edited, rolled_out, keep_serving=mode == "sync")
    assert (status.desired, status.last_error) == (2, None)
    await assert_answers(harness, edited, endpoints)


async def test_remove_leaves_nothing_behind(harness: Harness) -> None:
    sync = harness.flow("removed-sync", "sync")
    batch = harness.flow("removed-async", "async")
    other = harness.flow("bystander", "sync")
    for flow, workers in ((sync, 2), (batch, 1), (other, 1)):
        await harness.runtime.scale(flow, workers)
    for flow, workers in ((sync, 2), (batch, 1), (other, 1)):
        await observe(harness, flow, ready(workers))

    await harness.runtime.remove(sync.id)
    await harness.runtime.remove(batch.id)
    # No request may be sent to a removed flow's workers from the moment remove() returns.
    assert harness.runtime.endpoints(sync.id) == []
    assert harness.runtime.endpoints(batch.id) == []
    await gone(harness, sync.id)
    await gone(harness, batch.id)
    await harness.runtime.remove(sync.id)  # twice is fine

    _, endpoints = await observe(harness, other, ready(1))
    await assert_answers(harness, other, endpoints)


@MODES
@pytest.mark.parametrize("fault", ["exit", "missing"])
async def test_a_worker_that_cannot_start_is_reported_and_retried(
    harness: Harness, mode: str, fault: Fault
) -> None:
    flow = harness.flow("broken", mode, fault=fault)
    await harness.runtime.scale(flow, 1)  # does not raise: the runtime owns the retries

    expected = harness.explains(fault, mode)
    status, endpoints = await observe(harness, flow, lambda s, e: expected in (s.last_error or ""))
    assert (status.desired, status.ready, endpoints) == (1, 0, [])

    await harness.heal()  # the worker can start now: the runtime's next attempt succeeds
    status, endpoints = await observe(
        harness, flow, lambda s, e: s.ready == 1 and s.last_error is None
    )
    await assert_answers(harness, flow, endpoints)


@MODES
async def test_remove_stops_retrying_a_failing_flow(harness: Harness, mode: str) -> None:
    flow = harness.flow("doomed", mode, fault="exit")
    await harness.runtime.scale(flow, 2)
    await observe(harness, flow, lambda s, e: s.last_error is not None)

    await harness.runtime.remove(flow.id)
    await gone(harness, flow.id)
    await asyncio.sleep(RETRY_WINDOW)  # a retry that was already scheduled must not revive it
    assert harness.runtime.status(flow.id) == WorkerStatus()
    assert harness.leftovers(flow.id) == []


async def test_async_workers_never_exceed_max_workers(harness: Harness) -> None:
    flow = harness.flow("capped", "async", max_workers=2, concurrency=2)
    await harness.runtime.scale(flow, 3)

    status, endpoints = await observe(harness, flow, lambda s, e: s.ready >= 2 and not s.starting)
    assert status.ready == 2
    assert sum(e.capacity for e in endpoints) == 4
    assert len(harness.workers(flow.id)) == 2


async def test_close_is_safe_to_call_twice(harness: Harness) -> None:
    flow = harness.flow("closing", "sync")
    await harness.runtime.scale(flow, 1)
    await observe(harness, flow, ready(1))

    await harness.runtime.close()
    await harness.runtime.close()
