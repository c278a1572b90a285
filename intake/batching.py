"""Mail batches bounded by count and by bytes, so what one batch holds does not grow with attachments.

A batch is read whole into memory (parsed, stored, committed together) and the IMAP poller holds
the next one while it processes this one. Counted in mails alone, fifty mails of 20 MB each would
be a gigabyte held at once; bounded by bytes too, the raw mail in memory stays under twice
``MAX_BATCH_BYTES`` plus one mail.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

#: Raw bytes per batch at most; a mail larger than this is a batch of its own.
MAX_BATCH_BYTES = 8 * 1024 * 1024

Key = TypeVar("Key")


def size_bounded_batches(
    sized: Iterable[tuple[Key, int]], *, max_count: int, max_bytes: int = MAX_BATCH_BYTES
) -> list[list[Key]]:
    """Split ``(key, size)`` pairs, in order, into batches of at most ``max_count`` keys and
    ``max_bytes`` bytes (a key whose size alone exceeds ``max_bytes`` goes alone)."""
    if max_count < 1:
        raise ValueError("max_count must be at least 1")
    batches: list[list[Key]] = []
    current: list[Key] = []
    current_bytes = 0
    for key, size in sized:
        if current and (len(current) >= max_count or current_bytes + size > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(key)
        current_bytes += size
    if current:
        batches.append(current)
    return batches
