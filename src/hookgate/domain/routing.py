"""Which deliveries an accepted request becomes: one per destination whose filter holds,
due after its delay, carrying the flow's order key.

A flow with one destination, no filter, key or delay (every flow before destinations
existed) takes the fast path: no parsing, ``Request.routes`` stays None.
"""

from __future__ import annotations

from hookgate.domain.deliveries import Request, Route, new_id
from hookgate.domain.destinations import WORKERS
from hookgate.domain.filters import Filter, KeyPath, RequestView, compile_filter, compile_key
from hookgate.domain.flows import FlowSpec


class Lane:
    """One destination as the router sees it: its name, its own filter and its delay."""

    def __init__(self, name: str, where: Filter | None, delay: float) -> None:
        self.name = name
        self.where = where
        self.delay = delay


class Router:
    """A flow's routing, compiled once per spec (expressions are compiled at apply already,
    so compiling again here cannot fail)."""

    def __init__(self, spec: FlowSpec) -> None:
        self.where = compile_filter(spec.filter) if spec.filter else None
        self.key: KeyPath | None = compile_key(spec.order_key) if spec.order_key else None
        self.lanes = [
            Lane(
                d.name,
                compile_filter(d.filter) if d.filter else None,
                spec.delay if d.delay is None else d.delay,
            )
            for d in spec.routes
        ]
        self.plain = (
            self.where is None
            and self.key is None
            and [(lane.name, lane.where, lane.delay) for lane in self.lanes] == [(WORKERS, None, 0)]
        )

    def routes(self, request: Request) -> list[Route] | None:
        """The request's deliveries (the first takes the request's id); ``[]`` if no
        destination wants it; None on the fast path (one delivery to the workers, now)."""
        if self.plain:
            return None
        view = RequestView(request)
        if self.where is not None and not self.where.matches(view):
            return []
        key = self.key.value(view) if self.key is not None else None
        routes: list[Route] = []
        for lane in self.lanes:
            if lane.where is None or lane.where.matches(view):
                delivery_id = new_id() if routes else request.id
                routes.append(Route(delivery_id, lane.name, request.received_at + lane.delay, key))
        return routes
