"""How many requests one worker gets at a time: a fixed number, or found by measuring.

``concurrency: auto`` (the default) climbs the throughput curve. The limit moves one step (a
factor of 1.25, at least 1) after three windows of completed requests (each at least 16
requests, at least the limit, and at least 50 ms; the best of the three counts, since a stall
only ever lowers a window's figure), and keeps its direction while that pays off. Until it
first stops paying off, each step doubles after a single window instead (a slow start, as
TCP's), and the doubling that did not pay is undone: a fast worker reaches 128 in three
windows, not in thirty. Going up pays off when throughput beats both the last figure and the
best recently seen by ≥ 5 %; going down pays off while throughput stays within 5 % of that
best (the same work with fewer requests waiting inside the worker).
So a worker that serves N requests at once settles around N, and a fast worker gets as many
as it takes to keep it and the gateway busy. Only windows in which the limit was the
bottleneck count (work was waiting); a worker's ``429``/``503``/timeout halves the limit at
once. Pure arithmetic on the caller's clock: no I/O, no timers.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Collection, Sequence
from typing import Generic, Protocol, TypeVar

FLOOR = 1
CEILING = 256
"""``auto`` never gives one worker more than this many requests at a time."""
INITIAL = 16
STEP = 1.25
START_STEP = 2.0
GAIN = 1.05
MIN_WINDOW = 16
MIN_WINDOW_S = 0.05
HOLD = 3
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
        "held",
        "limit",
        "peak",
        "rising",
        "saturated",
        "settled",
        "started_at",
        "throughput",
    )

    def __init__(self, *, fixed: int | None = None, ceiling: int = CEILING) -> None:
        self.fixed = fixed is not None
        self.ceiling = max(FLOOR, ceiling)
        self.limit = fixed if fixed is not None else min(INITIAL, self.ceiling)
        self.rising = True
        self.settled = self.fixed
        """Whether the limit has found the worker's knee (it stopped rising once), or is pinned:
        only then does another worker pay off more than a higher limit would."""
        self.throughput = 0.0
        self.best = 0.0
        self.peak = 0.0
        self.held = 0
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
        if elapsed < MIN_WINDOW_S:
            return
        if self.saturated * 2 >= self.completed:
            # A stall (a store commit, a busy machine) only ever lowers a window's figure, so
            # the limit's throughput is the best of HOLD windows.
            self.peak = max(self.peak, self.completed / elapsed)
            self.held += 1
            if self.held >= HOLD or not self.settled:
                self._step(self.peak)
                self.peak = 0.0
                self.held = 0
        self._new_window(now)

    def overloaded(self, *, now: float) -> None:
        """The worker said it has too much (429, 503, a timeout): halve at once."""
        if self.fixed:
            return
        self.limit = max(FLOOR, self.limit // 2)
        self.rising = False
        self.settled = True
        self.throughput = self.best = self.peak = 0.0
        self.held = 0
        self._new_window(now)

    def _step(self, throughput: float) -> None:
        overshot = False
        if self.throughput:
            if self.rising:
                # Against the best seen, not the last figure: after a window that a busy
                # machine made slow, an ordinary one would look like a gain, and on a noisy
                # machine the limit would climb on such "gains" to the ceiling (simulated: a
                # worker that serves 4 at once ended at 55-132 with 15-30 % noise; now 4).
                self.rising = throughput >= max(self.throughput, self.best) * GAIN
                overshot = not self.rising and not self.settled
                self.settled = self.settled or not self.rising
            else:
                self.rising = throughput * GAIN < self.best
        self.throughput = throughput
        self.best = max(self.best * FORGET, throughput)
        if overshot:
            # The slow start's last doubling did not pay: back to the limit before it.
            self.limit = max(FLOOR, math.ceil(self.limit / START_STEP))
        elif self.rising:
            step = STEP if self.settled else START_STEP
            grown = max(self.limit + 1, math.floor(self.limit * step))
            self.limit = min(self.ceiling, grown)
            self.settled = self.settled or self.limit >= self.ceiling
        else:
            shrunk = min(self.limit - 1, math.ceil(self.limit / STEP))
            self.limit = max(FLOOR, shrunk)

    def _new_window(self, now: float) -> None:
        self.completed = 0
        self.saturated = 0
        self.started_at = now


class Target(Protocol):
    """What requests are counted against: a worker's endpoint, with the most it may take."""

    @property
    def capacity(self) -> int: ...

    def __hash__(self) -> int: ...


