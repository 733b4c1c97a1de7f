"""TokenBucket and MissThrottle, with exact numbers (time is passed in)."""

from __future__ import annotations

import pytest

from hookgate.auth.limits import MissThrottle, TokenBucket


def test_bucket_allows_a_burst_then_paces_at_the_rate():
    bucket = TokenBucket(2.0, 3)
    assert [bucket.take(100.0) for _ in range(3)] == [None, None, None]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.25) == pytest.approx(0.25)
    assert bucket.take(100.5) is None
    assert bucket.take(100.5) == pytest.approx(0.5)


def test_bucket_refills_up_to_the_burst_only():
    bucket = TokenBucket(10.0, 2)
    assert bucket.take(0.0) is None
    assert bucket.take(0.0) is None
    assert bucket.take(1000.0) is None
    assert bucket.take(1000.0) is None
    assert bucket.take(1000.0) == pytest.approx(0.1)


def test_bucket_ignores_a_clock_going_backwards():
    bucket = TokenBucket(1.0, 1)
    assert bucket.take(50.0) is None
    assert bucket.take(10.0) == pytest.approx(1.0)
    assert bucket.take(51.0) is None


def test_bucket_rejects_a_zero_rate():
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1)
    assert TokenBucket(0.5, 0).take(0.0) is None


def test_misses_are_free_then_doubling_then_capped():
    throttle = MissThrottle()
    delays = [throttle.miss("198.51.100.1", 0.0) for _ in range(10)]
    assert delays == pytest.approx([0, 0, 0, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])


def test_misses_are_forgotten_over_time():
    throttle = MissThrottle(free=3, decay=10.0)
    for _ in range(6):
        throttle.miss("198.51.100.1", 0.0)
    assert throttle.miss("198.51.100.1", 0.0) == pytest.approx(0.8)
    # 7 misses, 40 s later 4 are drained: this one is the 4th.
    assert throttle.miss("198.51.100.1", 40.0) == pytest.approx(0.1)
    assert throttle.miss("198.51.100.1", 1000.0) == 0


def test_addresses_are_counted_apart_but_ipv6_per_64():
    throttle = MissThrottle(free=1)
    assert throttle.miss("198.51.100.1", 0.0) == 0
    assert throttle.miss("198.51.100.2", 0.0) == 0
    assert throttle.miss("2001:db8:1:2::1", 0.0) == 0
    assert throttle.miss("2001:db8:1:2:ffff::9", 0.0) == pytest.approx(0.1)
    assert throttle.miss("2001:db8:1:3::1", 0.0) == 0
    assert throttle.miss("::ffff:198.51.100.1", 0.0) == pytest.approx(0.1)


def test_unknown_clients_are_not_throttled():
    throttle = MissThrottle(free=0)
    assert throttle.miss(None, 0.0) == 0
    assert throttle.miss("", 0.0) == 0
    assert throttle.miss("not-an-ip", 0.0) == pytest.approx(0.1)


def test_memory_is_bounded_least_recent_first():
    throttle = MissThrottle(free=1, max_addresses=100)
    throttle.miss("10.0.0.0", 0.0)
    for n in range(1, 100):
        throttle.miss(f"10.0.{n // 256}.{n % 256}", 0.0)
    throttle.miss("10.0.0.0", 0.0)  # touched again: now the most recent
    for n in range(100, 20_000):
        throttle.miss(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", 0.0)
        if n == 198:
            assert throttle.miss("10.0.0.0", 0.0) > 0  # still remembered
    assert len(throttle) == 100
    assert throttle.miss("10.0.0.0", 0.0) == 0  # evicted, so counted afresh
