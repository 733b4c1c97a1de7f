"""How many requests one worker gets at a time: a fixed number, or found by measuring.

``concurrency: auto`` (the default) climbs the throughput curve: the limit moves one step
(a factor of 1.25, at least 1) per window of completed requests, and keeps its direction while
that pays off. Going up pays off when throughput grows by ≥ 5 %; going down pays off while
throughput stays within 5 % of the best recently seen (the same work with fewer requests
waiting inside the worker). So a worker
that serves N requests at once and queues the rest settles around N, and a fast worker gets
as many as it takes to keep it and the gateway busy. Only windows in which the limit was the
bottleneck count (work was waiting); a worker's ``429``/``503``/timeout halves the limit at
once. Pure arithmetic on the caller's clock: no I/O, no timers.
"""

from __future__ import annotations

import math

FLOOR = 1
CEILING = 256
"""``auto`` never gives one worker more than this many requests at a time."""
INITIAL = 16
STEP = 1.25
GAIN = 1.05
MIN_WINDOW = 16
FORGET = 0.98
"""The best throughput seen fades by this much a window, so a worker that slows down for
good is followed down instead of being compared with its better days forever."""


class Limiter:
    """The limit for one endpoint; ``fixed`` limits never move."""

    __slots__ = (
        "best",
        "ceiling",
        "completed",
        "fixed",
        "limit",
        "rising",
        "saturated",
        "started_at",
        "throughput",
    )

    def __init__(self, *, fixed: int | None = None, ceiling: int = CEILING) -> None:
        self.fixed = fixed is not None
        self.ceiling = max(FLOOR, ceiling)
        self.limit = fixed if fixed is not None else min(INITIAL, self.ceiling)
        self.rising = True
        self.throughput = 0.0
        self.best = 0.0
        self.completed = 0
        self.saturated = 0
        self.started_at: float | None = None

    def done(self, *, busy: bool, now: float) -> None:
        """One request finished; ``busy`` says whether every slot was taken when it started
        (the limit, not the demand, was the bottleneck)."""
        if self.fixed:
            return
        if self.started_at is None:
            self.started_at = now
            return
        self.completed += 1
        self.saturated += busy
        if self.completed < max(MIN_WINDOW, self.limit):
            return
        elapsed = now - self.started_at
        if self.saturated * 2 >= self.completed and elapsed > 0:
            self._step(self.completed / elapsed)
        self._new_window(now)

    def overloaded(self, *, now: float) -> None:
        """The worker said it has too much (429, 503, a timeout): halve at once."""
        if self.fixed:
            return
        self.limit = max(FLOOR, self.limit // 2)
        self.rising = False
        self.throughput = self.best = 0.0
        self._new_window(now)

    def _step(self, throughput: float) -> None:
        if self.throughput:
            if self.rising:
                self.rising = throughput >= self.throughput * GAIN
            else:
                self.rising = throughput * GAIN < self.best
        self.throughput = throughput
        self.best = max(self.best * FORGET, throughput)
        if self.rising:
            grown = max(self.limit + 1, math.floor(self.limit * STEP))
            self.limit = min(self.ceiling, grown)
        else:
            shrunk = min(self.limit - 1, math.ceil(self.limit / STEP))
            self.limit = max(FLOOR, shrunk)

    def _new_window(self, now: float) -> None:
        self.completed = 0
        self.saturated = 0
        self.started_at = now