T = TypeVar("T", bound=Target)


class Ledger(Generic[T]):
    """Every :class:`Slots` of a gateway (the dispatcher's lanes, the proxy's lines): what a
    worker still holds, across flows and modes, when it is to stop."""

    def __init__(self) -> None:
        self._slots: weakref.WeakSet[Slots[T]] = weakref.WeakSet()

    def inflight(self, target: T) -> int:
        return sum(slots.inflight.get(target, 0) for slots in self._slots)


class Slots(Generic[T]):
    """One flow's requests in flight per endpoint, each against its own limiter.

    What the async dispatcher and the sync proxy count slots with, each entered in the
    gateway's :class:`Ledger`. ``pinned`` flows give every endpoint its ``capacity`` (the
    runtime's ready workers times the pinned number); ``auto`` flows a :class:`Limiter` with
    ``capacity`` as its ceiling.
    """

    def __init__(self, *, pinned: bool, ledger: Ledger[T] | None = None) -> None:
        if ledger is not None:
            ledger._slots.add(self)
        self.pinned = pinned
        self.inflight: dict[T, int] = {}
        self.limiters: dict[T, Limiter] = {}
        self.busy = 0
        self._next = 0

    def reset(self, *, pinned: bool) -> None:
        """The flow's ``concurrency`` changed: every limit starts over."""
        self.pinned = pinned
        self.limiters.clear()

    def limiter(self, target: T) -> Limiter:
        limiter = self.limiters.get(target)
        if limiter is None:
            fixed = target.capacity if self.pinned else None
            limiter = self.limiters[target] = Limiter(fixed=fixed, ceiling=target.capacity)
        return limiter

    def limit(self, target: T) -> int:
        return self.limiter(target).limit

    def settled(self, targets: Sequence[T]) -> bool:
        """Whether every target's limit has found its knee (or is pinned)."""
        return all(self.limiter(t).settled for t in targets)

    def total(self, targets: Sequence[T]) -> int:
        """The flow's limit now: the sum over ``targets``."""
        return sum(self.limit(t) for t in targets)

    def pick(self, targets: Sequence[T], *, exclude: Collection[T] = ()) -> T | None:
        """The target with the fewest requests per slot that has a free one. Ties go
        round-robin: the search starts after the last winner, so equally idle workers share
        even one caller's requests instead of the first taking them all."""
        best: T | None = None
        best_load = 0.0
        best_index = 0
        count = len(targets)
        for step in range(count):
            index = (self._next + step) % count
            target = targets[index]
            if target in exclude:
                continue
            limit = self.limit(target)
            busy = self.inflight.get(target, 0)
            if busy >= limit:
                continue
            load = busy / limit
            if best is None or load < best_load:
                best, best_load, best_index = target, load, index
        if best is not None:
            self._next = best_index + 1
        return best

    def take(self, target: T) -> bool:
        """Count one request; whether it filled the target's last slot (the limit binds)."""
        taken = self.inflight[target] = self.inflight.get(target, 0) + 1
        self.busy += 1
        return taken >= self.limit(target)

    def release(self, target: T) -> None:
        self.busy -= 1
        left = self.inflight.get(target, 0) - 1
        if left > 0:
            self.inflight[target] = left
        else:
            self.inflight.pop(target, None)

    def measured(
        self, target: T, *, busy: bool, overloaded: bool, everyone: bool, now: float
    ) -> None:
        """One request's outcome for the limiters: ``overloaded`` lowers the target's limit
        (``everyone``: every target's, when the flow's backend as a whole is full)."""
        if not overloaded:
            self.limiter(target).done(busy=busy, now=now)
            return
        for limiter in self.limiters.values() if everyone else [self.limiter(target)]:
            limiter.overloaded(now=now)

    def forget(self, targets: Collection[T]) -> None:
        """Drop the limiters of targets that are gone (a restarted worker has a new port)."""
        if len(self.limiters) > len(targets):
            for target in list(self.limiters):
                if target not in targets and not self.inflight.get(target):
                    del self.limiters[target]


def shown(configured: int | str, now: int | None) -> str:
    """A flow's concurrency as ``flows show`` and the console say it: the setting, and the
    limit in force now over its ready workers (the pinned number times the workers, or what
    ``auto`` found for each, summed)."""
    return f"{configured} ({'no worker in use' if now is None else f'now {now}'})"
