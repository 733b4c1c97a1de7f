"""Delivery hooks (``dispatch.hooks``): what a hook sees of each delivery, and in which order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from hookgate.asgi import Scope
from hookgate.dispatch.delivering import DeliveringLane
from hookgate.dispatch.hooks import (
    DeliveryHook,
    EventsHook,
    MetricsHook,
    Send,
    TracingHook,
    delivery_hooks,
)
from hookgate.domain.backoff import Verdict
from hookgate.domain.deliveries import Attempt, Delivery, State
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.forwarding import Headers, Reply
from hookgate.events import EventHub
from hookgate.metrics import Metrics
from hookgate.tracing import Tracing

from .conftest import FAST_RETRY, Rig

MakeRig = Callable[..., Awaitable[Rig]]


class Seen(DeliveryHook):
    """Notes every point it is called at, per delivery."""

    wraps_sends = True

    def __init__(self) -> None:
        self.points: dict[str, list[str]] = {}

    def _note(self, delivery: Delivery, point: str) -> None:
        self.points.setdefault(delivery.id, []).append(point)

    async def around_send(
        self, lane: DeliveringLane, delivery: Delivery, endpoint: Endpoint, send: Send
    ) -> Reply:
        self._note(delivery, "before send")
        reply = await send()
        self._note(delivery, f"sent {reply.status}")
        return reply

    def outgoing(self, headers: Headers) -> Headers:
        return [*headers, (b"x-hooked", b"yes")]

    def filtered(self, lane: DeliveringLane, delivery: Delivery) -> None:
        self._note(delivery, "filtered")

    def judged(
        self, lane: DeliveringLane, delivery: Delivery, outcome: Verdict, took: float
    ) -> None:
        self._note(delivery, f"judged {outcome.value}")

    def recorded(
        self, lane: DeliveringLane, delivery: Delivery, outcome: Verdict, attempt: Attempt
    ) -> None:
        self._note(delivery, f"recorded {outcome.value} {attempt.status_code}")


async def test_a_hook_sees_each_attempt_wraps_its_send_and_sets_its_headers(
    make_rig: MakeRig,
) -> None:
    hooked: list[bytes | None] = []

    async def busy_once(scope: Scope, body: bytes) -> tuple[int, bytes]:
        hooked.append(dict(scope["headers"]).get(b"x-hooked"))
        return (503, b"busy") if len(hooked) == 1 else (200, b"ok")

    seen = Seen()
    rig = await make_rig(busy_once, hooks=[seen])
    flow = await rig.flow(retry=FAST_RETRY, filter='body.type != "ping"')
    await rig.accept(flow, {"type": "order"})
    await rig.accept(flow, {"type": "ping"})
    async with asyncio.timeout(5):
        while {d.state for d in await rig.finished(flow, 1)} != {State.DONE, State.FILTERED}:
            await asyncio.sleep(0.002)
    ids = {
        json.loads((await rig.store.get_delivery(d.id)).body)["type"]: d.id
        for d in await rig.finished(flow, 1)
    }
    assert hooked == [b"yes", b"yes"]
    assert seen.points[ids["order"]] == [
        "before send",
        "sent 503",
        "judged retry",
        "recorded retry 503",
        "before send",
        "sent 200",
        "judged done",
        "recorded done 200",
    ]
    assert seen.points[ids["ping"]] == ["filtered"]


async def test_only_hooks_that_wrap_sends_are_asked_to_and_keep_deliveries_apart(
    make_rig: MakeRig,
) -> None:
    plain = await make_rig()
    assert plain.dispatcher.send_hooks == ()
    wrapped = await make_rig(hooks=[seen := Seen()])
    assert wrapped.dispatcher.send_hooks == (seen,)
    flow = await wrapped.flow()
    await wrapped.accept(flow, {"n": 1})
    [delivery] = await wrapped.finished(flow, 1)
    lane = wrapped.dispatcher.flows[flow.id]["worker"]
    assert not lane._plain(delivery)
    assert seen.points[delivery.id][:2] == ["before send", "sent 200"]


def test_the_gateway_traces_deliveries_only_while_tracing_is_on() -> None:
    class On(Tracing):
        enabled = True

    kinds = [
        [type(hook) for hook in delivery_hooks(metrics=Metrics(), events=EventHub(), tracing=t)]
        for t in (Tracing(), On())
    ]
    assert kinds == [[MetricsHook, EventsHook], [MetricsHook, EventsHook, TracingHook]]
