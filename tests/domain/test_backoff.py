"""Which answers are retried, and when: verdicts, full-jitter backoff, ``Retry-After``; and
when a worker that failed is started again."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from hookgate.domain.backoff import (
    RestartBackoff,
    Verdict,
    doubling,
    next_delay,
    parse_retry_after,
    verdict,
)
from hookgate.domain.flows import RetryPolicy
from hookgate.domain.units import Duration

POLICY = RetryPolicy(max_attempts=5, backoff=Duration(1), max_backoff=Duration(60))


@pytest.mark.parametrize(
    "status, expected",
    [
        (200, Verdict.DONE),
        (201, Verdict.DONE),
        (202, Verdict.DONE),
        (204, Verdict.DONE),
        (299, Verdict.DONE),
        (None, Verdict.RETRY),
        (408, Verdict.RETRY),
        (425, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (400, Verdict.DEAD),
        (401, Verdict.DEAD),
        (403, Verdict.DEAD),
        (404, Verdict.DEAD),
        (409, Verdict.DEAD),
        (410, Verdict.DEAD),
        (422, Verdict.DEAD),
        (301, Verdict.DEAD),
        (304, Verdict.DEAD),
    ],
)
def test_verdict_table(status: int | None, expected: Verdict) -> None:
    assert verdict(status, attempt=1, policy=POLICY) is expected


@pytest.mark.parametrize("status", [None, 408, 429, 500, 503])
def test_retryable_answers_are_dead_once_attempts_are_used_up(status: int | None) -> None:
    assert verdict(status, attempt=4, policy=POLICY) is Verdict.RETRY
    assert verdict(status, attempt=5, policy=POLICY) is Verdict.DEAD
    assert verdict(status, attempt=6, policy=POLICY) is Verdict.DEAD


def test_a_2xx_on_the_last_attempt_is_done() -> None:
    assert verdict(200, attempt=5, policy=POLICY) is Verdict.DONE


def test_one_attempt_only_means_dead_at_the_first_failure() -> None:
    once = RetryPolicy(max_attempts=1)
    assert verdict(503, attempt=1, policy=once) is Verdict.DEAD
    assert verdict(200, attempt=1, policy=once) is Verdict.DONE


def test_full_jitter_stays_between_zero_and_the_doubling_ceiling() -> None:
    rng = random.Random(42)
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 ** (attempt - 1))
        delays = [next_delay(attempt=attempt, policy=POLICY, rng=rng) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(delays) < ceiling * 0.1
        assert max(delays) > ceiling * 0.9


def test_jitter_is_reproducible_with_a_seeded_random() -> None:
    first = [next_delay(attempt=a, policy=POLICY, rng=random.Random(7)) for a in range(1, 8)]
    again = [next_delay(attempt=a, policy=POLICY, rng=random.Random(7)) for a in range(1, 8)]
    assert first == again
    expected = [random.Random(7).uniform(0, min(60.0, 2.0 ** (a - 1))) for a in range(1, 8)]
    assert first == pytest.approx(expected)


def test_max_backoff_caps_even_huge_attempt_numbers() -> None:
    rng = random.Random(1)
    assert all(next_delay(attempt=500, policy=POLICY, rng=rng) <= 60 for _ in range(100))


def test_attempts_past_a_thousand_doublings_do_not_overflow() -> None:
    """``backoff * 2 ** 1024`` raises OverflowError; a delivery with max_attempts: 2000 must not."""
    rng = random.Random(2)
    assert all(0 <= next_delay(attempt=10**6, policy=POLICY, rng=rng) <= 60 for _ in range(100))


@pytest.mark.parametrize(
    "first, cap, step, expected",
    [
        (0.5, 30.0, 1, 0.5),
        (0.5, 30.0, 2, 1.0),
        (0.5, 30.0, 6, 16.0),
        (0.5, 30.0, 7, 30.0),
        (0.5, 30.0, 1024, 30.0),
        (0.5, 30.0, 1025, 30.0),
        (0.5, 30.0, 10**6, 30.0),
        (0.5, 30.0, 10**18, 30.0),
        (1e300, 1e308, 10**6, 1e308),  # the product overflows to infinity, the cap holds
        (0.0, 30.0, 10**6, 0.0),
        (0.0, 0.0, 10**6, 0.0),
        (2.0, float("inf"), 10, 1024.0),
    ],
)
def test_doubling_is_capped_at_any_step(
    first: float, cap: float, step: int, expected: float
) -> None:
    assert doubling(first=first, cap=cap, step=step) == expected


def test_restart_backoff_defaults_double_from_half_a_second_to_thirty() -> None:
    backoff = RestartBackoff()
    waits = [backoff.delay(n) for n in range(1, 9)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.delay(1025) == backoff.delay(10**6) == 30.0
    assert backoff.stable_after == 30.0


def test_zero_backoff_means_at_once() -> None:
    zero = RetryPolicy(backoff=Duration(0), max_backoff=Duration(0))
    assert next_delay(attempt=3, policy=zero, rng=random.Random(3)) == 0.0


def test_retry_after_is_a_floor_capped_by_max_backoff() -> None:
    rng = random.Random(5)
    for _ in range(100):
        assert next_delay(attempt=1, policy=POLICY, retry_after=30, rng=rng) >= 30
    assert next_delay(attempt=1, policy=POLICY, retry_after=10_000, rng=rng) == 60
    # A small Retry-After does not shorten a longer jittered delay below it.
    delays = [next_delay(attempt=7, policy=POLICY, retry_after=0.5, rng=rng) for _ in range(100)]
    assert all(0.5 <= d <= 60 for d in delays)
    assert max(delays) > 30


@pytest.mark.parametrize(
    "header, seconds",
    [("120", 120.0), ("0", 0.0), (" 7 ", 7.0), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=1_700_000_000.0) == seconds


@pytest.mark.parametrize("header", ["-5", "1.5", "Mon, 99 Foo 2024 25:61:00 GMT"])
def test_unusable_retry_after_is_ignored(header: str) -> None:
    assert parse_retry_after(header, now=1_700_000_000.0) is None


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    later = format_datetime(datetime.fromtimestamp(now + 90, tz=UTC), usegmt=True)
    assert later.endswith("GMT")
    assert parse_retry_after(later, now=now) == pytest.approx(90)
    earlier = format_datetime(datetime.fromtimestamp(now - 90, tz=UTC), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0
    # The RFC 9110 example form.
    assert parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now=946684799.0 - 10) == 10
