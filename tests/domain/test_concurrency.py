"""The adaptive limit against simulated workers of known capacity (pure arithmetic, no I/O)."""

from __future__ import annotations

import gc
import heapq
import random

import pytest

from hookgate.domain.concurrency import CEILING, FLOOR, INITIAL, Ledger, Limiter, Slots
from hookgate.domain.endpoints import Endpoint


def drain(
    limiter: Limiter,
    *,
    parallel: int,
    service: float,
    requests: int,
    noise: float = 0.0,
    seed: int = 0,
) -> list[int]:
    """A backlog of ``requests`` sent to a worker that serves ``parallel`` requests at once
    in ``service`` seconds and shares itself among the rest (each then takes longer); the
    sender keeps ``limiter.limit`` in flight. ``noise`` plays a busy machine: every 50 ms
    every request takes up to that share longer or shorter. Returns the limit after every
    completion."""
    rng = random.Random(seed)
    now = 0.0
    factor, changes_at = 1.0, 0.0
    running: list[tuple[float, int, bool]] = []
    limits = []
    sent = 0
    while sent < requests or running:
        while sent < requests and len(running) < limiter.limit:
            load = len(running) + 1
            busy = load >= limiter.limit
            if now >= changes_at:
                factor, changes_at = 1.0 + rng.uniform(-noise, noise), now + 0.05
            took = service * max(1.0, load / parallel) * factor
            heapq.heappush(running, (now + took, sent, busy))
            sent += 1
        now, _, busy = heapq.heappop(running)
        limiter.done(busy=busy, now=now)
        limits.append(limiter.limit)
    return limits


@pytest.mark.parametrize("parallel", [2, 10, 50])
def test_the_limit_settles_near_what_the_worker_can_serve_at_once(parallel: int) -> None:
    limits = drain(Limiter(), parallel=parallel, service=0.01, requests=60_000)
    settled = limits[-20_000:]
    average = sum(settled) / len(settled)
    assert parallel * 0.6 <= average <= parallel * 2 + 2, (parallel, average, settled[-10:])


@pytest.mark.parametrize("parallel", [4, 10])
@pytest.mark.parametrize("noise", [0.15, 0.3])
def test_on_a_noisy_machine_the_limit_still_settles_near_the_worker_s_capacity(
    parallel: int, noise: float
) -> None:
    """A window slowed by the machine, then an ordinary one, is no gain: the limit must not
    climb on such noise towards the ceiling (requests would wait inside the worker)."""
    for seed in range(4):
        limits = drain(
            Limiter(), parallel=parallel, service=0.02, requests=20_000, noise=noise, seed=seed
        )
        settled = limits[-7_000:]
        average = sum(settled) / len(settled)
        assert parallel * 0.6 <= average <= parallel * 2 + 2, (seed, average, settled[-10:])


def test_a_worker_that_never_queues_gets_up_to_the_ceiling() -> None:
    limits = drain(Limiter(), parallel=10_000, service=0.01, requests=100_000)
    assert limits[-1] >= CEILING * 0.8


def test_a_fast_worker_is_found_in_a_few_windows_by_doubling() -> None:
    """The slow start: until growing stops paying, each step doubles (16, 32, 64, 128…), so a
    worker that takes 200 at once is reached within ~20,000 requests (the 1.25 steps alone
    took ~62,000, over a second of backlog for a fast worker)."""
    limits = drain(Limiter(), parallel=256, service=0.002, requests=20_000)
    assert max(limits) >= 200
    steps = [limit for i, limit in enumerate(limits) if i == 0 or limits[i - 1] != limit]
    assert steps[:4] == [INITIAL, INITIAL * 2, INITIAL * 4, INITIAL * 8]


def test_overload_halves_at_once_and_never_goes_below_the_floor() -> None:
    limiter = Limiter()
    assert limiter.limit == INITIAL
    limiter.overloaded(now=1.0)
    assert limiter.limit == INITIAL // 2
    for _ in range(10):
        limiter.overloaded(now=2.0)
    assert limiter.limit == FLOOR


def test_a_pinned_number_never_moves() -> None:
    limiter = Limiter(fixed=8)
    drain(limiter, parallel=1, service=0.01, requests=5_000)
    limiter.overloaded(now=99.0)
    assert limiter.limit == 8


def test_windows_without_waiting_work_do_not_move_the_limit() -> None:
    limiter = Limiter()
    for i in range(10_000):
        limiter.done(busy=False, now=i * 0.01)
    assert limiter.limit == INITIAL


def test_the_ceiling_bounds_the_limit() -> None:
    limiter = Limiter(ceiling=4)
    assert limiter.limit == 4
    drain(limiter, parallel=10_000, service=0.01, requests=5_000)
    assert limiter.limit <= 4


def test_the_ledger_counts_a_worker_s_requests_across_every_flow_and_mode() -> None:
    """What a worker about to stop still holds: its async deliveries and sync requests."""
    ledger: Ledger[Endpoint] = Ledger()
    worker, other = Endpoint("127.0.0.1", 9001, 8), Endpoint("127.0.0.1", 9002, 8)
    lane, line = Slots(pinned=False, ledger=ledger), Slots(pinned=False, ledger=ledger)
    lane.take(worker)
    lane.take(worker)
    line.take(worker)
    line.take(other)
    assert (ledger.inflight(worker), ledger.inflight(other)) == (3, 1)
    lane.release(worker)
    assert ledger.inflight(worker) == 2
    del line
    gc.collect()
    assert ledger.inflight(worker) == 1  # a flow that is gone holds nothing


def test_an_overload_with_retry_after_lowers_every_target_s_limit() -> None:
    """``everyone`` (the answer had ``Retry-After``: the flow's backend is full) halves every
    worker's limit; a plain overload only the one that answered."""
    first, second = Endpoint("127.0.0.1", 9001, 64), Endpoint("127.0.0.1", 9002, 64)
    slots: Slots[Endpoint] = Slots(pinned=False)
    assert [slots.limit(first), slots.limit(second)] == [INITIAL, INITIAL]
    slots.measured(first, busy=True, overloaded=True, everyone=False, now=1.0)
    assert [slots.limit(first), slots.limit(second)] == [INITIAL // 2, INITIAL]
    slots.measured(second, busy=True, overloaded=True, everyone=True, now=2.0)
    assert [slots.limit(first), slots.limit(second)] == [INITIAL // 4, INITIAL // 2]
    slots.measured(first, busy=True, overloaded=False, everyone=True, now=3.0)
    assert [slots.limit(first), slots.limit(second)] == [INITIAL // 4, INITIAL // 2]
