"""Rate limiting: a per-flow token bucket, and the slowdown of repeated misses.

Both take the time as an argument (``time.monotonic()`` in the ingress) so they hold no
clock of their own and are exact under test.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict


class TokenBucket:
    """``rate`` requests per second on average, bursts of up to ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be above 0, got {rate}")
        self.rate = rate
        self.capacity = float(burst) if burst >= 1 else 1.0
        self._tokens = self.capacity
        self._stamp: float | None = None

    def take(self, now: float) -> float | None:
        """Take one token: None if allowed, else the seconds until one is (for Retry-After)."""
        if self._stamp is not None and now > self._stamp:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        if self._stamp is None or now > self._stamp:
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.rate


class MissThrottle:
    """How long to stall the answer to a miss (404) from one address.

    Each address has a score that one miss raises by 1 and that drains by 1 every
    ``decay`` seconds. Up to ``free`` misses cost nothing (a mistyped URL, a deleted flow);
    beyond that the delay doubles per miss from ``base`` up to ``cap``, which makes probing
    for flow ids slow without holding a connection for long. At most ``max_addresses``
    are remembered (least recently missed forgotten first); IPv6 clients count per /64,
    since one host usually has a whole /64 to hop around in.
    """

    def __init__(
        self,
        *,
        free: int = 3,
        base: float = 0.1,
        cap: float = 2.0,
        decay: float = 10.0,
        max_addresses: int = 10_000,
    ) -> None:
        if free < 0 or base <= 0 or cap < base or decay <= 0 or max_addresses < 1:
            raise ValueError("MissThrottle needs free >= 0, 0 < base <= cap, decay > 0")
        self.free = free
        self.base = base
        self.cap = cap
        self.decay = decay
        self.max_addresses = max_addresses
        self._scores: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._scores)

    def miss(self, address: str | None, now: float) -> float:
        """Record a miss from ``address``; return the seconds to wait before answering it."""
        if not address:
            return 0.0
        key = client_key(address)
        score, stamp = self._scores.pop(key, (0.0, now))
        score = max(0.0, score - max(0.0, now - stamp) / self.decay) + 1.0
        self._scores[key] = (score, max(now, stamp))
        if len(self._scores) > self.max_addresses:
            self._scores.popitem(last=False)
        if score <= self.free:
            return 0.0
        return min(self.cap, self.base * math.pow(2.0, score - self.free - 1.0))


def client_key(address: str) -> str:
    """Who a client address counts as: itself, or its /64 for IPv6 (one host has them all)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)
