"""Which deliveries an accepted request becomes, and whether a due one is still wanted.

At accept: one delivery per destination, due after its delay, carrying the flow's order key
(``Router``). Filters are not judged there: a CEL evaluation costs about as much as a third of
an accept (BENCHMARKS.md, "Filters"), so a destination's lane judges each delivery when it is
due (``unmet``) and records one that is not wanted as FILTERED instead of sending it. Ingest
costs the same with or without filters.

A flow with one destination, no key or delay (every flow before destinations existed) takes
the fast path: no parsing, ``Request.routes`` stays None.
"""

from __future__ import annotations

from hookgate.domain.deliveries import Delivery, Request, Route, new_id
from hookgate.domain.destinations import WORKERS, Destination
from hookgate.domain.filters import Filter, KeyPath, RequestView, compile_filter, compile_key
from hookgate.domain.flows import FlowSpec


class Router:
    """A flow's routing, compiled once per spec (the key was checked at apply already)."""

    def __init__(self, spec: FlowSpec) -> None:
        self.key: KeyPath | None = compile_key(spec.order_key) if spec.order_key else None
        self.lanes: list[tuple[str, float]] = [
            (d.name, spec.delay if d.delay is None else d.delay) for d in spec.routes
        ]
        self.plain = self.key is None and self.lanes == [(WORKERS, 0.0)]

    def routes(self, request: Request) -> list[Route] | None:
        """The request's deliveries (the first takes the request's id); None on the fast path
        (one delivery to the workers, due now)."""
        if self.plain:
            return None
        key = self.key.value(RequestView(request)) if self.key is not None else None
        return [
            Route(request.id if i == 0 else new_id(), name, request.received_at + delay, key)
            for i, (name, delay) in enumerate(self.lanes)
        ]


def filters(spec: FlowSpec, destination: Destination) -> list[Filter]:
    """The filters a delivery to ``destination`` must pass: the flow's and the destination's
    (compiled filters are cached by their text, so this is cheap to ask again)."""
    return [compile_filter(f) for f in (spec.filter, destination.filter) if f is not None]


def unmet(where: list[Filter], delivery: Delivery) -> Filter | None:
    """The first filter the delivery's request does not pass, None if it passes them all."""
    if not where:
        return None
    view = RequestView(delivery)
    return next((f for f in where if not f.matches(view)), None)
