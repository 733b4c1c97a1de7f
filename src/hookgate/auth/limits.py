"""Rate limiting: the slowdown of repeated misses, and the per-flow token bucket (defined in
``domain.pacing``, shared with the destinations' delivery rates).

Both take the time as an argument (``time.monotonic()`` in the ingress) so they hold no
clock of their own and are exact under test.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict

from hookgate.domain.pacing import TokenBucket as TokenBucket


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
