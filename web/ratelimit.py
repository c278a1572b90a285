"""Sliding-window rate limits (per client address, per email): in process memory, or in Redis.

With the Redis broker (production: ``consultas web --workers N`` on several processes or hosts)
the counts live in Redis, shared by every process; with the memory broker (the embedded default)
in this process. A Redis that cannot be reached lets requests through (logged): the form must not
go down with the queue, and the database still makes each submission once.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Protocol

import redis

logger = logging.getLogger(__name__)

#: Keys kept before the oldest idle ones are dropped (bounds memory under a flood of addresses).
MAX_KEYS = 100_000


class Limiter(Protocol):
    def hit(self, key: str) -> int | None: ...


class RateLimiter:
    """At most ``limit`` hits per key in any ``window_s`` seconds; thread-safe."""

    def __init__(self, limit: int, window_s: float, *, now: Callable[[], float]) -> None:
        self.limit = limit
        self.window_s = window_s
        self._now = now
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> int | None:
        """Count one hit for ``key``; None when allowed, else the seconds to wait (Retry-After)."""
        now = self._now()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= MAX_KEYS:
                    self._prune(now)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1, math.ceil(hits[0] + self.window_s - now))
            hits.append(now)
            return None

    def _prune(self, now: float) -> None:
        stale = [key for key, hits in self._hits.items() if not hits or hits[-1] <= now - self.window_s]
        for key in stale:
            del self._hits[key]
        if len(self._hits) >= MAX_KEYS:  # all active: forget the oldest half rather than grow
            for key in list(self._hits)[: MAX_KEYS // 2]:
                del self._hits[key]


#: One atomic step per hit: drop hits older than the window, count, add this one if allowed.
#: Returns nil when allowed, else the oldest hit's score (to compute Retry-After).
_SLIDING_WINDOW = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return oldest[2]
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(ARGV[2]))
return false
"""


class RedisRateLimiter:
    """``RateLimiter`` with the hits in a Redis sorted set per key, shared by every process."""

    def __init__(
        self, client: redis.Redis, prefix: str, limit: int, window_s: float, *, now: Callable[[], float]
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._client = client
        self._prefix = prefix
        self._now = now
        self._script = client.register_script(_SLIDING_WINDOW)

    def hit(self, key: str) -> int | None:
        now = self._now()
        try:
            oldest = self._script(
                keys=[self._prefix + key], args=[now, self.window_s, self.limit, f"{now}:{uuid.uuid4().hex}"]
            )
        except redis.RedisError as exc:
            logger.warning("web rate limit: Redis unavailable (%s); request let through", type(exc).__name__)
            return None
        if oldest is None:
            return None
        return max(1, math.ceil(float(oldest) + self.window_s - now))
