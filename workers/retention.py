"""The daily retention run: anonymise consultas closed more than ``CONSULTAS_RETENTION_YEARS`` ago.

The scheduler only enqueues ``run_retention_job``; the rules are ``consultas.privacy``'s.
Idempotent: a consulta anonymised once is not counted again, so a doubled trigger is harmless.
"""

from __future__ import annotations

import logging

from sqlalchemy import exc as sa_exc

from consultas.privacy import compact_storage, retention_cutoff, run_retention
from workers.broker import actor
from workers.reminders import FOLLOWUP_QUEUE
from workers.runtime import get_runtime

logger = logging.getLogger(__name__)

#: The run's ``PrivacyRun.actor``.
SCHEDULER_ACTOR = "scheduler"


@actor(
    queue_name=FOLLOWUP_QUEUE,
    max_retries=3,
    min_backoff_ms=60_000,
    max_backoff_ms=10 * 60_000,
    time_limit_ms=30 * 60_000,
    max_age_ms=12 * 3_600_000,
)
def run_retention_job() -> None:
    """Anonymise what the retention period no longer allows to keep, and record the run."""
    runtime = get_runtime()
    now = runtime.clock.now()
    calendar = runtime.config.calendar
    before = retention_cutoff(calendar.local(now).date(), runtime.settings.retention_years)
    with runtime.sessions.begin() as session:
        result = run_retention(session, before, tz=calendar.tz, actor=SCHEDULER_ACTOR, now=now)
    if result.consultas:
        try:
            compact_storage(runtime.engine)
        except sa_exc.OperationalError as exc:  # busy: the next run (or `consultas retention`) compacts
            logger.warning("retention: could not compact the SQLite file now: %s", exc)
