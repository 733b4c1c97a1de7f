"""Backoff rules: which delivery answers are retried and when, and when a worker that failed
to start (or crashed) is started again.

Every wait doubles up to a cap; ``doubling`` computes it for any number of steps without
overflowing (a plain ``first * 2 ** n`` raises ``OverflowError`` past n = 1023).
"""

from __future__ import annotations

import enum
import random
from email.utils import parsedate_to_datetime

import msgspec

from hookgate.domain.destinations import RetryPolicy

# 2.0 ** 1000 is still a finite float; any cap a user can write is reached well before it.
_MAX_DOUBLINGS = 1000


class Verdict(enum.Enum):
    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"


RETRYABLE_STATUS = frozenset({408, 425, 429})


def verdict(status_code: int | None, *, attempt: int, policy: RetryPolicy) -> Verdict:
    """2xx done; 408/429/5xx/no answer retried while attempts are left; other codes dead."""
    if status_code is not None and 200 <= status_code < 300:
        return Verdict.DONE
    retryable = status_code is None or status_code >= 500 or status_code in RETRYABLE_STATUS
    if not retryable or attempt >= policy.max_attempts:
        return Verdict.DEAD
    return Verdict.RETRY


def doubling(*, first: float, cap: float, step: int) -> float:
    """``min(cap, first * 2 ** (step - 1))`` for any step >= 1, without overflow."""
    return min(cap, first * 2.0 ** min(max(step - 1, 0), _MAX_DOUBLINGS))


class RestartBackoff(msgspec.Struct, frozen=True, kw_only=True):
    """How long the local runtime waits before it starts a flow's worker again.

    After the n-th failure in a row (a failed start or a crash) it waits ``doubling`` of
    ``first`` up to ``cap``; a worker that ran ``stable_after`` seconds ends the streak.
    """

    first: float = 0.5
    cap: float = 30.0
    stable_after: float = 30.0

    def delay(self, failures: int) -> float:
        return doubling(first=self.first, cap=self.cap, step=failures)


def next_delay(
    *,
    attempt: int,
    policy: RetryPolicy,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Full-jitter exponential backoff, at least ``Retry-After`` when the worker gave one."""
    ceiling = doubling(first=policy.backoff, cap=policy.max_backoff, step=attempt)
    delay = (rng or random).uniform(0, ceiling) if ceiling > 0 else 0.0
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_backoff))
    return delay


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
