"""Token buckets: the ingress's per-flow ``rate_limit`` and each destination's delivery rate
(kept in the store, so every gateway on PostgreSQL draws from one). The time is an argument
(``time.monotonic()`` in the ingress, the database's clock in PostgreSQL): no clock of their
own, exact under test."""

from __future__ import annotations

from hookgate.domain.destinations import DeliveryRate


class TokenBucket:
    """``rate`` tokens per second on average, bursts of up to ``burst`` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be above 0, got {rate}")
        self.rate = rate
        self.capacity = float(burst) if burst >= 1 else 1.0
        self.tokens = self.capacity
        self.stamp: float | None = None

    @classmethod
    def of(cls, limit: DeliveryRate) -> TokenBucket:
        return cls(limit.per_second, limit.burst)

    def _fill(self, now: float) -> None:
        if self.stamp is not None and now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        if self.stamp is None or now > self.stamp:
            self.stamp = now

    def take(self, now: float) -> float | None:
        """Take one token: None if allowed, else the seconds until one is (for Retry-After)."""
        if self.grant(1, now):
            return None
        return (1.0 - self.tokens) / self.rate

    def grant(self, wanted: int, now: float) -> int:
        """Take up to ``wanted`` tokens; how many were taken."""
        self._fill(now)
        granted = max(0, min(wanted, int(self.tokens)))
        self.tokens -= granted
        return granted

    def spend(self, wanted: int, limit: DeliveryRate, now: float) -> int:
        """A destination's draw under its current ``limit`` (a changed limit is followed): up
        to ``wanted`` deliveries may start; a negative ``wanted`` gives unused tokens back."""
        if (self.rate, self.capacity) != (limit.per_second, float(limit.burst)):
            self.rate, self.capacity = limit.per_second, float(limit.burst)
            self.tokens = min(self.tokens, self.capacity)
        if wanted < 0:
            self.tokens = min(self.capacity, self.tokens - wanted)
            return 0
        return self.grant(wanted, now)
