"""The dispatcher on the twins: delivery, retries, dead letters, lease expiry, destinations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hookgate.asgi import Scope
from hookgate.dispatch.lane import LEASE_BATCH
from hookgate.domain.backoff import RestartBackoff
from hookgate.domain.deliveries import Delivery, State
from hookgate.domain.destinations import Destination
from hookgate.domain.flows import Flow
from hookgate.domain.forwarding import Reply
from hookgate.errors import WorkerStartFailed

from .conftest import FAST_RETRY, Handler, Rig, worker_app

MakeRig = Callable[..., Awaitable[Rig]]


def capacity(parallel: int, *, service: float) -> Handler:
    """One worker of known capacity (as ``tests/workers/capacity.py``): ``parallel`` requests
    served at once in ``service`` seconds each; more wait inside it, so their latency grows
    and its throughput does not."""
    gate = asyncio.Semaphore(parallel)

    async def serve(scope: Scope, body: bytes) -> tuple[int, bytes]:
        async with gate:
            await asyncio.sleep(service)
        return 200, b"ok"

    return serve


async def test_each_accepted_request_reaches_a_worker_once_and_is_done(make_rig: MakeRig) -> None:
    seen: list[dict[str, Any]] = []

    async def record(scope: Scope, body: bytes) -> tuple[int, bytes]:
        seen.append({"body": json.loads(body), "key": dict(scope["headers"])[b"idempotency-key"]})
        return 200, b"thanks"

    rig = await make_rig(record)
    flow = await rig.flow()
    requests = [await rig.accept(flow, {"n": i}) for i in range(5)]
    done = await rig.finished(flow, 5)
    assert [d.state for d in done] == [State.DONE] * 5
    assert sorted(s["body"]["n"] for s in seen) == list(range(5))
    assert sorted(s["key"].decode() for s in seen) == sorted(r.id for r in requests)
    assert [a.status_code for a in await rig.store.attempts(requests[0].id)] == [200]


async def test_a_refused_delivery_is_retried_with_backoff_until_done(make_rig: MakeRig) -> None:
    tries: dict[bytes, int] = {}

    async def flaky(scope: Scope, body: bytes) -> tuple[int, bytes]:
        tries[body] = tries.get(body, 0) + 1
        return (503, b"busy") if tries[body] < 3 else (200, b"ok")

    rig = await make_rig(flaky)
    flow = await rig.flow(retry=FAST_RETRY)
    request = await rig.accept(flow, {"n": 1})
    [done] = await rig.finished(flow, 1)
    assert done.state is State.DONE
    attempts = await rig.store.attempts(request.id)
    assert [(a.number, a.status_code) for a in attempts] == [(1, 503), (2, 503), (3, 200)]


async def test_out_of_attempts_or_refused_for_good_is_dead(make_rig: MakeRig) -> None:
    async def refuse(scope: Scope, body: bytes) -> tuple[int, bytes]:
        return (400, b"bad") if json.loads(body)["permanent"] else (500, b"down")

    rig = await make_rig(refuse)
    flow = await rig.flow(retry=FAST_RETRY)
    permanent = await rig.accept(flow, {"permanent": True})
    transient = await rig.accept(flow, {"permanent": False})
    assert [d.state for d in await rig.finished(flow, 2)] == [State.DEAD, State.DEAD]
    assert [a.status_code for a in await rig.store.attempts(permanent.id)] == [400]
    assert [a.status_code for a in await rig.store.attempts(transient.id)] == [500] * 3
    assert (await rig.store.get_delivery(transient.id)).last_error == "HTTP 500: down"


async def test_a_worker_that_cannot_start_moves_deliveries_to_dead_letters(
    make_rig: MakeRig,
) -> None:
    """The runtime's start failure reaches the dispatcher: each failed start is an attempt of
    the delivery that waited longest, instead of every delivery waiting for a worker forever."""
    rig = await make_rig()

    def broken(flow: Flow, env: dict[str, str]) -> Any:
        raise WorkerStartFailed("exec: no such file: ./worker")

    rig.runtime.apps = broken
    rig.runtime.restart = RestartBackoff(first=0.01, cap=0.02)
    flow = await rig.flow(retry=FAST_RETRY)
    request = await rig.accept(flow, {"n": 1})
    [dead] = await rig.finished(flow, 1)
    assert dead.state is State.DEAD
    assert dead.last_error == "exec: no such file: ./worker"
    assert len(await rig.store.attempts(request.id)) == 3


async def test_a_delivery_whose_lease_expired_is_delivered_again(make_rig: MakeRig) -> None:
    rig = await make_rig()
    flow = await rig.flow()
    request = await rig.accept(flow, {"n": 1}, notify=False)
    # Another gateway leased it and died: its lease runs out, then this one delivers it.
    [stale] = await rig.store.lease(flow.id, limit=1, lease_for=0.05, now=time.time())
    await asyncio.sleep(0.06)
    rig.dispatcher.notify(flow.id)  # the gateway's periodic look at the queue
    [done] = await rig.finished(flow, 1)
    assert (done.id, done.state, done.attempts) == (request.id, State.DONE, 2)
    assert not await rig.store.complete(stale, (await rig.store.attempts(request.id))[0])


class FakeSender:
    """A destination that answers what ``answer`` says and records what it got, in order."""

    kind = "url"

    def __init__(self, answer: Callable[[Delivery], Awaitable[Reply]]) -> None:
        self.answer = answer
        self.closed = False

    async def send(self, delivery: Delivery, *, timeout: float) -> Reply:
        return await self.answer(delivery)

    async def close(self) -> None:
        self.closed = True


def senders(sender: FakeSender) -> Callable[[Flow, Destination], FakeSender]:
    return lambda flow, destination: sender


async def test_fan_out_one_destination_fails_the_other_delivers(make_rig: MakeRig) -> None:
    async def down(delivery: Delivery) -> Reply:
        return Reply(status=None, error="connection refused")

    rig = await make_rig(senders=senders(FakeSender(down)))
    flow = await rig.flow(
        retry=FAST_RETRY,
        destinations=[
            {"name": "worker", "workers": True},
            {"name": "audit", "url": {"url": "https://audit.example/hook"}},
        ],
    )
    request = await rig.accept(flow, {"n": 1})
    by_destination = {d.destination: d for d in await rig.finished(flow, 2)}
    assert by_destination["worker"].state is State.DONE
    assert by_destination["worker"].id == request.id
    audit = by_destination["audit"]
    assert (audit.state, audit.attempts, audit.last_error) == (
        State.DEAD,
        3,
        "connection refused",
    )


async def test_keys_are_delivered_in_parallel(make_rig: MakeRig) -> None:
    """The first of key ``a`` is held until one of key ``b`` arrives: were keys serialised
    across each other, this would never finish."""
    b_arrived = asyncio.Event()

    async def answer(delivery: Delivery) -> Reply:
        key = json.loads(delivery.body)["customer"]
        if key == "a":
            await b_arrived.wait()
        else:
            b_arrived.set()
        return Reply(status=200)

    rig = await make_rig(senders=senders(FakeSender(answer)))
    flow = await rig.flow(
        concurrency=4,
        order_key="body.customer",
        destinations=[{"name": "audit", "url": {"url": "https://audit.example/hook"}}],
    )
    for customer in ["a", "a", "b"]:
        await rig.accept(flow, {"customer": customer})
    assert [d.state for d in await rig.finished(flow, 3)] == [State.DONE] * 3


async def test_a_backlog_is_leased_in_bounded_batches_however_many_slots_are_free(
    make_rig: MakeRig,
) -> None:
    """One flow's lease never takes more than ``LEASE_BATCH`` deliveries, even with 256 slots
    free: a batch is worked through in event-loop turns that every other flow waits for."""
    rig = await make_rig()
    asked: list[int] = []
    lease = rig.store.lease

    async def counted(flow_id: str, **kwargs: Any) -> list[Delivery]:
        asked.append(kwargs["limit"])
        return await lease(flow_id, **kwargs)

    rig.store.lease = counted  # type: ignore[method-assign]
    flow = await rig.flow(concurrency=256)
    for i in range(300):
        await rig.accept(flow, {"n": i}, notify=False)
    rig.dispatcher.notify(flow.id)
    assert len(await rig.finished(flow, 300, timeout=20)) == 300
    assert max(asked) == LEASE_BATCH
    assert sum(asked) >= 300


async def test_a_backlog_adds_workers_up_to_max_workers_and_never_more(make_rig: MakeRig) -> None:
    """Each worker serves 2 at once (more only wait inside it, 25 ms each). Once a worker's
    limit has found that knee and every slot is taken while work waits, the lane starts one
    more worker, and so on up to ``max_workers: 3``; the backlog then lasts long enough for
    a lane that ignored the bound to start a fourth. The workers only sleep and the test only
    looks now and then, so the process stays well below the CPU share at which growing stops."""
    rig = await make_rig()
    rig.runtime.apps = lambda flow, env: worker_app(capacity(2, service=0.025))
    asked: list[int] = []
    scale = rig.runtime.scale

    async def counted(flow: Flow, workers: int) -> None:
        asked.append(workers)
        await scale(flow, workers)

    rig.runtime.scale = counted  # type: ignore[method-assign]
    flow = await rig.flow(max_workers=3)
    for i in range(2000):  # outlasts the test: 3 workers deliver ~240 a second
        await rig.accept(flow, {"n": i}, notify=False)
    rig.dispatcher.notify(flow.id)
    most = 0

    async def workers(at_least: int) -> None:
        nonlocal most
        while most < at_least:
            most = max(most, len(rig.runtime.endpoints(flow.id)))
            await asyncio.sleep(0.01)

    await asyncio.wait_for(workers(3), 20)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(workers(4), 3)  # an unbounded lane's fourth came within 1.6 s
    states = (await rig.store.count_deliveries())[flow.id]
    assert states.get(State.DONE, 0) > 0 and not states.get(State.DEAD), states
    assert (max(asked), most) == (3, 3), asked
    assert asked[:3] == [1, 2, 3]
