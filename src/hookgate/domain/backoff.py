"""Delivery rules: which answers are retried, and when the next attempt is due."""

from __future__ import annotations

import enum
import random
from email.utils import parsedate_to_datetime

from hookgate.domain.flows import RetryPolicy


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


def next_delay(
    *,
    attempt: int,
    policy: RetryPolicy,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Full-jitter exponential backoff, at least ``Retry-After`` when the worker gave one."""
    ceiling = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
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
