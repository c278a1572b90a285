"""The outbox sweep: re-enqueue every due row, so a lost queue message delays work, never loses it.

``sweep_once`` is the plain function (usable without a broker: pass any ``enqueue``); the
``sweep_outbox`` actor is what the scheduler (production) enqueues periodically, and the
in-process sweep loop of ``workers.runtime`` calls ``enqueue_due`` directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from consultas.outbox import due_ids
from workers.broker import OUTBOX_QUEUE, actor
from workers.runtime import Runtime, get_runtime

logger = logging.getLogger(__name__)

#: A periodic sweep leaves alone pending rows that became due this recently: their hint is most
#: likely still queued (one enqueued twice anyway is sent once: the claim decides).
SWEEP_GRACE = timedelta(seconds=10)
#: Most rows one sweep enqueues; the next sweep takes the rest.
SWEEP_LIMIT = 1000


def sweep_once(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    enqueue: Callable[[int], object],
    grace: timedelta = timedelta(0),
    limit: int = SWEEP_LIMIT,
) -> list[int]:
    """Call ``enqueue(id)`` for each row due (pending rows: since ``grace``); return the ids handed over.

    Stops at the first enqueue error (broker down) and lets it propagate: nothing is lost, the
    rows stay due in the database for the next sweep.
    """
    with sessions() as session:
        ids = due_ids(session, now=now, grace=grace, limit=limit)
    for outbox_id in ids:
        enqueue(outbox_id)
    if ids:
        logger.info("outbox sweep re-enqueued %d row(s)", len(ids))
    return ids


def enqueue_due(runtime: Runtime, *, grace: timedelta = SWEEP_GRACE) -> list[int]:
    """Re-enqueue the due rows as ``send_outbox_row`` messages on the current broker."""
    from workers.mail import send_outbox_row

    return sweep_once(runtime.sessions, now=runtime.clock.now(), enqueue=send_outbox_row.send, grace=grace)


@actor(
    queue_name=OUTBOX_QUEUE,
    max_retries=0,  # the next periodic sweep is the retry
    min_backoff_ms=1_000,
    max_backoff_ms=1_000,
    time_limit_ms=60_000,
    max_age_ms=5 * 60_000,  # a backlog of old sweeps is useless: one recent one suffices
)
def sweep_outbox() -> None:
    """Re-enqueue every outbox row due for longer than the grace period."""
    enqueue_due(get_runtime())
