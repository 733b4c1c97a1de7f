"""Per-key order under random failures (a property): whatever fails and is retried, the
successful deliveries of each key happen in accept order, and every request is delivered."""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookgate.domain.deliveries import Delivery, State
from hookgate.domain.forwarding import Reply

from .conftest import Rig
from .test_dispatcher import FakeSender, senders

KEYS = st.sampled_from(["a", "b", "c", None])


@settings(
    max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(keys=st.lists(KEYS, min_size=1, max_size=12), failures=st.lists(st.booleans(), max_size=40))
def test_each_keys_deliveries_succeed_in_accept_order(
    keys: list[str | None], failures: list[bool]
) -> None:
    asyncio.run(_run(keys, failures))


async def _run(keys: list[str | None], failures: list[bool]) -> None:
    fails = iter(failures)
    succeeded: list[tuple[str | None, int]] = []

    async def answer(delivery: Delivery) -> Reply:
        await asyncio.sleep(0)
        if next(fails, False):
            return Reply(status=503, error=None)
        payload = json.loads(delivery.body)
        succeeded.append((payload.get("customer"), payload["n"]))
        return Reply(status=200)

    rig = Rig(senders=senders(FakeSender(answer)))
    await rig.store.open()
    await rig.registry.load()
    try:
        flow = await rig.flow(
            concurrency=4,
            order_key="body.customer",
            retry={"max_attempts": 50, "backoff": "1ms", "max_backoff": "2ms"},
            destinations=[{"name": "audit", "url": {"url": "https://audit.example/hook"}}],
        )
        for n, key in enumerate(keys):
            await rig.accept(flow, {"n": n} if key is None else {"customer": key, "n": n})
        done = await rig.finished(flow, len(keys))
        assert [d.state for d in done] == [State.DONE] * len(keys)
        assert sorted(n for _, n in succeeded) == list(range(len(keys)))
        for key in {k for k in keys if k is not None}:
            ns = [n for k, n in succeeded if k == key]
            assert ns == sorted(ns), (key, succeeded)
    finally:
        await rig.close()
