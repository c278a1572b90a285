"""Per-chat flood control: a small token bucket per chat id; pure, the caller passes the time.

Over the limit a chat gets one polite warning (``Verdict.WARN``) and is then ignored
(``Verdict.IGNORE``) for ``cooldown_s``; after that its bucket refills as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: A citizen typing the form sends a message every few seconds; a script sends many per second.
DEFAULT_CAPACITY = 20.0
DEFAULT_REFILL_PER_S = 1.0
DEFAULT_COOLDOWN_S = 60.0
#: Chats idle for this long are forgotten (their bucket would be full anyway).
_FORGET_AFTER_S = 3600.0
_PRUNE_EVERY = 1024


class Verdict(StrEnum):
    ALLOW = "allow"
    WARN = "warn"  # first update over the limit: tell the citizen once
    IGNORE = "ignore"  # still cooling down: drop silently


@dataclass
class _Bucket:
    tokens: float
    updated: float
    muted_until: float = 0.0


class FloodGuard:
    """Token buckets keyed by chat id; ``check(chat_id, now)`` spends one token per update."""

    def __init__(
        self,
        capacity: float = DEFAULT_CAPACITY,
        refill_per_s: float = DEFAULT_REFILL_PER_S,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
    ) -> None:
        if capacity < 1 or refill_per_s <= 0 or cooldown_s < 0:
            raise ValueError("capacity >= 1, refill_per_s > 0 and cooldown_s >= 0 are required")
        self.capacity = capacity
        self.refill_per_s = refill_per_s
        self.cooldown_s = cooldown_s
        self._buckets: dict[int, _Bucket] = {}
        self._checks = 0

    def check(self, chat_id: int, now: float) -> Verdict:
        """Spend a token of ``chat_id``'s bucket at monotonic time ``now`` (seconds)."""
        self._checks += 1
        if self._checks % _PRUNE_EVERY == 0:
            self._prune(now)
        bucket = self._buckets.get(chat_id)
        if bucket is None:
            bucket = self._buckets[chat_id] = _Bucket(tokens=self.capacity, updated=now)
        if now < bucket.muted_until:
            return Verdict.IGNORE
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.refill_per_s)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return Verdict.ALLOW
        bucket.muted_until = now + self.cooldown_s
        return Verdict.WARN

    def _prune(self, now: float) -> None:
        stale = [
            chat
            for chat, bucket in self._buckets.items()
            if now - bucket.updated > _FORGET_AFTER_S and now >= bucket.muted_until
        ]
        for chat in stale:
            del self._buckets[chat]
