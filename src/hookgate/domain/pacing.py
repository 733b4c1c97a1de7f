"""A destination's delivery rate: a token bucket that a ``429``/``503`` with ``Retry-After``
pauses as a whole (the destination said it is full, not only for that delivery)."""

from __future__ import annotations

from hookgate.domain.destinations import DeliveryRate


class Pace:
    """How many deliveries a destination may start now, and when the next may start."""

    def __init__(self, rate: DeliveryRate | None) -> None:
        self.rate = rate.per_second if rate else None
        self.capacity = float(rate.burst) if rate else 0.0
        self.tokens = self.capacity
        self.stamp: float | None = None
        self.paused_until = 0.0

    def _fill(self, now: float) -> None:
        if self.rate is not None and self.stamp is not None and now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        if self.stamp is None or now > self.stamp:
            self.stamp = now

    def allowed(self, wanted: int, now: float) -> int:
        """Up to ``wanted`` deliveries may start now (taken from the bucket)."""
        if now < self.paused_until:
            return 0
        if self.rate is None:
            return wanted
        self._fill(now)
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted

    def give_back(self, unused: int) -> None:
        """Tokens taken for deliveries the queue did not have."""
        if self.rate is not None:
            self.tokens = min(self.capacity, self.tokens + unused)

    def take(self, wanted: int, rate: DeliveryRate, now: float) -> int:
        """``allowed`` under ``rate`` (the bucket follows a changed limit); a negative
        ``wanted`` gives tokens back."""
        if (self.rate, self.capacity) != (rate.per_second, float(rate.burst)):
            self.rate, self.capacity = rate.per_second, float(rate.burst)
            self.tokens = min(self.tokens, self.capacity)
        if wanted < 0:
            self.give_back(-wanted)
            return 0
        return self.allowed(wanted, now)

    def next_at(self, now: float) -> float:
        """When a delivery may start next (``now`` if one may now)."""
        if now < self.paused_until:
            return self.paused_until
        if self.rate is None:
            return now
        self._fill(now)
        return now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate

    def pause(self, until: float) -> None:
        """The destination asked for a pause (``Retry-After``): nothing starts before ``until``."""
        self.paused_until = max(self.paused_until, until)

