"""The global send rate: per second and per hour, shared by every worker through Redis.

Celery's own ``rate_limit`` is per worker, so ten workers would send ten times the limit. Here
every grant goes through one atomic Lua script in Redis (``newsletter:ratelimit:*`` keys):

* per second: GCRA (a leaky bucket kept as one timestamp). Mails are spaced 1/rate seconds apart,
  with a burst allowance of 0.1 s worth, so any one-second window holds at most ~1.1 x rate.
* per hour: a rolling window counted in one-minute buckets. A grant is refused while the last 61
  buckets (which cover every 60-minute window ending now) already hold the limit, so no rolling
  hour ever exceeds it; the wait is until enough of the oldest minute's mails age out.

Without ``NEWSLETTER_REDIS_URL`` the same two rules run in-process (one budget per process: fine
for the embedded single-worker setup, documented as such). If Redis cannot be reached, grants fall
back to the in-process rules with a warning rather than stopping the send.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from newsletter.settings import Settings

log = logging.getLogger(__name__)

BURST_SECONDS = 0.1  # per-second limit: how much sending may bunch up (in seconds of budget)
BUCKET_SECONDS = 60  # per-hour limit: width of one counting bucket
HOUR_BUCKETS = 61  # buckets summed: 61 one-minute buckets cover any 60-minute window ending now
KEY_PREFIX = "newsletter:ratelimit"
_WINDOWS = (BURST_SECONDS, BUCKET_SECONDS, HOUR_BUCKETS)

# KEYS: [1] per-second GCRA timestamp, [2] per-hour bucket hash.
# ARGV: n, per-second rate (0 = none), per-hour limit (0 = none), burst seconds, bucket seconds,
#       number of buckets. Returns "0" when granted, else the seconds to wait (as a string:
#       Lua numbers would be truncated to integers on the way out).
_LUA = """
local n = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local hourly = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local width = tonumber(ARGV[5])
local buckets = tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local wait = 0
local new_tat = nil
if rate > 0 then
  local interval = 1 / rate
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  new_tat = tat + n * interval
  local allowance = math.max(n * interval, burst)
  if new_tat - now > allowance then
    wait = new_tat - allowance - now
  end
end
local bucket = math.floor(now / width)
local oldest = bucket - buckets + 1
if hourly > 0 then
  local raw = redis.call('HGETALL', KEYS[2])
  local total = 0
  local live = {}
  for i = 1, #raw, 2 do
    local b = tonumber(raw[i])
    local c = tonumber(raw[i + 1])
    if b < oldest then
      redis.call('HDEL', KEYS[2], raw[i])
    else
      total = total + c
      table.insert(live, {b, c})
    end
  end
  local cap = math.max(hourly, n)
  if total + n > cap then
    table.sort(live, function(x, y) return x[1] < y[1] end)
    local excess = total + n - cap
    local freed = 0
    for _, item in ipairs(live) do
      freed = freed + item[2]
      if freed >= excess then
        local hour_wait = (item[1] + buckets) * width - now
        if hour_wait > wait then wait = hour_wait end
        break
      end
    end
  end
end
if wait > 0 then
  return tostring(wait)
end
if rate > 0 then
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
end
if hourly > 0 then
  redis.call('HINCRBY', KEYS[2], tostring(bucket), n)
  redis.call('EXPIRE', KEYS[2], buckets * width + width)
