"""The nightly retrain of the classifier (``routing.corrections.retrain``) as a Dramatiq actor.

The scheduler enqueues ``retrain_classifier`` once a night; the actor runs ``consultas classify
--retrain`` in a child process, which trains on the registry's topics, the labelled sets and every
correction recorded since, and stores the new model; every intake process picks it up within
``routing.corrections.MODEL_REFRESH_S``. Idempotent: a doubled run stores one more identical model.
"""

from __future__ import annotations

import logging
import subprocess
import sys

from workers.broker import actor
from workers.reminders import FOLLOWUP_QUEUE

logger = logging.getLogger(__name__)

#: Longer than any retrain (seconds, ~2 s today); the actor's own time limit is above it.
RETRAIN_TIMEOUT_S = 9 * 60


@actor(
    queue_name=FOLLOWUP_QUEUE,
    max_retries=3,
    min_backoff_ms=60_000,
    max_backoff_ms=10 * 60_000,
    time_limit_ms=10 * 60_000,
    max_age_ms=12 * 3_600_000,
)
def retrain_classifier() -> None:
    """Train and store a new classifier model in a child process (nothing when the Red is empty).

    A child process (``consultas classify --retrain``, same settings from the environment) and not
    this worker: scikit-learn costs ~80 MB, given back when the child exits.
    """
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "classify", "--retrain"],
        capture_output=True,
        text=True,
        timeout=RETRAIN_TIMEOUT_S,
        check=False,
    )
    outcome = (done.stdout or done.stderr).strip().splitlines()
    logger.info("classifier retrain (exit %d): %s", done.returncode, outcome[-1] if outcome else "")
