"""Filters through the dispatcher (a property): whatever the requests and however the flow's
and the destinations' filters are combined, a request is sent to a destination exactly when
both filters hold for it, and otherwise recorded ``filtered`` there and never sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookgate.domain.deliveries import Delivery, State
from hookgate.domain.forwarding import Reply
from hookgate.store.base import DeliveryFilter

from .conftest import Rig
from .test_dispatcher import FakeSender

TYPES = ["order", "refund", "ping"]
FLOW_FILTERS = {
    None: lambda body: True,
    'body.type != "ping"': lambda body: body.get("type") != "ping",
    "has(body.amount)": lambda body: "amount" in body,
}
DESTINATION_FILTERS = {
    None: lambda body: True,
    'body.type == "order"': lambda body: body.get("type") == "order",
    "body.amount >= 100": lambda body: body.get("amount", 0) >= 100,
}
BODIES = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)}, optional={"amount": st.integers(0, 200)}
)


@settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    bodies=st.lists(BODIES, min_size=1, max_size=10),
    flow_filter=st.sampled_from(list(FLOW_FILTERS)),
    a=st.sampled_from(list(DESTINATION_FILTERS)),
    b=st.sampled_from(list(DESTINATION_FILTERS)),
)
def test_a_delivery_is_sent_exactly_when_its_filters_hold(
    bodies: list[dict[str, object]], flow_filter: str | None, a: str | None, b: str | None
) -> None:
    asyncio.run(_run(bodies, flow_filter, {"a": a, "b": b}))


async def _run(
    bodies: list[dict[str, object]], flow_filter: str | None, filters: dict[str, str | None]
) -> None:
    sent: set[tuple[str, int]] = set()

    def answer_for(name: str) -> Callable[[Delivery], Awaitable[Reply]]:
        async def answer(delivery: Delivery) -> Reply:
            sent.add((name, json.loads(delivery.body)["n"]))
            return Reply(status=200)

        return answer

    fakes = {name: FakeSender(answer_for(name)) for name in filters}
    rig = Rig(senders=lambda flow, destination: fakes[destination.name])
    await rig.store.open()
    await rig.registry.load()
    try:
        destinations = [
            {"name": name, "url": {"url": f"https://{name}.example/"}}
            | ({"filter": expression} if expression else {})
            for name, expression in filters.items()
        ]
        flow = await rig.flow(
            destinations=destinations, **({"filter": flow_filter} if flow_filter else {})
        )
        for n, body in enumerate(bodies):
            await rig.accept(flow, {**body, "n": n})
        total = len(bodies) * len(filters)
        async with asyncio.timeout(5):
            while True:
                page = await rig.store.list_deliveries(
                    DeliveryFilter(flow_id=flow.id), limit=1000, cursor=None
                )
                if sum(d.state in (State.DONE, State.FILTERED) for d in page.items) == total:
                    break
                await asyncio.sleep(0.002)
        wanted = {
            (name, n)
            for n, body in enumerate(bodies)
            for name, expression in filters.items()
            if FLOW_FILTERS[flow_filter](body) and DESTINATION_FILTERS[expression](body)
        }
        assert sent == wanted
        filtered = {
            (d.destination, json.loads((await rig.store.get_delivery(d.id)).body)["n"])
            for d in page.items
            if d.state is State.FILTERED
        }
        assert filtered == {(name, n) for name in filters for n in range(len(bodies))} - wanted
    finally:
        await rig.close()