end
return '0'
"""


class RateLimiter:
    """Grants permission to send ``n`` mails under the configured rates."""

    def try_acquire(self, n: int = 1) -> float:
        """0 when ``n`` mails may go now (and they are counted); else seconds to wait first."""
        raise NotImplementedError

    def acquire(self, n: int = 1) -> None:
        """Block until ``n`` mails may go out, then count them."""
        while True:
            wait = self.try_acquire(n)
            if wait <= 0:
                return
            time.sleep(wait)

    @property
    def unlimited(self) -> bool:
        """True when no limit is configured (callers may skip the limiter entirely)."""
        return False


class UnlimitedRateLimiter(RateLimiter):
    """No limit configured: never waits, never talks to Redis."""

    def try_acquire(self, n: int = 1) -> float:
        """Always granted."""
        return 0.0

    def acquire(self, n: int = 1) -> None:
        """Returns at once."""

    @property
    def unlimited(self) -> bool:
        """Always True."""
        return True


class LocalRateLimiter(RateLimiter):
    """The two rules of the module docstring, within one process (thread-safe)."""

    def __init__(
        self,
        per_second: float = 0.0,
        per_hour: int = 0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_second = per_second
        self.per_hour = per_hour
        self._clock = clock
        self._tat = 0.0
        self._buckets: dict[int, int] = {}
        self._lock = threading.Lock()

    def try_acquire(self, n: int = 1) -> float:
        """0 when granted (and counted), else seconds to wait."""
        with self._lock:
            now = self._clock()
            wait = 0.0
            new_tat = 0.0
            if self.per_second > 0:
                interval = 1.0 / self.per_second
                new_tat = max(self._tat, now) + n * interval
                allowance = max(n * interval, BURST_SECONDS)
                if new_tat - now > allowance:
                    wait = new_tat - allowance - now
            bucket = math.floor(now / BUCKET_SECONDS)
            if self.per_hour > 0:
                oldest = bucket - HOUR_BUCKETS + 1
                for stale in [b for b in self._buckets if b < oldest]:
                    del self._buckets[stale]
                total = sum(self._buckets.values())
                cap = max(self.per_hour, n)
                if total + n > cap:
                    excess, freed = total + n - cap, 0
                    for b in sorted(self._buckets):
                        freed += self._buckets[b]
                        if freed >= excess:
                            wait = max(wait, (b + HOUR_BUCKETS) * BUCKET_SECONDS - now)
                            break
            if wait > 0:
                return wait
            if self.per_second > 0:
                self._tat = new_tat
            if self.per_hour > 0:
                self._buckets[bucket] = self._buckets.get(bucket, 0) + n
            return 0.0


class RedisRateLimiter(RateLimiter):
    """The two rules, shared by every process that uses the same Redis and ``name``."""

    def __init__(
        self,
        redis_url: str,
        per_second: float = 0.0,
        per_hour: int = 0,
        *,
        name: str = "send",
        client: Any = None,
    ) -> None:
        import redis

        self.per_second = per_second
        self.per_hour = per_hour
        self.keys = [f"{KEY_PREFIX}:{name}:second", f"{KEY_PREFIX}:{name}:hour"]
        self._client = client or redis.Redis.from_url(
            redis_url, socket_timeout=5, socket_connect_timeout=5
        )
        self._script = self._client.register_script(_LUA)
        self._fallback = LocalRateLimiter(per_second, per_hour)
        self._warned_at = 0.0

    def try_acquire(self, n: int = 1) -> float:
        """0 when granted (and counted in Redis), else seconds to wait."""
        import redis

        try:
            answer = self._script(
                keys=self.keys,
                args=[
                    n,
                    self.per_second,
                    self.per_hour,
                    BURST_SECONDS,
                    BUCKET_SECONDS,
                    HOUR_BUCKETS,
                ],
            )
        except redis.RedisError as exc:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning(
                    "send rate limit: Redis unreachable (%s); limiting per process meanwhile",
                    exc,
                )
            return self._fallback.try_acquire(n)
        return float(answer)

    def reset(self) -> None:
        """Forget every grant (for tests and benchmarks)."""
        self._client.delete(*self.keys)


_limiters: dict[tuple[str, float, int], RateLimiter] = {}
_limiters_lock = threading.Lock()


def get_rate_limiter(settings: Settings) -> RateLimiter:
    """This process's limiter for bulk sends: NEWSLETTER_SEND_RATE_PER_SECOND / _PER_HOUR less
    NEWSLETTER_SEND_RATE_RESERVE, the share kept for the reader's own mails (0 = unlimited)."""
    per_second, per_hour = settings.bulk_rate_per_second, settings.bulk_rate_per_hour
    key = (settings.redis_url, per_second, per_hour)
    limiter = _limiters.get(key)
    if limiter is not None:
        return limiter
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            if per_second <= 0 and per_hour <= 0:
                limiter = UnlimitedRateLimiter()
            elif settings.redis_url:
                limiter = RedisRateLimiter(settings.redis_url, per_second, per_hour)
            else:
                limiter = LocalRateLimiter(per_second, per_hour)
            _limiters[key] = limiter
    return limiter
