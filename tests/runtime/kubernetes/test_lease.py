"""Leader election: two gateway instances, one reconciles, the other takes over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from hookgate.errors import RuntimeFailure
from hookgate.runtime.kubernetes import names

from .conftest import Emulator, eventually, make_flow, stored

DURATION = 2


async def test_one_instance_reconciles_and_the_other_takes_over_after_a_release(
    make_runtime: Callable[..., Any], cluster: Emulator
) -> None:
    first = await make_runtime(identity="gw-a", lease_duration=DURATION)
    second = await make_runtime(identity="gw-b", lease_duration=DURATION)
    assert (first.leading(), second.leading()) == (True, False)

    flow = make_flow("elected")
    await second.scale(flow, 1)  # the follower only records what is wanted
    assert stored(cluster, "services", names.base_name(flow)) is None
    await first.scale(flow, 1)
    assert stored(cluster, "services", names.base_name(flow)) is not None

    stopped = time.monotonic()
    await first.close()  # releases the Lease
    await eventually(second.leading, timeout=DURATION * 3)
    print(f"\ntaken over {time.monotonic() - stopped:.2f}s after a release")
    lease = stored(cluster, "leases", "hookgate-reconciler")
    assert lease["spec"]["holderIdentity"] == "gw-b"
    assert lease["spec"]["leaseTransitions"] == 0  # released, so not a forced take-over

    await second.kube.delete("Service", names.base_name(flow))  # the new leader repairs drift
    await eventually(lambda: stored(cluster, "services", names.base_name(flow)))


async def test_a_holder_that_stops_renewing_is_replaced_within_the_lease_duration(
    make_runtime: Callable[..., Any], cluster: Emulator
) -> None:
    first = await make_runtime(identity="gw-a", lease_duration=DURATION)
    second = await make_runtime(identity="gw-b", lease_duration=DURATION)
    assert first.elector is not None
    await asyncio.sleep(DURATION / 2)  # the follower has seen the holder renew

    stopped = time.monotonic()
    assert first.elector._task is not None
    first.elector._task.cancel()  # the holder hangs: no renewal, no release
    await eventually(second.leading, timeout=DURATION * 3)
    print(f"\ntaken over {time.monotonic() - stopped:.2f}s after the holder stopped renewing")
    lease = stored(cluster, "leases", "hookgate-reconciler")
    assert lease["spec"]["holderIdentity"] == "gw-b"
    assert lease["spec"]["leaseTransitions"] == 1


async def test_of_two_replicas_racing_for_the_lease_one_wins(
    make_runtime: Callable[..., Any], cluster: Emulator
) -> None:
    """The API server refuses an update from a stale read, so both cannot take the Lease."""
    first = await make_runtime(identity="gw-a", lease_duration=DURATION)
    assert first.elector is not None
    lease = await first.kube.get("Lease", "hookgate-reconciler")
    await first.elector.attempt()  # renewed: the version read above is now stale

    with pytest.raises(RuntimeFailure, match=r"Conflict \(409\)"):
        await first.kube.merge(
            "Lease",
            "hookgate-reconciler",
            {
                "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                "spec": {"holderIdentity": "gw-b"},
            },
        )
    assert stored(cluster, "leases", "hookgate-reconciler")["spec"]["holderIdentity"] == "gw-a"
