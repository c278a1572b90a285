"""Mail batches bounded by count and by bytes, so what one batch holds does not grow with attachments.

A batch is read whole into memory (parsed, stored, committed together) and the IMAP poller holds
the next one while it processes this one. Counted in mails alone, fifty mails of 20 MB each would
be a gigabyte held at once; bounded by bytes too, the raw mail in memory stays under twice
``MAX_BATCH_BYTES`` plus one mail.

A batch's memory is also given back when it is done (``collect_after_batch``), not whenever the
cyclic garbage collector next runs.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import TypeVar

#: Raw bytes per batch at most; a mail larger than this is a batch of its own.
MAX_BATCH_BYTES = 8 * 1024 * 1024
#: A batch that held at least this much raw mail is followed by a full garbage collection.
COLLECT_AFTER_BYTES = 1024 * 1024

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


def collect_after_batch(raw_bytes: int) -> None:
    """Free a done batch's mails now when it held ``COLLECT_AFTER_BYTES`` or more of raw mail.

    A batch's ORM objects reference each other (a consulta and its messages, a message and its
    attachments, both ways), so their raw mails and attachments are freed only by the cyclic
    garbage collector, whose schedule counts objects, not bytes. After batches of large mails the
    intake held many batches' worth: peak RSS 223 MB after 30 mails with 2 MB attachments, 303 MB
    after 60, growing on (``bench/batch_memory.py``). A full collection costs ~20 ms here once
    ``freeze_startup_objects`` ran (~100 ms without), so only large batches pay it; a batch of the
    usual ~2 KB mails does not.
    """
    if raw_bytes >= COLLECT_AFTER_BYTES:
        gc.collect()


def freeze_startup_objects() -> None:
    """Move what start-up built (modules, settings, engines) out of the collector's sight.

    A long-running intake calls this once its pieces are built: full collections then walk only
    the objects made since, which makes ``collect_after_batch`` (and Python's own full collections)
    about five times cheaper here. Garbage is collected first, so none of it is kept for good.
    """
    gc.collect()
    gc.freeze()
