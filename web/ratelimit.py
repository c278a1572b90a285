"""Sliding-window rate limits, in process memory (per client address, per email)."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable

#: Keys kept before the oldest idle ones are dropped (bounds memory under a flood of addresses).
MAX_KEYS = 100_000


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
