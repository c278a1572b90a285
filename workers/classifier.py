"""The nightly retrain of the classifier (``routing.corrections.retrain``) as a Dramatiq actor.

The scheduler enqueues ``retrain_classifier`` once a night; the actor trains on the registry's
topics, the labelled sets and every correction recorded since, and stores the new model, which
every intake process picks up within ``routing.corrections.MODEL_REFRESH_S``. Idempotent: a doubled
run stores one more identical model.
"""

from __future__ import annotations

import logging

from workers.broker import actor
from workers.reminders import FOLLOWUP_QUEUE
from workers.runtime import get_runtime

logger = logging.getLogger(__name__)


@actor(
    queue_name=FOLLOWUP_QUEUE,
    max_retries=3,
    min_backoff_ms=60_000,
    max_backoff_ms=10 * 60_000,
    time_limit_ms=10 * 60_000,
    max_age_ms=12 * 3_600_000,
)
def retrain_classifier() -> None:
    """Train and store a new classifier model (nothing when the Red registry is empty)."""
    from routing.corrections import retrain

    runtime = get_runtime()
    with runtime.sessions.begin() as session:
        try:
            row = retrain(session, now=runtime.clock.now())
        except ValueError as exc:
            logger.info("classifier not retrained: %s", exc)
            return
        logger.info("classifier model #%d stored (%d corrections)", row.id, row.corrections)
