"""Typed hooks on the delivery path (Dramatiq's middleware): counting, tracing, publishing.

A lane only leases, sends and records; what else happens to a delivery is a ``DeliveryHook``
the gateway plugs in (``delivery_hooks``). A hook sees a delivery at four points:

* ``around_send`` wraps the send (a span around it); only hooks with ``wraps_sends`` are asked,
  and while one is plugged in every delivery goes on its own, never in a pipelined group;
* ``filtered``: a filter did not hold, so the delivery is recorded without being sent;
* ``judged``: the verdict is known, before the store has it;
* ``recorded``: the store has the outcome (or could not take it), so readers see it.

Each point is a loop over a short tuple on the hot path: a hook does its work inline and
never awaits, except around the send it wraps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from hookgate.domain.backoff import Verdict
from hookgate.domain.deliveries import Attempt, Delivery
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import Flow
from hookgate.domain.forwarding import Headers, Reply
from hookgate.events import EventHub
from hookgate.metrics import Metrics
from hookgate.tracing import TRACE_HEADERS, Attributes, Tracing

if TYPE_CHECKING:
    from hookgate.dispatch.delivering import DeliveringLane

Send = Callable[[], Awaitable[Reply]]


class DeliveryHook:
    """Every point a no-op: a hook overrides the ones it needs."""

    wraps_sends: ClassVar[bool] = False
    """Whether ``around_send`` and ``outgoing`` do more than pass through."""

    async def around_send(
        self, lane: DeliveringLane, delivery: Delivery, endpoint: Endpoint, send: Send
    ) -> Reply:
        """The send to ``endpoint``, inside whatever the hook wraps it in."""
        return await send()

    def outgoing(self, headers: Headers) -> Headers:
        """A worker's request headers, built inside ``around_send``."""
        return headers

    def filtered(self, lane: DeliveringLane, delivery: Delivery) -> None:
        """Not sent: a filter did not hold."""

    def judged(
        self, lane: DeliveringLane, delivery: Delivery, outcome: Verdict, took: float
    ) -> None:
        """The verdict on an answer that took ``took`` seconds, before the store has it."""

    def recorded(
        self, lane: DeliveringLane, delivery: Delivery, outcome: Verdict, attempt: Attempt
    ) -> None:
        """The outcome is in the store (or the store refused it and the lease will expire)."""


class MetricsHook(DeliveryHook):
    """Deliveries by outcome, their durations, and the filtered ones."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # Metric children by flow, destination and outcome: ``labels()`` takes a lock per call.
        self._children: dict[tuple[str, str, Verdict], tuple[Any, Any]] = {}

    def filtered(self, lane: DeliveringLane, delivery: Delivery) -> None:
        self.metrics.filtered.labels(lane.flow.name, lane.destination.name).inc()

    def judged(
        self, lane: DeliveringLane, delivery: Delivery, outcome: Verdict, took: float
    ) -> None:
        key = (lane.flow.name, lane.destination.name, outcome)
        if (children := self._children.get(key)) is None:
            flow, name = key[0], key[1]
            children = self._children[key] = (
                self.metrics.delivery_seconds.labels(flow, name),
                self.metrics.deliveries.labels(flow, name, outcome.value),
            )
        children[0].observe(took)
        children[1].inc()


class EventsHook(DeliveryHook):
    """Each attempt's outcome for the console and ``hookgate tail``."""

    def __init__(self, events: EventHub) -> None:
        self.events = events

    def recorded(
        self, lane: DeliveringLane, delivery: Delivery, outcome: Verdict, attempt: Attempt
    ) -> None:
        self.events.publish(
            "delivery",
            flowId=lane.flow.id,
            flow=lane.flow.name,
            destination=lane.destination.name,
            deliveryId=delivery.id,
            requestId=delivery.request_id,
            attempt=delivery.attempts,
            status=attempt.status_code,
            error=attempt.error,
            outcome=outcome.value,
            ms=attempt.duration_ms,
            answer=attempt.response,
        )


class TracingHook(DeliveryHook):
    """A ``hookgate.deliver`` client span per attempt, child of the span its request was
    accepted under; a worker gets the span's context as ``traceparent``."""

    wraps_sends = True

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    async def around_send(
        self, lane: DeliveringLane, delivery: Delivery, endpoint: Endpoint, send: Send
    ) -> Reply:
        with self.tracing.span(
            "hookgate.deliver",
            kind="client",
            parent=_trace_headers(delivery),
            attributes=_span_attributes(lane.flow, delivery, endpoint),
        ) as span:
            reply = await send()
            if reply.status is not None:
                span.set("http.response.status_code", reply.status)
            if reply.error is not None or (reply.status or 500) >= 400:
                span.fail(reply.error or f"the worker answered {reply.status}")
        return reply

    def outgoing(self, headers: Headers) -> Headers:
        return self.tracing.propagate(headers)


def _trace_headers(delivery: Delivery) -> Headers:
    """The stored request's ``traceparent``: the request span it was accepted under."""
    pairs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in delivery.headers]
    return [(k, v) for k, v in pairs if k in TRACE_HEADERS]


def _span_attributes(flow: Flow, delivery: Delivery, endpoint: Endpoint) -> Attributes:
    return {
        "hookgate.flow": flow.name,
        "hookgate.delivery_id": delivery.id,
        "hookgate.attempt": delivery.attempts,
        "server.address": endpoint.host,
        "server.port": endpoint.port,
    }


def delivery_hooks(
    *, metrics: Metrics, events: EventHub, tracing: Tracing
) -> tuple[DeliveryHook, ...]:
    """A gateway's hooks; tracing only when it is on, so the plain path stays open otherwise."""
    hooks: tuple[DeliveryHook, ...] = (MetricsHook(metrics), EventsHook(events))
    return (*hooks, TracingHook(tracing)) if tracing.enabled else hooks
