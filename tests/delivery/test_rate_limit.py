"""The send rate limit: shared across limiter instances and processes through the real Redis.

Assertions count grants and look at wait values; nothing here depends on how fast the machine is
except that a handful of Redis calls take well under the seconds-long intervals used.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from newsletter.delivery.rate_limit import (
    BUCKET_SECONDS,
    HOUR_BUCKETS,
    LocalRateLimiter,
    RedisRateLimiter,
    UnlimitedRateLimiter,
    get_rate_limiter,
)
from newsletter.settings import Settings, SettingsError
from tests.support.services import REDIS_URL, redis_up

needs_redis = pytest.mark.skipif(not redis_up(), reason="Redis at 127.0.0.1:6379 unreachable")


class Clock:
    """A clock the test moves by hand (the limiter's own arithmetic is what is under test)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_unlimited_never_waits(settings: Settings) -> None:
    limiter = get_rate_limiter(settings)
    assert isinstance(limiter, UnlimitedRateLimiter)
    assert limiter.unlimited
    assert all(limiter.try_acquire(1000) == 0 for _ in range(100))
    limiter.acquire(10**9)  # returns at once


def test_local_per_second_spaces_mails() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(per_second=10, clock=clock)
    assert limiter.try_acquire() == 0  # 0.1 s of budget: one mail at 10/s
    wait = limiter.try_acquire()
    assert wait == pytest.approx(0.1)
    clock.now += wait
    assert limiter.try_acquire() == 0
    clock.now += 10
    granted = sum(limiter.try_acquire() == 0 for _ in range(50))
    assert granted == 1  # a long idle spell does not bank a burst


def test_local_per_hour_is_a_rolling_window() -> None:
    clock = Clock(now=3600.0 * 1000)
    limiter = LocalRateLimiter(per_hour=100, clock=clock)
    assert sum(limiter.try_acquire() == 0 for _ in range(150)) == 100
    wait = limiter.try_acquire()
    assert 3600 <= wait <= (HOUR_BUCKETS + 1) * BUCKET_SECONDS
    clock.now += 1800
    assert limiter.try_acquire() > 0  # half an hour later: still the same hour
    clock.now += wait - 1800
    assert limiter.try_acquire() == 0


def test_a_request_bigger_than_the_budget_still_goes_when_idle() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(per_second=5, per_hour=10, clock=clock)
    assert limiter.try_acquire(20) == 0
    assert limiter.try_acquire(1) > 0


@pytest.fixture
def name() -> Iterator[str]:
    key = f"test-{uuid.uuid4().hex[:10]}"
    yield key
    if redis_up():
        RedisRateLimiter(REDIS_URL, name=key).reset()


@needs_redis
def test_two_limiters_share_the_hourly_budget(name: str) -> None:
    a = RedisRateLimiter(REDIS_URL, per_hour=30, name=name)
    b = RedisRateLimiter(REDIS_URL, per_hour=30, name=name)
    granted = 0
    for _ in range(40):
        granted += a.try_acquire() == 0
        granted += b.try_acquire() == 0
    assert granted == 30
    assert a.try_acquire() >= 3600 - BUCKET_SECONDS
    assert b.try_acquire() >= 3600 - BUCKET_SECONDS


@needs_redis
def test_two_limiters_share_the_per_second_pace(name: str) -> None:
    a = RedisRateLimiter(REDIS_URL, per_second=0.5, name=name)  # one mail every 2 s
    b = RedisRateLimiter(REDIS_URL, per_second=0.5, name=name)
    assert a.try_acquire() == 0
    wait = b.try_acquire()
    assert 1.0 < wait <= 2.01  # b must wait for a's slot to pass, minus what elapsed
    assert a.try_acquire() > 1.0


def _hammer(name: str, attempts: int, results: multiprocessing.Queue[int]) -> None:
    limiter = RedisRateLimiter(REDIS_URL, per_second=0.5, per_hour=1000, name=name)
    results.put(sum(limiter.try_acquire() == 0 for _ in range(attempts)))


@needs_redis
def test_processes_share_the_budget(name: str) -> None:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = context.Queue()
    procs = [context.Process(target=_hammer, args=(name, 200, results)) for _ in range(2)]
    for p in procs:
        p.start()
    counts = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    # At 0.5/s, 400 attempts over well under 2 s across two processes earn exactly one grant...
    # ...unless the two processes' calls happened to span more than 2 s: then at most one more.
    assert 1 <= sum(counts) <= 2
    hourly = RedisRateLimiter(REDIS_URL, per_hour=1000, name=name)
    assert hourly.try_acquire(1000 - sum(counts)) == 0  # the grants were counted in the hour too
    assert hourly.try_acquire() > 0


@needs_redis
def test_get_rate_limiter_uses_redis_when_configured(settings: Settings) -> None:
    s = replace(settings, redis_url=REDIS_URL, send_rate_per_hour=5)
    limiter = get_rate_limiter(s)
    assert isinstance(limiter, RedisRateLimiter)
    assert get_rate_limiter(s) is limiter
    assert limiter.keys[0].startswith("newsletter:ratelimit:")


def test_redis_down_falls_back_to_local_limits(name: str) -> None:
    from tests.support.smtp import free_port

    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", per_hour=3, name=name)
    assert sum(limiter.try_acquire() == 0 for _ in range(5)) == 3


def test_bulk_sends_leave_the_reserve_to_the_readers_own_mails(settings: Settings) -> None:
    s = replace(settings, send_rate_per_second=50.0, send_rate_per_hour=1000)
    assert s.send_rate_reserve == 0.1
    assert s.bulk_rate_per_second == pytest.approx(45.0) and s.bulk_rate_per_hour == 900
    hourly = replace(s, send_rate_per_second=0.0)
    limiter = get_rate_limiter(hourly)
    assert isinstance(limiter, LocalRateLimiter)
    assert sum(limiter.try_acquire() == 0 for _ in range(1000)) == 900  # not the whole 1000
    whole = replace(hourly, send_rate_reserve=0.0)
    assert whole.bulk_rate_per_hour == 1000 and whole.bulk_rate_per_second == 0
    with pytest.raises(SettingsError, match="NEWSLETTER_SEND_RATE_RESERVE"):
        replace(s, send_rate_reserve=1.0).validate()
