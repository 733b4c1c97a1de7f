"""What only the local runtime promises: it outlives crash loops, starts workers a few at a
time, and checks ``worker.user`` before a flow is applied.

Real processes throughout; the restart backoff is the runtime's own setting, made tiny where a
test drives thousands of failed starts.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path

import msgspec
import pytest

from hookgate.domain.backoff import RestartBackoff
from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import MAX_WORKERS
from hookgate.errors import ConfigError
from hookgate.runtime.local import START_BATCH
from hookgate.runtime.processes import validate_flow

from .conftest import local
from .test_contract import assert_answers, observe, ready

# Past 1,025 failures, where ``0.5 * 2 ** (failures - 1)`` used to raise OverflowError.
CRASHES = 2000
TINY = RestartBackoff(first=0.0001, cap=0.001)


async def test_a_flow_that_crashed_thousands_of_times_serves_once_its_command_is_fixed(
    tmp_path: Path,
) -> None:
    async with local(tmp_path, restart=TINY) as harness:
        failed: list[str] = []
        harness.runtime.on_failed = lambda _flow_id, reason: failed.append(reason)
        broken = harness.flow("crashing", "sync", worker={"command": ["false"]})
        await harness.runtime.scale(broken, START_BATCH)  # a batch of failed starts each round
        await observe(harness, broken, lambda s, e: len(failed) > CRASHES, timeout=100.0)
        assert set(failed) == {"worker exited with code 1 before it was ready"}
        assert harness.runtime.status(broken.id).ready == 0

        fixed = harness.flow("crashing", "sync", flow_id=broken.id)
        await harness.runtime.scale(fixed, 1)
        status, endpoints = await observe(harness, fixed, ready(1))
        assert status.last_error is None
        await assert_answers(harness, fixed, endpoints)


async def test_a_changed_flow_starts_at_once_without_waiting_out_the_backoff(
    tmp_path: Path,
) -> None:
    """An hour's backoff after the first failure; fixing the flow does not wait for it."""
    async with local(tmp_path, restart=RestartBackoff(first=3600, cap=3600)) as harness:
        broken = harness.flow("fixable", "sync", worker={"command": ["false"]})
        await harness.runtime.scale(broken, 1)
        await observe(harness, broken, lambda s, e: s.last_error is not None)

        fixed = harness.flow("fixable", "sync", flow_id=broken.id)
        await harness.runtime.scale(fixed, 1)
        _, endpoints = await observe(harness, fixed, ready(1))
        await assert_answers(harness, fixed, endpoints)


async def test_hooks_that_raise_do_not_stop_the_flow(tmp_path: Path) -> None:
    """The gateway's metrics hooks failing is logged; the flow is still retried and served."""
    calls: list[str] = []

    def broken_hook(flow_id: str, _detail: object) -> None:
        calls.append(flow_id)
        raise RuntimeError("metrics are down")

    async with local(tmp_path, restart=TINY) as harness:
        harness.runtime.on_failed = broken_hook
        harness.runtime.on_ready = broken_hook
        flow = harness.flow("hooked", "sync", fault="missing")
        await harness.runtime.scale(flow, 1)
        await observe(harness, flow, lambda s, e: len(calls) >= 5)

        await harness.heal()
        _, endpoints = await observe(harness, flow, ready(1))
        await assert_answers(harness, flow, endpoints)


async def test_missing_workers_start_a_few_at_a_time(tmp_path: Path) -> None:
    async with local(tmp_path) as harness:
        assert START_BATCH == 4
        flow = harness.flow("wide", "sync", fault="slow")
        await harness.runtime.scale(flow, 10)

        def at_most_a_batch(starting: int) -> bool:
            assert len(harness.workers(flow.id)) <= START_BATCH
            return starting == START_BATCH

        await observe(harness, flow, lambda s, e: at_most_a_batch(s.starting))
        for _ in range(20):  # the first batch does not get ready: no more are started
            await asyncio.sleep(0.01)
            at_most_a_batch(harness.runtime.status(flow.id).starting)

        await harness.heal()
        _, endpoints = await observe(harness, flow, ready(10))
        assert len(harness.workers(flow.id)) == 10
        await assert_answers(harness, flow, endpoints)


async def test_a_flow_stored_before_the_worker_limit_is_capped_at_it(tmp_path: Path) -> None:
    async with local(tmp_path) as harness:
        flow = harness.flow("old", "sync", fault="missing")
        spec = msgspec.structs.replace(flow.spec, replicas=10**5)  # as decoded from the store
        flow = msgspec.structs.replace(flow, spec=spec)
        await harness.runtime.scale(flow, flow.spec.replicas)
        assert harness.runtime.status(flow.id).desired == MAX_WORKERS == 256


def user_spec(user: str | int) -> dict[str, object]:
    return {"name": "as-user", "mode": "sync", "worker": {"command": ["x"], "user": user}}


def test_an_unknown_worker_user_is_refused_when_the_flow_is_applied() -> None:
    for user in ("hookgate-no-such-user", 2**31 - 7):
        with pytest.raises(ConfigError) as caught:
            validate_flow(spec_from_object(user_spec(user)))
        assert str(caught.value) == (
            f"flow 'as-user': field worker.user: no user {user!r} on this machine"
        )


def test_the_gateways_own_user_is_always_a_valid_worker_user() -> None:
    me = pwd.getpwuid(os.geteuid())
    for user in (me.pw_name, me.pw_uid, str(me.pw_uid)):
        validate_flow(spec_from_object(user_spec(user)))


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs a gateway run as root")
def test_a_root_gateway_may_run_workers_as_any_known_user() -> None:
    validate_flow(spec_from_object(user_spec("nobody")))
    validate_flow(spec_from_object(user_spec(65534)))
